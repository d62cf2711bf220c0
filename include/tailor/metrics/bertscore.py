"""BERTScore of generated answers against reference answers, through the ``bert_score`` package.

Production default: ``roberta-large`` at layer 17 (``bert_score``'s default for English, see
:data:`PRODUCTION_MODEL` / :data:`PRODUCTION_NUM_LAYERS`); ``microsoft/deberta-xlarge-mnli`` at layer 40
(bert_score's best-correlating model in its README) for about twice the parameters (750M vs 355M).

Local default (no model hub reachable): the Hugging Face folder of SmolLM2-135M-Instruct (the caller passes its
path, e.g. ``localaws.models.smollm2_dir()``; this package imports nothing from ``localaws``) with
:data:`LOCAL_NUM_LAYERS` = 8 of its 30 layers. Chosen by a measurement on 10 catalog answers, each scored
against a correct paraphrase, the same answer with one number changed and an unrelated answer (mean F1; "margin"
is the smallest per-pair paraphrase - unrelated difference):

======  ==========  ============  =========  ======  ======
layers  paraphrase  wrong number  unrelated  gap     margin
======  ==========  ============  =========  ======  ======
1       0.891       0.989         0.612      0.278   0.198
2       0.912       0.992         0.711      0.201   0.148
4       0.900       0.991         0.683      0.217   0.154
6       0.894       0.988         0.671      0.224   0.159
**8**   **0.896**   **0.989**     **0.698**  0.199   0.130
12      0.883       0.991         0.696      0.186   0.116
16      0.888       0.992         0.720      0.169   0.107
30      0.887       0.998         0.733      0.154   0.047
======  ==========  ============  =========  ======  ======

Paraphrase > unrelated for 10/10 pairs at every depth. Layer 1 separates most, but it is little more than token
identity (it would not credit a paraphrase with new words); 4-8 are a plateau (6 vs 8 is within the noise of 10
pairs), and 8 (as for the local embeddings) costs a quarter of the full depth. The last layer separates worst.
A wrong number scores *above* a correct paraphrase for 10/10 pairs at every depth: one changed digit is one
token out of ~20, so BERTScore is blind to numeric errors. That is what :mod:`tailor.metrics.facts` is for.

Adaptations for a decoder-only model (``bert_score`` 0.3.13 was written for BERT-style encoders), all done on the
loaded ``bert_score.BERTScorer``, nothing patched in site-packages:

* ``sent_encode`` passes ``max_length=tokenizer.model_max_length``; SmolLM2's is 1e30, which the Rust tokenizer
  rejects (``OverflowError``) - the length is capped at the model's context (at most :data:`MAX_TOKENS`).
* ``sent_encode`` calls ``build_inputs_with_special_tokens`` for an empty text, which transformers 5's
  ``TokenizersBackend`` does not have; and ``greedy_cos_idf`` detects empty texts as "2 tokens" (``[CLS] [SEP]``).
  Empty or blank candidates/references never reach ``bert_score``: they score ``(0.0, 0.0, 0.0)``.
* The tokenizer adds no special tokens, so the first word of every text would become the causal model's
  attention sink (a near-constant hidden state, whatever the word). A BOS token is prepended and given weight 0
  like BERT's ``[CLS]`` (exposed as ``cls_token_id``, which ``bert_score`` zeroes in its idf weights). On the
  10 pairs above this moved the mean F1s by less than 0.01 (layer 8: 0.905/0.989/0.706 without it).
* A missing pad token is set to EOS (padding is on the right, so with a causal mask it never affects real tokens).
* The KV cache is switched off (``bert_score`` truncates ``model.layers``; the cache is never used).
* ``BERTScorer.score`` ignores the constructor's ``batch_size`` (its own default is 64); ours is passed on.

Long texts are never truncated silently. ``bert_score`` cuts every text at the model's window (512 tokens for
roberta-large, :data:`MAX_TOKENS` locally), so the end of a 600-word reference or answer would not count at all:
an answer that gets the first half right and the rest wrong would score as if it were right. A pair whose
candidate or reference does not fit the window (counted with its special tokens) is scored over windows instead:

1. each long text is cut into windows that fit, on sentence and line boundaries (:func:`sentence_windows`: whole
   sentences packed greedily; a sentence longer than the window is cut between words; windows do not overlap,
   so every token is embedded exactly once, with the context of its own window);
2. every window is embedded like a whole text (same model, layer, special tokens - weight 0 - and idf weights);
3. greedy matching runs over all tokens of all windows, exactly BERTScore's definition on the concatenation:
   precision = idf-weighted mean over the candidate's tokens (all windows) of the best cosine similarity with
   any reference token (all windows); recall symmetrically; F1 their harmonic mean; the baseline rescaling after.

Measured locally (SmolLM2 layers 1-8, a 694-token reference = 2 windows): an answer that repeats the reference's
first window and then talks about something else scores F1 0.992 truncated, 0.950 windowed; the first half of the
reference alone scores recall 0.925 truncated, 0.901 windowed.

A text that fits is one window, and a pair of such texts goes through ``bert_score`` itself, so short texts
score exactly as before. idf weights count every token of a long text (its windows' tokens), not its first 512.
:meth:`BertScorer.score_report` returns which pairs were windowed and how many candidates and references needed it.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PRODUCTION_MODEL = "roberta-large"
PRODUCTION_NUM_LAYERS = 17
ALTERNATIVE_PRODUCTION_MODEL = "microsoft/deberta-xlarge-mnli"
ALTERNATIVE_PRODUCTION_NUM_LAYERS = 40
LOCAL_NUM_LAYERS = 8
#: Window per text (BERT-family context); a longer text is scored over several windows (see the module doc).
MAX_TOKENS = 512

Triple = tuple[float, float, float]
ZERO: Triple = (0.0, 0.0, 0.0)
_LINE = re.compile(r"[^\n]+")
_SENTENCE = re.compile(r"\S.*?(?:[.!?;]+(?=\s|$)|$)")  # up to a sentence end followed by a space, or the line end
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class BertScoreReport:
    """:meth:`BertScorer.score_report`'s result: the scores and which pairs were scored over windows."""

    scores: list[Triple]
    windowed: list[bool]  # per pair: the candidate or the reference was longer than the window
    windowed_candidates: int  # candidates longer than the window
    windowed_references: int  # references longer than the window

    @property
    def n_windowed(self) -> int:
        return sum(self.windowed)


def _spans(text: str, pattern: re.Pattern[str], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text, start, len(text) if end is None else end)]


def sentence_windows(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """``text`` cut into consecutive windows of at most ``limit`` tokens (``count`` of a window, special tokens
    included), on sentence and line boundaries; a sentence longer than ``limit`` is cut between words, and a
    single word longer than ``limit`` is a window of its own (the tokenizer truncates it: nothing else can).
    Windows are substrings of ``text`` (their in-place wording and spacing) and do not overlap."""
    text = text.strip()
    if count(text) <= limit:
        return [text]
    units: list[tuple[int, int]] = []
    for line_start, line_end in _spans(text, _LINE):
        for start, end in _spans(text, _SENTENCE, line_start, line_end):
            if count(text[start:end]) <= limit:
                units.append((start, end))
            else:
                units += _spans(text, _WORD, start, end)
    windows: list[str] = []
    i = 0
    while i < len(units):
        j = i + 1
        while j < len(units) and count(text[units[i][0] : units[j][1]]) <= limit:
            j += 1
        windows.append(text[units[i][0] : units[j - 1][1]])
        i = j
    return windows


class CausalLMTokenizer:
    """The view of a decoder-only model's tokenizer that ``bert_score`` expects from a BERT tokenizer.

    ``encode`` returns ``prefix + ids + suffix`` where prefix/suffix are the special tokens the tokenizer adds by
    itself, or ``[bos]`` when it adds none; ``cls_token_id``/``sep_token_id`` name them so ``bert_score`` gives
    them idf weight 0. Everything else is delegated to the wrapped tokenizer.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self._tokenizer = tokenizer
        self.model_max_length = max_length
        plain = tokenizer.encode("a", add_special_tokens=False)
        full = tokenizer.encode("a", add_special_tokens=True)
        start = _find(full, plain)
        if len(full) > len(plain) and start >= 0:
            self.prefix, self.suffix = list(full[:start]), list(full[start + len(plain) :])
        elif tokenizer.bos_token_id is not None:
            self.prefix, self.suffix = [int(tokenizer.bos_token_id)], []
        else:
            self.prefix, self.suffix = [], []
        self.cls_token_id = self.prefix[0] if self.prefix else None
        self.sep_token_id = self.suffix[-1] if self.suffix else None

    def __getattr__(self, name: str) -> Any:  # only called for attributes not set above
        if name == "_tokenizer":  # not yet set (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._tokenizer, name)

    @property
    def wrapped(self) -> Any:
        return self._tokenizer

    def build_inputs_with_special_tokens(self, ids: Sequence[int], ids2: Sequence[int] | None = None) -> list[int]:
        return self.prefix + list(ids) + list(ids2 or ()) + self.suffix

    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None,
               truncation: bool = False, **_: Any) -> list[int]:
        ids = list(self._tokenizer.encode(text, add_special_tokens=False))
        extra = len(self.prefix) + len(self.suffix) if add_special_tokens else 0
        if truncation:
            limit = min(max_length or self.model_max_length, self.model_max_length)
            ids = ids[: max(limit - extra, 0)]
        return self.build_inputs_with_special_tokens(ids) if add_special_tokens else ids


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if list(haystack[start : start + len(needle)]) == list(needle):
            return start
    return -1


def is_decoder_only(config: Any) -> bool:
    """True for a causal LM (Llama, GPT-2, ...) as opposed to an encoder (BERT, RoBERTa, DeBERTa) or seq2seq."""
    if getattr(config, "is_encoder_decoder", False):
        return False
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures) or bool(
        getattr(config, "is_decoder", False)
    )


def adapt(scorer: Any) -> Any:
    """Make a freshly built ``bert_score.BERTScorer`` work with ``scorer._model``'s architecture (see module doc)."""
    model, tokenizer = scorer._model, scorer._tokenizer
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or MAX_TOKENS
    max_length = int(min(tokenizer.model_max_length, context, MAX_TOKENS))
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer of {scorer.model_type} has neither a pad nor an eos token")
    if is_decoder_only(config):
        tokenizer.padding_side = "right"
        config.use_cache = False
        scorer._tokenizer = CausalLMTokenizer(tokenizer, max_length)
    else:
        tokenizer.model_max_length = max_length
    return scorer


class BertScorer:
    """BERTScore (P, R, F1) per candidate/reference pair; the model is loaded once, on first use.

    ``model_type`` is a Hugging Face model name or local folder; ``baseline_path`` a ``bert_score`` baseline TSV
    (rows = layers, columns ``LAYER,P,R,F``) to rescale with; ``idf`` weights tokens by inverse document
    frequency over :meth:`fit_idf`'s sentences, or over each call's references when not fitted
    (as ``bert_score.score`` does); a text left with no weight at all (every token has idf 0) is scored with
    uniform weights rather than as NaN.
    """

    def __init__(self, model_type: str, num_layers: int, batch_size: int = 32, baseline_path: str | None = None,
                 idf: bool = False) -> None:
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_type = str(model_type)
        self.num_layers = num_layers
        self.batch_size = batch_size
        self.baseline_path = str(baseline_path) if baseline_path else None
        self.idf = idf
        self.load_count = 0
        self._scorer: Any = None
        self._idf_fitted = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"BertScorer(model_type={self.model_type!r}, num_layers={self.num_layers}, "
                f"batch_size={self.batch_size}, loaded={self.loaded})")

    @property
    def loaded(self) -> bool:
        return self._scorer is not None

    @property
    def scorer(self) -> Any:
        """The underlying ``bert_score.BERTScorer`` (loads the model on first access)."""
        if self._scorer is None:
            with self._lock:
                if self._scorer is None:
                    self._scorer = self._load()
        return self._scorer

    def _load(self) -> Any:
        import inspect

        from bert_score import BERTScorer
        from transformers.utils import logging as hf_logging

        kwargs: dict[str, Any] = {
            "model_type": self.model_type,
            "num_layers": self.num_layers,
            "batch_size": self.batch_size,
            "nthreads": 0,  # idf counting in-process: no fork of a process holding torch threads
            "idf": self.idf,
            # bert_score asserts a language whenever it rescales, although a custom baseline_path never uses it
            "lang": "en" if self.baseline_path else None,
            "rescale_with_baseline": bool(self.baseline_path),
            "baseline_path": self.baseline_path,
            "device": "cpu",
        }
        if "use_fast_tokenizer" in inspect.signature(BERTScorer.__init__).parameters:
            kwargs["use_fast_tokenizer"] = True
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the dropped LM head and layers are not worth a load report
        hf_logging.disable_progress_bar()
        try:
            scorer = adapt(BERTScorer(**kwargs))
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        self.load_count += 1
        return scorer

    def fit_idf(self, sentences: Sequence[str]) -> None:
        """Fix the idf weights to those of ``sentences`` (only meaningful with ``idf=True``)."""
        self.scorer._idf_dict = self._idf_dict(sentences)
        self._idf_fitted = True

    def _idf_dict(self, sentences: Sequence[str]) -> Any:
        """``bert_score.utils.get_idf_dict`` over every token of each sentence (a long one's windows together)."""
        from collections import Counter, defaultdict

        from bert_score.utils import sent_encode

        tokenizer = self.scorer._tokenizer
        counts: Counter[int] = Counter()
        for sentence in sentences:
            counts.update({token for window in self._windows(sentence) for token in sent_encode(tokenizer, window)})
        documents = len(sentences)
        weights: defaultdict[int, float] = defaultdict(lambda: math.log((documents + 1) / 1))
        weights.update({token: math.log((documents + 1) / (count + 1)) for token, count in counts.items()})
        return weights

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[Triple]:
        """``(P, R, F1)`` per pair; an empty or blank candidate or reference scores ``(0.0, 0.0, 0.0)``.

        Texts longer than the model's window are scored over windows (module doc); see :meth:`score_report`
        for which pairs were.
        """
        return self.score_report(candidates, references).scores

    def score_report(self, candidates: Sequence[str], references: Sequence[str]) -> BertScoreReport:
        """:meth:`score` with the pairs that were scored over windows and the count of long texts."""
        if isinstance(candidates, str) or isinstance(references, str):
            raise TypeError("candidates and references must be lists of strings, not strings")
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
        results: list[Triple] = [ZERO] * len(candidates)
        windowed = [False] * len(candidates)
        keep = [i for i, (c, r) in enumerate(zip(candidates, references, strict=True))
                if _text(c, "candidate", i).strip() and _text(r, "reference", i).strip()]
        if not keep:
            return BertScoreReport(results, windowed, 0, 0)
        cands = [candidates[i] for i in keep]
        refs = [references[i] for i in keep]
        scorer = self.scorer
        if self.idf and not self._idf_fitted:
            scorer._idf_dict = self._idf_dict(refs)
        long_cands = [not self._fits(c) for c in cands]
        long_refs = [not self._fits(r) for r in refs]
        for k, i in enumerate(keep):
            windowed[i] = long_cands[k] or long_refs[k]
        for i, triple in zip(keep, self._score(cands, refs, [windowed[i] for i in keep]), strict=True):
            results[i] = triple
        if self.idf:
            # A text whose tokens all have idf 0 (they occur in every idf sentence, e.g. a single reference)
            # has no weight at all: bert_score returns NaN. Such pairs are scored with uniform weights.
            redo = [k for k, i in enumerate(keep) if any(math.isnan(x) for x in results[i])]
            if redo:
                weights, scorer._idf_dict = scorer._idf_dict, self._uniform_weights()
                try:
                    again = self._score([cands[k] for k in redo], [refs[k] for k in redo],
                                        [windowed[keep[k]] for k in redo])
                finally:
                    scorer._idf_dict = weights
                for k, triple in zip(redo, again, strict=True):
                    results[keep[k]] = triple
        return BertScoreReport(results, windowed, sum(long_cands), sum(long_refs))

    def _score(self, cands: list[str], refs: list[str], windowed: list[bool]) -> list[Triple]:
        """Pairs that fit go through ``bert_score`` as they always did; the others over windows."""
        results: list[Triple] = [ZERO] * len(cands)
        short = [k for k, w in enumerate(windowed) if not w]
        long = [k for k, w in enumerate(windowed) if w]
        if short:
            for k, triple in zip(short, self._score_whole([cands[k] for k in short], [refs[k] for k in short]),
                                 strict=True):
                results[k] = triple
        if long:
            for k, triple in zip(long, self._score_windows([cands[k] for k in long], [refs[k] for k in long]),
                                 strict=True):
                results[k] = triple
        return results

    def _score_whole(self, cands: list[str], refs: list[str]) -> list[Triple]:
        with warnings.catch_warnings():  # bert_score reads the baseline TSV into a read-only tensor
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            precision, recall, f1 = self.scorer.score(cands, refs, batch_size=self.batch_size)
        return [(float(p), float(r), float(f))
                for p, r, f in zip(precision.tolist(), recall.tolist(), f1.tolist(), strict=True)]

    @property
    def window(self) -> int:
        """Tokens per text the model sees at once (special tokens included)."""
        return int(self.scorer._tokenizer.model_max_length)

    def _count(self, text: str) -> int:
        """Tokens of ``text`` as ``bert_score.utils.sent_encode`` would encode it, special tokens included, uncut."""
        from bert_score.utils import GPT2Tokenizer, RobertaTokenizer

        tokenizer = self.scorer._tokenizer
        options = {"add_prefix_space": True} if isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer)) else {}
        return len(tokenizer.encode(text.strip(), add_special_tokens=True, verbose=False, **options))

    def _fits(self, text: str) -> bool:
        return self._count(text) <= self.window

    def _windows(self, text: str) -> list[str]:
        return sentence_windows(text, self._count, self.window)

    def _score_windows(self, cands: list[str], refs: list[str]) -> list[Triple]:
        """Greedy matching over all windows' tokens of each pair (module doc), per pair."""
        from collections import defaultdict

        import torch
        from bert_score.utils import get_bert_embedding

        scorer = self.scorer
        tokenizer = scorer._tokenizer
        if scorer.idf:
            idf_dict = scorer._idf_dict
        else:  # as BERTScorer.score: uniform weights, special tokens 0
            idf_dict = defaultdict(lambda: 1.0)
            idf_dict[tokenizer.sep_token_id] = 0
            idf_dict[tokenizer.cls_token_id] = 0
        windows = {text: self._windows(text) for text in {*cands, *refs}}
        # longest first, as bert_score batches: less padding per batch
        unique = sorted({w for ws in windows.values() for w in ws}, key=lambda w: len(w.split()), reverse=True)
        embedded: dict[str, tuple[Any, Any]] = {}
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            embeddings, masks, idf = get_bert_embedding(batch, scorer._model, tokenizer, idf_dict,
                                                        device=scorer.device)
            for row, window in enumerate(batch):
                length = int(masks[row].sum())
                vectors = embeddings[row, :length].float()
                embedded[window] = (vectors / vectors.norm(dim=-1, keepdim=True), idf[row, :length].float())

        def tokens(text: str) -> tuple[Any, Any]:
            parts = [embedded[w] for w in windows[text]]
            return torch.cat([v for v, _ in parts]), torch.cat([w for _, w in parts])

        results: list[Triple] = []
        with torch.no_grad():
            for cand, ref in zip(cands, refs, strict=True):
                (cand_vectors, cand_idf), (ref_vectors, ref_idf) = tokens(cand), tokens(ref)
                similarity = cand_vectors @ ref_vectors.T
                precision = (similarity.max(dim=1).values * cand_idf).sum() / cand_idf.sum()
                recall = (similarity.max(dim=0).values * ref_idf).sum() / ref_idf.sum()
                triple = torch.stack([precision, recall, 2 * precision * recall / (precision + recall)])
                triple[2] = torch.nan_to_num(triple[2], nan=0.0)  # as bert_score: F1 of a NaN pair is 0
                if scorer.rescale_with_baseline:
                    triple = (triple - scorer.baseline_vals) / (1 - scorer.baseline_vals)
                results.append((float(triple[0]), float(triple[1]), float(triple[2])))
        return results

    def _uniform_weights(self) -> Any:
        from collections import defaultdict

        tokenizer = self.scorer._tokenizer
        weights: defaultdict[Any, float] = defaultdict(lambda: 1.0)
        weights[tokenizer.sep_token_id] = 0.0
        weights[tokenizer.cls_token_id] = 0.0
        return weights


def _text(value: Any, what: str, index: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} {index} is {type(value).__name__}, not str")
    return value

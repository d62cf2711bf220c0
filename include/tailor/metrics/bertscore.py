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
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from typing import Any

PRODUCTION_MODEL = "roberta-large"
PRODUCTION_NUM_LAYERS = 17
ALTERNATIVE_PRODUCTION_MODEL = "microsoft/deberta-xlarge-mnli"
ALTERNATIVE_PRODUCTION_NUM_LAYERS = 40
LOCAL_NUM_LAYERS = 8
#: Token cap per text (BERT-family context); catalog answers are far shorter.
MAX_TOKENS = 512

Triple = tuple[float, float, float]
ZERO: Triple = (0.0, 0.0, 0.0)


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
        from bert_score.utils import get_idf_dict

        scorer = self.scorer
        scorer._idf_dict = get_idf_dict(list(sentences), scorer._tokenizer, nthreads=0)
        self._idf_fitted = True

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[Triple]:
        """``(P, R, F1)`` per pair; an empty or blank candidate or reference scores ``(0.0, 0.0, 0.0)``."""
        if isinstance(candidates, str) or isinstance(references, str):
            raise TypeError("candidates and references must be lists of strings, not strings")
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
        results: list[Triple] = [ZERO] * len(candidates)
        keep = [i for i, (c, r) in enumerate(zip(candidates, references, strict=True))
                if _text(c, "candidate", i).strip() and _text(r, "reference", i).strip()]
        if not keep:
            return results
        cands = [candidates[i] for i in keep]
        refs = [references[i] for i in keep]
        scorer = self.scorer
        if self.idf and not self._idf_fitted:
            from bert_score.utils import get_idf_dict

            scorer._idf_dict = get_idf_dict(refs, scorer._tokenizer, nthreads=0)
        for i, triple in zip(keep, self._score(cands, refs), strict=True):
            results[i] = triple
        if self.idf:
            # A text whose tokens all have idf 0 (they occur in every idf sentence, e.g. a single reference)
            # has no weight at all: bert_score returns NaN. Such pairs are scored with uniform weights.
            redo = [k for k, i in enumerate(keep) if any(math.isnan(x) for x in results[i])]
            if redo:
                weights, scorer._idf_dict = scorer._idf_dict, self._uniform_weights()
                try:
                    again = self._score([cands[k] for k in redo], [refs[k] for k in redo])
                finally:
                    scorer._idf_dict = weights
                for k, triple in zip(redo, again, strict=True):
                    results[keep[k]] = triple
        return results

    def _score(self, cands: list[str], refs: list[str]) -> list[Triple]:
        with warnings.catch_warnings():  # bert_score reads the baseline TSV into a read-only tensor
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            precision, recall, f1 = self.scorer.score(cands, refs, batch_size=self.batch_size)
        return [(float(p), float(r), float(f))
                for p, r, f in zip(precision.tolist(), recall.tolist(), f1.tolist(), strict=True)]

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

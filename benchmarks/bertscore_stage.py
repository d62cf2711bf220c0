"""BERTScore stage throughput: ``BertScorer.score`` against the raw forward pass of the same truncated model.

Pairs come from ``include/data/qa/test.json``: the reference answers, and as candidates the same answers
perturbed (numbers changed, a few words swapped), so no candidate equals its reference (``bert_score`` embeds
each distinct text once). Short answers are each answer's first sentence; long answers three consecutive
answers' first sentences joined. The raw baseline embeds exactly the distinct texts ``bert_score`` embeds, in
its order and batch size, already tokenized and padded: only the model's forward passes are timed. The stage
time therefore covers everything ``bert_score`` adds: tokenizing, padding, copying and greedy matching.
Both are timed ``repeats`` times, interleaved, and the fastest run of each is kept (the machine may be shared).
"""

from __future__ import annotations

import json
import os
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailor.metrics import BertScorer

GOAL_RATIO = 0.8
REPO = Path(__file__).resolve().parents[1]
TEST_QA = REPO / "include" / "data" / "qa" / "test.json"
_SWAPS = {"must": "should", "the": "a", "Start": "Begin", "start": "begin", "maximum": "highest",
          "delivers": "gives", "runs": "turns", "Turn": "Switch", "uses": "needs", "has": "offers"}


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


def perturb(text: str) -> str:
    """A plausible wrong answer: every number + 1 (codes such as VM-200 kept) and a few words swapped."""
    changed = re.sub(r"(?<![\w.-])(\d+)(?![\d.])", lambda m: str(int(m.group(1)) + 1), text)
    changed = re.sub(r"\b(\w+)\b", lambda m: _SWAPS.get(m.group(1), m.group(1)), changed, count=0)
    return changed if changed != text else "In short: " + text


def pairs(kind: str) -> tuple[list[str], list[str]]:
    """``(candidates, references)`` for ``kind`` "short" (1 sentence) or "long" (3 sentences)."""
    answers = [_first_sentence(item["answer"]) for item in json.loads(TEST_QA.read_text())]
    if kind == "short":
        references = answers
    else:
        references = [" ".join(answers[(i + k) % len(answers)] for k in range(3)) for i in range(len(answers))]
    candidates = [perturb(ref) for ref in references]
    assert all(c != r for c, r in zip(candidates, references, strict=True))
    return candidates, references


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _raw_batches(scorer: BertScorer, texts: list[str]) -> list[tuple[Any, Any]]:
    """The distinct texts as bert_score orders them, tokenized by its tokenizer and padded per batch: (padded ids,
    attention mask) tensors."""
    from bert_score.utils import padding, sent_encode

    tokenizer = scorer.scorer._tokenizer
    ordered = sorted(set(texts), key=lambda x: len(x.split(" ")), reverse=True)  # bert_score's dedup_and_sort
    batches = []
    for start in range(0, len(ordered), scorer.batch_size):
        ids = [sent_encode(tokenizer, text) for text in ordered[start : start + scorer.batch_size]]
        padded, _, mask = padding(ids, tokenizer.pad_token_id)
        batches.append((padded, mask))
    return batches


FIGURES = REPO / "out" / "bench" / "bertscore.json"


def run(repeats: int = 3, batch_size: int = 32, budget_seconds: float = 60.0) -> tuple[str, bool]:
    """Return (markdown section, goal met). Fewer than ``repeats`` runs (at least one) once a half of
    ``budget_seconds`` is spent on one answer length: a busy shared machine slows 2-thread torch a lot."""
    import torch

    from localaws.models import smollm2_dir
    from tailor.metrics import LOCAL_NUM_LAYERS, BertScorer

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scorer = BertScorer(str(smollm2_dir()), num_layers=LOCAL_NUM_LAYERS, batch_size=batch_size)
    load_seconds = _seconds(lambda: scorer.scorer)
    model = scorer.scorer._model
    rows, ok, runs, rates = [], True, [], {}
    load_start = os.getloadavg()[0]
    for kind in ("short", "long"):
        candidates, references = pairs(kind)
        batches = _raw_batches(scorer, candidates + references)
        tokens = sum(int(mask.sum()) for _, mask in batches)

        def raw(batches: list = batches) -> None:
            with torch.inference_mode():
                for padded, mask in batches:
                    model(padded, attention_mask=mask)

        def stage(candidates: list[str] = candidates, references: list[str] = references) -> None:
            scorer.score(candidates, references)

        deadline = time.perf_counter() + budget_seconds / 2
        stage()  # warm-up (allocator, kernels)
        raw()
        stage_s: list[float] = []
        raw_s: list[float] = []
        while len(stage_s) < repeats and (not stage_s or time.perf_counter() < deadline):
            stage_s.append(_seconds(stage))
            raw_s.append(_seconds(raw))
        runs.append(len(stage_s))
        n = len(candidates)
        stage_rate, raw_rate = n / min(stage_s), n / min(raw_s)
        ratio = stage_rate / raw_rate
        rates[kind] = {"stage_pairs_per_s": stage_rate, "raw_pairs_per_s": raw_rate,
                       "tokens_per_text": tokens / (2 * n)}
        ok &= ratio >= GOAL_RATIO
        rows.append(f"| {kind} ({'1 sentence' if kind == 'short' else '3 sentences'}) | {n} | "
                    f"{tokens / (2 * n):.0f} | {stage_rate:.1f} | {raw_rate:.1f} | {ratio:.2f} | "
                    f"{'met' if ratio >= GOAL_RATIO else 'MISSED'} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({"load_seconds": load_seconds, "layers": LOCAL_NUM_LAYERS, "rates": rates,
                                   "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))
    section = "\n".join([
        "## BERTScore stage",
        f"`BertScorer.score` (bert_score {_version('bert-score')}, SmolLM2-135M-Instruct truncated to "
        f"{LOCAL_NUM_LAYERS} of 30 layers, batch size {batch_size}, {torch.get_num_threads()} torch threads, "
        f"model loaded beforehand in {load_seconds:.1f} s) against the raw batched forward pass of the same "
        "model on the same texts, already tokenized and padded. Pairs: `include/data/qa/test.json` answers "
        "(references) and perturbed copies (candidates); best of "
        f"{'/'.join(map(str, runs))} interleaved runs (short/long). "
        f"Goal: stage throughput at least {GOAL_RATIO:.0%} of raw.",
        "",
        "| answers | pairs | tokens/text | stage pairs/s | raw pairs/s | stage/raw | goal |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Peak RSS of the benchmark process: {peak:.0f} MB ({rss_before:.0f} MB before loading the model; "
        "`bert_score` loads all 30 layers, then drops 22). Load average (1 min) at start/end: "
        f"{load_start:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; on a shared machine absolute "
        "rates vary several-fold, the interleaved ratio much less.",
    ])
    return section, ok


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    print(run()[0])

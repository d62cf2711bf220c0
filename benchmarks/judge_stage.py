"""Judge stage concurrency: ``judge_many`` (the pool ``LLMJudgeOperator`` runs) against a judge of fixed latency.

The Bedrock client is a stand-in whose ``converse`` sleeps ``latency`` seconds (the network + model time of a
Converse call) and returns a ``record_scores`` toolUse reply; everything else is our real code: the thread pool of
``tailor.metrics.judge.judge_many``, prompt and tool building, reply parsing, ordering of results and progress
logging. Two judge models per answer, as in the weekly evaluation. Each concurrency ``c`` judges a multiple of
``c`` calls, so the ideal wall time is exactly ``calls x latency / c``; goal: ideal / wall >= 0.8. The baseline is
the seed's serial loop: ``judge_answer`` called once per answer and judge, one after another, measured on a few
calls and scaled linearly to each row's call count (it is linear: one sleep after another). Each measurement is
repeated and its fastest run kept (the machine may be shared). The stand-in does no HTTP, signing or JSON
decoding: botocore's own CPU time per real call is not in these figures.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.8
REPO = Path(__file__).resolve().parents[1]
TEST_QA = REPO / "include" / "data" / "qa" / "test.json"
JUDGES = ("judge-a", "judge-b")
#: calls per concurrency: ~12 rounds of ``latency`` each (calls are a multiple of c, so the ideal is exact)
DEFAULT_CALLS = {1: 12, 4: 48, 16: 192, 64: 768}


class FixedLatencyJudge:
    """A Converse client whose every call takes ``latency`` seconds (sleep) and returns valid judge scores."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()

    def converse(self, **request: Any) -> dict:
        from tailor.metrics.judge import TOOL_NAME

        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
        finally:
            with self._lock:
                self.in_flight -= 1
        scores = {"correctness": 0.8, "completeness": 0.75, "faithfulness": 1.0, "no_hallucination": 1.0,
                  "rationale": "States the reference's values; omits one operating condition."}
        content = [{"toolUse": {"toolUseId": "t1", "name": TOOL_NAME, "input": scores}}]
        return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": "tool_use",
                "usage": {"inputTokens": 600, "outputTokens": 60, "totalTokens": 660}}


def answers(n: int) -> list[dict[str, Any]]:
    """``n`` judge items (question, reference, answer, context) cycled from the test set, unique sample ids."""
    qa = json.loads(TEST_QA.read_text(encoding="utf-8"))
    items = []
    for i in range(n):
        q = qa[i % len(qa)]
        items.append({"sample_id": f"q{i:05d}", "approach": ("rag", "finetune", "hybrid")[i % 3],
                      "question": q["question"], "reference": q["answer"],
                      "answer": q["answer"].replace("The ", "This "), "context": f"{q['product_name']}: {q['answer']}"})
    return items


def _best(repeats: int, fn: Callable[[], FixedLatencyJudge]) -> tuple[float, FixedLatencyJudge]:
    best: tuple[float, FixedLatencyJudge] | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        client = fn()
        wall = time.perf_counter() - start
        best = (wall, client) if best is None or wall < best[0] else best
    assert best is not None
    return best


@dataclass(frozen=True)
class Row:
    concurrency: int
    calls: int
    ideal_s: float
    wall_s: float
    serial_s: float  # the serial loop's time for the same number of calls (its measured per-call time x calls)
    peak_in_flight: int

    @property
    def ratio(self) -> float:
        return self.ideal_s / self.wall_s

    @property
    def speedup(self) -> float:
        return self.serial_s / self.wall_s


def measure(latency: float = 0.2, calls: dict[int, int] | None = None, serial_calls: int = 12,
            repeats: int = 2) -> tuple[float, list[Row]]:
    """(serial loop seconds per call, one Row per concurrency). ``calls``: {concurrency: calls, a multiple of it}."""
    from tailor.metrics.judge import judge_answer, judge_many

    calls = calls or DEFAULT_CALLS
    quiet = logging.getLogger("benchmarks.judge_stage")
    quiet.setLevel(logging.WARNING)  # judge_many logs progress at INFO

    def serial() -> FixedLatencyJudge:
        client = FixedLatencyJudge(latency)
        for item in answers(serial_calls // len(JUDGES)):  # the seed: one call after another
            for model in JUDGES:
                judge_answer(client, model, question=item["question"], reference=item["reference"],
                             answer=item["answer"], context=item["context"])
        return client

    item = answers(1)[0]  # warm-up outside the timings: botocore's exceptions are imported on the first call
    judge_answer(FixedLatencyJudge(0.0), JUDGES[0], question=item["question"], reference=item["reference"],
                 answer=item["answer"], context=item["context"])
    serial_wall, serial_client = _best(repeats, serial)
    per_call = serial_wall / serial_client.calls
    rows = []
    for concurrency, n_calls in calls.items():
        if n_calls % concurrency or n_calls % len(JUDGES):
            raise ValueError(f"{n_calls} calls: not a multiple of both concurrency {concurrency} and {len(JUDGES)}")
        items = answers(n_calls // len(JUDGES))

        def pooled(concurrency: int = concurrency, items: Sequence[dict] = items) -> FixedLatencyJudge:
            client = FixedLatencyJudge(latency)
            judged = judge_many(client, list(JUDGES), items, concurrency=concurrency, log=quiet)
            assert len(judged) == len(items) * len(JUDGES) and all(j.error is None for _, j in judged)
            return client

        wall, client = _best(repeats, pooled)
        ideal = client.calls * latency / concurrency
        rows.append(Row(concurrency, client.calls, ideal, wall, per_call * client.calls, client.peak_in_flight))
    return per_call, rows


def table(latency: float, per_call: float, rows: Sequence[Row]) -> tuple[str, bool]:
    """Markdown table of the rows; goal met when every ratio ideal/wall >= GOAL_RATIO."""
    lines = ["| concurrency | calls | ideal s | wall s | ideal / wall | goal | serial loop s (same calls) "
             "| speedup vs serial | peak in flight |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.concurrency} | {r.calls} | {r.ideal_s:.2f} | {r.wall_s:.2f} | **{r.ratio:.2f}** "
                     f"| {'met' if r.ratio >= GOAL_RATIO else 'MISSED'} | {r.serial_s:.1f} | {r.speedup:.1f}x "
                     f"| {r.peak_in_flight} |")
    ok = all(r.ratio >= GOAL_RATIO for r in rows)
    lines.append("")
    lines.append(f"Serial loop (the seed's, `judge_answer` one call after another): {per_call * 1000:.1f} ms per "
                 f"call for a {latency * 1000:.0f} ms judge, i.e. {per_call / latency - 1:+.1%} of our own work "
                 "per call on top of the judge's latency.")
    return "\n".join(lines), ok


FIGURES = REPO / "out" / "bench" / "judge_stage.json"


def save(latency: float, per_call: float, rows: Sequence[Row]) -> None:
    """Figures the "scale on paper" section reuses (our own CPU time per call, pool efficiency)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({
        "latency_s": latency, "serial_per_call_s": per_call, "overhead_per_call_s": per_call - latency,
        "rows": [{"concurrency": r.concurrency, "calls": r.calls, "wall_s": r.wall_s, "ratio": r.ratio} for r in rows],
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))


def run(latency: float = 0.2, calls: dict[int, int] | None = None, serial_calls: int = 12,
        repeats: int = 2) -> tuple[str, bool]:
    """Return (markdown section, goal met)."""
    per_call, rows = measure(latency, calls, serial_calls, repeats)
    save(latency, per_call, rows)
    body, ok = table(latency, per_call, rows)
    text = "\n".join([
        "## Judge stage: bounded concurrency",
        f"`judge_many` (the pool `LLMJudgeOperator` runs) with a stand-in judge of fixed latency "
        f"L = {latency * 1000:.0f} ms (a sleep in place of the Converse call; our prompt building, reply parsing, "
        "pool and ordering are real), 2 judge models per answer, best of "
        f"{repeats} runs. Ideal = calls x L / concurrency. Goal: ideal / wall >= {GOAL_RATIO} at every "
        f"concurrency: **{'met' if ok else 'MISSED'}**. The serial loop (the seed's: `judge_answer` once per "
        f"answer and judge, one after another) was timed on {serial_calls} calls and scaled linearly to each row.",
        "",
        body,
    ])
    return text, ok

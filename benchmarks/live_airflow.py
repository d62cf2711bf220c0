"""Live Airflow: startup time of ``make airflow``'s stack and S3 put -> asset-triggered run start latency.

The baseline of the latency is the SQS trigger's own poll interval (``waiter_delay`` of the AssetWatcher's
``MessageQueueTrigger``, 5 s): a drop can wait up to one interval before the trigger sees it, so the expected
latency is about half of it plus the scheduler's loop. Goal (issue 6): <= 10 s from the put to the run's start.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TypedDict

from devstack.airflow import LiveAirflow

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
GOAL_S = 10.0
WAITER_DELAY_S = 5.0
DAG = "catalog_kb_sync"


class Figures(TypedDict):
    healthy_s: float  # start -> stack healthy
    latencies: list[float]  # per drop: S3 put -> run start, seconds
    states: list[str]  # per drop: the run's final state
    total_s: float


def measure(drops: int = 2) -> Figures:
    started = time.monotonic()
    with LiveAirflow(home=Path(tempfile.mkdtemp(prefix="bench-live-"))) as live:
        healthy_s = time.monotonic() - started
        assert live.stack is not None
        live.unpause(DAG)
        deadline = time.monotonic() + 180
        while not live.dag_runs(DAG) and time.monotonic() < deadline:  # the watcher's first run: the s3:TestEvent
            time.sleep(0.5)
        for run in live.dag_runs(DAG):
            live.wait_for_run(DAG, run["dag_run_id"])
        latencies: list[float] = []
        states: list[str] = []
        body = CATALOG.read_bytes()
        for drop in range(drops):
            before = {r["dag_run_id"] for r in live.dag_runs(DAG)}
            put_at = time.time()
            # Each drop differs (an appended product), so every run really ingests.
            extra = (f"\nName: Bench Widget {drop}\nDescription: A widget for run {drop}.\nSafety_instructions: "
                     "Wear gloves.\nConfiguration: 1 unit.\nOperation: Press start.\n").encode()
            live.stack.client("s3").put_object(Bucket=live.stack.resources["bucket"],
                                               Key=f"catalog/incoming/bench-{drop}.txt", Body=body + extra)
            new: list[dict] = []
            while not new:
                new = [r for r in live.dag_runs(DAG) if r["dag_run_id"] not in before]
                time.sleep(0.2)
            run = live.wait_for_run(DAG, new[0]["dag_run_id"])
            latencies.append(datetime.fromisoformat(run["start_date"]).timestamp() - put_at)
            states.append(run["state"])
    return Figures(healthy_s=healthy_s, latencies=latencies, states=states, total_s=time.monotonic() - started)


def run() -> tuple[str, bool]:
    figures = measure()
    latencies = figures["latencies"]
    median = statistics.median(latencies)
    ok = max(latencies) <= GOAL_S and all(s == "success" for s in figures["states"])
    rows = "\n".join(f"| {i + 1} | {lat:.1f} | {state} |"
                     for i, (lat, state) in enumerate(zip(latencies, figures["states"], strict=True)))
    text = f"""## Live Airflow (`make airflow`'s stack)
Local AWS + throw-away PostgreSQL metadata DB + api-server, scheduler, dag-processor, triggerer (LocalExecutor):
healthy after **{figures['healthy_s']:.1f} s**. Then {len(latencies)} catalog drops, each a different file, put
into local S3 one after another once the AssetWatcher was live; latency = the asset-triggered `catalog_kb_sync`
run's `start_date` minus the moment of the put. Baseline: the SQS trigger polls every {WAITER_DELAY_S:.0f} s, so
about {WAITER_DELAY_S / 2:.1f} s on average is the trigger's own share.
Goal: <= {GOAL_S:.0f} s: **{'met' if ok else 'MISSED'}**.

| drop | S3 put -> run start s | run |
|---|---|---|
{rows}

Median {median:.1f} s (= {median / WAITER_DELAY_S:.2f} x the poll interval). Whole section: {figures['total_s']:.0f} s.
The live end-to-end test (`tests/live/`, part of `make test`: 9 tests, incl. cleared-run idempotency and two drops
0.5 s apart) took 4 min 33 s on 2 cores (2026-11-26)."""
    return text, ok


if __name__ == "__main__":
    print(run()[0])

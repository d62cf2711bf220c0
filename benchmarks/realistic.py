"""The whole offline bake-off on customer-shaped inputs: ``make demo CATALOG=<realistic> QA=<realistic>``, run
``TAILOR_BENCH_REALISTIC_RUNS`` times (default 3), each timed DAG by DAG with its peak memory.

Goals (issue 11): each run ends with the comparison table in <= 15 minutes and <= 4 GB peak RSS on 2 cores
(demo process + local AWS + training child, sampled together). The baseline measured in the same run is the
first run: the others are shown as ratios to it (run-to-run spread), and the inputs as ratios to the packaged
sample (25 KB catalog, 45 short answers). Not part of the default ``make bench`` (3 x ~10 minutes):
``make bench ONLY=realistic``.
"""

from __future__ import annotations

import json
import os
import statistics

from benchmarks.bakeoff import memory_lines, run_demo
from devstack.stack import REPO

CATALOG = REPO / "include" / "data" / "catalog" / "realistic_catalog.txt"
QA = REPO / "include" / "data" / "qa" / "realistic_test.json"
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
SAMPLE_QA = REPO / "include" / "data" / "qa" / "test.json"
GOAL_SECONDS = 15 * 60
GOAL_MB = 4 * 1024


def _words(path) -> float:  # noqa: ANN001
    items = json.loads(path.read_text(encoding="utf-8"))
    return statistics.mean(len(i["answer"].split()) for i in items)


def input_lines() -> list[str]:
    qa, sample_qa = json.loads(QA.read_text()), json.loads(SAMPLE_QA.read_text())
    size, sample_size = CATALOG.stat().st_size, SAMPLE_CATALOG.stat().st_size
    return [
        "| input | realistic | packaged sample | ratio |", "|---|---:|---:|---:|",
        f"| catalog bytes | {size:,} | {sample_size:,} | {size / sample_size:.1f}x |",
        f"| QA questions | {len(qa)} | {len(sample_qa)} | {len(qa) / len(sample_qa):.2f}x |",
        f"| mean reference answer, words | {_words(QA):.0f} | {_words(SAMPLE_QA):.0f} | "
        f"{_words(QA) / _words(SAMPLE_QA):.1f}x |",
    ]


def run() -> tuple[str, bool]:
    runs = int(os.environ.get("TAILOR_BENCH_REALISTIC_RUNS") or 3)
    results = []
    for index in range(runs):
        print(f"realistic bake-off {index + 1}/{runs}", flush=True)
        code, timings = run_demo(0, args=("--catalog", str(CATALOG), "--qa", str(QA)))
        dags = {d["dag_id"]: d["wall_s"] for d in timings["dags"]}
        results.append({"code": code, "total_s": timings["total_s"], "dags": dags, "timings": timings,
                        "peak_mb": timings["peak_rss_mb"]["together_sampled"],
                        "localaws_mb": timings["peak_rss_mb"]["localaws"], "demo_mb": timings["peak_rss_mb"]["demo"],
                        "by_step": timings.get("peak_rss_by_step_mb", {})})
    base = results[0]
    lines = ["## Customer-shaped bake-off (`make demo CATALOG=... QA=...` on the realistic pair)", "",
             *input_lines(), "",
             "| run | exit | total s | vs run 1 | kb sync s | fine-tune s | evaluation s | peak MB together | "
             "vs run 1 | local AWS MB | demo MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for number, r in enumerate(results, 1):
        lines.append(f"| {number} | {r['code']} | {r['total_s']:.0f} | {r['total_s'] / base['total_s']:.2f}x | "
                     f"{r['dags'].get('catalog_kb_sync', 0):.0f} | {r['dags'].get('monthly_finetune', 0):.0f} | "
                     f"{r['dags'].get('weekly_evaluation', 0):.0f} | {r['peak_mb']} | "
                     f"{r['peak_mb'] / max(base['peak_mb'], 1):.2f}x | {r['localaws_mb']} | {r['demo_mb']} |")
    worst_s, worst_mb = max(r["total_s"] for r in results), max(r["peak_mb"] for r in results)
    ok = all(r["code"] == 0 for r in results) and worst_s <= GOAL_SECONDS and worst_mb <= GOAL_MB
    worst = max(results, key=lambda r: r["peak_mb"])
    biggest = worst["by_step"]
    step = max(biggest, key=lambda s: biggest[s]["together"]) if biggest else "?"
    lines += ["", f"Worst of {runs}: {worst_s:.0f} s ({worst_s / GOAL_SECONDS:.2f}x the 15-minute goal) and "
              f"{worst_mb} MB ({worst_mb / GOAL_MB:.2f}x the 4 GB goal), largest step `{step}`: "
              + ("**goals met**." if ok else "**goal MISSED** (see the table; exit codes other than 0 are failed "
                                             "runs: out/bench-demo.log, full logs in out/logs/).")]
    lines += ["", f"Peak memory by step of the run with the highest peak (run {results.index(worst) + 1}):",
              *memory_lines(worst["timings"])[1:]]
    return "\n".join(lines), ok

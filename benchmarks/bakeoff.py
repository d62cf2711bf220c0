"""Whole offline bake-off: ``make demo`` timed DAG by DAG and stage by stage, its peak memory, how the weekly
evaluation grows with the number of questions, and the fine-tuned model against the base model.

The demo runs as it does for ``make demo``, in a subprocess, under its profiler (``python -m
benchmarks.demo_profile``: the same ``devstack.demo.main`` with a recorder on its hooks), which records
``out/timings.json``: the wall time of each DAG run, the start/end/duration of every task instance (from the
DagRun's task instances) and the peak RSS of the demo process and of the local AWS child. With
``TAILOR_DEMO_EXTRA_EVALUATION=15`` it first runs weekly_evaluation on 15 questions, then the full 45: two
measured sizes per stage give a fixed cost and a cost per question, from which 450 questions are projected.

Fine-tuned vs base: the weekly evaluation's ``finetune`` approach asked the champion endpoint the 45 questions
(BERTScore F1 and key-fact match per sample, read from the demo's warehouse). The base model (the JumpStart
base, which the local AWS serves as SmolLM2-135M-Instruct) is then asked the same questions through the same code
(``tailor.approaches.answer_batch("finetune", ...)``: same prompt, greedy, same max tokens) on a fresh local AWS,
and scored the same way.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out"
TIMINGS = OUT / "timings.json"
DEMO_LOG = OUT / "bench-demo.log"
#: the demo's line when a DAG run is over ("weekly_evaluation: success in 691 s")
DAG_DONE = re.compile(r"^\w+: \w+ in \d+ s$")
FIGURES = OUT / "bench" / "bakeoff.json"
LAST_COMPARISON = OUT / "bench" / "finetune_vs_base.json"
TEST_QA = REPO / "include" / "data" / "qa" / "test.json"
GOAL_TOTAL_S = 600.0
GOAL_PEAK_MB = 4096.0
#: The two-point fit needs weekly_evaluation at a second size (15 questions: ~1/3 of the full run's time), which
#: does not fit in make bench's 15 minutes on 2 cores: off by default (``python -m benchmarks.run --only bakeoff
#: --extra-evaluation 15`` turns it on); the default fit uses the per-batch durations of the full run.
EXTRA_QUESTIONS = 0
BASE_COMPARISON_SECONDS = 120  # what the base-model comparison needs (local AWS start, 45 answers, BERTScore)
#: Last figures of the fine-tuned vs base comparison before it was folded in here (former finetune_quality
#: section), shown when the comparison does not fit in the run's time budget.
PREVIOUS_COMPARISON = """Not re-run this time (it did not fit in the time budget). Last measured 2026-11-24 by the
former `benchmarks/finetune_quality.py` (its own KB sync + fine-tune, then both endpoints asked the 45 test
questions with the same prompt, greedy, 64 new tokens, BERTScore F1 with SmolLM2 layers 1-8):

| model | n | mean BERTScore F1 | 95% CI | key-fact match |
|---|---|---|---|---|
| base SmolLM2-135M-Instruct | 45 | 0.7593 | [0.7431, 0.7754] | 0.103 |
| fine-tuned (champion) | 45 | 0.7694 | [0.7492, 0.7897] | 0.185 |"""
PROJECTED_QUESTIONS = 450
#: weekly_evaluation's tasks grouped into the stages the issue names
STAGES = {"plan": ("plan_batches",), "generation": ("generate_answers",), "scoring": ("score_answers",),
          "judge": ("judge_answers",),
          "publish": ("summarize_results", "load_warehouse", "publish_results", "check_complete")}


# --- running the demo -------------------------------------------------------------------------------------------


def run_demo(extra_questions: int = EXTRA_QUESTIONS, echo: Callable[[str], None] = print,
             args: tuple[str, ...] = ()) -> tuple[int, dict]:
    """``python -m benchmarks.demo_profile [args]``: the demo, profiled (its terminal output to out/bench-demo.log,
    its full logs in out/logs/; DAG lines echoed) -> (exit code, timings)."""
    TIMINGS.unlink(missing_ok=True)
    OUT.mkdir(exist_ok=True)
    env = dict(os.environ)
    if extra_questions:
        env["TAILOR_DEMO_EXTRA_EVALUATION"] = str(extra_questions)
    with open(DEMO_LOG, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.demo_profile", *args], cwd=REPO, env=env,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if DAG_DONE.match(line) or line.startswith(("timings:", "bake-off finished", "bake-off FAILED",
                                                         "failed:")):
                echo("  demo: " + line.rstrip())
        code = process.wait()
    if not TIMINGS.exists():
        raise RuntimeError(f"the demo exited {code} without writing {TIMINGS}; see {DEMO_LOG}")
    return code, json.loads(TIMINGS.read_text())


# --- timings ---------------------------------------------------------------------------------------------------


def full_questions() -> int:
    return len(json.loads(TEST_QA.read_text(encoding="utf-8")))


def questions_of(dag: dict) -> int:
    return int(dag["conf"].get("sample_limit") or full_questions())


def evaluations(timings: dict) -> list[dict]:
    """The successful weekly_evaluation runs, smallest first."""
    found = [d for d in timings["dags"] if d["dag_id"] == "weekly_evaluation" and d["state"] == "success"]
    return sorted(found, key=questions_of)


def stage_seconds(dag: dict) -> dict[str, float]:
    """Seconds per stage (sum of its task instances' durations) + "overhead": the DAG's wall time minus every
    task's duration (dag.test() scheduling between tasks, DAG parsing), + "total": the wall time."""
    found = {stage: sum(t["duration_s"] or 0.0 for t in dag["tasks"] if t["task_id"] in tasks)
             for stage, tasks in STAGES.items()}
    found["overhead"] = dag["wall_s"] - sum(t["duration_s"] or 0.0 for t in dag["tasks"])
    found["total"] = dag["wall_s"]
    return found


def batches(dag: dict, batch_size: int = 15) -> dict[str, list[float]]:
    """generate_answers durations per approach: from the mapped task's label ("rag #0"), else from its map index
    (plan_batches emits the approaches in order, ceil(questions / batch_size) batches each)."""
    approaches = dag["conf"].get("approaches") or ["rag", "finetune", "hybrid"]
    per_approach = max(1, -(-questions_of(dag) // batch_size))
    found: dict[str, list[float]] = {}
    for task in dag["tasks"]:
        if task["task_id"] == "generate_answers" and task["duration_s"] is not None:
            if task["label"]:
                approach = task["label"].split(" #")[0]
            else:
                approach = approaches[min(len(approaches) - 1, max(0, task["map_index"]) // per_approach)]
            found.setdefault(approach, []).append(task["duration_s"])
    return found


@dataclass(frozen=True)
class Fit:
    stage: str
    fixed_s: float
    per_question_s: float
    measured: dict[int, float]  # questions -> seconds

    def at(self, questions: int) -> float:
        return self.fixed_s + self.per_question_s * questions


def two_point_fits(small: dict, full: dict) -> list[Fit]:
    """Line through the two measured sizes, stage by stage."""
    n1, n2 = questions_of(small), questions_of(full)
    s1, s2 = stage_seconds(small), stage_seconds(full)
    fits = []
    for stage in s2:
        slope = (s2[stage] - s1[stage]) / (n2 - n1)
        fits.append(Fit(stage, s1[stage] - slope * n1, slope, {n1: s1[stage], n2: s2[stage]}))
    return fits


def per_batch_fits(full: dict, batch_size: int = 15, scoring_fixed_s: float | None = None) -> list[Fit]:
    """One measured size. Generation: the cost per question is the mean batch duration / batch size, summed over
    approaches (a batch of ``batch_size`` questions is its unit of work; each batch's own fixed costs are counted
    as per-question, so this slope is an upper bound). Scoring: fixed = ``scoring_fixed_s`` (the BERTScore model
    load, measured by the BERTScore section) when known, else 0; the rest per question. Judge: all per question
    (the local AWS already holds the judge model). Plan, publish and overhead: fixed."""
    n = questions_of(full)
    stages = stage_seconds(full)
    per_batch = batches(full)
    fits = []
    for stage, seconds in stages.items():
        if stage == "generation":
            slope = sum(sum(d) / len(d) / batch_size for d in per_batch.values())
            fits.append(Fit(stage, seconds - slope * n, slope, {n: seconds}))
        elif stage == "scoring":
            fixed = min(seconds, scoring_fixed_s or 0.0)
            fits.append(Fit(stage, fixed, (seconds - fixed) / n, {n: seconds}))
        elif stage == "judge":
            fits.append(Fit(stage, 0.0, seconds / n, {n: seconds}))
        elif stage != "total":
            fits.append(Fit(stage, seconds, 0.0, {n: seconds}))
    total = Fit("total", sum(f.fixed_s for f in fits), sum(f.per_question_s for f in fits), {n: stages["total"]})
    return [*fits, total]


# --- fine-tuned vs base ------------------------------------------------------------------------------------------


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def warehouse_scores(run_id: str, approach: str = "finetune", path: Path = OUT / "warehouse.db") -> dict[str, dict]:
    """{sample_id: {metric: score}} of one run x approach from the demo's warehouse (bertscore_f1, key_fact_match)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT sample_id, metric, score FROM eval_score WHERE run_id = ? AND approach = ? AND "
                          "metric IN ('bertscore_f1', 'key_fact_match') AND judge_model = '' AND criterion = ''",
                          (run_id, approach)).fetchall()
    found: dict[str, dict] = {}
    for sample, metric, score in rows:
        found.setdefault(sample, {})[metric] = score
    return found


def base_model_scores(log: Path = OUT / "bench-localaws.log",
                      limit: int | None = None) -> tuple[dict[str, dict], float]:
    """Ask the base model the test questions exactly as the finetune approach asks the champion; score them as
    score_answers does. -> ({sample_id: {metric: score}}, seconds to answer)."""
    from devstack.stack import BASE_MODEL_URI, LOCAL_SCALE, LOCALAWS_SCALE, REGION
    from localaws.models import smollm2_dir
    from localaws.process import LocalAWSProcess
    from tailor.prompts import BASE

    with _env({**LOCAL_SCALE, "TAILOR__METRICS__BERTSCORE_MODEL": str(smollm2_dir())}):
        import boto3

        from tailor.approaches import AnswerSettings, Ports, answer_batch
        from tailor.config import load_settings
        from tailor.metrics.bertscore import BertScorer
        from tailor.metrics.facts import key_fact_match
        from tailor.qa import load_qa

        cfg = load_settings()
        items = load_qa(cfg.qa.test_set).items[:limit]
        with LocalAWSProcess(log_path=log, env=LOCALAWS_SCALE) as aws:
            def client(service: str) -> Any:
                from botocore.config import Config

                return boto3.client(service, endpoint_url=aws.endpoint_url, region_name=REGION,
                                    aws_access_key_id="localaws", aws_secret_access_key="localaws",
                                    config=Config(max_pool_connections=16, read_timeout=600))

            ft, sagemaker, name = cfg.finetune, client("sagemaker"), "tailor-bench-base-model"
            sagemaker.create_model(ModelName=name, ExecutionRoleArn=ft.role_arn, PrimaryContainer={
                "Image": ft.inference_image_uri, "ModelDataUrl": BASE_MODEL_URI})
            sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
                "InstanceType": ft.endpoint_instance_type}])
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
            settings = AnswerSettings(knowledge_base_id="unused", top_k=cfg.knowledge_base.top_k,
                                      generator_model_id=cfg.evaluation.generator_model_id, endpoint_name=name,
                                      max_tokens=cfg.evaluation.max_tokens, temperature=cfg.evaluation.temperature,
                                      concurrency=cfg.evaluation.concurrency, finetune_method=BASE)
            ports = Ports(client("bedrock-agent-runtime"), client("bedrock-runtime"), client("sagemaker-runtime"))
            started = time.perf_counter()
            records = answer_batch("finetune", list(items), ports, settings)
            seconds = time.perf_counter() - started
        errors = [r.error for r in records if r.error]
        if errors:
            raise RuntimeError(f"{len(errors)} base-model answers failed, e.g. {errors[0]}")
        scorer = BertScorer(cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers)
        f1 = [s[2] for s in scorer.score([r.answer or "" for r in records], [r.reference for r in records])]
        return ({r.sample_id: {"bertscore_f1": min(1.0, max(0.0, float(f))),
                               "key_fact_match": key_fact_match(r.answer or "", r.reference)}
                 for r, f in zip(records, f1, strict=True)}, seconds)


def comparison_rows(finetuned: dict[str, dict], base: dict[str, dict]) -> list[str]:
    """Markdown rows: per metric, base mean [CI], fine-tuned mean [CI], paired difference [CI]."""
    from tailor.metrics.stats import mean_ci

    samples = sorted(set(finetuned) & set(base))
    rows = []
    for metric in ("bertscore_f1", "key_fact_match"):
        pairs = [(base[s][metric], finetuned[s][metric]) for s in samples
                 if base[s].get(metric) is not None and finetuned[s].get(metric) is not None]
        b, f = mean_ci([p[0] for p in pairs]), mean_ci([p[1] for p in pairs])
        d = mean_ci([p[1] - p[0] for p in pairs])
        ratio = (f.mean or 0.0) / b.mean if b.mean else None
        rows.append(f"| {metric} | {len(pairs)} | {b.mean:.4f} [{b.ci_low:.4f}, {b.ci_high:.4f}] | "
                    f"{f.mean:.4f} [{f.ci_low:.4f}, {f.ci_high:.4f}] | **{d.mean:+.4f}** [{d.ci_low:+.4f}, "
                    f"{d.ci_high:+.4f}] | {ratio:.2f} |" if ratio is not None else f"| {metric} | {len(pairs)} | "
                    f"{b.mean:.4f} | {f.mean:.4f} | {d.mean:+.4f} | n/a |")
    return rows


# --- report ----------------------------------------------------------------------------------------------------


def _main_tasks(dag: dict, limit: int = 4) -> str:
    """The longest task instances of a DAG run, as text."""
    merged: dict[str, list[float]] = {}
    for task in dag["tasks"]:
        merged.setdefault(task["task_id"], []).append(task["duration_s"] or 0.0)
    top = sorted(merged.items(), key=lambda kv: -sum(kv[1]))[:limit]
    return ", ".join(f"`{k}` {sum(v):.0f} s" + (f" ({len(v)} mapped)" if len(v) > 1 else "") for k, v in top)


def dag_table(timings: dict) -> list[str]:
    total = max(timings["total_s"], 1e-9)
    lines = ["| DAG run | questions | wall s | share of demo | longest tasks |", "|---|---|---|---|---|"]
    for dag in timings["dags"]:
        n = questions_of(dag) if dag["dag_id"] == "weekly_evaluation" else ""
        lines.append(f"| `{dag['dag_id']}` ({dag['state']}) | {n} | {dag['wall_s']:.0f} | "
                     f"{dag['wall_s'] / total:.0%} | {_main_tasks(dag)} |")
    other = timings["total_s"] - sum(d["wall_s"] for d in timings["dags"])
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in timings["phases"].items())
    lines.append(f"| rest of the demo (local AWS start, {phases}) | | {other:.0f} | "
                 f"{other / total:.0%} | |")
    return lines


def stage_table(fits: Sequence[Fit], sizes: Sequence[int]) -> list[str]:
    head = " | ".join(f"{n} q measured s" for n in sizes)
    lines = [f"| weekly_evaluation stage | {head} | fixed s | s per question | {PROJECTED_QUESTIONS} q projected s "
             f"| {PROJECTED_QUESTIONS} q / {sizes[-1]} q |", "|---|" + "---|" * (len(sizes) + 4)]
    for fit in fits:
        measured = " | ".join(f"{fit.measured[n]:.0f}" if n in fit.measured else "-" for n in sizes)
        last = fit.measured.get(sizes[-1]) or 0.0
        ratio = f"{fit.at(PROJECTED_QUESTIONS) / last:.1f}x" if last > 0.5 else "-"
        lines.append(f"| {fit.stage} | {measured} | {fit.fixed_s:.0f} | {fit.per_question_s:.2f} "
                     f"| {fit.at(PROJECTED_QUESTIONS):.0f} | {ratio} |")
    return lines


def batch_lines(dag: dict) -> str:
    per = batches(dag)
    return "; ".join(f"{a}: {len(d)} batches, mean {sum(d) / len(d):.0f} s ({sum(d) / len(d) / 15:.1f} s/question)"
                     for a, d in sorted(per.items()))


def verdict(timings: dict, extra_wall: float) -> tuple[float, float, bool, bool]:
    """(demo total s without the extra evaluation, peak MB of both processes together, time ok, memory ok). The
    peak is the sampled sum; without samples (a run shorter than the sampling period) the sum of both peaks."""
    total = timings["total_s"] - extra_wall
    rss = timings["peak_rss_mb"]
    peak = float(rss["together_sampled"] or rss["demo"] + rss["localaws"])
    return total, peak, total <= GOAL_TOTAL_S, peak <= GOAL_PEAK_MB


def save(data: dict) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(data, indent=1, default=str))


def previous_comparison() -> list[str]:
    """The last fine-tuned vs base figures, dated, when this run has no time left for the comparison: this
    section's own last result (out/bench), else the former finetune_quality section's figures."""
    try:
        last = json.loads(LAST_COMPARISON.read_text())
    except (OSError, ValueError):
        return ["### Fine-tuned vs base model (local)", PREVIOUS_COMPARISON]
    return [last["lines"][0], f"Not re-run this time (it did not fit in make bench's time budget; `make bench "
            f"ONLY=bakeoff` re-runs it): figures of {last['measured_at']}.", *last["lines"][1:]]


def _bertscore_load_seconds() -> float | None:
    path = OUT / "bench" / "bertscore.json"
    try:
        return float(json.loads(path.read_text())["load_seconds"])
    except (OSError, KeyError, ValueError):
        return None


def _time_left() -> float:
    """Seconds left in make bench's budget (``TAILOR_BENCH_DEADLINE``, epoch seconds; unlimited if unset)."""
    deadline = os.environ.get("TAILOR_BENCH_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def run(extra_questions: int | None = None, compare_base: bool = True) -> tuple[str, bool]:
    """Return (markdown section, goals met)."""
    if extra_questions is None:
        extra_questions = int(os.environ.get("TAILOR_BENCH_EXTRA_EVALUATION") or EXTRA_QUESTIONS)
    echo = lambda s: print(s, flush=True)  # noqa: E731
    code, timings = run_demo(extra_questions, echo)
    runs = evaluations(timings)
    full = runs[-1] if runs else None
    small = runs[0] if len(runs) > 1 else None
    extra_wall = small["wall_s"] if small else 0.0
    total, peak, time_ok, memory_ok = verdict(timings, extra_wall)
    rss = timings["peak_rss_mb"]
    lines = [
        "## Whole offline bake-off (`make demo`)",
        "`python -m benchmarks.demo_profile` in a subprocess: `make demo`'s code with a recorder on its hooks (its "
        "output in `out/bench-demo.log`, its full logs in `out/logs/`), which records `out/timings.json`: wall time "
        "of each DAG run and of every task "
        "instance (start/end from the DagRun's task instances), peak RSS of the demo process (ru_maxrss) and of the "
        "local AWS child (VmHWM), and of both together (sampled every 0.5 s). "
        + (f"For the scaling fit the bench also runs weekly_evaluation on the first {extra_questions} questions "
           "before the full one; the demo's total below excludes that extra run." if small else ""),
        "",
        f"Demo exit code {code}. **Total {total:.0f} s** (goal <= {GOAL_TOTAL_S:.0f} s: "
        f"{'met' if time_ok else 'MISSED'}; ratio {total / GOAL_TOTAL_S:.2f} of the goal). **Peak RSS together "
        f"{peak:,.0f} MB** (goal <= {GOAL_PEAK_MB:,.0f} MB: {'met' if memory_ok else 'MISSED'}; ratio "
        f"{peak / GOAL_PEAK_MB:.2f}): demo process {rss['demo']:,} MB, local AWS {rss['localaws']:,} MB.",
        "",
        *dag_table(timings),
        *memory_lines(timings),
    ]
    data: dict[str, Any] = {"timings": timings, "demo_exit_code": code, "total_s": total, "peak_mb": peak}
    if full is not None:
        if small is not None:
            fits = two_point_fits(small, full)
            method = (f"a straight line through the **two measured sizes** ({questions_of(small)} and "
                      f"{questions_of(full)} questions), stage by stage; {PROJECTED_QUESTIONS} questions is a "
                      "**projection** from those two points, not a measurement")
            sizes = [questions_of(small), questions_of(full)]
        else:
            load = _bertscore_load_seconds()
            fits = per_batch_fits(full, scoring_fixed_s=load)
            method = (
                "**one measured size** (a second weekly_evaluation run at 15 questions would add ~1/3 of the "
                "evaluation's time, which does not fit in make bench's 15 minutes). Generation: cost per question = "
                "mean batch duration / 15, summed over the 3 approaches (a batch of 15 questions is its unit of work; "
                "each batch's own start-up is counted as per-question, so the slope is an upper bound); scoring: fixed "
                + (f"= the BERTScore model load measured by the BERTScore section ({load:.1f} s), "
                   if load is not None else "= 0 (no BERTScore load time measured in this run), ")
                + "the rest per question; judge: all per question (the local AWS already holds the judge model); "
                f"plan, publish and overhead: fixed. {PROJECTED_QUESTIONS} questions is a **projection** from these "
                "per-question costs, not a measurement")
            sizes = [questions_of(full)]
        projected = next(f for f in fits if f.stage == "total")
        data["fits"] = [f.__dict__ for f in fits]
        data["per_question_s"] = {f.stage: f.per_question_s for f in fits}
        data["answers_per_question"] = 3
        lines += [
            "",
            f"### weekly_evaluation: growth from {sizes[0]} to {PROJECTED_QUESTIONS} questions",
            f"Stage = sum of its task instances' durations (`dag.test()` runs the mapped batches one after another); "
            f"overhead = DAG wall time minus all task durations. Fit: {method}.",
            "",
            *stage_table(fits, sizes),
            "",
            f"Generation batches of the {questions_of(full)}-question run: {batch_lines(full)}. At "
            f"{PROJECTED_QUESTIONS} questions the weekly evaluation alone would take "
            f"~{projected.at(PROJECTED_QUESTIONS) / 60:.0f} "
            f"min on this machine ({projected.at(PROJECTED_QUESTIONS) / projected.at(questions_of(full)):.1f}x the "
            f"{questions_of(full)}-question run), growing linearly: nothing in it is worse than linear, and "
            f"{PROJECTED_QUESTIONS} questions x 3 approaches / 15 = {PROJECTED_QUESTIONS * 3 // 15} mapped tasks "
            "stay far below `max_map_length`.",
        ]
    ok = time_ok and memory_ok and code == 0
    if not time_ok or not memory_ok:
        lines += ["", *missed_lines(timings, full, time_ok, memory_ok)]
    if compare_base and code == 0 and full is not None and _time_left() < BASE_COMPARISON_SECONDS:
        lines += ["", *previous_comparison()]
    elif compare_base and code == 0 and full is not None:
        print("  bakeoff: asking the base model the same questions", flush=True)
        finetuned = warehouse_scores(full["run_id"])
        base, seconds = base_model_scores()
        comparison = [
            "### Fine-tuned vs base model (local, folded in from the former `finetune_quality` section)",
            f"The {len(base)} test questions. Fine-tuned: the champion endpoint's answers in this run's weekly "
            "evaluation (`finetune` approach; scores read from `out/warehouse.db`). Base: the JumpStart base model "
            "(served by a fresh local AWS as SmolLM2-135M-Instruct) asked through the same code "
            "(`answer_batch(\"finetune\", ...)`: same prompt, greedy, same max tokens) in "
            f"{seconds:.0f} s, scored like `score_answers` (BERTScore F1 with SmolLM2 layers 1-8, key-fact match). "
            "Baseline: the base model; ratio fine-tuned / base; the paired difference is per question. No goal "
            "(a 135M model learns the catalog's wording more than its facts): reported as measured.",
            "",
            "| metric | n | base mean [95% CI] | fine-tuned mean [95% CI] | fine-tuned - base, paired [95% CI] "
            "| ratio |",
            "|---|---|---|---|---|---|",
            *comparison_rows(finetuned, base),
        ]
        data["finetune_vs_base"] = {"finetuned": finetuned, "base": base}
        LAST_COMPARISON.parent.mkdir(parents=True, exist_ok=True)
        LAST_COMPARISON.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                               "lines": comparison}))
        lines += ["", *comparison]
    elif compare_base:
        lines += ["", "Fine-tuned vs base: not measured (the demo did not succeed)."]
    save(data)
    return "\n".join(lines), ok


def _judge_unbatched() -> bool:
    """Whether the local judge still scores one request at a time under the model lock (read from its source,
    so this section's explanation cannot outlive a change to the local AWS)."""
    import inspect

    from localaws import serving

    return "with loaded.lock" in inspect.getsource(serving.rate)


def memory_lines(timings: dict) -> list[str]:
    """Peak RSS per step of the demo (sampled every 0.5 s): which step grows the memory."""
    steps = timings.get("peak_rss_by_step_mb") or {}
    if not steps:
        return []
    from localaws.process import MALLOC_TUNING

    tuning = ", ".join(f"`{k}={v}`" for k, v in MALLOC_TUNING.items())
    def mb(peaks: dict, key: str) -> str:
        return f"{peaks[key]:,}" if key in peaks else "n/a"

    return ["", "| step | peak RSS together MB (sampled) | local AWS alone | training job alone | demo alone |",
            "|---|---|---|---|---|",
            *(f"| {step} | {peaks['together']:,} | {peaks['localaws']:,} | {mb(peaks, 'training_job')} | "
              f"{mb(peaks, 'demo')} |" for step, peaks in steps.items()), "",
            "Together = the demo process and all its descendants (the local AWS and its training child process). "
            f"The local AWS runs with {tuning} (`localaws.process.MALLOC_TUNING`) and trims glibc's free memory "
            "after every served batch (`localaws.serving.release_free_memory`). Measured on 2026-11-26 with the "
            "same demo: without either, 4,786 MB together and 3,902 MB for the local AWS in weekly_evaluation (the "
            "batches' freed activations stayed in glibc's arenas); with `MALLOC_MMAP_THRESHOLD_=1048576` instead of "
            "the trim, 3,363 MB but 613 s (5x the system time: every large tensor a fresh mapping); with a 16 MB "
            "threshold, 4,266 MB."]


def missed_lines(timings: dict, full: dict | None, time_ok: bool, memory_ok: bool) -> list[str]:
    """Why the goals were missed, from the measured stages, and the next steps."""
    lines = []
    by_dag = {d["dag_id"]: d for d in timings["dags"]}
    if not time_ok:
        parts, steps = [], []
        if full is not None:
            stages = stage_seconds(full)
            answers = 3 * questions_of(full)
            judges = max(1, len(full["conf"].get("judge_models") or [1]))
            ranked = sorted((k for k in STAGES if k != "plan"), key=lambda k: -stages[k])
            parts.append(f"weekly_evaluation {full['wall_s']:.0f} s, of which "
                         + ", ".join(f"{k} {stages[k]:.0f} s" for k in ranked))
            judge = f"the judge takes {stages['judge'] / (answers * judges):.1f} s per answer and judge"
            if _judge_unbatched():
                judge += (": the local AWS rates one answer at a time (`localaws.serving.rate` holds the model lock "
                          "for a whole judge prompt, context included; it is not batched like generation)")
                steps.append("batch the local judge's rating prefill across concurrent requests as `chat()` "
                             "batches generation")
            parts.append(judge)
            parts.append(f"generation runs {len(sum(batches(full).values(), []))} batches one after another "
                         "under `dag.test()`; RAG and hybrid prompts carry the retrieved chunks, which the 135M "
                         "model prefills on 2 CPU cores")
            steps.append("a smaller local judge context cap (`TAILOR__EVALUATION__JUDGE_CONTEXT_CHARS`)")
        if "monthly_finetune" in by_dag:
            parts.append(f"monthly_finetune {by_dag['monthly_finetune']['wall_s']:.0f} s (a real fine-tune of the "
                         "top layers on 2 cores)")
        steps.append("llama-cpp-python for the local model (~4x generation, DESIGN §5)")
        lines.append("**Time goal MISSED.** Where the time goes: " + "; ".join(parts) + ". Next steps: "
                     + "; ".join(steps) + ".")
    if not memory_ok:
        rss = timings["peak_rss_mb"]
        by_step = timings.get("peak_rss_by_step_mb") or {}
        worst = max(by_step, key=lambda k: by_step[k]["together"]) if by_step else "unknown"
        lines.append(
            f"**Memory goal MISSED.** The largest step is {worst} (table above); the local AWS peaked at "
            f"{rss['localaws']:,} MB (up to 3 served models - base, challenger, champion - plus the embedder and the "
            f"batches' activations) and the demo process at {rss['demo']:,} MB (Airflow, and BERTScore's model in "
            "score_answers). Next steps: a serving cache of 2 models locally; `MALLOC_MMAP_THRESHOLD_=1048576` for "
            "the local AWS if time allows (measured: less memory, more system time; see above).")
    return lines


if __name__ == "__main__":
    print(run()[0])

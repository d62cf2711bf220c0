"""``make demo``'s output: one line per task, progress of the long stages, a failed task's tail, the comparison
table; everything else in the log files (devstack.demo_log), fed with log lines and records as the DAG runs
produce them."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.demo_log import (
    DAG_TEST_LOGGER,
    Console,
    LineRouter,
    Progress,
    RunLog,
    TableCatcher,
    TaskBoundaries,
    TaskResult,
)
from devstack.stack import REPO
from tailor.config import settings
from tailor.summary import TABLE_HEADER, format_table, summarize

#: What a weekly run's log looks like around the table (structlog records, a print, the "XCom not found" noise).
STAMP = "2026-11-28T13:45:47.430330Z [info     ] "


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def console() -> tuple[Console, io.StringIO]:
    terminal = io.StringIO()
    return Console(terminal), terminal


def dag_test_record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(DAG_TEST_LOGGER, logging.INFO, "dag.py", 1, message, args, None)


def ti(task_id: str, map_index: int = -1, label: str | None = None, state: str = "success",
       seconds: float = 2.0) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, map_index=map_index, rendered_map_index=label, state=state,
                           duration=seconds)


def run_task(boundaries: TaskBoundaries, router: LineRouter, task: SimpleNamespace, lines: list[str]) -> None:
    """What dag.test() does for one task: its records around the task's own output."""
    boundaries.handle(dag_test_record("[DAG TEST] starting task_id=%s map_index=%s", task.task_id, task.map_index))
    boundaries.handle(dag_test_record("[DAG TEST] running task %s", task))
    for line in lines:
        router.write(line + "\n")
    boundaries.handle(dag_test_record("[DAG TEST] end task task_id=%s map_index=%s", task.task_id, task.map_index))


def test_one_line_per_task_the_rest_only_in_the_file(tmp_path: Path) -> None:
    shown, terminal = console()
    log = RunLog(tmp_path / "weekly_evaluation.log", shown, Progress(), TableCatcher(TABLE_HEADER))
    router, boundaries = LineRouter(lambda: log), TaskBoundaries(lambda: log)
    run_task(boundaries, router, ti("plan_batches", seconds=0.4), [
        f"{STAMP}Filling up the DagBag from dags [airflow.dag_processing.dagbag.DagBag]",
        "45 samples of dataset v1 x ['rag', 'finetune', 'hybrid'] -> 9 batches of up to 15 (batch_size 15)"])
    run_task(boundaries, router, ti("generate_answers", 0, "rag #0", seconds=51.06), [
        "2026-11-28T13:46:00Z [error    ] XCom not found [airflow.sdk.api.client] dag_id=weekly_evaluation",
        "rag batch 0: 15 answers (0 errors) -> s3://tailor-bakeoff/evaluation/runs/r/answers/rag/batch-0000.jsonl"])
    run_task(boundaries, router, ti("train", seconds=202.4), [])
    log.close()
    lines = terminal.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["plan_batches", "...", "generate_answers[rag", "train"]
    assert lines[0].split() == ["plan_batches", "success", "0.4", "s"]
    assert lines[1].startswith("  ... generation: 15 of 135 answers (")  # 45 questions x 3 approaches
    assert lines[2].split()[-3:] == ["success", "51.1", "s"] and lines[3].endswith("3.4 min")
    assert "XCom not found" not in terminal.getvalue() and "DagBag" not in terminal.getvalue()
    written = (tmp_path / "weekly_evaluation.log").read_text().splitlines()
    assert len(written) == 4 and "XCom not found" in written[2] and written[3].startswith("rag batch 0: 15 answers")
    assert shown.lines == 4 and log.reported == {("plan_batches", -1), ("generate_answers", 0), ("train", -1)}


def test_a_failed_task_shows_its_last_lines_and_where_its_log_starts(tmp_path: Path) -> None:
    shown, terminal = console()
    path = tmp_path / "monthly_finetune.log"
    log = RunLog(path, shown, tail=5)
    router, boundaries = LineRouter(lambda: log), TaskBoundaries(lambda: log)
    run_task(boundaries, router, ti("prepare_training_data"), ["prepared 3 files"])
    error = [f"frame {n}" for n in range(8)] + ["RuntimeError: training job failed: " + "x" * 300,
                                                f"{STAMP}::group::Post Execute [task]",
                                                f"{STAMP}Task instance state updated [airflow] new_state=failed"]
    run_task(boundaries, router, ti("train", state="failed", seconds=12.0), error)
    log.close()
    lines = terminal.getvalue().splitlines()
    assert lines[1].split()[:2] == ["train", "failed"]
    assert lines[2] == f"    last 5 lines of its log (full log: {path}, from line 2):"
    # the tail: the task's last lines without Airflow's bookkeeping, long lines cut (the file has them whole)
    assert lines[3:] == ["    | frame 4", "    | frame 5", "    | frame 6", "    | frame 7",
                         "    | " + error[8][:197] + "..."]
    assert log.failed == [TaskResult("train", -1, None, "failed", 12.0)]
    written = path.read_text().splitlines()
    assert written[0] == "prepared 3 files" and written[1] == "frame 0" and len(written) == 1 + len(error)
    assert written[9].endswith("x" * 300)


def test_a_task_up_for_retry_shows_its_error_in_one_line(tmp_path: Path) -> None:
    shown, terminal = console()
    log = RunLog(tmp_path / "monthly_finetune.log", shown)
    router, boundaries = LineRouter(lambda: log), TaskBoundaries(lambda: log)
    run_task(boundaries, router, ti("smoke_test"), ["smoke test answer: 'ok'"])
    run_task(boundaries, router, ti("evaluate_challenger", state="up_for_retry", seconds=390.0), [
        f"{STAMP}Task failed with exception [task]", "Traceback (most recent call last):",
        "TimeoutError: timed out", "  File \"botocore/retryhandler.py\", line 416", "    raise caught_exception",
        'botocore.exceptions.ReadTimeoutError: Read timeout on endpoint URL: "http://127.0.0.1/invocations"',
        f"{STAMP}::group::Post Execute [task]"])
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["evaluate_challenger", "up_for_retry"]
    assert lines[2] == ('    will retry after botocore.exceptions.ReadTimeoutError: Read timeout on endpoint URL: '
                        f'"http://127.0.0.1/invocations"; its log: {tmp_path / "monthly_finetune.log"}, from line 2')


def test_progress_lines_are_throttled_and_end_with_the_total() -> None:
    clock = Clock()
    progress = Progress(every=60, clock=clock)
    assert progress.feed("6 samples of dataset v1 x ['rag', 'hybrid'] -> 2 batches of up to 3") is None
    clock.now += 20
    assert progress.feed("rag batch 0: 3 answers (0 errors) -> s3://b/k") == \
        "  ... generation: 3 of 12 answers (0.15/s, ETA 60.0 s)"
    clock.now += 20
    assert progress.feed("rag batch 1: 3 answers (1 errors) -> s3://b/k") is None  # 20 s after the last line
    clock.now += 20
    assert progress.feed("hybrid batch 0: 3 answers (0 errors) -> s3://b/k") is None
    clock.now += 20
    assert progress.feed("hybrid batch 1: 3 answers (0 errors) -> s3://b/k") == \
        "  ... generation: 12 of 12 answers (0.15/s)"  # the last one always
    judged = f"{STAMP}judged %d of 90 (1.5/s, ETA %d s) [airflow.task.operators.tailor_airflow.llm_judge.LLMJudge]"
    assert progress.feed(judged % (30, 40)) == "  ... judging: 30 of 90 (1.5/s, ETA 40.0 s)"
    clock.now += 30
    assert progress.feed(judged % (60, 20)) is None
    clock.now += 30
    assert progress.feed(judged % (75, 10)) == "  ... judging: 75 of 90 (1.5/s, ETA 10.0 s)"
    assert progress.feed(judged % (90, 0)) == "  ... judging: 90 of 90 (1.5/s)"
    assert progress.feed(f"{STAMP}Done. Returned value was: 1") is None and progress.feed("") is None


def test_a_waiter_shows_how_long_it_has_waited_once_a_minute() -> None:
    clock = Clock()
    progress = Progress(every=60, clock=clock)
    polled = f"{STAMP}Training job not done yet: InProgress [airflow.providers.amazon.aws.utils.waiter_with_logging]"
    shown = []
    for _ in range(100):  # polled every 2 s for 200 s
        shown.append(progress.feed(polled))
        clock.now += 2
    assert [line for line in shown if line] == ["  ... Training job: InProgress for 60.0 s",
                                                "  ... Training job: InProgress for 2.0 min",
                                                "  ... Training job: InProgress for 3.0 min"]


def test_generation_without_the_plan_line_counts_answers() -> None:
    progress = Progress(every=0, clock=Clock())
    assert progress.feed("finetune batch 2: 15 answers (0 errors) -> s3://b/k") == "  ... generation: 15 answers"


def test_the_comparison_table_is_caught_from_the_tasks_print() -> None:
    cfg = settings()
    prices, usage = cfg.prices, cfg.usage
    records: list[dict[str, Any]] = [
        {"sample_id": f"s{n}", "approach": approach, "product_name": "Pump X", "question": "q?",
         "reference": "r", "answer": "a", "error": None, "latency_ms": 900.0, "retrieval_ms": 20.0,
         "input_tokens": 100, "output_tokens": 50, "retrieved": [], "bertscore_f1": 0.8, "key_fact_match": 0.5,
         "retrieval_hit": None, "judge_score": 0.7} for n in range(3) for approach in ("rag", "finetune")]
    table = format_table(summarize(records, prices=prices, usage=usage, endpoint_instance_type="ml.g5.12xlarge"))
    catcher = TableCatcher(TABLE_HEADER)
    for line in [f"{STAMP}Pushing xcom", *table.splitlines(), "", f"{STAMP}Done. Returned value was: {{}}"]:
        catcher.feed(line)
    caught = catcher.result()
    assert caught == [line.rstrip() for line in table.splitlines()] and len(caught) == 4  # header, dashes, 2 rows
    assert caught[0].split()[0] == "method" and caught[2].split()[0] == "RAG"
    ended_by_a_record = TableCatcher(TABLE_HEADER)
    for line in [*table.splitlines(), f"{STAMP}Done."]:
        ended_by_a_record.feed(line)
    assert ended_by_a_record.result() == caught
    assert TableCatcher(TABLE_HEADER).result() == []  # no table printed: the demo falls back to the CSV
    no_dashes = TableCatcher(TABLE_HEADER)
    for line in [table.splitlines()[0], *table.splitlines()[2:]]:
        no_dashes.feed(line)
    assert no_dashes.result() == []


def test_a_task_instance_is_named_with_its_map_label() -> None:
    assert TaskResult("generate_answers", 3, "finetune #0", "success", 14.0).name == "generate_answers[finetune #0]"
    assert TaskResult("generate_answers", 3).name == "generate_answers[3]" and TaskResult("train").name == "train"
    assert TaskResult("judge", seconds=None).line().split() == ["judge", "?", "-"]


def test_an_end_record_without_its_task_instance_still_shows_a_line(tmp_path: Path) -> None:
    shown, terminal = console()
    log = RunLog(tmp_path / "x.log", shown)
    boundaries = TaskBoundaries(lambda: log)
    boundaries.handle(dag_test_record("[DAG TEST] starting task_id=%s map_index=%s", "promote", -1))
    boundaries.handle(dag_test_record("[DAG TEST] end task task_id=%s map_index=%s", "promote", -1))
    boundaries.handle(dag_test_record("Clearing existing task instances for logical date %s", "now"))
    log.close()
    assert terminal.getvalue().split() == ["promote", "?", "-"] and log.reported == {("promote", -1)}


CAPTURED = """
import logging, os, sys
from pathlib import Path
from types import SimpleNamespace
from devstack.demo_log import DAG_TEST_LOGGER, capture

logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")  # a terminal handler
with capture(Path(sys.argv[1])) as logs:
    logs.console.print("said by the demo")
    print("printed outside any DAG run")
    with logs.dag_run("toy", ("method", "score")) as run:
        dag_test = logging.getLogger(DAG_TEST_LOGGER)
        dag_test.info("[DAG TEST] starting task_id=%s map_index=%s", "t", -1)
        dag_test.info("[DAG TEST] running task %s", SimpleNamespace(task_id="t", map_index=-1, rendered_map_index=None,
                                                                     state="success", duration=1.5))
        print("printed by the task")
        print("method  score")
        print("------  -----")
        print("rag       0.8")
        logging.getLogger("airflow.sdk.api.client").error("XCom not found")
        print("to stderr", file=sys.stderr)
        os.write(2, b"written to fd 2 by C code\\n")
        dag_test.info("[DAG TEST] end task task_id=%s map_index=%s", "t", -1)
    logs.console.print("table: " + " | ".join(run.table.result()))
logging.getLogger("after").info("logged after the capture")
print("printed after the capture")
"""


def test_capture_sends_python_and_raw_output_to_the_files_and_keeps_the_terminal_short(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CAPTURED, str(tmp_path / "logs")], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": f"{REPO / 'include'}:{REPO}", "PATH": ""})
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:3] == ["said by the demo", "  t                                    success             1.5 s",
                       "table: method  score | ------  ----- | rag       0.8"]
    assert len(out) == 5 and out[3].endswith("logged after the capture") and out[4] == "printed after the capture"
    assert result.stderr == ""
    toy = (tmp_path / "logs" / "toy.log").read_text()
    table_row = "rag       0.8"
    for line in ("[DAG TEST] starting task_id=t", "printed by the task", "XCom not found", "to stderr", table_row):
        assert line in toy
    demo = (tmp_path / "logs" / "demo.log").read_text()
    assert "printed outside any DAG run" in demo and "written to fd 2 by C code" in demo and "task" not in demo
    assert demo.count("\n") == 2


@pytest.mark.parametrize("existing", [0, 2])
def test_each_dag_run_gets_its_own_file(tmp_path: Path, existing: int) -> None:
    from devstack.demo_log import Capture

    logs = Capture(tmp_path, console()[0])
    for number in range(existing):
        (tmp_path / ("weekly_evaluation.log" if number == 0 else f"weekly_evaluation-{number + 1}.log")).touch()
    expected = "weekly_evaluation.log" if not existing else f"weekly_evaluation-{existing + 1}.log"
    assert logs.path_for("weekly_evaluation").name == expected
    logs.demo.close()

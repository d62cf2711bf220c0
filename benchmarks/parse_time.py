"""DAG parse time: each DAG file against a minimal reference DAG importing the same provider operators.

Each measurement is a fresh interpreter (as the DAG processor's parsing subprocess is), timing only the
file's execution after Airflow itself is imported; the median of ``repeats`` runs is kept.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.stack import REPO

GOAL_SECONDS = 0.25
REFERENCE_DAG = '''
import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Param, chain, task
from airflow.providers.amazon.aws.operators.bedrock import BedrockIngestDataOperator
from airflow.providers.amazon.aws.sensors.bedrock import BedrockIngestionJobSensor
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.timetables.trigger import CronTriggerTimetable

with DAG("reference", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    BedrockIngestDataOperator(task_id="i", knowledge_base_id="k", data_source_id="d")
'''
_TIMER = """
import time, importlib.util, airflow.sdk
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", {path!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(time.perf_counter() - start)
"""


def time_file(path: Path, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _TIMER.format(path=str(path))], capture_output=True,
                             text=True, check=True).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return statistics.median(samples)


def dagbag_fill_seconds() -> float:
    code = ("import time; from airflow.dag_processing.dagbag import DagBag; s=time.perf_counter(); "
            f"b=DagBag(dag_folder={str(REPO / 'dags')!r}); assert not b.import_errors, b.import_errors; "
            "print(time.perf_counter()-s)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.strip().splitlines()[-1])


def run(repeats: int = 3) -> tuple[str, bool]:
    """Return (markdown section, every goal met)."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference_dag.py"
        reference.write_text(REFERENCE_DAG)
        baseline = time_file(reference, repeats)
    rows, ok, total = [], True, 0.0
    files = sorted((REPO / "dags").glob("*.py"))  # every DAG file, qa_dataset_build.py included
    for dag_file in files:
        seconds = time_file(dag_file, repeats)
        total += seconds
        over = seconds - baseline
        ok &= over <= GOAL_SECONDS
        rows.append(f"| `{dag_file.name}` | {seconds:.3f} | {over:+.3f} | {seconds / baseline:.2f} "
                    f"| {'met' if over <= GOAL_SECONDS else 'MISSED'} |")
    fill = dagbag_fill_seconds()
    section = "\n".join([
        "## DAG parse time",
        f"Median of {repeats} fresh interpreters; time to execute the file after `import airflow.sdk`. Reference: "
        f"a one-task DAG importing the same provider operators and nothing of ours = **{baseline:.3f} s**. "
        f"Goal: at most {GOAL_SECONDS} s over the reference per file.",
        "",
        "| DAG file | parse s | over reference s | ratio to reference | goal |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"DagBag fill of the whole `dags/` folder (one interpreter, Airflow already imported): {fill:.3f} s, vs "
        f"{total:.3f} s for the {len(files)} files parsed one per fresh interpreter above (ratio {fill / total:.2f}: "
        "the provider imports are paid once).",
    ])
    return section, ok


if __name__ == "__main__":
    print(run()[0])

"""``make demo``: the offline bake-off on the local AWS (exit 0 only if every DAG run succeeded).

KB sync of the sample catalog -> monthly fine-tune -> weekly evaluation of the three approaches. The terminal
shows one line per task as it finishes, progress lines for generation and judging, and at the end the output
paths (S3 keys and local copies of report.html and summary_results.csv, the warehouse file) and the comparison
table; the full Airflow logs go to ``out/logs/<dag_id>.log`` (one per DAG run), the local AWS's to
``out/logs/localaws.log``, the rest to ``out/logs/demo.log`` (see :mod:`devstack.demo_log`). A failed task shows
its last lines and where its full log is.

``make demo CATALOG=path/to/catalog.txt QA=path/to/test.json`` (``python -m devstack.demo --catalog ... --qa ...``)
runs the same bake-off on your own files. Both are validated first, the QA set's product names against the
catalog: a bad file stops the demo with the validators' messages (exit 2) before anything starts or any model
is called.

``make bench`` profiles this same code (time and memory of every phase, DAG run and task) through the
:class:`Observer` hooks: ``python -m benchmarks.demo_profile``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.demo_log import Capture, capture, shown, table_header, task_result
from devstack.stack import (
    BASE_MODEL_URI,
    LOCALAWS_SCALE,
    REPO,
    Stack,
    airflow_env,
    bootstrap,
    migrate_airflow_db,
    run_dag,
)

OUT = REPO / "out"
LOGS = OUT / "logs"
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
SAMPLE_QA = REPO / "include" / "data" / "qa" / "test.json"
#: Where the demo puts a user's QA set in the local bucket (weekly_evaluation reads datasets from S3 or include/).
QA_KEY = "qa/demo/{name}"
JUDGE = "amazon.nova-pro-v1:0"


class Observer:
    """Hooks around the demo's steps, no-ops here; ``benchmarks.demo_profile.Recorder`` times them and samples
    the memory (``make bench``)."""

    #: weekly_evaluation on the first N questions too, before the full one (the benchmark's scaling fit)
    extra_evaluation = 0

    @contextmanager
    def labelled(self, step: str) -> Iterator[None]:
        """A DAG run (``step``) runs meanwhile."""
        yield

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A timed phase of the demo (setup, reports) runs meanwhile."""
        yield

    def dag(self, name: str, run: Any, seconds: float, conf: dict[str, Any] | None) -> None:
        """A DAG run finished (its DagRun, wall time and conf)."""

    def find_localaws(self) -> None:
        """The local AWS has just started (a child of this process)."""

    def write(self) -> Any:
        """The bake-off is over; the local AWS still runs."""


class Demo:
    """The running demo: the terminal, the log capture and the hooks."""

    def __init__(self, logs: Capture, observer: Observer) -> None:
        self.logs = logs
        self.observer = observer
        self.say: Callable[[str], None] = logs.console.print
        self.table: list[str] = []

    def run(self, name: str, conf: dict[str, Any] | None = None) -> Any:
        """One DAG run with ``dag.test()``: its tasks' lines as they finish, its log in out/logs/."""
        import airflow  # noqa: F401 (configures logging on first import: before our handlers are attached)

        with self.logs.dag_run(name, table_header()) as log:
            self.say(f"\n{name} (full log: {shown(log.path)})")
            started = time.monotonic()
            with self.observer.labelled(name):
                run = run_dag(name, conf)
            seconds = time.monotonic() - started
        tis = sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index))
        for ti in tis:  # never ran, so never reported: skipped, upstream_failed, ...
            if (ti.task_id, ti.map_index) not in log.reported:
                self.say(task_result(ti).line())
        self.say(f"{name}: {run.state} in {seconds:.0f} s")
        self.observer.dag(name, run, seconds, conf)
        if run.state != "success":
            failed = [task_result(ti).name for ti in tis if str(getattr(ti.state, "value", ti.state)) == "failed"]
            self.say(f"failed: {', '.join(failed) or 'no task failed (see the log)'}; full log: {shown(log.path)}; "
                     f"the local AWS's: {shown(LOGS / 'localaws.log')}")
        if log.table is not None and log.table.result():
            self.table = log.table.result()
        return run

@dataclass(frozen=True)
class Inputs:
    """The bake-off's files, validated: the catalog to sync and the QA test set (None: the packaged one)."""

    catalog: Path
    qa: Path | None
    first_question: str
    products: int
    questions: int


def check_inputs(catalog: Path, qa: Path | None) -> Inputs:
    """Validate the catalog and the QA set (its product names against the catalog) before anything starts;
    :class:`SystemExit` (2) with the validators' messages if either is bad."""
    from tailor.catalog import validate_file
    from tailor.exceptions import CatalogValidationError, QADatasetError
    from tailor.qa import check_products, parse_qa

    problems: list[str] = []
    parsed = dataset = None
    try:
        parsed = validate_file(catalog)
    except CatalogValidationError as error:
        problems.append(f"catalog rejected ({error.issues[0].rule}):\n{error}")
    except OSError as error:
        problems.append(f"{catalog}: cannot read the catalog ({error.strerror or error})")
    qa_path = qa or SAMPLE_QA
    try:
        dataset = parse_qa(qa_path.read_bytes(), str(qa_path))
        if parsed is not None:
            check_products(dataset, [p.name for p in parsed.products], str(catalog))
    except QADatasetError as error:
        hint = "" if qa else "\n(the packaged QA set is about the packaged catalog: give your own with QA=...)"
        problems.append(f"QA set rejected:\n{error}{hint}")
    except OSError as error:
        problems.append(f"{qa_path}: cannot read the QA set ({error.strerror or error})")
    if problems or parsed is None or dataset is None:
        print("\n\n".join(problems) + "\n\nNothing was started and no model was called; fix the file(s) and run "
              "make demo again.", file=sys.stderr)
        raise SystemExit(2)
    print(f"inputs: {catalog} ({len(parsed.products)} products, version {parsed.version}); {qa_path} "
          f"({len(dataset.items)} questions, version {dataset.version})")
    return Inputs(catalog, qa, dataset.items[0].question, len(parsed.products), len(dataset.items))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description="The offline bake-off (RAG vs fine-tuned vs "
                                     "hybrid) on the local AWS.")
    parser.add_argument("--catalog", type=Path, default=SAMPLE_CATALOG,
                        help="product catalog .txt (default: the packaged sample)")
    parser.add_argument("--qa", type=Path, default=None,
                        help="QA test set .json, a list of {product_name, question, answer} (default: the packaged "
                             "one, which needs the packaged catalog)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, observer: Observer | None = None) -> int:
    args = parse_args(argv)
    inputs = check_inputs(args.catalog.resolve(), args.qa.resolve() if args.qa else None)
    observer = observer or Observer()
    OUT.mkdir(exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)  # the logs of this demo only
    started = time.monotonic()
    with capture(LOGS) as logs:
        demo = Demo(logs, observer)
        demo.say(f"full logs: {shown(LOGS)}/ (one file per DAG run, localaws.log, demo.log)")
        try:
            code = _bake_off(demo, inputs)
        except BaseException:
            logs.console.print(f"\nthe demo stopped with an error (traceback below; logs in {shown(LOGS)}/)")
            raise
        demo.say(peak_memory())
        if code == 0:
            demo.say(f"bake-off finished in {time.monotonic() - started:.0f} s; comparison table "
                     f"(out/summary_results.csv):\n")
            demo.say("\n".join(demo.table) if demo.table else (OUT / "summary_results.csv").read_text())
        else:
            demo.say(f"bake-off FAILED after {time.monotonic() - started:.0f} s (exit {code})")
    return code


def peak_memory() -> str:
    """One line: the peak RSS of this process and of its largest child that has exited (the local AWS)."""
    mb = {who: resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)}
    return (f"\npeak memory (RSS): demo process {mb[resource.RUSAGE_SELF]:,.0f} MB, largest child process (the local "
            f"AWS) {mb[resource.RUSAGE_CHILDREN]:,.0f} MB")


def _bake_off(demo: Demo, inputs: Inputs) -> int:
    say, observer = demo.say, demo.observer
    (OUT / "warehouse.db").unlink(missing_ok=True)  # the demo's warehouse holds this demo's runs
    os.environ.update(airflow_env(REPO / ".airflow"))
    from localaws.process import LocalAWSProcess

    with LocalAWSProcess(log_path=LOGS / "localaws.log", env=LOCALAWS_SCALE) as aws:
        observer.find_localaws()
        try:
            with observer.phase("setup"):  # local AWS start (above) is in the total, not in this phase
                stack = bootstrap(aws.endpoint_url, warehouse_path=OUT / "warehouse.db")
                os.environ.update(stack.env())
                say(f"local AWS on {aws.endpoint_url}: bucket {stack.resources['bucket']}, Knowledge Base "
                    f"{stack.resources['knowledge_base_id']}")
                if inputs.qa is not None:  # the user's QA set is the test set of every DAG (leak check included)
                    qa_key = QA_KEY.format(name=inputs.qa.name)
                    stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=qa_key,
                                                  Body=inputs.qa.read_bytes())
                    os.environ["TAILOR__QA__TEST_SET"] = f"s3://{stack.resources['bucket']}/{qa_key}"
                migrate_airflow_db(os.environ.copy())

            key = "catalog/incoming/" + inputs.catalog.name
            stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=inputs.catalog.read_bytes())
            if demo.run("catalog_kb_sync", {"catalog_key": key}).state != "success":
                return 1
            with observer.phase("report_kb"):
                report_kb(stack, inputs.first_question, say)
            finetune = demo.run("monthly_finetune")
            if finetune.state != "success":
                return 1
            with observer.phase("report_finetune"):
                report_finetune(stack, finetune.run_id, inputs.first_question, say)
            # One judge id locally: every local judge is the same 135M model, so a second one would only double
            # the slowest stage (the DAG's default and the tests use two; production uses three model families).
            extra = observer.extra_evaluation  # make bench's scaling fit, never the demo
            if extra and demo.run("weekly_evaluation", {"judge_models": [JUDGE], "sample_limit": extra}).state != \
                    "success":
                return 1
            evaluation = demo.run("weekly_evaluation", {"judge_models": [JUDGE]})
            if evaluation.state != "success":
                return 1
            with observer.phase("report_evaluation"):
                report_evaluation(stack, evaluation.run_id, say)
        finally:
            observer.write()  # reads the local AWS's peak memory while it still runs
    return 0


def _s3_json(stack: Stack, key: str) -> Any:
    return json.loads(stack.client("s3").get_object(Bucket=stack.resources["bucket"], Key=key)["Body"].read())


def report_kb(stack: Stack, question: str, say: Callable[[str], None] = print) -> None:
    marker = _s3_json(stack, "catalog/current.json")
    say(f"Knowledge Base {stack.resources['knowledge_base_id']} holds catalog version "
        f"{marker['catalog_version']} ({marker['products']} products), ingestion job {marker['ingestion_job_id']}")
    top = stack.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=stack.resources["knowledge_base_id"], retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 1}},
    )["retrievalResults"][0]
    text = " ".join(top["content"]["text"].split())  # one line: the chunk's own line breaks collapsed
    say(f"Retrieve {question!r}\n  top hit ({top['score']:.3f}, {top['metadata'].get('product_name')}): "
        f"{text[:160]}...")


def report_finetune(stack: Stack, run_id: str, question: str, say: Callable[[str], None] = print) -> None:
    from tailor.config import load_settings
    from tailor.generation import invoke_jumpstart
    from tailor.prompts import BASE, endpoint_prompt, endpoint_stop_sequences, served_method
    from tailor.training_data import job_name_for

    ft = load_settings().finetune
    sagemaker, runtime = stack.client("sagemaker"), stack.client("sagemaker-runtime")
    job = sagemaker.describe_training_job(TrainingJobName=job_name_for(run_id))
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    say(f"training job {job['TrainingJobName']}: {job['TrainingJobStatus']}, {job['BillableTimeInSeconds']} "
        f"billable s, catalog loss {metrics.get('train:base_loss', 0):.3f} -> {metrics.get('train:loss', 0):.3f}")
    say(f"champion endpoint {ft.champion_endpoint}: "
        f"{sagemaker.describe_endpoint(EndpointName=ft.champion_endpoint)['EndpointStatus']}")
    # The base model, deployed from JumpStart's cache, for a side-by-side answer (demo only; deleted after).
    base = "tailor-demo-base-model"
    sagemaker.create_model(ModelName=base, ExecutionRoleArn=ft.role_arn,
                           PrimaryContainer={"Image": ft.inference_image_uri, "ModelDataUrl": BASE_MODEL_URI})
    sagemaker.create_endpoint_config(EndpointConfigName=base, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": base, "InitialInstanceCount": 1,
        "InstanceType": ft.endpoint_instance_type}])
    sagemaker.create_endpoint(EndpointName=base, EndpointConfigName=base)
    pointer = json.loads(stack.client("s3").get_object(Bucket=stack.resources["bucket"],
                                                       Key="finetune/champion.json")["Body"].read())
    # each model prompted as it was trained: the fine-tuned one in its method's format, the base one as a chat
    for label, endpoint, method in (("fine-tuned", ft.champion_endpoint, served_method(pointer, ft.method)),
                                    ("base", base, BASE)):
        answer = invoke_jumpstart(runtime, endpoint, endpoint_prompt(method, question), max_new_tokens=60,
                                  stop=endpoint_stop_sequences(method))
        say(f"  {label:>10}: {answer.text!r}")
    sagemaker.delete_endpoint(EndpointName=base)


def report_evaluation(stack: Stack, run_id: str, say: Callable[[str], None] = print) -> None:
    """The run's outputs: S3 keys, their local copies in out/, the warehouse file."""
    import sqlite3

    from tailor.config import load_settings
    from tailor_airflow.evaluation import run_prefix

    prefix = run_prefix(load_settings().evaluation.output_prefix, run_id)
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    say("\noutputs:")
    for name in ("summary_results.csv", "paired_comparisons.csv", "report.html"):
        s3.download_file(bucket, prefix + name, str(OUT / name))
        say(f"  s3://{bucket}/{prefix}{name} -> {shown(OUT / name)}")
    with sqlite3.connect(OUT / "warehouse.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM eval_run").fetchone()[0]
        scores = db.execute("SELECT COUNT(*) FROM eval_score").fetchone()[0]
        latest = db.execute("SELECT approach, status FROM v_eval_latest ORDER BY approach").fetchall()
    say(f"  warehouse {shown(OUT / 'warehouse.db')}: {runs} eval_run rows, {scores} eval_score rows; "
        f"latest status {', '.join(f'{a} {s}' for a, s in latest)}")


if __name__ == "__main__":
    sys.exit(main())

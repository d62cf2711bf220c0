"""``make demo``: the offline bake-off on the local AWS (exit 0 only if every DAG run succeeded).

KB sync of the sample catalog -> monthly fine-tune -> weekly evaluation of the three approaches; prints the
comparison table and leaves out/summary_results.csv, out/report.html and out/warehouse.db.

``make demo CATALOG=path/to/catalog.txt QA=path/to/test.json`` (``python -m devstack.demo --catalog ... --qa ...``)
runs the same bake-off on your own files. Both are validated first, the QA set's product names against the
catalog: a bad file stops the demo with the validators' messages (exit 2) before anything starts or any model
is called.

It also records its own timings in out/timings.json (wall time of each phase and DAG run, start/end/duration of
every task instance, peak RSS of this process and of the local AWS child) and prints a one-line summary;
``make bench`` reads that file. ``TAILOR_DEMO_EXTRA_EVALUATION=N`` (used by ``make bench`` only) also runs
weekly_evaluation on the first N questions, before the full one, for the benchmark's scaling fit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
SAMPLE_QA = REPO / "include" / "data" / "qa" / "test.json"
#: Where the demo puts a user's QA set in the local bucket (weekly_evaluation reads datasets from S3 or include/).
QA_KEY = "qa/demo/{name}"
TIMINGS = OUT / "timings.json"
EXTRA_EVALUATION = "TAILOR_DEMO_EXTRA_EVALUATION"
JUDGE = "amazon.nova-pro-v1:0"


def _rss_mb(pid: int | None = None, field: str = "VmRSS") -> float | None:
    """A process's resident set (VmRSS) or its peak (VmHWM) in MB, from /proc (None if unavailable)."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _is_training_job(pid: int) -> bool:
    """A local SageMaker training job's child process (``python -m localaws.training``)."""
    try:
        return b"localaws.training" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Recorder:
    """Phase and DAG timings, task-instance durations and peak memory of the demo, for out/timings.json.

    A daemon thread samples every 0.5 s the RSS of this process plus all its descendants (the local AWS, the
    `airflow db migrate` child); the exact per-process peaks are VmHWM (this process: ru_maxrss), read for the
    local AWS just before it stops."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.data: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(), "phases": {},
                                     "dags": [], "cpu_count": os.cpu_count()}
        self.peak_total_mb = 0.0
        self.localaws_pid: int | None = None
        self.localaws_peak_mb: float | None = None
        self.step = "start"  # what runs now (a phase or a DAG run): the samples' label
        #: step -> {"together": peak MB, "localaws": peak MB}, sampled: which step grows the memory
        self.by_step: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True, name="rss-sampler").start()

    def _pids(self) -> list[int]:
        """This process and its descendants (children's children included), from /proc."""
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, []))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = {pid: _rss_mb(pid) or 0.0 for pid in self._pids()}
            except OSError:
                continue
            total = sum(rss.values())
            self.peak_total_mb = max(self.peak_total_mb, total)
            peaks = self.by_step.setdefault(self.step, {"together": 0.0, "localaws": 0.0})
            peaks["together"] = max(peaks["together"], total)
            peaks["demo"] = max(peaks.get("demo", 0.0), rss.get(os.getpid(), 0.0))
            training = sum(mb for pid, mb in rss.items() if _is_training_job(pid))
            peaks["training_job"] = max(peaks.get("training_job", 0.0), training)
            if self.localaws_pid:
                self.localaws_peak_mb = _rss_mb(self.localaws_pid, "VmHWM") or self.localaws_peak_mb
                peaks["localaws"] = max(peaks["localaws"], _rss_mb(self.localaws_pid) or 0.0)

    def find_localaws(self) -> None:
        """The local AWS child's pid (the `python -m localaws serve` among our children)."""
        for pid in self._pids()[1:]:
            try:
                if b"localaws\x00serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self.localaws_pid = pid
            except OSError:
                continue

    @contextmanager
    def labelled(self, step: str) -> Any:
        """Label the memory samples taken meanwhile with ``step``."""
        before, self.step = self.step, step
        try:
            yield
        finally:
            self.step = before

    @contextmanager
    def phase(self, name: str) -> Any:
        started = time.monotonic()
        try:
            with self.labelled(name):
                yield
        finally:
            self.data["phases"][name] = round(time.monotonic() - started, 2)

    def dag(self, name: str, run: Any, seconds: float, conf: dict[str, Any] | None) -> None:
        tasks = []
        for ti in sorted(run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date)):
            tasks.append({"task_id": ti.task_id, "map_index": ti.map_index, "label": ti.rendered_map_index,
                          "state": str(ti.state), "try_number": ti.try_number,
                          "start": ti.start_date.isoformat() if ti.start_date else None,
                          "end": ti.end_date.isoformat() if ti.end_date else None,
                          "duration_s": ti.duration})
        self.data["dags"].append({"dag_id": name, "run_id": run.run_id, "state": str(run.state),
                                  "conf": conf or {}, "wall_s": round(seconds, 2), "tasks": tasks})

    def write(self) -> dict[str, Any]:
        self._stop.set()
        if self.localaws_pid:  # still running here (read before the local AWS stops)
            self.localaws_peak_mb = _rss_mb(self.localaws_pid, "VmHWM") or self.localaws_peak_mb
        self.data |= {
            "total_s": round(time.monotonic() - self.started, 2),
            "peak_rss_mb": {"demo": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                            "localaws": round(self.localaws_peak_mb or 0),
                            "together_sampled": round(self.peak_total_mb)},
            "peak_rss_by_step_mb": {step: {k: round(v) for k, v in peaks.items()}
                                    for step, peaks in self.by_step.items()},
        }
        OUT.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps(self.data, indent=1))
        return self.data

    def summary(self) -> str:
        dags = ", ".join(f"{d['dag_id']}{'@' + str(d['conf']['sample_limit']) if 'sample_limit' in d['conf'] else ''}"
                         f" {d['wall_s']:.0f} s" for d in self.data["dags"])
        rss = self.data["peak_rss_mb"]
        return (f"timings: {dags}; total {self.data['total_s']:.0f} s; peak RSS demo {rss['demo']} MB, local AWS "
                f"{rss['localaws']} MB, together {rss['together_sampled']} MB (sampled) -> {TIMINGS}")


RECORDER: Recorder | None = None


def _run(name: str, conf: dict[str, Any] | None = None) -> Any:
    started = time.monotonic()
    with RECORDER.labelled(name) if RECORDER is not None else nullcontext():
        run = run_dag(name, conf)
    print(f"\n=== {name}: {run.state} in {time.monotonic() - started:.0f} s (run {run.run_id})", flush=True)
    if RECORDER is not None:
        RECORDER.dag(name, run, time.monotonic() - started, conf)
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if str(ti.state) == "failed"]
        print(f"failed tasks: {failed}; see the log above and out/localaws.log")
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


def main(argv: list[str] | None = None) -> int:
    global RECORDER
    args = parse_args(argv)
    inputs = check_inputs(args.catalog.resolve(), args.qa.resolve() if args.qa else None)
    RECORDER = Recorder()
    try:
        return _bake_off(RECORDER, inputs)
    finally:
        RECORDER.write()
        print(RECORDER.summary(), flush=True)


def _bake_off(recorder: Recorder, inputs: Inputs) -> int:
    OUT.mkdir(exist_ok=True)
    (OUT / "warehouse.db").unlink(missing_ok=True)  # the demo's warehouse holds this demo's runs
    os.environ.update(airflow_env(REPO / ".airflow"))
    from localaws.process import LocalAWSProcess

    started = time.monotonic()
    with LocalAWSProcess(log_path=OUT / "localaws.log", env=LOCALAWS_SCALE) as aws:
        recorder.find_localaws()
        try:
            with recorder.phase("setup"):  # local AWS start (above) is in the total, not in this phase
                stack = bootstrap(aws.endpoint_url, warehouse_path=OUT / "warehouse.db")
                os.environ.update(stack.env())
                print(f"local AWS on {aws.endpoint_url}: {stack.resources}")
                if inputs.qa is not None:  # the user's QA set is the test set of every DAG (leak check included)
                    qa_key = QA_KEY.format(name=inputs.qa.name)
                    stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=qa_key,
                                                  Body=inputs.qa.read_bytes())
                    os.environ["TAILOR__QA__TEST_SET"] = f"s3://{stack.resources['bucket']}/{qa_key}"
                migrate_airflow_db(os.environ.copy())

            key = "catalog/incoming/" + inputs.catalog.name
            stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=inputs.catalog.read_bytes())
            if _run("catalog_kb_sync", {"catalog_key": key}).state != "success":
                return 1
            with recorder.phase("report_kb"):
                report_kb(stack, inputs.first_question)
            finetune = _run("monthly_finetune")
            if finetune.state != "success":
                return 1
            with recorder.phase("report_finetune"):
                report_finetune(stack, finetune.run_id, inputs.first_question)
            # One judge id locally: every local judge is the same 135M model, so a second one would only double
            # the slowest stage (the DAG's default and the tests use two; production uses three model families).
            if extra := int(os.environ.get(EXTRA_EVALUATION) or 0):  # make bench's scaling fit, never the demo
                if _run("weekly_evaluation", {"judge_models": [JUDGE], "sample_limit": extra}).state != "success":
                    return 1
            evaluation = _run("weekly_evaluation", {"judge_models": [JUDGE]})
            if evaluation.state != "success":
                return 1
            with recorder.phase("report_evaluation"):
                report_evaluation(stack, evaluation.run_id)
        finally:
            recorder.write()  # reads the local AWS's peak memory while it still runs
    print(f"\nbake-off finished in {time.monotonic() - started:.0f} s; outputs in {OUT}")
    return 0


def _s3_json(stack: Stack, key: str) -> Any:
    return json.loads(stack.client("s3").get_object(Bucket=stack.resources["bucket"], Key=key)["Body"].read())


def report_kb(stack: Stack, question: str) -> None:
    marker = _s3_json(stack, "catalog/current.json")
    print(f"Knowledge Base {stack.resources['knowledge_base_id']} holds catalog version "
          f"{marker['catalog_version']} ({marker['products']} products), ingestion job {marker['ingestion_job_id']}")
    top = stack.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=stack.resources["knowledge_base_id"], retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 1}},
    )["retrievalResults"][0]
    print(f"Retrieve {question!r}\n  top hit ({top['score']:.3f}, {top['metadata'].get('product_name')}): "
          f"{top['content']['text'][:160]}...")


def report_finetune(stack: Stack, run_id: str, question: str) -> None:
    from tailor.config import load_settings
    from tailor.generation import invoke_jumpstart
    from tailor.prompts import BASE, endpoint_prompt, endpoint_stop_sequences, served_method
    from tailor.training_data import job_name_for

    ft = load_settings().finetune
    sagemaker, runtime = stack.client("sagemaker"), stack.client("sagemaker-runtime")
    job = sagemaker.describe_training_job(TrainingJobName=job_name_for(run_id))
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    print(f"training job {job['TrainingJobName']}: {job['TrainingJobStatus']}, {job['BillableTimeInSeconds']} "
          f"billable s, catalog loss {metrics.get('train:base_loss', 0):.3f} -> {metrics.get('train:loss', 0):.3f}")
    print(f"champion endpoint {ft.champion_endpoint}: "
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
        print(f"  {label:>10}: {answer.text!r}")
    sagemaker.delete_endpoint(EndpointName=base)


def report_evaluation(stack: Stack, run_id: str) -> None:
    import sqlite3

    from tailor.config import load_settings
    from tailor_airflow.evaluation import run_prefix

    prefix = run_prefix(load_settings().evaluation.output_prefix, run_id)
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    for name in ("summary_results.csv", "report.html"):
        s3.download_file(bucket, prefix + name, str(OUT / name))
    print(f"\n{(OUT / 'summary_results.csv').read_text()}")
    with sqlite3.connect(OUT / "warehouse.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM eval_run").fetchone()[0]
        scores = db.execute("SELECT COUNT(*) FROM eval_score").fetchone()[0]
        latest = db.execute("SELECT approach, status FROM v_eval_latest ORDER BY approach").fetchall()
    print(f"warehouse out/warehouse.db: {runs} eval_run rows, {scores} eval_score rows; v_eval_latest: {latest}")
    print(f"wrote {OUT / 'summary_results.csv'} and {OUT / 'report.html'} (s3://{bucket}/{prefix})")


if __name__ == "__main__":
    sys.exit(main())

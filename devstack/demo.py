"""``make demo``: the offline bake-off on the local AWS (exit 0 only if every DAG run succeeded).

KB sync of the sample catalog -> monthly fine-tune -> weekly evaluation of the three approaches; prints the
comparison table and leaves out/summary_results.csv, out/report.html and out/warehouse.db.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from devstack.stack import REPO, Stack, airflow_env, bootstrap, migrate_airflow_db, run_dag

OUT = REPO / "out"
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
QUESTION = "What is the maximum bowl fill of the Vortex Mixer VM-200?"


def _run(name: str, conf: dict[str, Any] | None = None) -> Any:
    started = time.monotonic()
    run = run_dag(name, conf)
    print(f"\n=== {name}: {run.state} in {time.monotonic() - started:.0f} s (run {run.run_id})", flush=True)
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if str(ti.state) == "failed"]
        print(f"failed tasks: {failed}; see the log above and out/localaws.log")
    return run


def main() -> int:
    OUT.mkdir(exist_ok=True)
    (OUT / "warehouse.db").unlink(missing_ok=True)  # the demo's warehouse holds this demo's runs
    os.environ.update(airflow_env(REPO / ".airflow"))
    from localaws.process import LocalAWSProcess

    started = time.monotonic()
    with LocalAWSProcess(log_path=OUT / "localaws.log") as aws:
        stack = bootstrap(aws.endpoint_url, warehouse_path=OUT / "warehouse.db")
        os.environ.update(stack.env())
        print(f"local AWS on {aws.endpoint_url}: {stack.resources}")
        migrate_airflow_db(os.environ.copy())

        key = "catalog/incoming/" + SAMPLE_CATALOG.name
        stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=SAMPLE_CATALOG.read_bytes())
        if _run("catalog_kb_sync", {"catalog_key": key}).state != "success":
            return 1
        report_kb(stack)
        finetune = _run("monthly_finetune")
        if finetune.state != "success":
            return 1
        report_finetune(stack, finetune.run_id)
        # One judge id locally: every local judge is the same 135M model, so a second one would only double
        # the slowest stage (the DAG's default and the tests use two; production uses three model families).
        evaluation = _run("weekly_evaluation", {"judge_models": ["anthropic.claude-3-5-haiku-20241022-v1:0"]})
        if evaluation.state != "success":
            return 1
        report_evaluation(stack, evaluation.run_id)
    print(f"\nbake-off finished in {time.monotonic() - started:.0f} s; outputs in {OUT}")
    return 0


def _s3_json(stack: Stack, key: str) -> Any:
    return json.loads(stack.client("s3").get_object(Bucket=stack.resources["bucket"], Key=key)["Body"].read())


def report_kb(stack: Stack) -> None:
    marker = _s3_json(stack, "catalog/current.json")
    print(f"Knowledge Base {stack.resources['knowledge_base_id']} holds catalog version "
          f"{marker['catalog_version']} ({marker['products']} products), ingestion job {marker['ingestion_job_id']}")
    top = stack.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=stack.resources["knowledge_base_id"], retrievalQuery={"text": QUESTION},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 1}},
    )["retrievalResults"][0]
    print(f"Retrieve {QUESTION!r}\n  top hit ({top['score']:.3f}, {top['metadata'].get('product_name')}): "
          f"{top['content']['text'][:160]}...")


def report_finetune(stack: Stack, run_id: str) -> None:
    from tailor.config import load_settings
    from tailor.generation import invoke_jumpstart
    from tailor.prompts import SYSTEM, llama3_chat
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
                           PrimaryContainer={"Image": ft.inference_image_uri, "ModelDataUrl": ft.base_model_uri})
    sagemaker.create_endpoint_config(EndpointConfigName=base, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": base, "InitialInstanceCount": 1,
        "InstanceType": ft.endpoint_instance_type}])
    sagemaker.create_endpoint(EndpointName=base, EndpointConfigName=base)
    prompt = llama3_chat(SYSTEM, QUESTION)
    for label, endpoint in (("fine-tuned", ft.champion_endpoint), ("base", base)):
        answer = invoke_jumpstart(runtime, endpoint, prompt, max_new_tokens=60)
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

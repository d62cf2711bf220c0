"""What several end-to-end files share: S3/Knowledge Base look-ups, DAG run summaries, and the idempotent
"check, then fix" steps behind the shared fixtures of ``tests/e2e/conftest.py`` (no test module imports another).
"""

from __future__ import annotations

import json
import time
from typing import Any

from devstack.stack import BASE_MODEL_URI, Stack, run_dag
from tests.conftest import SAMPLE_CATALOG

INCOMING = "catalog/incoming/"
CHAMPION = "tailor-finetuned-champion"
BASE_CHAMPION = "tailor-e2e-base-champion"  # model + endpoint config of a stand-in champion (the base model)
TRAINING_FIXTURE = "tailor-e2e-completed-job"  # a small training job, when no fine-tune has run in this session


def _drop(stack: Stack, name: str, body: bytes) -> str:
    key = INCOMING + name
    stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=body)
    return key


def _marker(stack: Stack) -> dict | None:
    s3 = stack.client("s3")
    try:
        body = s3.get_object(Bucket=stack.resources["bucket"], Key="catalog/current.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def _kb_data(stack: Stack) -> dict[str, str]:
    listing = stack.client("s3").list_objects_v2(Bucket=stack.resources["bucket"], Prefix="kb-data/")
    return {o["Key"]: o["ETag"] for o in listing.get("Contents", [])}


def _ingestion_jobs(stack: Stack) -> list[dict]:
    """The data source's ingestion jobs, newest first."""
    return stack.client("bedrock-agent").list_ingestion_jobs(
        knowledgeBaseId=stack.resources["knowledge_base_id"], dataSourceId=stack.resources["data_source_id"]
    )["ingestionJobSummaries"]


def _retrieve(stack: Stack, question: str, k: int = 3, search_type: str = "HYBRID") -> list[dict]:
    return stack.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=stack.resources["knowledge_base_id"],
        retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": k,
                                                              "overrideSearchType": search_type}},
    )["retrievalResults"]


def _task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _tries(run: Any) -> dict[str, int]:
    return {ti.task_id: ti.try_number for ti in run.get_task_instances()}


def sample_version() -> str:
    from tailor.catalog import validate_file

    return validate_file(SAMPLE_CATALOG).version


def sync_sample(stack: Stack) -> Any:
    """Drop the sample catalog and run ``catalog_kb_sync`` on it (asserted successful) -> the DagRun."""
    run = run_dag("catalog_kb_sync", {"catalog_key": _drop(stack, SAMPLE_CATALOG.name, SAMPLE_CATALOG.read_bytes())})
    assert run.state == "success", _task_states(run)
    return run


def ensure_sample_synced(stack: Stack) -> dict:
    """The sample catalog's version is the one the Knowledge Base holds (synced only if it is not) -> the marker."""
    marker = _marker(stack)
    if marker is None or marker["catalog_version"] != sample_version():
        sync_sample(stack)
        marker = _marker(stack)
        assert marker is not None and marker["catalog_version"] == sample_version(), marker
    return marker


def ensure_champion(stack: Stack) -> str:
    """The champion endpoint InService: the one in place (a promoted fine-tune, waited for if Creating/Updating),
    else a stand-in on the base model (created, or re-created if Failed) -> its name."""
    from tailor.config import load_settings
    from tailor.endpoints import (
        TRANSITIONAL,
        Waiting,
        delete_endpoint,
        describe_endpoint,
        ensure_endpoint,
        ensure_endpoint_config,
        ensure_model,
    )

    sagemaker = stack.client("sagemaker")
    waiting = Waiting(poll=0.5, timeout=120, log=lambda _: None)
    found = describe_endpoint(sagemaker, CHAMPION)
    if found is not None and found["EndpointStatus"] in TRANSITIONAL:  # e.g. re-created by a test's clean-up
        found = ensure_endpoint(sagemaker, CHAMPION, found["EndpointConfigName"], waiting)
    if found is None or found["EndpointStatus"] != "InService":
        ft = load_settings().finetune
        ensure_model(sagemaker, {"ModelName": BASE_CHAMPION, "ExecutionRoleArn": ft.role_arn, "PrimaryContainer": {
            "Image": ft.inference_image_uri, "ModelDataUrl": BASE_MODEL_URI}})
        ensure_endpoint_config(sagemaker, {"EndpointConfigName": BASE_CHAMPION, "ProductionVariants": [{
            "VariantName": "AllTraffic", "ModelName": BASE_CHAMPION, "InitialInstanceCount": 1,
            "InstanceType": ft.endpoint_instance_type}]})
        delete_endpoint(sagemaker, CHAMPION, waiting)
        ensure_endpoint(sagemaker, CHAMPION, BASE_CHAMPION, waiting)
    return CHAMPION


def ensure_completed_training_job(stack: Stack) -> str:
    """The name of a Completed training job: one a fine-tune left, else a small job on a slice of the sample
    catalog (the request monthly_finetune builds, one epoch), started and awaited here."""
    import boto3

    from tailor.aws_errors import describe_or_none
    from tailor.config import load_settings
    from tailor.jumpstart import SageMakerCoreSDK
    from tailor.training_data import training_request

    sagemaker = stack.client("sagemaker")
    done = sagemaker.list_training_jobs(StatusEquals="Completed")["TrainingJobSummaries"]
    if done:
        return done[0]["TrainingJobName"]
    ft, bucket = load_settings().finetune, stack.resources["bucket"]
    prefix = f"finetune/{TRAINING_FIXTURE}/"
    stack.client("s3").put_object(Bucket=bucket, Key=prefix + "training/catalog.txt",
                                  Body=SAMPLE_CATALOG.read_text()[:4000].encode())
    if describe_or_none(lambda: sagemaker.describe_training_job(TrainingJobName=TRAINING_FIXTURE),
                        "training job") is None:
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="localaws",
                                aws_secret_access_key="localaws")
        request, _ = training_request(
            ft, sdk=SageMakerCoreSDK(session, s3_client=stack.client("s3")), region="us-east-1",
            role_arn=ft.role_arn, job_name=TRAINING_FIXTURE, method="domain_adaptation",
            train_uri=f"s3://{bucket}/{prefix}training/", output_uri=f"s3://{bucket}/{prefix}output",
            epochs=1, learning_rate=ft.learning_rate, instance_type=ft.training_instance_type)
        sagemaker.create_training_job(**request)
    deadline = time.monotonic() + 600  # a liveness bound for the polling loop, not a timing assertion
    while (job := sagemaker.describe_training_job(TrainingJobName=TRAINING_FIXTURE))["TrainingJobStatus"] \
            == "InProgress" and time.monotonic() < deadline:
        time.sleep(1)
    assert job["TrainingJobStatus"] == "Completed", job
    return TRAINING_FIXTURE


def airflow_policy(stack: Stack) -> dict:
    """``include/iam/airflow-role-policy.json`` rendered for the local stack."""
    from pathlib import Path

    from localaws.calls import ACCOUNT
    from tailor.config import settings
    from tests.iam_policy import AIRFLOW_POLICY, render

    values = {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, "BucketName": stack.resources["bucket"],
              "CatalogQueueName": stack.resources["queue_url"].rstrip("/").rsplit("/", 1)[-1],
              "KnowledgeBaseId": stack.resources["knowledge_base_id"],
              "SageMakerExecutionRoleName": settings().finetune.role_arn.rsplit("/", 1)[-1]}
    return json.loads(render(Path(AIRFLOW_POLICY).read_text(), values))


def denied_calls(policy: dict, calls: list[dict]) -> list[tuple[str, str, str]]:
    """The recorded calls (``Stack.recorded_calls``) the policy would not allow: (action, resource, request)."""
    from tests.iam_policy import allowed

    checked: dict[tuple[str, str, str], bool] = {}
    for c in calls:
        key = (c["action"], c["resource"], json.dumps(c["context"], sort_keys=True))
        if key not in checked:
            checked[key] = allowed(policy, c["action"], c["resource"], c["context"])
    return sorted({(c["action"], c["resource"], c["request"]) for c in calls
                   if not checked[(c["action"], c["resource"], json.dumps(c["context"], sort_keys=True))]})

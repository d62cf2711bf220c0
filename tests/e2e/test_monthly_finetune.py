"""End to end: monthly_finetune through the local AWS (a real small fine-tune behind CreateTrainingJob).

Runs after the catalog sync tests (file order), so a catalog version is in the Knowledge Base.
"""

from __future__ import annotations

import json

import pytest

from devstack.stack import Stack, run_dag
from tests.e2e.test_catalog_kb_sync import _task_states

pytestmark = pytest.mark.e2e
CHAMPION = "tailor-finetuned-champion"


def _lineage(stack: Stack, job_name: str) -> dict:
    body = stack.client("s3").get_object(Bucket=stack.resources["bucket"],
                                         Key=f"finetune/{job_name}/lineage.json")["Body"].read()
    return json.loads(body)


def _endpoints(stack: Stack) -> dict[str, str]:
    return {e["EndpointName"]: e["EndpointStatus"]
            for e in stack.client("sagemaker").list_endpoints()["Endpoints"]}


def test_finetune_trains_deploys_and_promotes(local_aws: Stack, airflow_db) -> None:
    from tailor.training_data import job_name_for

    run = run_dag("monthly_finetune")
    assert run.state == "success", _task_states(run)
    job_name = job_name_for(run.run_id)
    sagemaker = local_aws.client("sagemaker")
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    assert job["TrainingJobStatus"] == "Completed" and job["BillableTimeInSeconds"] > 0
    assert [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
            if j["TrainingJobName"] == job_name] == [job_name]
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    drop = 1 - metrics["train:loss"] / metrics["train:base_loss"]
    print(f"\nlocal fine-tune: catalog loss {metrics['train:base_loss']:.3f} -> {metrics['train:loss']:.3f} "
          f"({drop:.1%} lower), {job['BillableTimeInSeconds']} billable s")
    assert drop >= 0.20, "the fine-tuned model must have learned the catalog (loss -20 % or more)"

    endpoints = _endpoints(local_aws)
    assert endpoints.get(CHAMPION) == "InService"
    assert f"{job_name}-challenger" not in endpoints, "the challenger endpoint must be torn down"
    assert sagemaker.describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"] == job_name

    from tailor.generation import invoke_jumpstart
    from tailor.prompts import SYSTEM, llama3_chat

    answer = invoke_jumpstart(local_aws.client("sagemaker-runtime"), CHAMPION,
                              llama3_chat(SYSTEM, "What is the bowl capacity of the Vortex Mixer VM-200?"),
                              max_new_tokens=40)
    print(f"champion answer: {answer.text!r} ({answer.latency_ms:.0f} ms)")
    assert answer.text and answer.latency_ms > 0

    lineage = _lineage(local_aws, job_name)
    assert lineage["status"] == "promoted" and lineage["decision"]["promoted"] is True
    assert lineage["training_status"] == "Completed" and lineage["catalog_version"]
    assert lineage["hyperparameters"]["epoch"] == "2"
    champion = json.loads(local_aws.client("s3").get_object(
        Bucket=local_aws.resources["bucket"], Key="finetune/champion.json")["Body"].read())
    assert champion["job_name"] == job_name


def test_failed_training_fails_the_run_and_leaves_nothing_running(local_aws: Stack, airflow_db) -> None:
    from tailor.training_data import job_name_for

    before = local_aws.client("sagemaker").describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"]
    local_aws.arm_fault("sagemaker:training", "AlgorithmError", message="AlgorithmError: CUDA out of memory")
    run = run_dag("monthly_finetune")
    states = _task_states(run)
    assert run.state == "failed" and states["train"] == "failed", states
    assert states["create_model"] == "upstream_failed"
    assert states["teardown_challenger"] == "success"
    job_name = job_name_for(run.run_id)
    jobs = [j for j in local_aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
            if j["TrainingJobName"] == job_name]
    assert len(jobs) == 1, "task retries must re-attach to the failed job, never start a second one"
    assert f"{job_name}-challenger" not in _endpoints(local_aws)
    assert local_aws.client("sagemaker").describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"] == before
    lineage = _lineage(local_aws, job_name)
    assert lineage["status"] == "failed"
    assert lineage["failure_reason"] == "AlgorithmError: CUDA out of memory"


def test_failed_challenger_endpoint_is_cleaned_up_and_the_champion_untouched(local_aws: Stack, airflow_db) -> None:
    from tailor.training_data import job_name_for

    sagemaker = local_aws.client("sagemaker")
    before = sagemaker.describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"]
    local_aws.arm_fault("sagemaker:CreateEndpoint", "CapacityError",
                        message="Unable to provision requested ML compute capacity")
    run = run_dag("monthly_finetune", {"epochs": 1})
    states = _task_states(run)
    assert run.state == "failed" and states["deploy_challenger"] == "failed", states
    assert states["promote"] == "upstream_failed" and states["teardown_challenger"] == "success"
    job_name = job_name_for(run.run_id)
    assert f"{job_name}-challenger" not in _endpoints(local_aws), "a failed challenger must not be left behind"
    assert sagemaker.describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"] == before
    assert _lineage(local_aws, job_name)["status"] == "failed"


def test_no_synced_catalog_fails_before_any_training_job(local_aws: Stack, airflow_db) -> None:
    s3, bucket = local_aws.client("s3"), local_aws.resources["bucket"]
    marker = s3.get_object(Bucket=bucket, Key="catalog/current.json")["Body"].read()
    jobs_before = len(local_aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"])
    s3.delete_object(Bucket=bucket, Key="catalog/current.json")
    try:
        run = run_dag("monthly_finetune")
        states = _task_states(run)
        assert run.state == "failed" and states["prepare_training_data"] == "failed", states
        assert states["train"] == "upstream_failed"
        assert len(local_aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]) == jobs_before
    finally:
        s3.put_object(Bucket=bucket, Key="catalog/current.json", Body=marker)

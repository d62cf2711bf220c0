"""End to end: monthly_finetune through the local AWS (a real small fine-tune behind CreateTrainingJob).

The shared fixtures (tests/e2e/conftest.py) give each test its state, whatever ran before: ``synced_kb`` the sample
catalog in the Knowledge Base, ``champion_endpoint`` a champion InService (the promoted fine-tune, else the base
model), ``faults`` a disarmed fault switch; ``no_champion`` makes the first test a first deployment.
"""

from __future__ import annotations

import json

import pytest

from devstack.stack import Stack, run_dag
from tests.e2e.helpers import CHAMPION, _task_states, _tries

pytestmark = pytest.mark.e2e
ROLLBACK_REASON = ("The primary container for production variant AllTraffic did not pass the ping health check. "
                   "Please check CloudWatch logs for this endpoint.")


@pytest.fixture
def no_champion(local_aws: Stack) -> None:
    """The first deployment: no champion endpoint yet (other files may have left one; the run promotes its own,
    and ``champion_endpoint`` re-establishes one for later tests if this one fails)."""
    from tailor.endpoints import Waiting, delete_endpoint

    delete_endpoint(local_aws.client("sagemaker"), CHAMPION, Waiting(poll=0.5, timeout=120, log=lambda _: None))


def _lineage(stack: Stack, job_name: str) -> dict:
    body = stack.client("s3").get_object(Bucket=stack.resources["bucket"],
                                         Key=f"finetune/{job_name}/lineage.json")["Body"].read()
    return json.loads(body)


def _endpoints(stack: Stack) -> dict[str, str]:
    return {e["EndpointName"]: e["EndpointStatus"]
            for e in stack.client("sagemaker").list_endpoints()["Endpoints"]}


def _champion_pointer(stack: Stack) -> bytes | None:
    s3 = stack.client("s3")
    try:
        return s3.get_object(Bucket=stack.resources["bucket"], Key="finetune/champion.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def _finetuned_model_events(run_id: str) -> list[dict]:
    """The ``finetuned-model`` asset events this run emitted (Airflow's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                  .filter(AssetModel.name == "finetuned-model", AssetEvent.source_run_id == run_id).all())
        return [dict(e.extra or {}) for e in events]


def test_finetune_trains_deploys_and_promotes(local_aws: Stack, airflow_db, synced_kb: dict,
                                              no_champion: None) -> None:
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
    described = sagemaker.describe_endpoint(EndpointName=CHAMPION)
    assert described["EndpointConfigName"] == job_name and "FailureReason" not in described

    from tailor.generation import invoke_jumpstart
    from tailor.prompts import endpoint_prompt

    pointer = _champion_pointer(local_aws)
    assert pointer is not None, "no champion pointer"
    method = json.loads(pointer)["method"]
    assert method == "domain_adaptation"  # the configured method, recorded so the weekly run prompts it alike
    answer = invoke_jumpstart(local_aws.client("sagemaker-runtime"), CHAMPION,
                              endpoint_prompt(method, "What is the bowl capacity of the Vortex Mixer VM-200?"),
                              max_new_tokens=40)
    print(f"champion answer: {answer.text!r} ({answer.latency_ms:.0f} ms)")
    assert answer.text and answer.latency_ms > 0

    lineage = _lineage(local_aws, job_name)
    assert lineage["status"] == "promoted" and lineage["decision"]["promoted"] is True
    assert lineage["decision"]["endpoint_config_name"] == job_name and lineage["challenger_endpoint_gone"] is True
    assert _finetuned_model_events(run.run_id) == [{"job_name": job_name, "endpoint_name": CHAMPION}]
    assert lineage["training_status"] == "Completed" and lineage["catalog_version"]
    assert lineage["hyperparameters"]["epoch"] == "2"
    champion = json.loads(local_aws.client("s3").get_object(
        Bucket=local_aws.resources["bucket"], Key="finetune/champion.json")["Body"].read())
    assert champion["job_name"] == job_name


def test_failed_training_fails_the_run_and_leaves_nothing_running(local_aws: Stack, faults: Stack, synced_kb: dict,
                                                                  champion_endpoint: str) -> None:
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


def test_failed_challenger_endpoint_is_cleaned_up_and_the_champion_untouched(
        local_aws: Stack, faults: Stack, synced_kb: dict, champion_endpoint: str) -> None:
    """Every try's endpoint fails (1 + 2 retries): each retry deletes the Failed one before creating it again,
    the last one is deleted by the teardown."""
    from tailor.training_data import job_name_for

    sagemaker = local_aws.client("sagemaker")
    before = sagemaker.describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"]
    local_aws.arm_fault("sagemaker:CreateEndpoint", "CapacityError", count=3,
                        message="Unable to provision requested ML compute capacity")
    run = run_dag("monthly_finetune", {"epochs": 1})
    states = _task_states(run)
    assert run.state == "failed" and states["deploy_challenger"] == "failed", states
    assert _tries(run)["deploy_challenger"] == 3 and _tries(run)["create_model"] == 1
    assert local_aws.fault_state()["fired"] == {"sagemaker:CreateEndpoint": 3}
    assert states["promote"] == "upstream_failed" and states["teardown_challenger"] == "success"
    job_name = job_name_for(run.run_id)
    assert f"{job_name}-challenger" not in _endpoints(local_aws), "a failed challenger must not be left behind"
    assert sagemaker.describe_endpoint(EndpointName=CHAMPION)["EndpointConfigName"] == before
    assert _lineage(local_aws, job_name)["status"] == "failed"


def test_a_retried_deploy_recovers_and_a_rolled_back_promotion_is_recorded_as_rolled_back(
        local_aws: Stack, faults: Stack, synced_kb: dict, champion_endpoint: str) -> None:
    """One fine-tune run, two of AWS's behaviours (one run instead of two: each costs a training job):

    * the first try's challenger ends Failed (no capacity); the retry finds it under its own name, deletes it and
      creates it again, and the run goes on;
    * AWS accepts the blue/green UpdateEndpoint of the champion, the new fleet fails, the endpoint returns to
      InService on the OLD config with a FailureReason. ``promote`` must see that: the task fails (once: no retry
      pays for another fleet), the lineage says rolled_back, champion.json and the finetuned-model asset stay as
      they were. (A confirmed update is covered against the local AWS in tests/localaws/test_endpoints.py.)"""
    from tailor.training_data import job_name_for

    sagemaker = local_aws.client("sagemaker")
    before, pointer = sagemaker.describe_endpoint(EndpointName=champion_endpoint)["EndpointConfigName"], \
        _champion_pointer(local_aws)
    local_aws.arm_fault("sagemaker:CreateEndpoint", "CapacityError",
                        message="Unable to provision requested ML compute capacity")
    local_aws.arm_fault("sagemaker:UpdateEndpoint", "UpdateFailed", message=ROLLBACK_REASON)
    run = run_dag("monthly_finetune", {"epochs": 1, "promote": "always"})
    states, tries = _task_states(run), _tries(run)
    assert run.state == "failed" and states["promote"] == "failed", states
    assert tries["deploy_challenger"] == 2 and tries["create_model"] == 1, tries
    assert states["smoke_test"] == states["evaluate_challenger"] == "success", states
    assert tries["promote"] == 1, "a rollback is an outcome, not a transient error: no retry"
    assert states["teardown_challenger"] == "success"
    assert local_aws.fault_state()["fired"] == {"sagemaker:CreateEndpoint": 1, "sagemaker:UpdateEndpoint": 1}
    job_name = job_name_for(run.run_id)
    described = sagemaker.describe_endpoint(EndpointName=champion_endpoint)
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == before
    assert described["FailureReason"] == ROLLBACK_REASON
    lineage = _lineage(local_aws, job_name)
    assert lineage["status"] == "rolled_back"
    decision = lineage["decision"]
    assert decision["promote"] is True and decision["promoted"] is False and decision["outcome"] == "rolled_back"
    assert decision["endpoint_config_name"] == before and decision["failure_reason"] == ROLLBACK_REASON
    assert decision["actions"] == ["update"]
    assert _champion_pointer(local_aws) == pointer, "champion.json must not name a model that is not serving"
    assert _finetuned_model_events(run.run_id) == []
    assert f"{job_name}-challenger" not in _endpoints(local_aws)


def test_no_synced_catalog_fails_before_any_training_job(local_aws: Stack, synced_kb: dict) -> None:
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

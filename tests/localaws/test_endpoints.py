"""SageMaker hosting in the local AWS, as strict as AWS (sources in ``localaws/sagemaker.py``, ``# --- hosting``):
names are unique, CreateEndpoint/UpdateEndpoint are asynchronous, an endpoint that is not settled refuses updates
and deletion, a Failed one refuses updates, a failed blue/green update rolls back with a FailureReason; and what
``tailor.endpoints`` (the DAG's deploy/promote/teardown code) does against those rules.

Every test uses its own resource names (a fresh suffix) and disarms faults in a ``finally``: any order, alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.stack import Stack

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tailor-sagemaker-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.29.0-lmi11.0.0-cu124"
BASE = "s3://jumpstart-cache-prod-us-east-1/meta-textgeneration/meta-textgeneration-llama-3-1-8b-instruct/"
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})
SETTLE_SECONDS = 15  # the twin settles in LOCALAWS_ENDPOINT_SECONDS (1 s by default)


@pytest.fixture
def stack(local_aws: Stack) -> Iterator[Stack]:
    local_aws.clear_faults()
    try:
        yield local_aws
    finally:
        local_aws.clear_faults()


@pytest.fixture
def sm(stack: Stack) -> Any:
    return stack.client("sagemaker", config=ONE_ATTEMPT)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def _model(sm: Any, name: str, url: str = BASE + "v1/") -> None:
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url})


def _config(sm: Any, name: str, model: str) -> None:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
        "InstanceType": "ml.g4dn.xlarge"}])


def _model_and_config(sm: Any, prefix: str) -> str:
    name = _name(prefix)
    _model(sm, name)
    _config(sm, name, name)
    return name


def _refused(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return caught.value.response["Error"]


def _settled(sm: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_SECONDS
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] in ("Creating", "Updating"):
        assert time.monotonic() < deadline, f"{name} still {endpoint['EndpointStatus']}"
        time.sleep(0.2)
    return endpoint


def _in_service(sm: Any, prefix: str) -> tuple[str, str]:
    """A new endpoint InService on a new config; returns (endpoint name, config name)."""
    config = _model_and_config(sm, prefix)
    endpoint = _name(prefix + "-ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert _settled(sm, endpoint)["EndpointStatus"] == "InService"
    return endpoint, config


# --- names are unique ------------------------------------------------------------------------------------------


def test_creating_an_existing_model_is_refused_and_keeps_the_first(sm: Any) -> None:
    name = _name("dup-model")
    _model(sm, name, BASE + "first/")
    error = _refused(_model, sm=sm, name=name, url=BASE + "second/")
    assert error == {"Code": "ValidationException",
                     "Message": f'Cannot create already existing model "{_arn("model", name)}".'}
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["ModelDataUrl"] == BASE + "first/"


def test_creating_an_existing_endpoint_config_is_refused_and_keeps_the_first(sm: Any) -> None:
    first, second, name = _name("m1"), _name("m2"), _name("dup-config")
    _model(sm, first)
    _model(sm, second)
    _config(sm, name, first)
    error = _refused(_config, sm=sm, name=name, model=second)
    assert error == {"Code": "ValidationException", "Message":
                     f'Cannot create already existing endpoint configuration "{_arn("endpoint-config", name)}".'}
    variants = sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"]
    assert [v["ModelName"] for v in variants] == [first]


def test_creating_an_existing_endpoint_is_refused(sm: Any) -> None:
    endpoint, config = _in_service(sm, "dup-ep")
    error = _refused(sm.create_endpoint, EndpointName=endpoint, EndpointConfigName=config)
    assert error == {"Code": "ValidationException",
                     "Message": f'Cannot create already existing endpoint "{_arn("endpoint", endpoint)}".'}


# --- missing resources: AWS's messages ------------------------------------------------------------------------


def test_missing_resources_are_validation_exceptions_with_awss_message(sm: Any) -> None:
    missing = _name("missing")
    expected = {
        (sm.describe_endpoint, "EndpointName"): f'Could not find endpoint "{_arn("endpoint", missing)}".',
        (sm.delete_endpoint, "EndpointName"): f'Could not find endpoint "{_arn("endpoint", missing)}".',
        (sm.describe_model, "ModelName"): f'Could not find model "{_arn("model", missing)}".',
        (sm.delete_model, "ModelName"): f'Could not find model "{_arn("model", missing)}".',
        (sm.describe_endpoint_config, "EndpointConfigName"):
            f'Could not find endpoint configuration "{_arn("endpoint-config", missing)}".',
    }
    for (call, key), message in expected.items():
        assert _refused(call, **{key: missing}) == {"Code": "ValidationException", "Message": message}, call
    assert _refused(_config, sm=sm, name=_name("c"), model=missing)["Message"] == \
        f'Could not find model "{_arn("model", missing)}".'
    assert _refused(sm.create_endpoint, EndpointName=_name("e"), EndpointConfigName=missing)["Message"] == \
        f'Could not find endpoint configuration "{_arn("endpoint-config", missing)}".'


def test_update_of_a_missing_endpoint_or_to_a_missing_config_is_refused(sm: Any) -> None:
    endpoint, _ = _in_service(sm, "upd-missing")
    missing = _name("missing")
    assert _refused(sm.update_endpoint, EndpointName=missing, EndpointConfigName=missing)["Message"] == \
        f'Could not find endpoint "{_arn("endpoint", missing)}".'
    assert _refused(sm.update_endpoint, EndpointName=endpoint, EndpointConfigName=missing)["Message"] == \
        f'Could not find endpoint configuration "{_arn("endpoint-config", missing)}".'
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"


# --- asynchrony and in-progress refusals -----------------------------------------------------------------------


def test_create_endpoint_is_creating_then_in_service_and_refuses_update_and_delete_meanwhile(sm: Any) -> None:
    config = _model_and_config(sm, "async-create")
    other = _model_and_config(sm, "async-other")
    endpoint = _name("async-create-ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    in_progress = {"Code": "ValidationException",
                   "Message": f'Cannot update in-progress endpoint "{_arn("endpoint", endpoint)}".'}
    assert _refused(sm.update_endpoint, EndpointName=endpoint, EndpointConfigName=other) == in_progress
    assert _refused(sm.delete_endpoint, EndpointName=endpoint) == in_progress
    settled = _settled(sm, endpoint)
    assert settled["EndpointStatus"] == "InService" and settled["EndpointConfigName"] == config
    sm.delete_endpoint(EndpointName=endpoint)
    assert _refused(sm.describe_endpoint, EndpointName=endpoint)["Message"].startswith("Could not find endpoint")


def test_update_endpoint_is_updating_then_in_service_on_the_new_config(sm: Any) -> None:
    endpoint, old = _in_service(sm, "async-update")
    new = _model_and_config(sm, "async-update-new")
    assert sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new)["EndpointArn"] == \
        _arn("endpoint", endpoint)
    updating = sm.describe_endpoint(EndpointName=endpoint)
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == old, "the old config serves until the new fleet takes over"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == new
    assert _refused(sm.update_endpoint, EndpointName=endpoint, EndpointConfigName=old)["Message"] == \
        f'Cannot update in-progress endpoint "{_arn("endpoint", endpoint)}".'
    assert _refused(sm.delete_endpoint, EndpointName=endpoint)["Message"].startswith(
        "Cannot update in-progress endpoint")
    done = _settled(sm, endpoint)
    assert done["EndpointStatus"] == "InService" and done["EndpointConfigName"] == new
    assert "FailureReason" not in done and "PendingDeploymentSummary" not in done
    assert done["ProductionVariants"][0]["VariantName"] == "AllTraffic"


def test_a_failed_endpoint_refuses_updates_and_can_only_be_deleted(stack: Stack, sm: Any) -> None:
    config = _model_and_config(sm, "failed")
    endpoint = _name("failed-ep")
    stack.arm_fault("sagemaker:CreateEndpoint", "CapacityError", message="Unable to provision capacity")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    failed = _settled(sm, endpoint)
    assert failed["EndpointStatus"] == "Failed" and failed["FailureReason"] == "Unable to provision capacity"
    assert _refused(sm.update_endpoint, EndpointName=endpoint, EndpointConfigName=config) == {
        "Code": "ValidationException", "Message": f'Cannot update failed endpoint "{_arn("endpoint", endpoint)}".'}
    sm.delete_endpoint(EndpointName=endpoint)
    assert endpoint not in [e["EndpointName"] for e in sm.list_endpoints(MaxResults=100)["Endpoints"]]
    assert stack.fault_state()["fired"] == {"sagemaker:CreateEndpoint": 1}


# --- a failed blue/green update rolls back ----------------------------------------------------------------------


def test_update_fault_rolls_back_to_the_old_config_with_a_failure_reason(stack: Stack, sm: Any) -> None:
    endpoint, old = _in_service(sm, "rollback")
    new = _model_and_config(sm, "rollback-new")
    stack.arm_fault("sagemaker:UpdateEndpoint", "UpdateFailed",
                    message="The primary container for production variant AllTraffic did not pass the ping health "
                            "check.")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
    rolled_back = _settled(sm, endpoint)
    assert rolled_back["EndpointStatus"] == "InService", "a failed update leaves the endpoint serving"
    assert rolled_back["EndpointConfigName"] == old
    assert rolled_back["FailureReason"].startswith("The primary container for production variant AllTraffic")
    assert stack.fault_state()["fired"] == {"sagemaker:UpdateEndpoint": 1}
    # the next update succeeds and clears the reason (AWS's controller test does the same sequence)
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new)
    done = _settled(sm, endpoint)
    assert done["EndpointConfigName"] == new and "FailureReason" not in done


def test_an_unarmed_update_does_not_consume_or_fire_the_fault_of_another_endpoint(stack: Stack, sm: Any) -> None:
    endpoint, _ = _in_service(sm, "fault-count")
    new = _model_and_config(sm, "fault-count-new")
    stack.arm_fault("sagemaker:UpdateEndpoint", "UpdateFailed", count=2)
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new)
    assert _settled(sm, endpoint)["FailureReason"] == "injected fault: UpdateFailed"
    assert stack.fault_state()["armed"]["sagemaker:UpdateEndpoint"]["remaining"] == 1


# --- tailor.endpoints (the DAG's code) against these rules ---------------------------------------------------------


def _waiting(timeout: float = SETTLE_SECONDS) -> Any:
    from tailor.endpoints import Waiting

    return Waiting(poll=0.2, timeout=timeout, log=lambda _: None)


def test_ensure_model_and_config_reuse_what_an_earlier_try_created_and_replace_a_different_one(sm: Any) -> None:
    from tailor.endpoints import ensure_endpoint_config, ensure_model

    name = _name("ensure")
    model: dict[str, Any] = {
        "ModelName": name, "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": BASE + "a/", "Environment": {"K": "1"}}}
    config: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.g4dn.xlarge"}]}
    assert ensure_model(sm, model) == "create"
    assert ensure_model(sm, model) == "reuse"  # a retry: AWS would refuse a second CreateModel
    changed = {**model, "PrimaryContainer": {**model["PrimaryContainer"], "ModelDataUrl": BASE + "b/"}}
    assert ensure_model(sm, changed) == "replace"
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["ModelDataUrl"] == BASE + "b/"
    assert ensure_endpoint_config(sm, config) == "create"
    assert ensure_endpoint_config(sm, config) == "reuse"
    bigger = {**config, "ProductionVariants": [{**config["ProductionVariants"][0], "InitialInstanceCount": 2}]}
    assert ensure_endpoint_config(sm, bigger) == "replace"
    assert sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]["InitialInstanceCount"] == 2


def test_ensure_endpoint_waits_for_a_creating_one_and_replaces_a_failed_one(stack: Stack, sm: Any) -> None:
    from tailor.endpoints import EndpointError, ensure_endpoint

    config = _model_and_config(sm, "ensure-ep")
    endpoint = _name("ensure-ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)  # an earlier try's, still Creating
    first = ensure_endpoint(sm, endpoint, config, _waiting())
    assert first["EndpointStatus"] == "InService" and first["CreationTime"] == \
        sm.describe_endpoint(EndpointName=endpoint)["CreationTime"]
    sm.delete_endpoint(EndpointName=endpoint)
    stack.arm_fault("sagemaker:CreateEndpoint", "CapacityError", message="no capacity")
    with pytest.raises(EndpointError, match="is Failed: no capacity"):
        ensure_endpoint(sm, endpoint, config, _waiting())  # this try's endpoint failed: the task fails
    again = ensure_endpoint(sm, endpoint, config, _waiting())  # the retry deletes the Failed one and recreates
    assert again["EndpointStatus"] == "InService" and "FailureReason" not in again


def test_promote_endpoint_reports_a_rollback_not_a_promotion(stack: Stack, sm: Any) -> None:
    from tailor.endpoints import promote_endpoint

    champion, old = _in_service(sm, "promote-rb")
    new = _model_and_config(sm, "promote-rb-new")
    stack.arm_fault("sagemaker:UpdateEndpoint", "UpdateFailed", message="health check failed")
    result = promote_endpoint(sm, champion, new, _waiting())
    assert (result.outcome, result.actions, result.config_name) == ("rolled_back", ("update",), old)
    assert result.failure_reason == "health check failed"
    promoted = promote_endpoint(sm, champion, new, _waiting())  # asked again (a cleared task): a new attempt
    assert (promoted.outcome, promoted.actions, promoted.config_name) == ("promoted", ("update",), new)
    reused = promote_endpoint(sm, champion, new, _waiting())  # a retry after success changes nothing
    assert (reused.outcome, reused.actions) == ("promoted", ())


def test_promote_endpoint_replaces_a_failed_champion_and_waits_out_an_update_in_flight(
        stack: Stack, sm: Any) -> None:
    from tailor.endpoints import promote_endpoint

    config = _model_and_config(sm, "promote-failed")
    champion = _name("promote-failed-ep")
    stack.arm_fault("sagemaker:CreateEndpoint", "CapacityError")
    sm.create_endpoint(EndpointName=champion, EndpointConfigName=config)
    assert _settled(sm, champion)["EndpointStatus"] == "Failed"
    new = _model_and_config(sm, "promote-failed-new")
    result = promote_endpoint(sm, champion, new, _waiting())
    assert (result.outcome, result.actions) == ("promoted", ("replace", "create"))
    newer = _model_and_config(sm, "promote-failed-newer")
    sm.update_endpoint(EndpointName=champion, EndpointConfigName=newer)  # an earlier try's update, in flight
    resumed = promote_endpoint(sm, champion, newer, _waiting())
    assert (resumed.outcome, resumed.actions, resumed.config_name) == ("promoted", (), newer)


def test_delete_endpoint_waits_until_it_is_gone_and_fails_loudly_when_it_cannot(sm: Any) -> None:
    from tailor.endpoints import EndpointError, delete_endpoint

    config = _model_and_config(sm, "teardown")
    endpoint = _name("teardown-ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)  # Creating: AWS refuses DeleteEndpoint
    with pytest.raises(EndpointError, match="still Creating"):
        delete_endpoint(sm, endpoint, _waiting(timeout=0.0))
    deleted = delete_endpoint(sm, endpoint, _waiting())
    assert deleted is not None and deleted["EndpointName"] == endpoint
    assert delete_endpoint(sm, endpoint, _waiting()) is None  # nothing left: nothing to delete
    assert _refused(sm.describe_endpoint, EndpointName=endpoint)["Message"].startswith("Could not find endpoint")

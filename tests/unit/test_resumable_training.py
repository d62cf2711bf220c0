"""Provider-style tests of ResumableTrainingOperator (no AWS: SageMakerHook's describe/create are patched)."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from botocore.exceptions import ClientError

from tailor_airflow.sagemaker_operators import ResumableTrainingOperator

JOB_NAME = "tailor-ft-abc"
JOB_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB_NAME}"
REASON = "AlgorithmError: CUDA out of memory. Tried to allocate 2.00 GiB"

CONFIG: dict[str, Any] = {
    "TrainingJobName": JOB_NAME,
    "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0",
                               "TrainingInputMode": "File"},
    "RoleArn": "arn:aws:iam::123456789012:role/tailor-sagemaker-execution",
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/train/"}}}],
    "OutputDataConfig": {"S3OutputPath": "s3://tailor-bakeoff/finetune/tailor-ft-abc/output/"},
    "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": "1", "VolumeSizeInGB": "256"},
    "StoppingCondition": {"MaxRuntimeInSeconds": "86400"},
}
CREATE_RESPONSE = {"TrainingJobArn": JOB_ARN, "ResponseMetadata": {"HTTPStatusCode": 200}}


def client_error(code: str, message: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeTrainingJob")


# What AWS returns for an unknown training job, and what moto returns.
AWS_NOT_FOUND = client_error("ValidationException", "Requested resource not found.")
AWS_NOT_FOUND_NO_DOT = client_error("ValidationException", "Requested resource not found")
MOTO_NOT_FOUND = client_error("ValidationException", f"Could not find training job '{JOB_ARN}'.")


def description(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": JOB_NAME,
        "TrainingJobArn": JOB_ARN,
        "TrainingJobStatus": status,
        "SecondaryStatus": {"InProgress": "Training", "Stopping": "Stopping"}.get(status, status),
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 256},
        "CreationTime": datetime.datetime(2026, 11, 1, 3, 0, tzinfo=datetime.UTC),
        "ResponseMetadata": {"HTTPStatusCode": 200},
        **extra,
    }


def make_operator(**kwargs: Any) -> ResumableTrainingOperator:
    params: dict[str, Any] = {"task_id": "train", "config": copy.deepcopy(CONFIG), "check_interval": 5,
                              "max_attempts": 7, "aws_conn_id": "aws_test"}
    params.update(kwargs)
    return ResumableTrainingOperator(**params)


@pytest.fixture
def mock_describe() -> Iterator[mock.MagicMock]:
    with mock.patch.object(SageMakerHook, "describe_training_job") as describe:
        yield describe


@pytest.fixture
def mock_create() -> Iterator[mock.MagicMock]:
    with mock.patch.object(SageMakerHook, "create_training_job", return_value=CREATE_RESPONSE) as create:
        yield create


@pytest.fixture
def mock_preprocess() -> Iterator[mock.MagicMock]:
    with mock.patch.object(SageMakerTrainingOperator, "preprocess_config") as preprocess:
        yield preprocess


# --- construction --------------------------------------------------------------------------------------------


def test_check_if_job_exists_defaults_to_false() -> None:
    operator = make_operator()
    assert operator.check_if_job_exists is False
    assert SageMakerTrainingOperator(task_id="t", config={}).check_if_job_exists is True  # the provider's default


def test_check_if_job_exists_can_still_be_set() -> None:
    assert make_operator(check_if_job_exists=True).check_if_job_exists is True


def test_template_fields() -> None:
    assert "config" in ResumableTrainingOperator.template_fields
    assert set(SageMakerTrainingOperator.template_fields) <= set(ResumableTrainingOperator.template_fields)
    assert issubclass(ResumableTrainingOperator, SageMakerTrainingOperator)


# --- execute -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("not_found", [
    pytest.param(AWS_NOT_FOUND, id="absent-aws-validation-exception"),
    pytest.param(AWS_NOT_FOUND_NO_DOT, id="absent-aws-message-without-period"),
    pytest.param(MOTO_NOT_FOUND, id="absent-moto-could-not-find"),
])
def test_execute_creates_the_job_when_absent(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                             not_found: ClientError) -> None:
    completed = description("Completed")
    mock_describe.side_effect = [not_found, completed]
    operator = make_operator(wait_for_completion=False)

    result = operator.execute({})

    mock_create.assert_called_once()
    created_config = mock_create.call_args.args[0]
    assert created_config["TrainingJobName"] == JOB_NAME  # no timestamp suffix: the name is the retry key
    # preprocess_config ran (the provider casts the integer fields)
    assert created_config["ResourceConfig"]["InstanceCount"] == 1
    assert created_config["StoppingCondition"]["MaxRuntimeInSeconds"] == 86400
    assert mock_create.call_args.kwargs["wait_for_completion"] is False
    assert mock_describe.call_args_list == [mock.call(JOB_NAME), mock.call(JOB_NAME)]
    assert result["Training"]["TrainingJobStatus"] == "Completed"


@pytest.mark.parametrize("status", [pytest.param("InProgress", id="in-progress"),
                                    pytest.param("Stopping", id="stopping")])
def test_execute_reattaches_to_a_running_job(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                             mock_preprocess: mock.MagicMock, status: str) -> None:
    mock_describe.return_value = description(status)
    operator = make_operator()

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})

    mock_preprocess.assert_called_once()
    mock_create.assert_not_called()
    mock_describe.assert_called_once_with(JOB_NAME)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert trigger.job_name == JOB_NAME
    assert trigger.job_type == "Training"
    assert trigger.waiter_delay == 5
    assert trigger.attempts == 7
    assert trigger.aws_conn_id == "aws_test"
    assert deferred.value.method_name == "execute_complete"


def test_execute_returns_a_completed_job(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                         mock_preprocess: mock.MagicMock) -> None:
    completed = description("Completed", ModelArtifacts={"S3ModelArtifacts": "s3://b/output/model.tar.gz"})
    mock_describe.return_value = completed
    operator = make_operator()

    result = operator.execute({})

    mock_create.assert_not_called()
    assert mock_describe.call_args_list == [mock.call(JOB_NAME), mock.call(JOB_NAME)]
    assert result == {"Training": operator.serialized_training_data}
    training = result["Training"]
    assert training["TrainingJobName"] == JOB_NAME
    assert training["TrainingJobStatus"] == "Completed"
    assert training["ModelArtifacts"]["S3ModelArtifacts"] == "s3://b/output/model.tar.gz"
    assert isinstance(training["CreationTime"], str)  # JSON-serializable for XCom


def test_execute_completed_uses_serialize_result(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                                 mock_preprocess: mock.MagicMock) -> None:
    mock_describe.return_value = description("Completed")
    with mock.patch.object(ResumableTrainingOperator, "serialize_result",
                           return_value={"Training": {"done": True}}) as serialize_result:
        assert make_operator().execute({}) == {"Training": {"done": True}}
    serialize_result.assert_called_once_with(JOB_NAME)
    mock_create.assert_not_called()


@pytest.mark.parametrize(("status", "extra", "reason"), [
    pytest.param("Failed", {"FailureReason": REASON}, REASON, id="failed"),
    pytest.param("Stopped", {"FailureReason": "Stopped by user request"}, "Stopped by user request",
                 id="stopped"),
    pytest.param("Failed", {}, "(no reason given)", id="failed-without-reason"),
])
def test_execute_fails_on_a_failed_or_stopped_job(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                                  mock_preprocess: mock.MagicMock, status: str,
                                                  extra: dict[str, Any], reason: str) -> None:
    mock_describe.return_value = description(status, **extra)

    with pytest.raises(AirflowException) as info:
        make_operator().execute({})

    message = str(info.value)
    assert reason in message
    assert "No endpoint was created" in message
    assert JOB_NAME in message and status in message
    mock_create.assert_not_called()


@pytest.mark.parametrize("error", [
    pytest.param(client_error("AccessDeniedException", "User is not authorized to perform DescribeTrainingJob"),
                 id="access-denied"),
    pytest.param(client_error("ThrottlingException", "Rate exceeded"), id="throttled"),
])
def test_execute_propagates_other_client_errors(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                                mock_preprocess: mock.MagicMock, error: ClientError) -> None:
    mock_describe.side_effect = error
    with pytest.raises(ClientError) as info:
        make_operator().execute({})
    assert info.value is error
    mock_create.assert_not_called()


def test_deferred_reattach_keeps_the_operator_region(mock_describe: mock.MagicMock, mock_create: mock.MagicMock,
                                                      mock_preprocess: mock.MagicMock) -> None:
    """BUG: on re-attach the operator builds SageMakerTrigger without region_name/verify/botocore_config (the
    provider's own deferral passes them), so with ``region_name="eu-west-1"`` the describe looks in eu-west-1
    but the triggerer polls the connection's default region."""
    mock_describe.return_value = description("InProgress")
    operator = make_operator(region_name="eu-west-1", verify=False, botocore_config={"read_timeout": 42})

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})

    trigger = deferred.value.trigger
    assert trigger.region_name == "eu-west-1"
    assert trigger.verify is False
    assert trigger.botocore_config == {"read_timeout": 42}


# --- execute_complete ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    pytest.param({"status": "success", "job_name": JOB_NAME}, id="success-event"),
    pytest.param({"status": "failure", "message": "Error while waiting for Training job", "job_name": JOB_NAME},
                 id="failure-event"),
])
def test_execute_complete_raises_the_failure_reason(mock_describe: mock.MagicMock, event: dict[str, Any]) -> None:
    mock_describe.return_value = description("Failed", FailureReason=REASON)

    with pytest.raises(AirflowException) as info:
        make_operator().execute_complete({}, event)

    assert REASON in str(info.value)
    assert "No endpoint was created" in str(info.value)
    mock_describe.assert_called_once_with(JOB_NAME)


def test_execute_complete_returns_the_completed_job(mock_describe: mock.MagicMock) -> None:
    mock_describe.return_value = description("Completed")
    result = make_operator().execute_complete({}, {"status": "success", "job_name": JOB_NAME})
    assert result["Training"]["TrainingJobStatus"] == "Completed"
    assert result["Training"]["TrainingJobName"] == JOB_NAME


def test_the_preflight_checks_our_channels_and_skips_jumpstarts_aws_owned_buckets() -> None:
    """The provider HeadBuckets every channel before CreateTrainingJob; the Airflow role cannot do that on
    JumpStart's buckets (the code channel), which SageMaker checks itself with the execution role."""
    from tailor_airflow.sagemaker_operators import OwnBucketsSageMakerHook, ResumableTrainingOperator

    assert ResumableTrainingOperator.aws_hook_class is OwnBucketsSageMakerHook

    def channel(name: str, uri: str) -> dict:
        return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri}}}

    config = {"InputDataConfig": [
        channel("training", "s3://tailor-bakeoff/finetune/j/training/"),
        channel("code", "s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/x/sourcedir.tar.gz"),
        channel("weights", "s3://jumpstart-private-cache-prod-eu-west-1/meta-training/g5/x.tar.gz")]}
    with mock.patch.object(SageMakerHook, "check_s3_url", return_value=True) as check:
        OwnBucketsSageMakerHook(aws_conn_id=None).check_training_config(config)
    assert [c.args[0] for c in check.call_args_list] == ["s3://tailor-bakeoff/finetune/j/training/"]
    assert len(config["InputDataConfig"]) == 3  # the request itself is unchanged

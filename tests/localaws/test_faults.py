"""The fault switch through real boto3 clients: errors have AWS's wire shape, botocore retries what it should.

Every test disarms in a ``finally`` so a failure cannot leak a fault into the next test.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.stack import Stack

BUCKET = "localaws-fault-tests"
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def stack(local_aws: Stack) -> Iterator[Stack]:
    local_aws.clear_faults()
    local_aws.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield local_aws
    finally:
        local_aws.clear_faults()


def test_s3_slowdown_burst_shorter_than_botocore_attempts_ends_in_success(stack: Stack) -> None:
    s3 = stack.client("s3")  # botocore's default (legacy) mode: 5 attempts, SlowDown and 503 are retried
    stack.arm_fault("s3:PutObject", "SlowDown", status=503, count=3, message="Please reduce your request rate.")
    s3.put_object(Bucket=BUCKET, Key="burst/ok.txt", Body=b"kept")
    assert stack.fault_state() == {"status": "ok", "armed": {}, "fired": {"s3:PutObject": 3}}
    assert s3.get_object(Bucket=BUCKET, Key="burst/ok.txt")["Body"].read() == b"kept"


def test_s3_slowdown_longer_than_the_attempts_is_s3s_error_and_writes_nothing(stack: Stack) -> None:
    s3 = stack.client("s3", config=Config(retries={"mode": "standard", "total_max_attempts": 2}))
    stack.arm_fault("s3:PutObject", "SlowDown", status=503, count=5, message="Please reduce your request rate.")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="burst/lost.txt", Body=b"x")
    assert error.value.response["Error"] == {"Code": "SlowDown", "Message": "Please reduce your request rate."}
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert stack.fault_state()["armed"]["s3:PutObject"]["remaining"] == 3
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="burst/lost")


def test_s3_fault_hits_object_puts_only(stack: Stack) -> None:
    s3 = stack.client("s3", config=ONE_ATTEMPT)
    s3.put_object(Bucket=BUCKET, Key="src.txt", Body=b"source")
    stack.arm_fault("s3:PutObject", "SlowDown", status=503, count=1)
    s3.copy_object(Bucket=BUCKET, Key="copy.txt", CopySource={"Bucket": BUCKET, "Key": "src.txt"})
    s3.put_object_tagging(Bucket=BUCKET, Key="src.txt", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    s3.get_object(Bucket=BUCKET, Key="copy.txt")
    stack.client("sqs", config=ONE_ATTEMPT).list_queues()
    assert stack.fault_state()["fired"] == {}, "copies, tags, reads and other services must not consume it"
    with pytest.raises(ClientError, match="SlowDown"):
        s3.put_object(Bucket=BUCKET, Key="src.txt", Body=b"overwrite")
    assert s3.get_object(Bucket=BUCKET, Key="src.txt")["Body"].read() == b"source"


@pytest.mark.parametrize(("error", "status"), [("ThrottlingException", 429), ("ServiceUnavailableException", 503),
                                               ("InternalServerException", 500)])
def test_converse_faults_have_the_bedrock_error_shape(stack: Stack, error: str, status: int) -> None:
    runtime = stack.client("bedrock-runtime", config=ONE_ATTEMPT)
    stack.arm_fault("bedrock-runtime:Converse", error, status=status, count=1, message="slow down")
    with pytest.raises(ClientError) as caught:
        runtime.converse(modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert caught.value.response["Error"]["Code"] == error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert stack.fault_state()["fired"] == {"bedrock-runtime:Converse": 1}


@pytest.mark.parametrize(("error", "status"), [("ThrottlingException", 429), ("InternalFailure", 500)])
def test_invoke_endpoint_faults_have_the_sagemaker_error_shape(stack: Stack, error: str, status: int) -> None:
    runtime = stack.client("sagemaker-runtime", config=ONE_ATTEMPT)
    stack.arm_fault("sagemaker-runtime:InvokeEndpoint", error, status=status, count=1)
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="any", Body=b"{}", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize("spec", [{"operation": "s3:GetObject", "error": "SlowDown"},
                                  {"operation": "s3:PutObject"},
                                  {"operation": "s3:PutObject", "error": "SlowDown", "count": 0}])
def test_a_fault_that_could_never_fire_is_refused(stack: Stack, spec: dict) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        stack._faults("POST", spec)
    assert refused.value.code == 400
    assert stack.fault_state()["armed"] == {}


def test_invoke_endpoint_on_a_missing_endpoint_is_an_error_not_a_200(stack: Stack) -> None:
    """Regression: the handler's error tuples used to reach the client as HTTP 200 (moto reads the status
    from a "status" header), so a failure looked like an answer."""
    runtime = stack.client("sagemaker-runtime", config=ONE_ATTEMPT)
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "no-such-endpoint" in caught.value.response["Error"]["Message"]

"""tailor.aws_errors: only "this resource does not exist" counts as not found; everything else is re-raised."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tailor.aws_errors import describe_or_none, error_code, is_not_found, summary

ARN = "arn:aws:sagemaker:us-east-1:111122223333"


def _error(code: str, message: str, operation: str = "DescribeEndpoint", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


MISSING_ENDPOINT = _error("ValidationException", f'Could not find endpoint "{ARN}:endpoint/champion".')
MISSING_CONFIG = _error("ValidationException", f'Could not find endpoint configuration "{ARN}:endpoint-config/x".',
                        "UpdateEndpoint")
MISSING_MODEL = _error("ValidationException", f'Could not find model "{ARN}:model/x".', "DescribeModel")
MISSING_JOB = _error("ValidationException", "Requested resource not found.", "DescribeTrainingJob")


@pytest.mark.parametrize(("error", "kind"), [(MISSING_ENDPOINT, "endpoint"), (MISSING_CONFIG, "endpoint configuration"),
                                             (MISSING_MODEL, "model"), (MISSING_JOB, "training job")])
def test_sagemakers_not_found_answers_are_not_found_for_their_kind_only(error: ClientError, kind: str) -> None:
    assert is_not_found(error) and is_not_found(error, kind)
    others = {"endpoint", "endpoint configuration", "model", "training job"} - {kind}
    assert not any(is_not_found(error, other) for other in others), "a missing config is not a missing endpoint"


@pytest.mark.parametrize("error", [
    _error("AccessDeniedException", "User: arn:aws:sts::1:assumed-role/airflow is not authorized to perform: "
                                    "sagemaker:DescribeEndpoint", status=403),
    _error("ThrottlingException", "Rate exceeded"),
    _error("InternalFailure", "An internal error occurred", status=500),
    _error("ServiceUnavailable", "Service unavailable", status=503),
    _error("ValidationException", "1 validation error detected: Value 'x y' at 'endpointName' failed to satisfy "
                                  "constraint"),
    _error("ValidationException", f'Cannot update in-progress endpoint "{ARN}:endpoint/champion".'),
    _error("ValidationException", "Endpoint tailor-champion could not find its model artifact"),  # not a prefix
])
def test_access_denied_throttling_and_other_errors_are_not_not_found(error: ClientError) -> None:
    assert not is_not_found(error)
    assert not is_not_found(error, "endpoint")

    def describe() -> dict:
        raise error

    with pytest.raises(ClientError) as raised:
        describe_or_none(describe, "endpoint")
    assert raised.value is error


def test_describe_or_none_returns_the_answer_or_none_only_for_not_found() -> None:
    assert describe_or_none(lambda: {"EndpointStatus": "InService"}, "endpoint") == {"EndpointStatus": "InService"}

    def missing() -> dict:
        raise MISSING_ENDPOINT

    assert describe_or_none(missing, "endpoint") is None
    with pytest.raises(ClientError):
        describe_or_none(missing, "model")  # asked about a model, told about an endpoint: not an answer


def test_generic_not_found_codes_and_non_aws_errors() -> None:
    assert is_not_found(_error("ResourceNotFoundException", "Knowledge base KB1 is not found", status=404))
    assert is_not_found(_error("NoSuchKey", "The specified key does not exist.", "GetObject", 404))
    connection = EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")
    assert not is_not_found(connection) and error_code(connection) is None
    assert not is_not_found(ValueError("Could not find endpoint"))

    def unreachable() -> dict:
        raise connection

    with pytest.raises(EndpointConnectionError):
        describe_or_none(unreachable, "endpoint")


def test_an_unknown_kind_is_a_programming_error_and_summary_names_code_and_message() -> None:
    with pytest.raises(ValueError, match="unknown resource kind"):
        is_not_found(MISSING_ENDPOINT, "endpoints")
    assert summary(MISSING_MODEL) == f'ValidationException: Could not find model "{ARN}:model/x".'
    assert summary(RuntimeError("boom")) == "RuntimeError: boom"

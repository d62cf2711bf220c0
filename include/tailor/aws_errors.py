"""What an AWS error answer means, decided once: "this resource does not exist" versus everything else.

SageMaker does not answer a missing resource with an HTTP 404 or a ``ResourceNotFound`` code: it says
``ValidationException`` with a message, e.g. ``Could not find endpoint "arn:aws:sagemaker:...:endpoint/x".``
(DescribeEndpoint/DeleteEndpoint/UpdateEndpoint), ``Could not find model "arn:..."`` (DescribeModel,
CreateEndpointConfig), ``Could not find endpoint configuration "arn:..."`` (DescribeEndpointConfig, CreateEndpoint,
UpdateEndpoint) and ``Requested resource not found.`` (DescribeTrainingJob). Sources: the message prefixes AWS's own
SageMaker operator for Kubernetes matches (aws/amazon-sagemaker-operator-for-k8s,
``controllers/sagemaker/clientwrapper``: ``DescribeEndpoint404MessagePrefix = "Could not find endpoint"``,
``DescribeTrainingJob404MessagePrefix = "Requested resource not found"``...), and observed errors
(aws/aws-sdk#165: DescribeTrainingJob says ValidationException, not ResourceNotFound).

Every other error -- AccessDenied, throttling, a 5xx, a ValidationException about something else -- is *not* an
answer about existence: callers must re-raise it. Treating it as "not found" is how a task would promote a
challenger without comparing it (the champion "does not exist") or leave a paid endpoint running (the challenger
"is already gone").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Error codes that mean "no such resource" wherever they appear (S3, Bedrock, the services that have them).
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "ResourceNotFound", "NoSuchKey", "NoSuchBucket",
                             "NotFoundException", "404"})
#: SageMaker's "not found" answers: ValidationException with one of these messages (see the module docstring).
_SAGEMAKER_NOT_FOUND = re.compile(
    r"^(?:Could not find (?P<kind>endpoint configuration|endpoint|model|training job)\b|Requested resource not found)")
#: What each SageMaker resource kind is called in the messages.
KINDS = ("endpoint", "endpoint configuration", "model", "training job")


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return (response.get("Error") or {}).get("Code")


def error_message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Message") or "")


def is_not_found(error: BaseException, kind: str | None = None) -> bool:
    """True only when AWS answered that the resource does not exist.

    ``kind`` ("endpoint", "endpoint configuration", "model", "training job") narrows SageMaker's messages to that
    resource: an UpdateEndpoint refused with ``Could not find endpoint configuration ...`` is not "no endpoint".
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; known: {', '.join(KINDS)}")
    code = error_code(error)
    if code is None:
        return False
    if code in NOT_FOUND_CODES:
        return True
    if code not in ("ValidationException", "ValidationError"):
        return False
    found = _SAGEMAKER_NOT_FOUND.match(error_message(error))
    if found is None:
        return False
    if kind is None:
        return True
    if found["kind"] is None:  # "Requested resource not found." is DescribeTrainingJob's answer
        return kind == "training job"
    return found["kind"] == kind


def describe_or_none(describe: Callable[[], T], kind: str | None = None) -> T | None:
    """``describe()``'s answer, or None when AWS says the resource does not exist; any other error propagates."""
    try:
        return describe()
    except Exception as error:
        if is_not_found(error, kind):
            return None
        raise


def summary(error: BaseException) -> str:
    """``Code: message`` of an AWS error (for task logs and failure messages)."""
    code = error_code(error)
    return f"{code}: {error_message(error)}" if code else f"{type(error).__name__}: {error}"


__all__ = ["KINDS", "NOT_FOUND_CODES", "describe_or_none", "error_code", "error_message", "is_not_found", "summary"]


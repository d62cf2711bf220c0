"""Fault injection: make the next N calls of an operation fail, to test how the DAGs cope.

Switch it on over HTTP (the server's front door), e.g. with ``curl``::

    POST   {endpoint}/_localaws/faults  {"operation": "bedrock-runtime:Converse",
                                         "error": "ThrottlingException", "status": 429, "count": 3}
    GET    {endpoint}/_localaws/faults  -> {"armed": {op: {"error", "status", "remaining"}}, "fired": {op: n}}
    DELETE {endpoint}/_localaws/faults  (disarm all and reset the counters)

(``devstack.stack.Stack.arm_fault`` / ``fault_state`` / ``clear_faults`` do the same from Python.) One fault per
operation at a time; arming an operation again replaces its fault. ``fired`` counts the calls that were failed,
so a test can prove the fault really hit. Operations:

* API errors with AWS's error shape and the given status (botocore retries throttling codes such as
  ``ThrottlingException`` and the statuses 500/502/503/504 itself; anything else reaches the caller):
  ``bedrock-agent:StartIngestionJob`` (e.g. ``ConflictException``/409 as when another job runs),
  ``bedrock-runtime:Converse`` (e.g. ``ThrottlingException``/429, ``ServiceUnavailableException``/503,
  ``InternalServerException``/500), ``sagemaker-runtime:InvokeEndpoint`` (e.g. ``ThrottlingException``/429,
  ``InternalFailure``/500, ``ModelError``/424).
* ``s3:PutObject``: S3's XML error (e.g. ``SlowDown``/503) for PUT of an object (not copies, parts, tags or
  ACLs), answered at the front door before moto sees the request. botocore retries ``SlowDown`` (5 attempts
  in its default mode): a burst shorter than that ends in success.
* ``ingestion:run``: the background ingestion job ends FAILED with the message as its failure reason, or
  STOPPED when ``error`` is ``"STOPPED"``. With ``error`` ``"DOCUMENTS_FAILED"`` (the first document in key
  order) or ``"DOCUMENTS_FAILED:<glob>"`` (every document whose S3 key matches the ``fnmatch`` glob, e.g.
  ``"DOCUMENTS_FAILED:kb-data/vortex-*"``) the selected documents fail and the job still ends COMPLETE, as AWS
  does with failed documents (FACTS.md section 5, observed): the others are indexed, the failed ones are absent
  from the index (``Retrieve`` never returns them), ``statistics.numberOfDocumentsFailed`` counts them and
  ``failureReasons`` holds the message in the shape observed from AWS, ``"Encountered error: <message>
  [Files: s3://bucket/key, ...]. Call to Customer Source did not succeed."`` (status is not used; a glob that
  selects no document ends the job FAILED saying so).
* ``sagemaker:training``: the training job ends Failed with the message as its ``FailureReason``.
* ``sagemaker:CreateEndpoint``: the endpoint is created (Creating) but ends Failed with the message as its reason.
* ``sagemaker:UpdateEndpoint``: the update is accepted (Updating), then rolls back as AWS's blue/green update does
  when the new fleet fails: the endpoint returns to InService on its OLD ``EndpointConfigName`` with the message
  as its ``FailureReason`` (the error name and status are not used). The fault is taken when UpdateEndpoint is
  called, so arm it before the update.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from moto.core.exceptions import JsonRESTError

OPERATIONS = (
    "bedrock-agent:StartIngestionJob",
    "bedrock-runtime:Converse",
    "sagemaker-runtime:InvokeEndpoint",
    "s3:PutObject",
    "ingestion:run",
    "sagemaker:training",
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
)


@dataclass
class Fault:
    error: str
    status: int
    remaining: int
    message: str


class InjectedFault(JsonRESTError):
    """An error injected on purpose (an HTTP error with AWS's error shape when raised inside moto)."""

    def __init__(self, fault: Fault) -> None:
        self.code = fault.status
        self.error = fault.error
        self.message = fault.message
        super().__init__(fault.error, fault.message)


_lock = threading.Lock()
_faults: dict[str, Fault] = {}
_fired: dict[str, int] = {}


def arm(operation: str, error: str, status: int = 400, count: int = 1, message: str | None = None) -> None:
    """Fail the next ``count`` calls of ``operation``; an unknown operation is a ValueError (a typo would
    otherwise arm a fault that never fires, and the test would prove nothing)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown fault operation {operation!r}; known: {', '.join(OPERATIONS)}")
    if count < 1 or not 100 <= status <= 599:
        raise ValueError(f"count must be >= 1 and status an HTTP status, got count={count} status={status}")
    with _lock:
        _faults[operation] = Fault(error, status, count, message or f"injected fault: {error}")


def clear() -> None:
    with _lock:
        _faults.clear()
        _fired.clear()


def state() -> dict[str, Any]:
    with _lock:
        return {"armed": {op: asdict(f) for op, f in _faults.items()}, "fired": dict(_fired)}


def take(operation: str) -> Fault | None:
    """The armed fault of ``operation`` if any (counted down and recorded as fired), else None."""
    with _lock:
        fault = _faults.get(operation)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del _faults[operation]
        _fired[operation] = _fired.get(operation, 0) + 1
        return fault


def check(operation: str) -> None:
    """Raise :class:`InjectedFault` if a fault is armed for ``operation`` (and count it down)."""
    if (fault := take(operation)) is not None:
        raise InjectedFault(fault)

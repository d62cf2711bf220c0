"""Fault injection: make the next N calls of an operation fail, to test how the DAGs cope.

Switch it on over HTTP (the server's front door), e.g. with ``curl``::

    POST {endpoint}/_localaws/faults  {"operation": "bedrock-agent:StartIngestionJob",
                                       "error": "ThrottlingException", "status": 429, "count": 2}
    DELETE {endpoint}/_localaws/faults   (clear all)

Operations: ``bedrock-agent:StartIngestionJob`` and ``sagemaker-runtime:InvokeEndpoint`` (an API error with
that status), ``ingestion:run`` (the background job ends FAILED with the error as its failure reason, or
STOPPED when ``error`` is ``"STOPPED"``), ``sagemaker:training`` (the training job ends Failed with the
message as its ``FailureReason``), ``sagemaker:CreateEndpoint`` (the endpoint is created but ends Failed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from moto.core.exceptions import JsonRESTError


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


def arm(operation: str, error: str, status: int = 400, count: int = 1, message: str | None = None) -> None:
    with _lock:
        _faults[operation] = Fault(error, status, count, message or f"injected fault: {error}")


def clear() -> None:
    with _lock:
        _faults.clear()


def check(operation: str) -> None:
    """Raise :class:`InjectedFault` if a fault is armed for ``operation`` (and count it down)."""
    with _lock:
        fault = _faults.get(operation)
        if fault is None:
            return
        fault.remaining -= 1
        if fault.remaining <= 0:
            del _faults[operation]
    raise InjectedFault(fault)

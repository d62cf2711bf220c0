"""Calls to the models under test: a SageMaker JumpStart endpoint and Bedrock Converse (boto3 clients in).

Every generation records why it stopped, so an answer cut by the token budget is counted, not mistaken for a
complete one: Converse returns ``stopReason`` (``end_turn``, ``max_tokens``, ``stop_sequence``, ...); JumpStart's
LMI and TGI containers return ``details.finish_reason`` (``eos_token``, ``length``, ``stop_sequence``) and
``details.generated_tokens`` when the request's parameters set ``"details": true``
(docs.djl.ai LMI input/output schema; TGI ``/generate``), which :func:`invoke_jumpstart` always does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LLAMA3_STOP = "<|eot_id|>"
#: Stop reasons meaning "the token budget ran out": Converse's ``max_tokens``, LMI/TGI's ``length``.
TRUNCATION_STOP_REASONS = frozenset({"max_tokens", "length"})


@dataclass(frozen=True)
class Answer:
    text: str
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str | None = None  # as the service reported it; None when it reported none


def is_truncated(stop_reason: str | None) -> bool | None:
    """True when generation stopped at the token budget; None when the stop reason is unknown."""
    if stop_reason is None:
        return None
    return stop_reason in TRUNCATION_STOP_REASONS


def _first(payload: Any) -> Any:
    return payload[0] if isinstance(payload, list) and payload else payload


def parse_generated_text(payload: Any) -> str:
    """JumpStart text-generation responses: ``{"generated_text"}`` (LMI) or ``[{"generated_text"}]`` (TGI)."""
    payload = _first(payload)
    if isinstance(payload, dict) and isinstance(payload.get("generated_text"), str):
        return payload["generated_text"].strip()
    raise ValueError(f"unexpected endpoint response (no generated_text): {str(payload)[:200]}")


def parse_details(payload: Any) -> tuple[str | None, int | None]:
    """``(finish_reason, generated_tokens)`` of a JumpStart response's ``details``; None for what it lacks."""
    details = _first(payload).get("details") if isinstance(_first(payload), dict) else None
    if not isinstance(details, dict):
        return None, None
    reason, tokens = details.get("finish_reason"), details.get("generated_tokens")
    return (reason if isinstance(reason, str) else None,
            tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None)


def invoke_jumpstart(runtime: Any, endpoint_name: str, prompt: str, *, max_new_tokens: int,
                     temperature: float = 0.0, stop: Sequence[str] = (LLAMA3_STOP,)) -> Answer:
    """One text generation on a JumpStart endpoint; latency measured around the call only.

    ``prompt`` goes to the model as it is (LMI applies no chat template to ``inputs``): build it for the way the
    model was trained (:func:`tailor.prompts.endpoint_prompt`, with its ``stop``). ``stop`` always includes
    Llama 3's end of turn.
    """
    stops = [LLAMA3_STOP, *(s for s in stop if s and s != LLAMA3_STOP)]
    parameters: dict[str, Any] = {"max_new_tokens": max_new_tokens, "stop": stops, "details": True}
    parameters |= {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    body = json.dumps({"inputs": prompt, "parameters": parameters})
    started = time.perf_counter()
    response = runtime.invoke_endpoint(EndpointName=endpoint_name, ContentType="application/json",
                                       Accept="application/json", Body=body)
    payload = json.loads(response["Body"].read())
    latency = (time.perf_counter() - started) * 1000
    finish_reason, generated_tokens = parse_details(payload)
    return Answer(parse_generated_text(payload), latency, output_tokens=generated_tokens, stop_reason=finish_reason)

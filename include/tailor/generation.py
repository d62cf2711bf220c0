"""Calls to the models under test: a SageMaker JumpStart endpoint and Bedrock Converse (boto3 clients in)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

LLAMA3_STOP = "<|eot_id|>"


@dataclass(frozen=True)
class Answer:
    text: str
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None


def parse_generated_text(payload: Any) -> str:
    """JumpStart text-generation responses: ``{"generated_text"}`` (LMI) or ``[{"generated_text"}]`` (TGI)."""
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, dict) and isinstance(payload.get("generated_text"), str):
        return payload["generated_text"].strip()
    raise ValueError(f"unexpected endpoint response (no generated_text): {str(payload)[:200]}")


def invoke_jumpstart(runtime: Any, endpoint_name: str, prompt: str, *, max_new_tokens: int,
                     temperature: float = 0.0) -> Answer:
    """One text generation on a JumpStart endpoint; latency measured around the call only."""
    parameters: dict[str, Any] = {"max_new_tokens": max_new_tokens, "stop": [LLAMA3_STOP]}
    parameters |= {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    body = json.dumps({"inputs": prompt, "parameters": parameters})
    started = time.perf_counter()
    response = runtime.invoke_endpoint(EndpointName=endpoint_name, ContentType="application/json",
                                       Accept="application/json", Body=body)
    payload = json.loads(response["Body"].read())
    latency = (time.perf_counter() - started) * 1000
    return Answer(parse_generated_text(payload), latency)

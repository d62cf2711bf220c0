"""bedrock-runtime ``Converse``: every model id is served by the local SmolLM2 (a stand-in, not a replica).

Honoured: ``messages`` (text blocks), ``system``, ``inferenceConfig`` (maxTokens, temperature, topP,
stopSequences); the response carries ``usage`` tokens, ``stopReason`` and ``metrics.latencyMs`` like AWS.
"""

from __future__ import annotations

import json
import time
from typing import Any

from moto.bedrockruntime.responses import BedrockRuntimeResponse
from moto.core.exceptions import JsonRESTError

from localaws import faults, serving


class ValidationException(JsonRESTError):
    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


def _text(blocks: list[dict[str, Any]], where: str) -> str:
    texts = [b["text"] for b in blocks if "text" in b]
    if len(texts) != len(blocks):
        raise ValidationException(f"{where}: only text content blocks are supported locally")
    return "\n".join(texts)


def converse(self: BedrockRuntimeResponse) -> str:
    from localaws.models import smollm2_dir

    faults.check("bedrock-runtime:Converse")
    request = json.loads(self.body or "{}")
    messages = [{"role": m["role"], "content": _text(m.get("content", []), f"messages[{i}]")}
                for i, m in enumerate(request.get("messages") or [])]
    if not messages or messages[-1]["role"] != "user":
        raise ValidationException("messages must be non-empty and end with a user message")
    if system := request.get("system"):
        messages.insert(0, {"role": "system", "content": _text(system, "system")})
    config = request.get("inferenceConfig") or {}
    started = time.perf_counter()
    generation = serving.chat(
        smollm2_dir(), messages, max_new_tokens=config.get("maxTokens", 512),
        temperature=config.get("temperature", 0.0), top_p=config.get("topP", 1.0),
        stop=config.get("stopSequences"),
    )
    return json.dumps({
        "output": {"message": {"role": "assistant", "content": [{"text": generation.text}]}},
        "stopReason": generation.stop_reason,
        "usage": {"inputTokens": generation.input_tokens, "outputTokens": generation.output_tokens,
                  "totalTokens": generation.input_tokens + generation.output_tokens},
        "metrics": {"latencyMs": int((time.perf_counter() - started) * 1000)},
    })


def install() -> None:
    BedrockRuntimeResponse.converse = converse

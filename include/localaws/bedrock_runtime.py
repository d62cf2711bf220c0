"""bedrock-runtime ``Converse``: every accepted model id is served by the local SmolLM2 (a stand-in, not a replica).

The model id is checked first, as AWS checks it (:mod:`localaws.bedrock_models`): an id unknown in the caller's
region, a bare id where AWS requires an inference profile, an end-of-life model, an embedding model, tool use
or a ``toolChoice`` the model does not support are refused with AWS's error code and message.

Honoured: ``messages`` (text blocks), ``system``, ``inferenceConfig`` (maxTokens, temperature, topP,
stopSequences); the response carries ``usage`` tokens, ``stopReason`` and ``metrics.latencyMs`` like AWS.

``toolConfig`` (``toolChoice`` naming a tool, ``any`` or ``auto``; the stand-in always uses the tool, as a judge asked
to call it would): the reply is a ``toolUse`` block whose input
matches the tool's JSON schema by construction — number properties are the model's expected 0-9 rating
rescaled to the property's ``minimum``..``maximum``, one string property a short greedy continuation from the
same KV cache — so a tiny local model can never return invalid JSON. Flat object schemas only.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import unquote

from moto.bedrockruntime.responses import BedrockRuntimeResponse
from moto.core.exceptions import JsonRESTError

from localaws import bedrock_models, faults, serving


class ValidationException(JsonRESTError):
    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


class _Refused(JsonRESTError):
    def __init__(self, refused: bedrock_models.ModelRefused) -> None:
        self.code = refused.status
        super().__init__(refused.code, refused.message)


def _text(blocks: list[dict[str, Any]], where: str) -> str:
    texts = [b["text"] for b in blocks if "text" in b]
    if len(texts) != len(blocks):
        raise ValidationException(f"{where}: only text content blocks are supported locally")
    return "\n".join(texts)


def converse(self: BedrockRuntimeResponse) -> str:
    from localaws.models import smollm2_dir

    faults.check("bedrock-runtime:Converse")
    request = json.loads(self.body or "{}")
    try:
        model = bedrock_models.resolve(unquote(self._get_param("modelId") or ""), self.region)
        bedrock_models.check_converse(model, request.get("toolConfig"))
    except bedrock_models.ModelRefused as refused:
        raise _Refused(refused) from None
    messages = [{"role": m["role"], "content": _text(m.get("content", []), f"messages[{i}]")}
                for i, m in enumerate(request.get("messages") or [])]
    if not messages or messages[-1]["role"] != "user":
        raise ValidationException("messages must be non-empty and end with a user message")
    if system := request.get("system"):
        messages.insert(0, {"role": "system", "content": _text(system, "system")})
    config = request.get("inferenceConfig") or {}
    started = time.perf_counter()
    if request.get("toolConfig"):
        return json.dumps(_tool_use(smollm2_dir(), messages, request["toolConfig"], started))
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


def _tool_use(path: Any, messages: list[dict[str, str]], tool_config: dict[str, Any], started: float) -> dict:
    tools = {t["toolSpec"]["name"]: t["toolSpec"] for t in tool_config.get("tools", []) if "toolSpec" in t}
    choice = tool_config.get("toolChoice") or {"any": {}}
    name = choice["tool"]["name"] if "tool" in choice else next(iter(tools), None)
    if name not in tools:
        raise ValidationException(f"toolChoice names an unknown tool {name!r}")
    schema = tools[name]["inputSchema"]["json"]
    properties = schema.get("properties", {})
    numbers = [k for k, v in properties.items() if v.get("type") in ("number", "integer")]
    strings = [k for k, v in properties.items() if v.get("type") == "string"]
    if len(numbers) + len(strings) != len(properties):
        raise ValidationException("local toolUse supports flat schemas of number and string properties only")
    if len(strings) > 1:
        raise ValidationException("local toolUse supports at most one string property (e.g. a rationale)")
    prompts = [f"{key.replace('_', ' ')} rating from 0 (worst) to 9 (best): " for key in numbers]
    lead = "The answer"  # seeds prose: a tiny model otherwise tends to continue a rating list with a digit
    then = f"{strings[0].replace('_', ' ')} in one sentence: {lead}" if strings else None
    ratings, text, input_tokens = serving.rate(path, messages, prompts or [""], then=then)
    result: dict[str, Any] = {}
    for key, value in zip(numbers, ratings, strict=False):
        low, high = properties[key].get("minimum", 0), properties[key].get("maximum", 1)
        scaled = low + (high - low) * value
        result[key] = round(scaled) if properties[key]["type"] == "integer" else round(scaled, 4)
    if strings:
        result[strings[0]] = f"{lead} {text}".strip()
    output_tokens = len(numbers) + len(text.split())
    return {
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:20]}", "name": name, "input": result}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                  "totalTokens": input_tokens + output_tokens},
        "metrics": {"latencyMs": int((time.perf_counter() - started) * 1000)},
    }


#: Operations moto's Bedrock runtime does not have, by handler name.
HANDLERS = {"converse": converse}


def install() -> None:
    """Define the missing operations on moto's response class (before the server takes requests)."""
    for name, handler in HANDLERS.items():
        setattr(BedrockRuntimeResponse, name, handler)

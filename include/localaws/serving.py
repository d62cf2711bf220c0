"""Text generation with the local models, for InvokeEndpoint (JumpStart contract) and Converse.

Requests may carry Llama 3.1 chat markup (``<|start_header_id|>user<|end_header_id|>...``), which is what
callers send to a JumpStart Llama 3.1 endpoint; it is parsed back into messages and re-rendered with the
local model's own chat template, so the same client code works on AWS and here.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NEW_TOKENS = 1024
_LLAMA3_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S)
_CACHE_SIZE = 3


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str  # "end_turn" | "max_tokens" | "stop_sequence"


class _Loaded:
    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self.lock = threading.Lock()


_models: OrderedDict[str, _Loaded] = OrderedDict()
_models_lock = threading.Lock()


def _load(path: Path) -> _Loaded:
    key = str(path)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        loaded = _Loaded(path)
        _models[key] = loaded
        while len(_models) > _CACHE_SIZE:
            _models.popitem(last=False)
        return loaded


def messages_from_prompt(prompt: str) -> list[dict[str, str]]:
    """Llama 3.1 chat markup -> messages; plain text -> one user message."""
    turns = [(role, text.strip()) for role, text in _LLAMA3_TURN.findall(prompt)]
    if not turns:
        return [{"role": "user", "content": prompt.replace("<|begin_of_text|>", "").strip()}]
    if turns[-1][0] == "assistant" and not turns[-1][1]:
        turns.pop()  # the open assistant header that asks for a completion
    return [{"role": role, "content": text} for role, text in turns]


def chat(
    path: Path,
    messages: list[dict[str, str]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
) -> Generation:
    """Generate one assistant turn (greedy when temperature is 0)."""
    import torch

    if not messages:
        raise ValueError("at least one message is required")
    max_new_tokens = max(1, min(int(max_new_tokens), MAX_NEW_TOKENS))
    loaded = _load(path)
    tokenizer = loaded.tokenizer
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
    sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p)} if temperature > 0 \
        else {"do_sample": False}
    with loaded.lock, torch.inference_mode():
        output = loaded.model.generate(**encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id,
                                       **sampling)
    new_tokens = output[0, encoded["input_ids"].shape[1]:]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
    stop_reason = "max_tokens" if len(new_tokens) >= max_new_tokens else "end_turn"
    for marker in stop or []:
        if marker and marker in text:
            text, stop_reason = text[: text.index(marker)], "stop_sequence"
    return Generation(text.strip(), int(encoded["input_ids"].shape[1]), int(len(new_tokens)), stop_reason)


def generate(path: Path, request: dict[str, Any]) -> str:
    """JumpStart text generation: ``{"inputs": str, "parameters": {...}}`` -> generated text."""
    inputs = request.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
        raise ValueError('the request needs "inputs" as a non-empty string')
    parameters = request.get("parameters") or {}
    return chat(
        path,
        messages_from_prompt(inputs),
        max_new_tokens=parameters.get("max_new_tokens", 256),
        temperature=parameters.get("temperature", 0.0) if parameters.get("do_sample", True) else 0.0,
        top_p=parameters.get("top_p", 1.0),
        stop=parameters.get("stop"),
    ).text

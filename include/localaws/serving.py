"""Text generation with the local models, for InvokeEndpoint (JumpStart contract) and Converse.

Requests may carry Llama 3.1 chat markup (``<|start_header_id|>user<|end_header_id|>...``), which is what
callers send to a JumpStart Llama 3.1 endpoint; it is parsed back into messages and re-rendered with the
local model's own chat template, so the same client code works on AWS and here.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NEW_TOKENS = 1024
_LLAMA3_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S)
#: Llama 3's special tokens as they appear in text (``<|begin_of_text|>``, ``<|eot_id|>``, ...): one token each.
_LLAMA3_SPECIAL = re.compile(r"<\|[a-z_0-9]+\|>")
_CACHE_SIZE = 3
MAX_BATCH = 8
#: Tokens a batch may hold (rows x the longest row's prompt + new tokens, estimated from characters): the batch's
#: KV cache and activations grow with it, so long prompts (retrieved context, long reference answers in a
#: judge's prompt) make smaller batches instead of a bigger process. 8 rows of ~750 tokens fit.
MAX_BATCH_TOKENS = int(os.environ.get("LOCALAWS_MAX_BATCH_TOKENS") or 6144)
CHARS_PER_TOKEN = 3.5  # SmolLM2's tokenizer: ~4 characters per token in English prose, fewer in specifications
BATCH_WINDOW_SECONDS = 0.05  # how long the first request of a batch waits for company
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs whose matrix units run bfloat16 natively


def serving_dtype() -> str:
    """``bfloat16`` where the CPU runs it natively (AMX / AVX512-BF16: ~3x faster prefill, measured on
    2 cores), else ``float32`` (emulated bf16 is slower). ``LOCALAWS_DTYPE`` overrides. Serving only:
    training, embeddings and metrics stay in float32."""
    if forced := os.environ.get("LOCALAWS_DTYPE"):
        if forced not in ("bfloat16", "float32"):
            raise ValueError(f"LOCALAWS_DTYPE={forced!r}: use bfloat16 or float32")
        return forced
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:  # not Linux: stay on the safe default
        return "float32"
    return "bfloat16" if any(flag in flags for flag in _BF16_FLAGS) else "float32"


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str  # "end_turn" | "max_tokens" | "stop_sequence"


def _one_text(value: object) -> str:
    """The text of one sequence from ``decode`` or ``apply_chat_template(tokenize=False)``, which transformers
    types as a union (a list for a batch of sequences, ids when tokenizing)."""
    if not isinstance(value, str):
        raise TypeError(f"expected the text of one sequence, got {type(value).__name__}")
    return value


class _Loaded:
    """One model with a batching worker: concurrent greedy requests are decoded together (like LMI's rolling
    batch), which is what makes 2 CPU cores fast enough for a 135-question bake-off."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=serving_dtype()).eval()
        self.lock = threading.Lock()  # one forward pass at a time on the 2 cores
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.worker = threading.Thread(target=self._serve, daemon=True, name=f"serve-{path.name}")
        self.worker.start()

    def close(self, wait: float = 0.0) -> None:
        """Tell the worker to exit once the requests already queued are answered; ``wait`` > 0 joins it.

        Join before the interpreter exits: a worker that has run torch ops and is still unwinding while the
        process finalises aborts it ("terminate called without an active exception", seen in 2 of 5 runs).
        """
        self.queue.put(None)  # type: ignore[arg-type]  # the worker's signal to exit
        if wait > 0:
            self.worker.join(wait)

    def _serve(self) -> None:
        while True:
            head = self.queue.get()
            if head is None:
                return
            batch = [head]
            longest = head.estimated_tokens
            deadline = time.monotonic() + BATCH_WINDOW_SECONDS
            while len(batch) < MAX_BATCH and head.batchable:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                fits = item is not None and fits_batch(len(batch) + 1, max(longest, item.estimated_tokens))
                if item is None or not head.batches_with(item) or not fits:  # the others wait their turn
                    self.queue.put(item)
                    break
                batch.append(item)
                longest = max(longest, item.estimated_tokens)
            try:
                (self._rate if head.kind == "rate" else self._generate)(batch)
            except Exception as exc:  # hand the error to every waiting caller
                for request in batch:
                    request.error = exc
                    request.done.set()
            finally:
                release_free_memory()

    def _generate(self, batch: list[_Request]) -> None:
        import torch

        tokenizer = self.tokenizer
        prompts = [_one_text(tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False))
                   for r in batch]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        max_new = max(r.max_new_tokens for r in batch)
        first = batch[0]
        sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p} \
            if first.temperature > 0 else {"do_sample": False}
        with self.lock, torch.inference_mode():
            output = self.model.generate(**encoded, max_new_tokens=max_new, pad_token_id=tokenizer.eos_token_id,
                                         **sampling)
        width = encoded["input_ids"].shape[1]
        for row, request in enumerate(batch):
            tokens = output[row, width:].tolist()
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            tokens = tokens[: request.max_new_tokens]
            request.input_tokens = int(encoded["attention_mask"][row].sum())
            request.output_tokens = len(tokens)
            request.hit_limit = len(tokens) >= request.max_new_tokens and tokenizer.eos_token_id not in tokens
            request.text = _one_text(tokenizer.decode(tokens, skip_special_tokens=True))
            request.done.set()


    def _rate(self, batch: list[_Request]) -> None:
        """:func:`rate` for requests with the same rating prompts, in one left-padded batch.

        Every row appends the same text after its chosen digit (a digit is always one token here), so the rows
        stay aligned; explicit position ids keep each row's positions as if it were alone.
        """
        import torch

        tokenizer, first, rows = self.tokenizer, batch[0], range(len(batch))
        digits = torch.tensor(tokenizer.convert_tokens_to_ids([str(d) for d in range(10)]))
        texts = [_one_text(tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False))
                 + first.prompts[0] for r in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        mask = encoded["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ratings: list[list[float]] = [[] for _ in rows]
        generated: list[list[int]] = [[] for _ in rows]
        with self.lock, torch.inference_mode():
            output = self.model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions,
                                use_cache=True)
            last = positions[:, -1]
            for index in range(len(first.prompts)):
                probabilities = torch.softmax(output.logits[:, -1, digits].float(), dim=-1)
                expected = (probabilities * torch.arange(10)).sum(-1) / 9
                for row in rows:
                    ratings[row].append(round(float(expected[row]), 4))
                following = first.prompts[index + 1] if index + 1 < len(first.prompts) else first.then
                if following is None:
                    break
                tail = tokenizer("\n" + following, add_special_tokens=False)["input_ids"]
                step = torch.tensor([[int(digits[int(probabilities[row].argmax())]), *tail] for row in rows])
                output, mask, last = self._extend(output, mask, last, step)
            finished = [first.then is None for _ in rows]
            for step_index in range(first.max_new_tokens):
                if all(finished):
                    break
                tokens = output.logits[:, -1].argmax(-1).tolist()
                for row, token in enumerate(tokens):
                    if finished[row]:
                        continue
                    if token == tokenizer.eos_token_id or (generated[row] and
                                                           _one_text(tokenizer.decode([token])).startswith("\n")):
                        finished[row] = True
                    else:
                        generated[row].append(token)
                if all(finished) or step_index == first.max_new_tokens - 1:
                    break
                output, mask, last = self._extend(output, mask, last, torch.tensor([[t] for t in tokens]))
        for row, request in enumerate(batch):
            request.ratings = ratings[row]
            request.text = _one_text(tokenizer.decode(generated[row], skip_special_tokens=True)).strip()
            request.input_tokens = int(encoded["attention_mask"][row].sum())
            request.done.set()

    def _extend(self, output: Any, mask: Any, last: Any, step: Any) -> tuple[Any, Any, Any]:
        """Feed ``step`` (rows x width tokens) after the cached prefix; return the output, mask, last positions."""
        import torch

        width = step.shape[1]
        mask = torch.cat([mask, torch.ones((mask.shape[0], width), dtype=mask.dtype)], dim=1)
        positions = last.unsqueeze(1) + 1 + torch.arange(width).unsqueeze(0)
        output = self.model(input_ids=step, attention_mask=mask, position_ids=positions,
                            past_key_values=output.past_key_values, use_cache=True)
        return output, mask, positions[:, -1]


@dataclass
class _Request:
    messages: list[dict[str, str]]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    kind: str = "generate"  # or "rate"
    prompts: tuple[str, ...] = ()  # rate: the rating prompts, in turn
    then: str | None = None  # rate: the prompt continued greedily after the last rating
    done: threading.Event = field(default_factory=threading.Event)
    text: str = ""
    ratings: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    hit_limit: bool = False
    error: Exception | None = None

    @property
    def estimated_tokens(self) -> int:
        """Prompt (+ rating prompts) and new tokens of this request, from its length in characters."""
        chars = sum(len(m.get("content") or "") for m in self.messages) + sum(map(len, self.prompts))
        return int(chars / CHARS_PER_TOKEN) + self.max_new_tokens

    @property
    def batchable(self) -> bool:
        return self.kind == "rate" or self.temperature == 0  # sampled generations run alone

    def batches_with(self, other: _Request) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "rate":
            return (self.prompts, self.then, self.max_new_tokens) == (other.prompts, other.then, other.max_new_tokens)
        return self.temperature == 0 and other.temperature == 0


def fits_batch(rows: int, longest_tokens: int, budget: int | None = None) -> bool:
    """Whether ``rows`` requests padded to ``longest_tokens`` stay within the batch token budget (a single row
    always fits: a long request is served alone rather than refused)."""
    return rows == 1 or rows * longest_tokens <= (MAX_BATCH_TOKENS if budget is None else budget)


def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Hand the memory a batch freed back to the OS (glibc ``malloc_trim``), after every batch.

    A batch's activations and KV cache (tens to hundreds of MB at 8 prompts with retrieved context) are freed
    into glibc's arenas, which keep them: the local AWS grew to 3.9 GB during the weekly evaluation. A trim
    costs about a millisecond; the next batch maps fresh pages.
    """
    if _TRIM is not None:
        _TRIM(0)


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
            _models.popitem(last=False)[1].close()  # evicted: no join under the lock, it may be mid-request
        return loaded


def shutdown(wait: float = 30.0) -> None:
    """Close every served model and join its worker (server stop, benchmark teardown)."""
    with _models_lock:
        loaded = list(_models.values())
        _models.clear()
    for model in loaded:
        model.close(wait)


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
    """Generate one assistant turn (greedy when temperature is 0; batched with concurrent callers)."""
    if not messages:
        raise ValueError("at least one message is required")
    request = _Request(messages, max(1, min(int(max_new_tokens), MAX_NEW_TOKENS)), float(temperature),
                       float(top_p))
    _load(path).queue.put(request)
    request.done.wait()
    if request.error is not None:
        raise request.error
    text, stop_reason = request.text, "max_tokens" if request.hit_limit else "end_turn"
    for marker in stop or []:
        if marker and marker in text:
            text, stop_reason = text[: text.index(marker)], "stop_sequence"
    return Generation(text.strip(), request.input_tokens, request.output_tokens, stop_reason)


def rate(path: Path, messages: list[dict[str, str]], prompts: list[str], *, then: str | None = None,
         max_new_tokens: int = 32) -> tuple[list[float], str, int]:
    """Expected value in [0, 1] of the model's next digit (0-9) after each rating prompt, in turn.

    A tiny model cannot be trusted to write valid JSON, but it always has a distribution over the next digit,
    so structured scores come out valid by construction. The prompts are appended one after the other to the
    assistant turn (each followed by its most likely digit), reusing the KV cache: one prefill of the
    conversation plus a few tokens per rating. With ``then``, that prompt follows the last rating and the model
    continues it greedily (e.g. a rationale) from the same cache. Concurrent calls with the same prompts are
    batched (a judge's calls always are). Returns (ratings, continuation, prompt tokens).
    """
    if not prompts:
        raise ValueError("at least one rating prompt is required")
    request = _Request(messages, max(1, min(int(max_new_tokens), MAX_NEW_TOKENS)), kind="rate",
                       prompts=tuple(prompts), then=then)
    _load(path).queue.put(request)
    request.done.wait()
    if request.error is not None:
        raise request.error
    return request.ratings, request.text, request.input_tokens


class ContextLengthExceeded(ValueError):
    """The prompt plus ``max_new_tokens`` do not fit the endpoint's context (LMI ``OPTION_MAX_MODEL_LEN``)."""


def prompt_tokens(path: Path, inputs: str) -> int:
    """Tokens of ``inputs`` as an LMI container counts them for a Llama 3.1 model: the BOS its tokenizer adds,
    each Llama 3 special token written in the text as one token, the rest by the local model's tokenizer.

    The local tokenizer (SmolLM2, a 49k vocabulary) splits English into at least about as many tokens as Llama
    3's 128k vocabulary does, so limits checked with this count err on the strict side.
    """
    specials = len(_LLAMA3_SPECIAL.findall(inputs))
    text = _LLAMA3_SPECIAL.sub("", inputs)
    return 1 + specials + len(_load(path).tokenizer(text, add_special_tokens=False)["input_ids"])


def check_context(path: Path, inputs: str, max_new_tokens: int, max_model_len: int) -> None:
    """Refuse a request whose prompt + ``max_new_tokens`` exceed ``max_model_len``, in LMI's words.

    LMI (djl-serving) with vLLM/lmi-dist refuses a prompt longer than the context: "Input prompt (N tokens) is
    too long and exceeds limit of M" (djl-serving #2773; in LMI 0.29 such a request hung until SageMaker's
    invocation timeout). A prompt that fits but leaves less room than ``max_new_tokens`` is not refused by LMI
    0.29's ``inputs`` API: vLLM stops the generation at the context (finish_reason ``length``). The local AWS is
    stricter and refuses it too, with the message LMI's chat API gives for it (djl-serving
    ``chat_completions/vllm_chat_utils.validate_input``): a budget the context cannot hold is a configuration
    error to see, not answers silently cut short.
    """
    tokens = prompt_tokens(path, inputs)
    if tokens > max_model_len:
        raise ContextLengthExceeded(f"Input prompt ({tokens} tokens) is too long and exceeds limit of {max_model_len}")
    if tokens + max_new_tokens > max_model_len:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{tokens + max_new_tokens} tokens ({tokens} in the messages, {max_new_tokens} in the completion). "
            "Please reduce the length of the messages or completion.")


#: Converse-style stop reasons -> the ``details.finish_reason`` of JumpStart's LMI/TGI containers.
FINISH_REASONS = {"end_turn": "eos_token", "max_tokens": "length", "stop_sequence": "stop_sequence"}


def generate(path: Path, request: dict[str, Any], *, max_model_len: int | None = None) -> dict[str, Any]:
    """JumpStart text generation: ``{"inputs": str, "parameters": {...}}`` -> the response body.

    ``{"generated_text": str}``, plus ``details`` (``finish_reason`` ``eos_token`` | ``length`` |
    ``stop_sequence``, ``generated_tokens``) when the parameters set ``"details": true``, as LMI and TGI do.
    With ``max_model_len`` (the endpoint model's ``OPTION_MAX_MODEL_LEN``), a request that does not fit it raises
    :class:`ContextLengthExceeded` before anything is generated (:func:`check_context`).
    """
    inputs = request.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
        raise ValueError('the request needs "inputs" as a non-empty string')
    parameters = request.get("parameters") or {}
    details = parameters.get("details", False)
    if not isinstance(details, bool):
        raise ValueError(f'parameters.details must be true or false, got {details!r}')
    max_new_tokens = parameters.get("max_new_tokens", 256)
    # "If specified, it must be a positive integer" (JumpStart Llama 3 notebook, supported inference parameters)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"parameters.max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if max_model_len is not None:
        check_context(path, inputs, max_new_tokens, max_model_len)
    generation = chat(
        path,
        messages_from_prompt(inputs),
        max_new_tokens=max_new_tokens,
        temperature=parameters.get("temperature", 0.0) if parameters.get("do_sample", True) else 0.0,
        top_p=parameters.get("top_p", 1.0),
        stop=parameters.get("stop"),
    )
    body: dict[str, Any] = {"generated_text": generation.text}
    if details:
        body["details"] = {"finish_reason": FINISH_REASONS[generation.stop_reason],
                           "generated_tokens": generation.output_tokens}
    return body

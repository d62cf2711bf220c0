"""The local model server's batching: concurrent judge ratings share one pass and change nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localaws import serving

PROMPTS = [f"{k} rating from 0 (worst) to 9 (best): " for k in ("correctness", "completeness", "faithfulness")]
THEN = "rationale in one sentence: The answer"


def _conversation(i: int) -> list[dict[str, str]]:
    answer = f"It is {50 + 3 * i} bar. " * (1 + i % 3)  # different lengths: the batch needs left padding
    return [{"role": "system", "content": "You grade answers strictly."},
            {"role": "user", "content": f"Question: maximum pressure of press P{i}? Reference: {50 + 7 * i} bar. "
                                        f"Answer: {answer}"}]


@pytest.fixture
def model_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from localaws.models import smollm2_dir

    monkeypatch.setenv("LOCALAWS_DTYPE", "float32")  # exact comparison: no bf16 rounding between batch shapes
    serving.shutdown()
    yield smollm2_dir()
    serving.shutdown()


def _count_rate_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every rating batch served from now on (and a window that lets four threads reach the queue)."""
    batch_sizes: list[int] = []
    original = serving._Loaded._rate

    def counting(self: serving._Loaded, batch: list) -> None:
        batch_sizes.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(serving._Loaded, "_rate", counting)
    monkeypatch.setattr(serving, "BATCH_WINDOW_SECONDS", 0.5)
    return batch_sizes


def test_concurrent_ratings_are_batched_and_equal_to_one_at_a_time(model_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    conversations = [_conversation(i) for i in range(4)]
    alone = [serving.rate(model_path, c, PROMPTS, then=THEN, max_new_tokens=12) for c in conversations]
    batch_sizes = _count_rate_batches(monkeypatch)
    together: list = [None] * len(conversations)

    def ask(i: int) -> None:
        together[i] = serving.rate(model_path, conversations[i], PROMPTS, then=THEN, max_new_tokens=12)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert max(batch_sizes) > 1, f"no batching happened: {batch_sizes}"
    for single, batched in zip(alone, together, strict=True):
        ratings, text, tokens = batched
        assert tokens == single[2]
        assert ratings == pytest.approx(single[0], abs=1e-3)
        assert text == single[1]
        assert len(ratings) == len(PROMPTS) and all(0 <= r <= 1 for r in ratings)


def test_rate_needs_a_prompt(model_path: Path) -> None:
    with pytest.raises(ValueError, match="rating prompt"):
        serving.rate(model_path, _conversation(0), [])


@pytest.mark.parametrize(("flags", "expected"), [("fpu avx2 avx512_bf16 amx_bf16", "bfloat16"),
                                                 ("fpu sse avx2", "float32")])
def test_serving_dtype_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str,
                                       expected: str) -> None:
    monkeypatch.delenv("LOCALAWS_DTYPE", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
    real_path = serving.Path
    monkeypatch.setattr(serving, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert serving.serving_dtype() == expected


def test_serving_dtype_override_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALAWS_DTYPE", "float16")
    with pytest.raises(ValueError, match="LOCALAWS_DTYPE"):
        serving.serving_dtype()


def test_shutdown_joins_every_worker(model_path: Path) -> None:
    """A worker still unwinding torch state while the interpreter exits aborted the process (CI, exit -6)."""
    serving.rate(model_path, _conversation(0), PROMPTS, then=THEN, max_new_tokens=2)
    workers = [loaded.worker for loaded in serving._models.values()]
    assert workers and all(w.is_alive() for w in workers)
    serving.shutdown()
    assert not serving._models and not any(w.is_alive() for w in workers)


# --- InvokeEndpoint's details (the LMI/TGI contract) ---------------------------------------------------------------


@pytest.mark.parametrize(("stop_reason", "finish_reason"),
                         [("end_turn", "eos_token"), ("max_tokens", "length"), ("stop_sequence", "stop_sequence")])
def test_details_report_why_generation_stopped(monkeypatch: pytest.MonkeyPatch, stop_reason: str,
                                               finish_reason: str) -> None:
    seen: dict = {}

    def fake_chat(path: Path, messages: list, **kwargs: object) -> serving.Generation:
        seen.update(kwargs)
        return serving.Generation("Hello there", input_tokens=12, output_tokens=7, stop_reason=stop_reason)

    monkeypatch.setattr(serving, "chat", fake_chat)
    request = {"inputs": "Hi", "parameters": {"max_new_tokens": 7, "details": True, "do_sample": False}}
    assert serving.generate(Path("m"), request) == {
        "generated_text": "Hello there", "details": {"finish_reason": finish_reason, "generated_tokens": 7}}
    assert seen["max_new_tokens"] == 7 and seen["temperature"] == 0.0
    # without "details": true, the plain JumpStart body
    assert serving.generate(Path("m"), {"inputs": "Hi", "parameters": {"details": False}}) == {
        "generated_text": "Hello there"}
    assert serving.generate(Path("m"), {"inputs": "Hi"}) == {"generated_text": "Hello there"}
    with pytest.raises(ValueError, match="parameters.details must be true or false"):
        serving.generate(Path("m"), {"inputs": "Hi", "parameters": {"details": "yes"}})


def test_a_generation_cut_by_max_new_tokens_reports_length(model_path: Path) -> None:
    body = serving.generate(model_path, {"inputs": "Describe a hydraulic press in detail.",
                                         "parameters": {"max_new_tokens": 4, "details": True}})
    assert body["details"] == {"finish_reason": "length", "generated_tokens": 4}
    assert body["generated_text"]


def test_batch_token_budget_bounds_rows_times_the_longest_request() -> None:
    assert serving.fits_batch(1, 50_000, budget=6144)  # a long request is served alone, never refused
    assert serving.fits_batch(8, 768, budget=6144) and not serving.fits_batch(8, 769, budget=6144)
    assert not serving.fits_batch(2, 3073, budget=6144)
    short = serving._Request([{"role": "user", "content": "x" * 350}], max_new_tokens=64)
    judge = serving._Request([{"role": "user", "content": "x" * 3500}], 32, kind="rate", prompts=("y" * 35,))
    assert (short.estimated_tokens, judge.estimated_tokens) == (164, 1042)


def test_long_concurrent_requests_make_smaller_batches(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four judge calls whose prompts are too long to share one pass under the budget are split, not refused."""
    batch_sizes = _count_rate_batches(monkeypatch)
    long_answer = "The pressure is 50 bar. " * 20  # ~480 characters: ~150 estimated tokens per request
    conversations = [[{"role": "user", "content": f"Question {i}? Answer: {long_answer}"}] for i in range(4)]
    one = serving._Request(conversations[0], 4, kind="rate", prompts=tuple(PROMPTS)).estimated_tokens
    monkeypatch.setattr(serving, "MAX_BATCH_TOKENS", 2 * one + 10)  # room for two rows, not three
    results: list = [None] * 4

    def ask(i: int) -> None:
        results[i] = serving.rate(model_path, conversations[i], PROMPTS, max_new_tokens=4)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(r is not None for r in results) and sum(batch_sizes) == 4
    assert max(batch_sizes) <= 2, f"a batch went over the token budget: {batch_sizes}"

"""The local model server's batching: concurrent judge ratings share one pass and change nothing; and the serving
context (the endpoint model's OPTION_MAX_MODEL_LEN) enforced as LMI reports it through SageMaker."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
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


# --- the serving context: OPTION_MAX_MODEL_LEN (issue 12) ----------------------------------------------------------


def test_prompt_tokens_count_llama3_special_tokens_once_and_the_bos(model_path: Path) -> None:
    tokenizer = serving._load(model_path).tokenizer
    plain = "The VM-200 bowl holds 160 litres."
    text_tokens = len(tokenizer(plain, add_special_tokens=False)["input_ids"])
    assert serving.prompt_tokens(model_path, plain) == 1 + text_tokens  # + the BOS LMI's tokenizer adds
    chat = f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{plain}<|eot_id|>"
    assert serving.prompt_tokens(model_path, chat) == 1 + 4 + len(
        tokenizer(f"user\n\n{plain}", add_special_tokens=False)["input_ids"])


def test_check_context_accepts_an_exact_fit_and_refuses_one_token_more(model_path: Path) -> None:
    prompt = "Describe the guard interlock of the Vortex Mixer VM-200."
    tokens = serving.prompt_tokens(model_path, prompt)
    serving.check_context(model_path, prompt, 100 - tokens, 100)
    with pytest.raises(serving.ContextLengthExceeded) as caught:
        serving.check_context(model_path, prompt, 101 - tokens, 100)
    assert str(caught.value) == (
        f"This model's maximum context length is 100 tokens. However, you requested 101 tokens ({tokens} in the "
        f"messages, {101 - tokens} in the completion). Please reduce the length of the messages or completion.")
    with pytest.raises(serving.ContextLengthExceeded, match=rf"^Input prompt \({tokens} tokens\) is too long and "
                                                            rf"exceeds limit of {tokens - 1}$"):
        serving.check_context(model_path, prompt, 1, tokens - 1)


def test_generate_refuses_before_generating(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "chat", lambda *a, **k: pytest.fail("generated although the context is too short"))
    with pytest.raises(serving.ContextLengthExceeded):
        serving.generate(model_path, {"inputs": "Hi", "parameters": {"max_new_tokens": 64}}, max_model_len=32)


@pytest.mark.parametrize("max_new_tokens", [0, -1, 1.5, "64", True])
def test_max_new_tokens_must_be_a_positive_integer(max_new_tokens: object) -> None:
    with pytest.raises(ValueError, match="parameters.max_new_tokens must be a positive integer"):
        serving.generate(Path("m"), {"inputs": "Hi", "parameters": {"max_new_tokens": max_new_tokens}})


def test_max_model_len_comes_from_the_container_environment() -> None:
    from localaws.sagemaker import LLAMA31_MAX_POSITION_EMBEDDINGS, max_model_len

    assert max_model_len({"OPTION_MAX_MODEL_LEN": "4096", "OTHER": "x"}) == 4096
    assert max_model_len({}) == max_model_len(None) == LLAMA31_MAX_POSITION_EMBEDDINGS == 131072
    for bad in ("0", "-5", "4k", "", "131073"):
        with pytest.raises(ValueError, match="OPTION_MAX_MODEL_LEN"):
            max_model_len({"OPTION_MAX_MODEL_LEN": bad})


# Through the local AWS: CreateModel's PrimaryContainer.Environment decides, for the endpoint's current model.

REGION, ACCOUNT = "us-east-1", "123456789012"
BASE_MODEL = "s3://jumpstart-cache-prod-us-east-1/meta-textgeneration/meta-textgeneration-llama-3-1-8b-instruct/v1/"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.29.0-lmi11.0.0-cu124"
PROMPT = "Question: " + "How big is the bowl of the Vortex Mixer VM-200? " * 3 + "\nAnswer:"  # ~60 tokens


@pytest.fixture
def sagemaker(local_aws: Stack) -> Iterator[tuple[Any, Any]]:
    from botocore.config import Config

    local_aws.clear_faults()
    once = Config(retries={"total_max_attempts": 1}, read_timeout=300)
    yield local_aws.client("sagemaker", config=once), local_aws.client("sagemaker-runtime", config=once)
    local_aws.clear_faults()


def _hosted(sm: Any, environment: dict[str, str] | None) -> str:
    """A model (with ``environment``) and its endpoint config; returns their name."""
    name = f"ctx-{uuid.uuid4().hex[:8]}"
    container = {"Image": IMAGE, "ModelDataUrl": BASE_MODEL} | ({"Environment": environment} if environment else {})
    sm.create_model(ModelName=name, ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/r", PrimaryContainer=container)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.g4dn.xlarge"}])
    return name


def _settled(sm: Any, endpoint: str, config: str) -> None:
    deadline = time.monotonic() + 30
    while (d := sm.describe_endpoint(EndpointName=endpoint))["EndpointStatus"] != "InService" \
            or d["EndpointConfigName"] != config:
        assert time.monotonic() < deadline, f"{endpoint}: {d['EndpointStatus']} on {d['EndpointConfigName']}"
        time.sleep(0.2)


def _invoke(runtime: Any, endpoint: str, max_new_tokens: int) -> dict[str, Any]:
    body = json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": max_new_tokens, "details": True}})
    response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Body=body)
    return json.loads(response["Body"].read())


def test_invoke_endpoint_over_the_models_context_is_lmis_error_through_sagemaker(sagemaker: tuple[Any, Any]) -> None:
    from botocore.exceptions import ClientError

    sm, runtime = sagemaker
    config = _hosted(sm, {"OPTION_MAX_MODEL_LEN": "80"})
    endpoint = config + "-ep"
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    _settled(sm, endpoint, config)
    with pytest.raises(ClientError) as caught:
        _invoke(runtime, endpoint, 60)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 424  # LMI's status for an engine error
    original = json.loads(response["OriginalMessage"])
    assert set(original) == {"error", "code"} and original["code"] == 424
    assert re.fullmatch(r"This model's maximum context length is 80 tokens\. However, you requested \d+ tokens "
                        r"\(\d+ in the messages, 60 in the completion\)\. Please reduce the length of the messages "
                        r"or completion\.", original["error"])
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    assert response["Error"]["Message"] == (
        f'Received client error (424) from primary with message "{response["OriginalMessage"]}". See '
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logEventViewer:group={group} "
        f"in account {ACCOUNT} for more information.")
    assert response["LogStreamArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    # the same prompt with a budget that fits is served
    assert _invoke(runtime, endpoint, 4)["details"]["generated_tokens"] <= 4


def test_the_endpoint_applies_its_current_models_context(sagemaker: tuple[Any, Any]) -> None:
    """The context is read from the model behind the endpoint's current config: an update to a model with a
    longer OPTION_MAX_MODEL_LEN (or none: Llama 3.1's 131072) lets the same request through."""
    from botocore.exceptions import ClientError

    sm, runtime = sagemaker
    short, longer = _hosted(sm, {"OPTION_MAX_MODEL_LEN": "80"}), _hosted(sm, {"OPTION_MAX_MODEL_LEN": "4096"})
    unset = _hosted(sm, None)
    endpoint = short + "-ep"
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=short)
    _settled(sm, endpoint, short)
    with pytest.raises(ClientError, match="maximum context length is 80 tokens"):
        _invoke(runtime, endpoint, 40)
    for config in (longer, unset):
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        _settled(sm, endpoint, config)
        assert _invoke(runtime, endpoint, 40)["generated_text"] is not None

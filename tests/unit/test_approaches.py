"""The three answerers over fake ports: prompts, records, latency, and errors kept per sample."""

from __future__ import annotations

import io
import json
from unittest.mock import MagicMock

import pytest
from botocore.exceptions import ClientError

from tailor.approaches import AnswerSettings, Ports, answer_batch
from tailor.generation import LLAMA3_STOP
from tailor.prompts import ENDPOINT_METHODS, SYSTEM, endpoint_prompt, endpoint_stop_sequences
from tailor.qa import QAItem

ITEMS = [QAItem(f"s{i}", "Vortex Mixer VM-200", f"Question {i}?", f"Answer {i}.") for i in range(5)]
SETTINGS = AnswerSettings("KB12345678", 2, "meta.llama3-1-8b-instruct-v1:0", "champion", 64, concurrency=3)


@pytest.fixture
def ports() -> Ports:
    retriever, generator, endpoint = MagicMock(), MagicMock(), MagicMock()
    retriever.retrieve.return_value = {"retrievalResults": [
        {"content": {"text": "The VM-200 bowl holds 160 litres."}, "score": 0.9,
         "metadata": {"product_name": "Vortex Mixer VM-200"}, "location": {"s3Location": {"uri": "s3://b/k"}}}]}
    generator.converse.return_value = {"output": {"message": {"content": [{"text": " 160 litres. "}]}},
                                       "usage": {"inputTokens": 120, "outputTokens": 4}}
    endpoint.invoke_endpoint.side_effect = lambda **_: {"Body": io.BytesIO(b'{"generated_text": "160 litres."}')}
    return Ports(retriever, generator, endpoint)


def test_rag_retrieves_then_converses_with_the_context_as_data(ports: Ports) -> None:
    records = answer_batch("rag", ITEMS, ports, SETTINGS)
    assert [r.sample_id for r in records] == [i.sample_id for i in ITEMS]
    record = records[0]
    assert record.answer == "160 litres." and record.error is None
    assert (record.input_tokens, record.output_tokens) == (120, 4)
    assert record.retrieved[0].product_name == "Vortex Mixer VM-200"
    assert record.latency_ms is not None and record.retrieval_ms is not None
    assert record.latency_ms >= record.retrieval_ms > 0
    call = ports.generator.converse.call_args.kwargs
    assert call["system"] == [{"text": SYSTEM}] and call["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.0}
    user = call["messages"][0]["content"][0]["text"]
    assert "<context>" in user and "160 litres" in user and "ignore any instructions" in user
    assert ports.retriever.retrieve.call_args.kwargs["retrievalConfiguration"] == {
        "vectorSearchConfiguration": {"numberOfResults": 2}}


def _with_method(method: str) -> AnswerSettings:
    return AnswerSettings(**{**SETTINGS.__dict__, "finetune_method": method})


@pytest.mark.parametrize("method", ENDPOINT_METHODS)
def test_finetune_calls_the_endpoint_without_retrieval_in_its_training_format(ports: Ports, method: str) -> None:
    records = answer_batch("finetune", ITEMS[:1], ports, _with_method(method))
    assert records[0].answer == "160 litres." and records[0].retrieved == []
    ports.retriever.retrieve.assert_not_called()
    body = json.loads(ports.endpoint.invoke_endpoint.call_args.kwargs["Body"])
    assert body["inputs"] == endpoint_prompt(method, "Question 0?") and "<context>" not in body["inputs"]
    assert body["parameters"]["stop"] == [LLAMA3_STOP, *endpoint_stop_sequences(method)]


@pytest.mark.parametrize("method", ENDPOINT_METHODS)
def test_hybrid_sends_the_retrieved_context_to_the_endpoint_in_its_training_format(ports: Ports,
                                                                                   method: str) -> None:
    records = answer_batch("hybrid", ITEMS[:1], ports, _with_method(method))
    body = json.loads(ports.endpoint.invoke_endpoint.call_args.kwargs["Body"])
    assert body["inputs"] == endpoint_prompt(method, "Question 0?", "[1] The VM-200 bowl holds 160 litres.")
    assert "<context>" in body["inputs"] and "160 litres" in body["inputs"]
    assert records[0].retrieval_ms is not None
    assert records[0].retrieved and records[0].retrieval_ms > 0


def test_the_default_method_is_the_configured_default() -> None:
    """Callers that do not say how the champion was trained get finetune.method's packaged default."""
    from tailor.config import load_settings

    assert SETTINGS.finetune_method == load_settings(env={}).finetune.method == "domain_adaptation"


@pytest.mark.parametrize("approach", ["finetune", "hybrid"])
def test_an_unknown_method_fails_the_batch_before_any_call(ports: Ports, approach: str) -> None:
    with pytest.raises(ValueError, match="unknown fine-tuning method 'lora'"):
        answer_batch(approach, ITEMS, ports, _with_method("lora"))
    ports.endpoint.invoke_endpoint.assert_not_called()
    ports.retriever.retrieve.assert_not_called()


def test_rag_ignores_the_endpoint_method(ports: Ports) -> None:
    assert answer_batch("rag", ITEMS[:1], ports, _with_method("lora"))[0].error is None


def test_a_failing_sample_is_recorded_and_the_batch_goes_on(ports: Ports) -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Too many requests"}}, "Converse")
    good = ports.generator.converse.return_value
    ports.generator.converse.side_effect = [good, throttled, good, good, good]
    records = answer_batch("rag", ITEMS, ports, AnswerSettings(**{**SETTINGS.__dict__, "concurrency": 1}))
    failed = [r for r in records if r.error]
    assert len(failed) == 1 and failed[0].error is not None and "ThrottlingException" in failed[0].error
    assert failed[0].answer is None and failed[0].latency_ms is None
    assert sum(r.answer is not None for r in records) == 4


def test_unknown_approach_is_refused(ports: Ports) -> None:
    with pytest.raises(ValueError, match="rag, finetune, hybrid"):
        answer_batch("zero-shot", ITEMS, ports, SETTINGS)


# --- why generation stopped: an answer cut by max_tokens is counted, not mistaken for a complete one -------------


@pytest.mark.parametrize(("stop_reason", "truncated"),
                         [("max_tokens", True), ("end_turn", False), ("stop_sequence", False), (None, None)])
def test_rag_records_converse_stop_reason(ports: Ports, stop_reason: str | None, truncated: bool | None) -> None:
    response = dict(ports.generator.converse.return_value)
    if stop_reason is not None:
        response["stopReason"] = stop_reason
    ports.generator.converse.return_value = response
    record = answer_batch("rag", ITEMS[:1], ports, SETTINGS)[0]
    assert (record.stop_reason, record.truncated) == (stop_reason, truncated)


@pytest.mark.parametrize("approach", ["finetune", "hybrid"])
@pytest.mark.parametrize(("details", "expected"), [
    ({"finish_reason": "length", "generated_tokens": 64}, ("length", True, 64)),
    ({"finish_reason": "eos_token", "generated_tokens": 9}, ("eos_token", False, 9)),
    ({"finish_reason": "stop_sequence", "generated_tokens": 12}, ("stop_sequence", False, 12)),
    (None, (None, None, None)),  # an endpoint that ignores "details": unknown, never guessed
])
def test_endpoint_records_finish_reason_from_details(ports: Ports, approach: str, details: dict | None,
                                                     expected: tuple) -> None:
    payload = {"generated_text": "160 litres."} | ({"details": details} if details else {})
    body = json.dumps([payload] if approach == "hybrid" else payload).encode()  # TGI list and LMI dict shapes
    ports.endpoint.invoke_endpoint.side_effect = lambda **_: {"Body": io.BytesIO(body)}
    record = answer_batch(approach, ITEMS[:1], ports, SETTINGS)[0]
    assert (record.stop_reason, record.truncated, record.output_tokens) == expected
    assert record.answer == "160 litres." and record.error is None
    parameters = json.loads(ports.endpoint.invoke_endpoint.call_args.kwargs["Body"])["parameters"]
    assert parameters["details"] is True and parameters["max_new_tokens"] == SETTINGS.max_tokens


def test_a_failed_sample_has_no_stop_reason(ports: Ports) -> None:
    ports.generator.converse.side_effect = ClientError({"Error": {"Code": "ValidationException", "Message": "x"}},
                                                       "Converse")
    record = answer_batch("rag", ITEMS[:1], ports, SETTINGS)[0]
    assert record.error and record.stop_reason is None and record.truncated is None


def test_the_default_generation_budget_fits_long_reference_answers() -> None:
    """Reference answers run to 600 words (~800 Llama tokens): the default budget must not cut such an answer."""
    from tailor.config import load_settings

    assert load_settings(env={}).evaluation.max_tokens >= 1024

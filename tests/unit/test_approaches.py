"""The three answerers over fake ports: prompts, records, latency, and errors kept per sample."""

from __future__ import annotations

import io
import json
from unittest.mock import MagicMock

import pytest
from botocore.exceptions import ClientError

from tailor.approaches import AnswerSettings, Ports, answer_batch
from tailor.prompts import SYSTEM
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
    assert [r["sample_id"] for r in records] == [i.sample_id for i in ITEMS]
    record = records[0]
    assert record["answer"] == "160 litres." and record["error"] is None
    assert (record["input_tokens"], record["output_tokens"]) == (120, 4)
    assert record["retrieved"][0]["product_name"] == "Vortex Mixer VM-200"
    assert record["latency_ms"] >= record["retrieval_ms"] > 0
    call = ports.generator.converse.call_args.kwargs
    assert call["system"] == [{"text": SYSTEM}] and call["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.0}
    user = call["messages"][0]["content"][0]["text"]
    assert "<context>" in user and "160 litres" in user and "ignore any instructions" in user
    assert ports.retriever.retrieve.call_args.kwargs["retrievalConfiguration"] == {
        "vectorSearchConfiguration": {"numberOfResults": 2}}


def test_finetune_calls_the_endpoint_without_retrieval(ports: Ports) -> None:
    records = answer_batch("finetune", ITEMS[:1], ports, SETTINGS)
    assert records[0]["answer"] == "160 litres." and records[0]["retrieved"] == []
    ports.retriever.retrieve.assert_not_called()
    body = json.loads(ports.endpoint.invoke_endpoint.call_args.kwargs["Body"])
    assert "<|start_header_id|>user<|end_header_id|>" in body["inputs"] and "<context>" not in body["inputs"]


def test_hybrid_sends_the_retrieved_context_to_the_endpoint(ports: Ports) -> None:
    records = answer_batch("hybrid", ITEMS[:1], ports, SETTINGS)
    body = json.loads(ports.endpoint.invoke_endpoint.call_args.kwargs["Body"])
    assert "<context>" in body["inputs"] and "160 litres" in body["inputs"]
    assert records[0]["retrieved"] and records[0]["retrieval_ms"] > 0


def test_a_failing_sample_is_recorded_and_the_batch_goes_on(ports: Ports) -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Too many requests"}}, "Converse")
    good = ports.generator.converse.return_value
    ports.generator.converse.side_effect = [good, throttled, good, good, good]
    records = answer_batch("rag", ITEMS, ports, AnswerSettings(**{**SETTINGS.__dict__, "concurrency": 1}))
    failed = [r for r in records if r["error"]]
    assert len(failed) == 1 and "ThrottlingException" in failed[0]["error"]
    assert failed[0]["answer"] is None and failed[0]["latency_ms"] is None
    assert sum(r["answer"] is not None for r in records) == 4


def test_unknown_approach_is_refused(ports: Ports) -> None:
    with pytest.raises(ValueError, match="rag, finetune, hybrid"):
        answer_batch("zero-shot", ITEMS, ports, SETTINGS)

"""The three answerers under test, over three ports (boto3 clients): Retriever, Generator, Endpoint.

* ``rag``      - bedrock-agent-runtime ``Retrieve`` (top-k) + bedrock-runtime ``Converse`` (temperature 0);
* ``finetune`` - sagemaker-runtime ``InvokeEndpoint`` on the champion (JumpStart Llama 3.1 contract);
* ``hybrid``   - ``Retrieve`` + the fine-tuned endpoint with the same grounded user turn as RAG.

The endpoint is prompted in the format its model was trained on (``AnswerSettings.finetune_method``:
:func:`tailor.prompts.endpoint_prompt`): the instruction template for ``instruction_tuning``, a plain completion
for ``domain_adaptation``, chat markup for a ``base`` model. Every approach gets the same instructions (the
system prompt, or the template's) and decoding settings. Each call's latency is measured around the
API call only; a failure after botocore's retries becomes the sample's ``error`` (never a fake answer).
Each answer records why generation stopped (``stop_reason``: Converse's ``stopReason`` or the endpoint's
``details.finish_reason``) and ``truncated`` (it hit ``max_tokens``; None when the service gave no reason).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tailor.generation import invoke_jumpstart, is_truncated
from tailor.prompts import DOMAIN_ADAPTATION, SYSTEM, endpoint_prompt, endpoint_stop_sequences, grounded_question
from tailor.qa import QAItem
from tailor.records import Approach, Retrieved, SampleRecord

log = logging.getLogger(__name__)
APPROACHES = tuple(Approach.values())


@dataclass(frozen=True)
class Ports:
    retriever: Any  # bedrock-agent-runtime client
    generator: Any  # bedrock-runtime client
    endpoint: Any  # sagemaker-runtime client


@dataclass(frozen=True)
class AnswerSettings:
    knowledge_base_id: str
    top_k: int
    generator_model_id: str
    endpoint_name: str
    max_tokens: int
    temperature: float = 0.0
    concurrency: int = 8
    #: How the endpoint's model was trained (``finetune.method`` of its training run, or ``base``): decides the
    #: served prompt's format. The default is ``finetune.method``'s default in config/defaults.yaml.
    finetune_method: str = DOMAIN_ADAPTATION


def retrieve(client: Any, knowledge_base_id: str, question: str, top_k: int) -> tuple[list[Retrieved], float]:
    """Top-k chunks (text, product, score, uri) and the call's latency in ms."""
    started = time.perf_counter()
    response = client.retrieve(
        knowledgeBaseId=knowledge_base_id, retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": top_k}},
    )
    latency = (time.perf_counter() - started) * 1000
    chunks = [
        Retrieved(text=r["content"]["text"], score=r.get("score"),
                  product_name=(r.get("metadata") or {}).get("product_name"),
                  uri=((r.get("location") or {}).get("s3Location") or {}).get("uri"))
        for r in response["retrievalResults"]
    ]
    return chunks, latency


def converse(client: Any, model_id: str, user: str, *, max_tokens: int, temperature: float) -> dict[str, Any]:
    started = time.perf_counter()
    response = client.converse(
        modelId=model_id, system=[{"text": SYSTEM}], messages=[{"role": "user", "content": [{"text": user}]}],
        inferenceConfig={"maxTokens": max_tokens, "temperature": temperature},
    )
    latency = (time.perf_counter() - started) * 1000
    text = "".join(b.get("text", "") for b in response["output"]["message"]["content"]).strip()
    usage = response.get("usage", {})
    return {"answer": text, "latency_ms": latency, "input_tokens": usage.get("inputTokens"),
            "output_tokens": usage.get("outputTokens"), "stop_reason": response.get("stopReason")}


def _context(chunks: list[Retrieved]) -> str:
    return "\n\n".join(f"[{i + 1}] {c.text}" for i, c in enumerate(chunks))


def answer(approach: str, item: QAItem, ports: Ports, settings: AnswerSettings) -> SampleRecord:
    """One sample's record: the answer with latency and tokens, the retrieved context, or the error."""
    approach = Approach.parse(approach)
    record = SampleRecord(sample_id=item.sample_id, approach=approach, product_name=item.product_name,
                          question=item.question, reference=item.answer)
    try:
        context = None
        if approach.retrieves:
            record.retrieved, record.retrieval_ms = retrieve(ports.retriever, settings.knowledge_base_id,
                                                             item.question, settings.top_k)
            context = _context(record.retrieved)
        if not approach.uses_endpoint:
            result = converse(ports.generator, settings.generator_model_id,
                              grounded_question(item.question, context or ""),
                              max_tokens=settings.max_tokens, temperature=settings.temperature)
            record.answer, latency_ms = result["answer"], result["latency_ms"]
            record.input_tokens, record.output_tokens = result["input_tokens"], result["output_tokens"]
            record.stop_reason = result["stop_reason"]
        else:
            method = settings.finetune_method
            generated = invoke_jumpstart(ports.endpoint, settings.endpoint_name,
                                         endpoint_prompt(method, item.question, context),
                                         max_new_tokens=settings.max_tokens, temperature=settings.temperature,
                                         stop=endpoint_stop_sequences(method))
            record.answer, latency_ms = generated.text, generated.latency_ms
            record.output_tokens, record.stop_reason = generated.output_tokens, generated.stop_reason
        record.latency_ms = latency_ms + (record.retrieval_ms or 0.0)
        record.truncated = is_truncated(record.stop_reason)
    except Exception as error:  # recorded per sample; the batch and the run go on
        record.answer, record.latency_ms, record.input_tokens, record.output_tokens = None, None, None, None
        record.stop_reason = record.truncated = None
        record.error = f"{type(error).__name__}: {error}"
        log.warning("%s sample %s failed: %s", approach, item.sample_id, record.error)
    return record


def answer_batch(approach: str, items: list[QAItem], ports: Ports, settings: AnswerSettings) -> list[SampleRecord]:
    """Answer a batch with bounded concurrency (the serving side batches concurrent requests)."""
    if Approach.parse(approach).uses_endpoint:
        endpoint_stop_sequences(settings.finetune_method)  # an unknown method fails the batch, not each sample
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
        return list(pool.map(lambda item: answer(approach, item, ports, settings), items))

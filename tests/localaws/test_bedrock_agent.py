"""The local bedrock-agent / bedrock-agent-runtime through real boto3 clients (botocore validates shapes)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.stack import Stack
from localaws.knowledge import chunk_text


def _wait(agent, kb: str, ds: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = agent.get_ingestion_job(knowledgeBaseId=kb, dataSourceId=ds, ingestionJobId=job_id)["ingestionJob"]
        if job["status"] not in ("STARTING", "IN_PROGRESS"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"ingestion job {job_id} still running after {timeout} s")


def _fault(stack: Stack, spec: dict | None) -> None:
    request = urllib.request.Request(
        f"{stack.endpoint_url}/_localaws/faults",
        data=json.dumps(spec).encode() if spec else None,
        method="POST" if spec else "DELETE",
    )
    urllib.request.urlopen(request).read()


def _knowledge_base(agent: Any, name: str, bucket: str, prefix: str) -> tuple[str, str]:
    """A knowledge base + S3 data source over ``s3://bucket/prefix`` -> (knowledge base id, data source id)."""
    kb_id = agent.create_knowledge_base(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/kb",
        knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"}},
        storageConfiguration={"type": "OPENSEARCH_SERVERLESS", "opensearchServerlessConfiguration": {
            "collectionArn": "arn:aws:aoss:us-east-1:123456789012:collection/x", "vectorIndexName": "i",
            "fieldMapping": {"vectorField": "v", "textField": "t", "metadataField": "m"}}},
    )["knowledgeBase"]["knowledgeBaseId"]
    ds_id = agent.create_data_source(
        knowledgeBaseId=kb_id, name="docs",
        dataSourceConfiguration={"type": "S3", "s3Configuration": {
            "bucketArn": f"arn:aws:s3:::{bucket}", "inclusionPrefixes": [prefix]}},
    )["dataSource"]["dataSourceId"]
    return kb_id, ds_id


@pytest.fixture(scope="module")
def kb(local_aws: Stack) -> dict:
    """A second, private knowledge base + data source so these tests never disturb the DAG tests' one."""
    agent = local_aws.client("bedrock-agent")
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket="localaws-tests")
    kb_id, ds_id = _knowledge_base(agent, "localaws-tests", "localaws-tests", "docs/")
    s3.put_object(Bucket="localaws-tests", Key="docs/mixer.txt", Body=b"The Vortex Mixer spins at 3000 rpm.")
    s3.put_object(Bucket="localaws-tests", Key="docs/press.txt", Body=b"The Hydro Press applies 200 bar.")
    s3.put_object(Bucket="localaws-tests", Key="docs/press.txt.metadata.json",
                  Body=json.dumps({"metadataAttributes": {"product_name": "Hydro Press"}}).encode())
    s3.put_object(Bucket="localaws-tests", Key="docs/photo.png", Body=b"\x89PNG")
    s3.put_object(Bucket="localaws-tests", Key="other/ignored.txt", Body=b"outside the inclusion prefix")
    return {"kb": kb_id, "ds": ds_id}


def test_ingestion_indexes_the_prefix_and_retrieve_ranks_by_meaning(local_aws: Stack, kb: dict) -> None:
    agent, runtime = local_aws.client("bedrock-agent"), local_aws.client("bedrock-agent-runtime")
    started = agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["ingestionJob"]
    assert started["status"] == "STARTING"
    job = _wait(agent, kb["kb"], kb["ds"], started["ingestionJobId"])
    assert job["status"] == "COMPLETE"
    stats = job["statistics"]
    assert stats["numberOfDocumentsScanned"] == 3  # mixer, press, photo (metadata and other/ excluded)
    assert stats["numberOfNewDocumentsIndexed"] == 2
    assert stats["numberOfDocumentsSkipped"] == 1
    assert stats["numberOfMetadataDocumentsScanned"] == 1

    result = runtime.retrieve(
        knowledgeBaseId=kb["kb"], retrievalQuery={"text": "What pressure does the Hydro Press apply?"},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 2}},
    )["retrievalResults"]
    assert [r["location"]["s3Location"]["uri"] for r in result] == [
        "s3://localaws-tests/docs/press.txt", "s3://localaws-tests/docs/mixer.txt"]
    top = result[0]
    assert top["content"]["text"] == "The Hydro Press applies 200 bar."
    assert top["metadata"]["product_name"] == "Hydro Press"
    assert 0 <= result[1]["score"] < top["score"] <= 1

    # A re-ingestion after a change reports modified and deleted documents.
    s3 = local_aws.client("s3")
    s3.put_object(Bucket="localaws-tests", Key="docs/mixer.txt", Body=b"The Vortex Mixer spins at 2800 rpm.")
    s3.delete_object(Bucket="localaws-tests", Key="docs/press.txt")
    again = agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["ingestionJob"]
    stats = _wait(agent, kb["kb"], kb["ds"], again["ingestionJobId"])["statistics"]
    assert (stats["numberOfModifiedDocumentsIndexed"], stats["numberOfDocumentsDeleted"]) == (1, 1)
    jobs = agent.list_ingestion_jobs(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["ingestionJobSummaries"]
    assert {j["ingestionJobId"] for j in jobs} == {started["ingestionJobId"], again["ingestionJobId"]}


def test_second_job_while_one_runs_is_a_conflict(local_aws: Stack, kb: dict) -> None:
    agent = local_aws.client("bedrock-agent")
    first = agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["ingestionJob"]
    with pytest.raises(ClientError) as error:
        agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])
    assert error.value.response["Error"]["Code"] == "ConflictException"
    assert first["ingestionJobId"] in error.value.response["Error"]["Message"]
    _wait(agent, kb["kb"], kb["ds"], first["ingestionJobId"])


@pytest.mark.parametrize("error, status", [("STOPPED", "STOPPED"), ("S3 read error", "FAILED")])
def test_injected_ingestion_faults_end_the_job(local_aws: Stack, kb: dict, error: str, status: str) -> None:
    agent = local_aws.client("bedrock-agent")
    _fault(local_aws, {"operation": "ingestion:run", "error": error, "message": f"injected {error}"})
    started = agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])
    job = _wait(agent, kb["kb"], kb["ds"], started["ingestionJob"]["ingestionJobId"])
    assert job["status"] == status
    assert job["failureReasons"] == [f"injected {error}"]


def test_injected_api_throttling_is_an_aws_error(local_aws: Stack, kb: dict) -> None:
    from botocore.config import Config

    agent = local_aws.client("bedrock-agent", config=Config(retries={"total_max_attempts": 1}))
    _fault(local_aws, {"operation": "bedrock-agent:StartIngestionJob", "error": "ThrottlingException",
                       "status": 429, "count": 1})
    try:
        with pytest.raises(ClientError) as error:
            agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])
        assert error.value.response["Error"]["Code"] == "ThrottlingException"
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    finally:
        _fault(local_aws, None)


def test_unknown_ids_are_not_found(local_aws: Stack, kb: dict) -> None:
    agent, runtime = local_aws.client("bedrock-agent"), local_aws.client("bedrock-agent-runtime")
    for call in (
        lambda: agent.get_data_source(knowledgeBaseId=kb["kb"], dataSourceId="NOPE000000"),
        lambda: agent.get_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"], ingestionJobId="NOPE000000"),
        lambda: agent.create_data_source(knowledgeBaseId="NOKB000000", name="x", dataSourceConfiguration={
            "type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::b"}}),
        lambda: runtime.retrieve(knowledgeBaseId="NOKB000000", retrievalQuery={"text": "q"}),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_data_source_round_trip(local_aws: Stack, kb: dict) -> None:
    agent = local_aws.client("bedrock-agent")
    source = agent.get_data_source(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["dataSource"]
    assert source["name"] == "docs" and source["status"] == "AVAILABLE"
    assert source["dataSourceConfiguration"]["s3Configuration"]["inclusionPrefixes"] == ["docs/"]
    names = [d["name"] for d in agent.list_data_sources(knowledgeBaseId=kb["kb"])["dataSourceSummaries"]]
    assert names == ["docs"]
    with pytest.raises(ClientError) as error:
        agent.create_data_source(knowledgeBaseId=kb["kb"], name="docs", dataSourceConfiguration={
            "type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::localaws-tests"}})
    assert error.value.response["Error"]["Code"] == "ConflictException"


def test_s3_notifications_reach_sqs_filtered_and_url_encoded(local_aws: Stack) -> None:
    """The bootstrap's notification sends only catalog/incoming/*.txt, with keys URL-encoded like AWS."""
    from localaws.bootstrap import bootstrap
    from tailor.kb_sync import catalog_keys_from_messages

    s3, sqs = local_aws.client("s3"), local_aws.client("sqs")
    spec = {"bucket": "notification-tests", "queue_name": "notification-tests", "knowledge_base_name": "nt",
            "data_source_name": "nt", "data_prefix": "kb-data/",
            "embedding_model_arn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
            "notification_prefix": "catalog/incoming/", "notification_suffix": ".txt"}
    created = bootstrap(local_aws.endpoint_url, spec)  # its own bucket and queue: no other test's events
    bucket, queue = created["bucket"], created["queue_url"]
    s3.put_object(Bucket=bucket, Key="catalog/incoming/spring catalog+v2.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="catalog/elsewhere/other.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="catalog/incoming/image.png", Body=b"x")
    messages = []
    for _ in range(5):
        messages += sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in messages]
    assert any(b.get("Event") == "s3:TestEvent" for b in bodies)  # AWS sends one when configured
    raw_keys = [r["s3"]["object"]["key"] for b in bodies for r in b.get("Records", [])]
    assert len(raw_keys) == 1 and "+catalog%2Bv2.txt" in raw_keys[0]  # space -> "+", "+" -> "%2B"
    keys = catalog_keys_from_messages(messages, "catalog/incoming/", ".txt")
    assert keys == ["catalog/incoming/spring catalog+v2.txt"]


@pytest.mark.parametrize(
    "words, max_tokens, overlap, expected",
    [(10, 300, 20, 1), (300, 300, 20, 1), (301, 300, 20, 2), (1000, 100, 20, 13), (0, 300, 20, 0)],
)
def test_fixed_size_chunking(words: int, max_tokens: int, overlap: int, expected: int) -> None:
    text = " ".join(f"w{i}" for i in range(words))
    chunks = chunk_text(text, {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {
        "maxTokens": max_tokens, "overlapPercentage": overlap}})
    assert len(chunks) == expected
    assert all(len(c.split()) <= max_tokens for c in chunks)
    if chunks:  # every word is covered, in order
        assert chunks[0].split()[0] == "w0" and chunks[-1].split()[-1] == f"w{words - 1}"


def test_unsupported_chunking_is_refused() -> None:
    with pytest.raises(ValueError, match="SEMANTIC"):
        chunk_text("x", {"chunkingStrategy": "SEMANTIC"})


# --- failed documents: the DOCUMENTS_FAILED fault of ingestion:run -------------------------------------------

FAIL_BUCKET = "localaws-faildocs"


@pytest.fixture
def own_kb(local_aws: Stack) -> Iterator[dict]:
    """A fresh knowledge base + data source over ``<uuid>/`` with three documents (one with a sidecar), so the
    index and the statistics seen here depend on nothing another test did; faults are disarmed around it."""
    import uuid

    agent, s3 = local_aws.client("bedrock-agent"), local_aws.client("s3")
    if FAIL_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=FAIL_BUCKET)
    prefix = f"{uuid.uuid4().hex[:8]}/"
    kb_id, ds_id = _knowledge_base(agent, f"faildocs-{prefix[:-1]}", FAIL_BUCKET, prefix)
    documents = {"mixer.txt": "The Vortex Mixer spins at 3000 rpm.",
                 "press.txt": "The Hydro Press applies 200 bar of hydraulic pressure.",
                 "welder.txt": "The Arc Welder draws 40 amps."}
    for name, text in documents.items():
        s3.put_object(Bucket=FAIL_BUCKET, Key=prefix + name, Body=text.encode())
    s3.put_object(Bucket=FAIL_BUCKET, Key=prefix + "press.txt.metadata.json",
                  Body=json.dumps({"metadataAttributes": {"product_name": "Hydro Press"}}).encode())
    local_aws.clear_faults()
    try:
        yield {"kb": kb_id, "ds": ds_id, "prefix": prefix, "uri": f"s3://{FAIL_BUCKET}/{prefix}"}
    finally:
        local_aws.clear_faults()


def _ingest(local_aws: Stack, kb: dict) -> dict:
    agent = local_aws.client("bedrock-agent")
    job_id = agent.start_ingestion_job(knowledgeBaseId=kb["kb"], dataSourceId=kb["ds"])["ingestionJob"][
        "ingestionJobId"]
    return _wait(agent, kb["kb"], kb["ds"], job_id)


def _retrieved_uris(local_aws: Stack, kb: dict, question: str) -> list[str]:
    results = local_aws.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=kb["kb"], retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 10}},
    )["retrievalResults"]
    return [r["location"]["s3Location"]["uri"] for r in results]


def test_failed_documents_leave_the_job_complete_counted_named_and_out_of_the_index(local_aws: Stack,
                                                                                     own_kb: dict) -> None:
    reason = "Ignored 1 files due to invalid metadata attributes."
    local_aws.arm_fault("ingestion:run", f"DOCUMENTS_FAILED:{own_kb['prefix']}press*", message=reason)
    job = _ingest(local_aws, own_kb)
    press = own_kb["uri"] + "press.txt"
    assert job["status"] == "COMPLETE"
    stats = job["statistics"]
    assert stats["numberOfDocumentsFailed"] == 1
    assert (stats["numberOfDocumentsScanned"], stats["numberOfNewDocumentsIndexed"]) == (3, 2)
    assert stats["numberOfDocumentsDeleted"] == 0
    assert job["failureReasons"] == [
        f"Encountered error: {reason} [Files: {press}]. Call to Customer Source did not succeed."]
    assert local_aws.fault_state()["fired"] == {"ingestion:run": 1}
    found = _retrieved_uris(local_aws, own_kb, "What pressure does the Hydro Press apply?")
    assert press not in found, "a failed document must not be retrievable"
    assert sorted(found) == [own_kb["uri"] + "mixer.txt", own_kb["uri"] + "welder.txt"]

    # The same data source ingested again without the fault: the document was only failed by the fault.
    again = _ingest(local_aws, own_kb)
    assert again["status"] == "COMPLETE" and "failureReasons" not in again
    stats = again["statistics"]
    assert (stats["numberOfDocumentsFailed"], stats["numberOfNewDocumentsIndexed"]) == (0, 1)
    assert _retrieved_uris(local_aws, own_kb, "What pressure does the Hydro Press apply?")[0] == press


def test_a_failed_document_that_was_indexed_before_leaves_the_index_and_is_not_deleted(local_aws: Stack,
                                                                                      own_kb: dict) -> None:
    assert _ingest(local_aws, own_kb)["statistics"]["numberOfNewDocumentsIndexed"] == 3
    local_aws.arm_fault("ingestion:run", "DOCUMENTS_FAILED", message="File body text exceeds size limit.")
    job = _ingest(local_aws, own_kb)
    first = own_kb["uri"] + "mixer.txt"  # the first document in key order
    assert job["status"] == "COMPLETE"
    assert job["statistics"]["numberOfDocumentsFailed"] == 1 and job["statistics"]["numberOfDocumentsDeleted"] == 0
    assert job["failureReasons"] == [f"Encountered error: File body text exceeds size limit. [Files: {first}]. "
                                     "Call to Customer Source did not succeed."]
    assert first not in _retrieved_uris(local_aws, own_kb, "How fast does the Vortex Mixer spin?")


def test_the_verdict_of_a_job_with_failed_documents_names_them(local_aws: Stack, own_kb: dict) -> None:
    """The sync's decision (tailor.kb_sync.ingestion_verdict) on what the local AWS really returns."""
    from tailor.kb_sync import ingestion_verdict

    local_aws.arm_fault("ingestion:run", f"DOCUMENTS_FAILED:{own_kb['prefix']}*r.txt", message="Bad document.")
    job = _ingest(local_aws, own_kb)
    verdict = ingestion_verdict(job)
    assert (verdict.done, verdict.ok, verdict.final, verdict.documents_failed) == (True, False, True, 2)
    assert "2 of 3 documents scanned FAILED" in verdict.message
    assert f"[Files: {own_kb['uri']}mixer.txt, {own_kb['uri']}welder.txt]" in verdict.message


def test_a_documents_failed_glob_that_selects_nothing_fails_the_job_loudly(local_aws: Stack, own_kb: dict) -> None:
    local_aws.arm_fault("ingestion:run", "DOCUMENTS_FAILED:no-such-prefix/*")
    job = _ingest(local_aws, own_kb)
    assert job["status"] == "FAILED"
    assert "DOCUMENTS_FAILED:no-such-prefix/*" in job["failureReasons"][0]
    assert "selects none of the 3 readable documents" in job["failureReasons"][0]

"""End to end: an ingestion job that ends COMPLETE with documents failed must fail the sync, not publish it.

On AWS a Knowledge Base ingestion job whose documents partly failed still ends ``COMPLETE``, with
``statistics.numberOfDocumentsFailed`` > 0 and ``failureReasons`` naming them. The local AWS's ``ingestion:run``
fault ``DOCUMENTS_FAILED:<glob>`` produces exactly that; here it fails one product's document while the real
``catalog_kb_sync`` runs (``dag.test()``). The run must fail at ``wait_for_ingestion`` with a message naming the
document, ``publish_kb_version`` must not run, ``catalog/current.json`` must not move, the drop must wait in the
incoming prefix, and the product must really be missing from Retrieve. Re-running the kept drop without the fault
(the message's advice) then syncs it.

Independent of file order, and it leaves the shared state as it found it: every object under the catalog and
data-source prefixes is snapshotted first and restored afterwards (new ones deleted, changed ones rewritten,
``current.json`` byte for byte), then one ingestion job re-indexes the restored documents. A rollback through the
DAG (as other e2e files do) is not enough here: after a failed sync ``current.json`` still names the old version,
so a re-sync of that version is skipped as "unchanged" while the data source holds the new documents.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import Stack, run_dag
from tests.conftest import SAMPLE_CATALOG
from tests.e2e.helpers import _drop, _ingestion_jobs, _marker, _retrieve, _task_states

pytestmark = pytest.mark.e2e
PRODUCT = "Vortex Mixer VM-200"
QUESTION = "What is the bowl capacity of the Vortex Mixer VM-200?"
DROP_NAME = "failed-documents-catalog.txt"
# Wording observed from AWS for a document it would not ingest (see localaws.bedrock_agent.failure_reason).
REASON = "Ignored 1 files due to invalid metadata attributes."


def _prefixes() -> tuple[Any, str]:
    from tailor.config import load_settings

    cfg = load_settings()
    return cfg.catalog, cfg.knowledge_base.data_prefix


def _objects(stack: Stack) -> dict[str, tuple[bytes, str]]:
    """Every object the sync may touch (catalog layout and data-source prefix): key -> (body, content type)."""
    catalog, data_prefix = _prefixes()
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    found: dict[str, tuple[bytes, str]] = {}
    for prefix in sorted({catalog.incoming_prefix, catalog.versions_prefix, catalog.quarantine_prefix,
                          catalog.current_marker_key, data_prefix}):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                found[obj["Key"]] = (got["Body"].read(), got.get("ContentType", "binary/octet-stream"))
    return found


def _reindex(stack: Stack) -> dict:
    """One ingestion job over the data source as it now is (what the sync's own job would do), awaited."""
    agent = stack.client("bedrock-agent")
    ids = {"knowledgeBaseId": stack.resources["knowledge_base_id"], "dataSourceId": stack.resources["data_source_id"]}
    job_id = agent.start_ingestion_job(**ids)["ingestionJob"]["ingestionJobId"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = agent.get_ingestion_job(**ids, ingestionJobId=job_id)["ingestionJob"]
        if job["status"] not in ("STARTING", "IN_PROGRESS"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"re-indexing job {job_id} still running after 300 s")


@pytest.fixture
def synced(local_aws: Stack, faults: Stack, synced_kb: dict) -> Iterator[Stack]:
    """A Knowledge Base holding the sample catalog (``synced_kb``: the published version to protect); afterwards
    the objects are restored as found and re-indexed, and faults disarmed."""
    s3, bucket = local_aws.client("s3"), local_aws.resources["bucket"]
    found = _objects(local_aws)
    try:
        yield local_aws
    finally:
        local_aws.clear_faults()
        now = _objects(local_aws)
        for key in set(now) - set(found):
            s3.delete_object(Bucket=bucket, Key=key)
        for key, (body, content_type) in found.items():
            if now.get(key, (None,))[0] != body:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        job = _reindex(local_aws)
        assert job["status"] == "COMPLETE" and job["statistics"]["numberOfDocumentsFailed"] == 0, job
        assert {k: v[0] for k, v in _objects(local_aws).items()} == {k: v[0] for k, v in found.items()}, \
            "the catalog and data-source objects must be left as they were found"


def _variant() -> bytes:
    """The sample with one description changed: a new content version, so the sync must stage and ingest."""
    text = SAMPLE_CATALOG.read_text()
    changed = text.replace(f"Description: The {PRODUCT} is", f"Description: The {PRODUCT} (failed-documents "
                           "test edition) is", 1)
    assert changed != text
    return changed.encode()


def test_a_complete_job_with_failed_documents_fails_the_sync_and_publishes_nothing(
        synced: Stack, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from tailor.kb_sync import _slug

    stack = synced
    catalog, data_prefix = _prefixes()
    bucket = stack.resources["bucket"]
    before, jobs_before = _marker(stack), len(_ingestion_jobs(stack))
    failed_key = f"{data_prefix}{_slug(PRODUCT)}.txt"
    failed_uri = f"s3://{bucket}/{failed_key}"
    assert _retrieve(stack, QUESTION)[0]["location"]["s3Location"]["uri"] == failed_uri, "precondition"
    drop = _drop(stack, DROP_NAME, _variant())

    stack.arm_fault("ingestion:run", f"DOCUMENTS_FAILED:{failed_key}", message=REASON)
    run = run_dag("catalog_kb_sync", {"catalog_key": drop})
    states = _task_states(run)
    assert run.state == "failed" and states["wait_for_ingestion"] == "failed", states
    assert {ti.task_id: ti.try_number for ti in run.get_task_instances()}["wait_for_ingestion"] == 1, \
        "a finished job must not be waited on again by task retries"
    assert states["start_ingestion"] == "success" and states["publish_kb_version"] == "upstream_failed", states
    assert stack.fault_state()["fired"] == {"ingestion:run": 1}

    jobs = _ingestion_jobs(stack)
    assert len(jobs) == jobs_before + 1
    job = stack.client("bedrock-agent").get_ingestion_job(
        knowledgeBaseId=stack.resources["knowledge_base_id"], dataSourceId=stack.resources["data_source_id"],
        ingestionJobId=jobs[0]["ingestionJobId"])["ingestionJob"]
    assert job["status"] == "COMPLETE", "AWS ends a job with failed documents COMPLETE"
    assert job["statistics"]["numberOfDocumentsFailed"] == 1 and job["statistics"]["numberOfDocumentsScanned"] == 15
    expected_reason = f"Encountered error: {REASON} [Files: {failed_uri}]. Call to Customer Source did not succeed."
    assert job["failureReasons"] == [expected_reason]

    assert _marker(stack) == before, "catalog/current.json must not advance past a sync with failed documents"
    listing = stack.client("s3").list_objects_v2(Bucket=bucket, Prefix=catalog.incoming_prefix)
    assert drop in [o["Key"] for o in listing.get("Contents", [])], "the drop must wait for the re-run"
    hits = _retrieve(stack, QUESTION, 5)
    assert all(h["location"]["s3Location"]["uri"] != failed_uri for h in hits), "the failed product is missing"
    assert all(h["metadata"].get("product_name") != PRODUCT for h in hits)

    captured = capfd.readouterr()
    output = captured.out + captured.err + caplog.text
    assert f"Bedrock ingestion job {job['ingestionJobId']}" in output
    assert "ended COMPLETE, but 1 of 15 documents scanned FAILED to ingest" in output
    assert f'"{expected_reason}"' in output and "The catalog version was NOT published" in output
    secret = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])["password"]
    assert secret not in output, "the AWS secret access key appeared in the task logs"

    # What the message advises: with the cause gone, running the kept drop again syncs and publishes it.
    again = run_dag("catalog_kb_sync", {"catalog_key": drop})
    assert again.state == "success", _task_states(again)
    marker = _marker(stack)
    assert marker is not None and before is not None, "no published catalog version"
    assert marker["run_id"] == again.run_id and marker["catalog_version"] != before["catalog_version"]
    assert marker["version_key"].endswith("/" + DROP_NAME)
    assert _retrieve(stack, QUESTION)[0]["location"]["s3Location"]["uri"] == failed_uri

"""End to end: every catalog case of the bad-input corpus dropped into the local S3 and checked by the sync.

Each drop goes through ``validate_catalogs`` / ``report_quarantined`` -- the very functions the
``catalog_kb_sync`` tasks run (their ``.function``), over the Airflow AWS connection -- and one rejected drop
goes through the whole DAG with ``dag.test()``. A rejected drop must land in the quarantine prefix with a
``.reason.json`` naming its rule, leave the Knowledge Base's data prefix, ``catalog/versions/`` and
``catalog/current.json`` byte-for-byte unchanged, and start no ingestion job.

The e2e tests share one local AWS and this file may run before or after the others: it seeds a sentinel document
(and a marker if none is published) so "unchanged" is checked against non-empty state, and puts the bucket back
exactly as it found it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import Stack, run_dag
from tests.data.bad.corpus import Case, case, cases, data_of

pytestmark = pytest.mark.e2e
CATALOG_CASES = cases("catalog")
SENTINEL_DOC = "zz-bad-inputs-sentinel.txt"


def _layout() -> Any:
    from tailor.config import load_settings

    cfg = load_settings()
    return cfg.catalog, cfg.knowledge_base.data_prefix


def _listing(stack: Stack, prefix: str = "") -> dict[str, str]:
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return found


def _body(stack: Stack, key: str) -> bytes | None:
    s3 = stack.client("s3")
    try:
        return s3.get_object(Bucket=stack.resources["bucket"], Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def _ingestion_jobs(stack: Stack) -> int:
    return len(stack.client("bedrock-agent").list_ingestion_jobs(
        knowledgeBaseId=stack.resources["knowledge_base_id"], dataSourceId=stack.resources["data_source_id"]
    )["ingestionJobSummaries"])


def _kb_state(stack: Stack) -> dict[str, Any]:
    """What a rejected drop must not change: the data source's documents, the versions and the marker."""
    catalog, data_prefix = _layout()
    return {
        "kb-data": {key: _body(stack, key) for key in _listing(stack, data_prefix)},
        "versions": _listing(stack, catalog.versions_prefix),
        "current.json": _body(stack, catalog.current_marker_key),
        "ingestion_jobs": _ingestion_jobs(stack),
    }


@pytest.fixture(scope="module")
def seeded_bucket(local_aws: Stack, airflow_db) -> Iterator[Stack]:
    """Seed a sentinel KB document (and a marker, if there is none); afterwards restore the bucket exactly."""
    catalog, data_prefix = _layout()
    s3, bucket = local_aws.client("s3"), local_aws.resources["bucket"]
    before = _listing(local_aws)
    marker_before = _body(local_aws, catalog.current_marker_key)
    s3.put_object(Bucket=bucket, Key=data_prefix + SENTINEL_DOC, Body=b"Product: Sentinel\n")
    if marker_before is None:
        s3.put_object(Bucket=bucket, Key=catalog.current_marker_key,
                      Body=json.dumps({"catalog_version": "bad-inputs-sentinel", "products": 1}).encode())
    yield local_aws
    for key in set(_listing(local_aws)) - set(before):  # the sentinel, the seeded marker, anything left behind
        s3.delete_object(Bucket=bucket, Key=key)
    assert _body(local_aws, catalog.current_marker_key) == marker_before
    assert _listing(local_aws) == before, "the bucket must be left as it was found"


def _drop(stack: Stack, c: Case) -> tuple[str, bytes]:
    catalog, _ = _layout()
    key = f"{catalog.incoming_prefix}bad-inputs/{c.filename}"
    data = data_of(c)
    stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=data)
    return key, data


@pytest.mark.parametrize("c", CATALOG_CASES, ids=[c.id for c in CATALOG_CASES])
def test_catalog_drop(c: Case, seeded_bucket: Stack) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from tailor_airflow.kb_sync import report_quarantined, validate_catalogs

    stack = seeded_bucket
    catalog, _ = _layout()
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    before = _kb_state(stack)
    assert before["kb-data"] and before["current.json"], "the seeded state is missing"
    key, data = _drop(stack, c)
    quarantine_key = catalog.quarantine_prefix + key.removeprefix(catalog.incoming_prefix)
    try:
        checked = validate_catalogs.function([key])
        if c.expect == "accepted":
            assert checked == {"catalog_key": key, "superseded": [], "quarantined": []}
            report_quarantined.function(checked)  # passes: nothing to report
            assert _body(stack, key) == data, "a valid drop waits in incoming for the staging task"
            assert _body(stack, quarantine_key) is None
        else:
            assert checked["catalog_key"] is None and checked["superseded"] == []
            assert [(q["key"], q["quarantine_key"]) for q in checked["quarantined"]] == [(key, quarantine_key)]
            assert _body(stack, key) is None, "the rejected drop must leave the incoming prefix"
            moved = _body(stack, quarantine_key)
            assert moved is not None and hashlib.sha256(moved).digest() == hashlib.sha256(data).digest()
            reason = json.loads(_body(stack, quarantine_key + ".reason.json") or b"null")
            assert reason["source"] == f"s3://{bucket}/{key}"
            found = [(i["rule"], i["line"]) for i in reason["issues"]]
            assert (c.rule, c.line) in found, found
            where = f"s3://{bucket}/{key}" + (f" line {c.line}: " if c.line is not None else ": ")
            issue = next(i for i in reason["issues"] if (i["rule"], i["line"]) == (c.rule, c.line))
            assert issue["message"].startswith(where) and c.says in issue["message"]
            with pytest.raises(AirflowFailException) as failed:
                report_quarantined.function(checked)
            assert f"- {key} -> {quarantine_key}:" in str(failed.value) and issue["message"] in str(failed.value)
        assert _kb_state(stack) == before
    finally:
        for leftover in (key, quarantine_key, quarantine_key + ".reason.json"):
            s3.delete_object(Bucket=bucket, Key=leftover)


def test_rejected_drop_fails_the_dag_and_leaves_the_kb_unchanged(seeded_bucket: Stack) -> None:
    """One full ``dag.test()`` of catalog_kb_sync on the HTML drop: run failed, quarantined, KB untouched."""
    stack = seeded_bucket
    c = case("html")
    catalog, _ = _layout()
    s3, bucket = stack.client("s3"), stack.resources["bucket"]
    before = _kb_state(stack)
    key, data = _drop(stack, c)
    quarantine_key = catalog.quarantine_prefix + key.removeprefix(catalog.incoming_prefix)
    try:
        run = run_dag("catalog_kb_sync", {"catalog_key": key})
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert run.state == "failed", states
        assert states["validate_catalogs"] == "success" and states["report_quarantined"] == "failed", states
        assert states["start_ingestion"] == "skipped" and states["publish_kb_version"] == "skipped", states
        assert _kb_state(stack) == before
        assert _body(stack, key) is None and _body(stack, quarantine_key) == data
        reason = json.loads(_body(stack, quarantine_key + ".reason.json") or b"null")
        assert [(i["rule"], i["line"]) for i in reason["issues"]] == [("preamble", 1)]
    finally:
        for leftover in (key, quarantine_key, quarantine_key + ".reason.json"):
            s3.delete_object(Bucket=bucket, Key=leftover)

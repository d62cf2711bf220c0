"""End to end: the real catalog sync DAGs, run with dag.test() through the local AWS.

A first sync (from no published version), retrieval quality on the sample catalog, an unchanged re-drop, a
malformed drop, then the polling DAG with a changed catalog. Each test asks for the state it needs
(``synced_kb``: the sample in the Knowledge Base; tests/e2e/conftest.py), so the file does not depend on others.
"""

from __future__ import annotations

import json

import pytest

from devstack.stack import Stack, run_dag
from tests.conftest import SAMPLE_CATALOG, TEST_QA
from tests.e2e.helpers import INCOMING, _drop, _ingestion_jobs, _kb_data, _marker, _retrieve, _task_states

pytestmark = pytest.mark.e2e


@pytest.fixture
def no_published_version(local_aws: Stack, airflow_db) -> None:
    """What the first sync of a Knowledge Base sees: no ``catalog/current.json`` (other files may have synced the
    sample already; without a marker, a drop of the same content is new again). The sync under test writes it."""
    local_aws.client("s3").delete_object(Bucket=local_aws.resources["bucket"], Key="catalog/current.json")


def test_valid_catalog_syncs_the_knowledge_base(local_aws: Stack, airflow_db, no_published_version) -> None:
    jobs_before = {j["ingestionJobId"] for j in _ingestion_jobs(local_aws)}
    key = _drop(local_aws, "industrial_catalog.txt", SAMPLE_CATALOG.read_bytes())
    run = run_dag("catalog_kb_sync", {"catalog_key": key})
    assert run.state == "success", _task_states(run)
    marker = _marker(local_aws)
    assert marker is not None, "no published catalog version"
    assert marker["products"] == 15 and marker["run_id"] == run.run_id
    jobs = [j for j in _ingestion_jobs(local_aws) if j["ingestionJobId"] not in jobs_before]
    assert [j["ingestionJobId"] for j in jobs] == [marker["ingestion_job_id"]]
    assert jobs[0]["status"] == "COMPLETE"
    assert len(_kb_data(local_aws)) == 30  # 15 product documents + 15 metadata sidecars
    listing = local_aws.client("s3").list_objects_v2(Bucket=local_aws.resources["bucket"], Prefix=INCOMING)
    assert "Contents" not in listing, "the handled drop must leave the incoming prefix"
    top = _retrieve(local_aws, "What is the bowl capacity of the Vortex Mixer VM-200?")[0]
    assert top["metadata"]["product_name"] == "Vortex Mixer VM-200"
    assert "Vortex Mixer VM-200" in top["content"]["text"]


def test_retrieve_finds_the_questions_product_first(local_aws: Stack, synced_kb: dict) -> None:
    """Acceptance: top-1 chunk is from the question's product for >= 80% of the 45 test questions."""
    qa = json.loads(TEST_QA.read_text())
    rates = {}
    for search_type in ("HYBRID", "SEMANTIC"):
        hits = sum(
            _retrieve(local_aws, item["question"], 1, search_type)[0]["metadata"]["product_name"]
            == item["product_name"]
            for item in qa
        )
        rates[search_type] = hits / len(qa)
    print(f"\nRetrieve top-1 product hit rate over {len(qa)} test questions: "
          + ", ".join(f"{k} {v:.1%}" for k, v in rates.items()))
    assert rates["HYBRID"] >= 0.80


def test_unchanged_catalog_skips_ingestion(local_aws: Stack, synced_kb: dict) -> None:
    before_jobs, before_data = len(_ingestion_jobs(local_aws)), _kb_data(local_aws)
    key = _drop(local_aws, "industrial_catalog_copy.txt", SAMPLE_CATALOG.read_bytes())
    run = run_dag("catalog_kb_sync", {"catalog_key": key})
    states = _task_states(run)
    assert run.state == "success", states
    assert states["start_ingestion"] == "skipped" and states["publish_kb_version"] == "skipped"
    assert len(_ingestion_jobs(local_aws)) == before_jobs
    assert _kb_data(local_aws) == before_data


def test_malformed_catalog_is_quarantined_and_the_kb_untouched(local_aws: Stack, synced_kb: dict) -> None:
    before = (_marker(local_aws), _kb_data(local_aws), len(_ingestion_jobs(local_aws)))
    broken = SAMPLE_CATALOG.read_text().replace("Safety_instructions:", "Safety Instructions:", 1)
    key = _drop(local_aws, "broken catalog.txt", broken.encode())
    run = run_dag("catalog_kb_sync", {"catalog_key": key})
    states = _task_states(run)
    assert run.state == "failed"
    assert states["report_quarantined"] == "failed"
    assert (_marker(local_aws), _kb_data(local_aws), len(_ingestion_jobs(local_aws))) == before
    s3, bucket = local_aws.client("s3"), local_aws.resources["bucket"]
    reason = json.loads(s3.get_object(Bucket=bucket, Key="catalog/quarantine/broken catalog.txt.reason.json")
                        ["Body"].read())
    rules = {issue["rule"] for issue in reason["issues"]}
    assert rules == {"missing_section"}  # the misspelt header is named where it explains the missing section
    assert any('line 3 "Safety Instructions:' in issue["message"] and "Vortex Mixer VM-200" in issue["message"]
               for issue in reason["issues"]), reason
    assert s3.head_object(Bucket=bucket, Key="catalog/quarantine/broken catalog.txt")["ContentLength"] > 0
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=INCOMING)
    assert _retrieve(local_aws, "Vortex Mixer VM-200 bowl")[0]["metadata"]["product_name"] == "Vortex Mixer VM-200"


def test_polling_dag_syncs_a_changed_catalog(local_aws: Stack, synced_kb: dict) -> None:
    """The S3KeySensor (deferrable) mode, with a catalog that drops its last product."""
    text = SAMPLE_CATALOG.read_text()
    last = text.rindex("\nName:")
    removed = text[last:].split("\n", 2)[1].removeprefix("Name:").strip()
    _drop(local_aws, "catalog_without_last_product.txt", text[:last].encode())
    run = run_dag("catalog_kb_sync_poll")
    assert run.state == "success", _task_states(run)
    marker = _marker(local_aws)
    assert marker is not None, "no published catalog version"
    assert marker["products"] == 14
    assert len(_kb_data(local_aws)) == 28
    job = _ingestion_jobs(local_aws)[0]
    assert job["ingestionJobId"] == marker["ingestion_job_id"]
    assert job["statistics"]["numberOfDocumentsDeleted"] == 1
    hits = _retrieve(local_aws, f"{removed} safety instructions", 5)
    assert all(h["metadata"]["product_name"] != removed for h in hits)

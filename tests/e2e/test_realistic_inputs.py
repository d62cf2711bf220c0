"""End to end on customer-shaped inputs: the realistic catalog (170 KB, sub-headings in every section) synced
through the real DAG, Retrieve checked on the long-answer QA set, and weekly_evaluation run on a sample of it.

Independent of file order: it starts from the sample catalog (synced first if the Knowledge Base holds another),
syncs its own and, when done, rolls the Knowledge Base back to the sample (a manual run with ``catalog_key`` = that
version's key: the rollback path is checked here), so later tests find what they expect.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest

from devstack.stack import REPO, Stack, run_dag
from tests.e2e.helpers import _drop, _kb_data, _marker, _retrieve, _task_states, ensure_sample_synced

pytestmark = pytest.mark.e2e
REALISTIC_CATALOG = REPO / "include" / "data" / "catalog" / "realistic_catalog.txt"
REALISTIC_QA = REPO / "include" / "data" / "qa" / "realistic_test.json"


@pytest.fixture(scope="module")
def realistic_kb(local_aws: Stack, airflow_db) -> Iterator[dict]:
    before = ensure_sample_synced(local_aws)
    key = _drop(local_aws, "realistic_catalog.txt", REALISTIC_CATALOG.read_bytes())
    run = run_dag("catalog_kb_sync", {"catalog_key": key})
    assert run.state == "success", _task_states(run)
    marker = _marker(local_aws)
    assert marker is not None, "no published catalog version"
    yield marker
    rollback = run_dag("catalog_kb_sync", {"catalog_key": before["version_key"]})  # the archived version's own key
    assert rollback.state == "success", _task_states(rollback)
    restored = _marker(local_aws)
    assert restored is not None and restored["catalog_version"] == before["catalog_version"]


def test_the_realistic_catalog_syncs_with_every_subheading_in_its_documents(local_aws: Stack,
                                                                             realistic_kb: dict) -> None:
    from tailor.catalog import validate_file

    catalog = validate_file(REALISTIC_CATALOG)
    assert realistic_kb["catalog_version"] == catalog.version and realistic_kb["products"] == 15
    documents = [k for k in _kb_data(local_aws) if k.endswith(".txt")]
    assert len(documents) == 15
    s3, bucket = local_aws.client("s3"), local_aws.resources["bucket"]
    staged = "".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in documents)
    for heading in ("Table of Contents:", "Electrical Safety:", "Technical Specifications:"):
        assert staged.count(f"\n{heading}\n") >= 5, heading  # sub-headings stay, on their own line


def test_retrieve_finds_the_right_product_for_long_answer_questions(local_aws: Stack, realistic_kb: dict) -> None:
    from tailor.metrics.retrieval import retrieval_hit

    questions = json.loads(REALISTIC_QA.read_text(encoding="utf-8"))
    hits = []
    for item in questions:
        chunks = [{"product_name": r["metadata"].get("product_name")} for r in _retrieve(local_aws, item["question"])]
        hits.append(retrieval_hit(item["product_name"], chunks))
    rate = sum(hits) / len(hits)
    print(f"Retrieve top-3 hit rate on {len(hits)} realistic questions: {rate:.2f}")
    assert rate >= 0.9, rate


def test_weekly_evaluation_on_long_reference_answers(local_aws: Stack, realistic_kb: dict) -> None:
    run = run_dag("weekly_evaluation", {"approaches": ["rag"], "sample_limit": 4,
                                        "dataset": "data/qa/realistic_test.json"})
    assert run.state == "success", _task_states(run)
    from tailor_airflow.evaluation import run_prefix

    prefix = run_prefix("eval/", run.run_id)
    body = local_aws.client("s3").get_object(Bucket=local_aws.resources["bucket"],
                                             Key=prefix + "summary_results.csv")["Body"].read().decode()
    (row,) = list(csv.DictReader(io.StringIO(body)))
    assert row["method"] == "rag" and row["n"] == "4" and row["status"] == "complete"
    assert float(row["retrieval_hit_rate"]) >= 0.75
    assert 0 < float(row["avg_bert_score"]) <= 1 and 0 <= float(row["key_fact_match"]) <= 1
    # every answer says why it stopped (cut by the token budget or not), so the summary can count the cut ones
    assert row["n_truncation_known"] == "4" and 0 <= int(row["n_truncated"]) <= 4

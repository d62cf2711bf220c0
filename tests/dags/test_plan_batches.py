"""``weekly_evaluation.plan_batches`` on an in-process S3: what it refuses before any model call, and the bound on
the number of mapped ``generate_answers`` tasks. The task's function runs directly (no Airflow run needed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from moto import mock_aws

from tailor.config import Settings, load_settings
from tailor_airflow import evaluation
from tests.conftest import SAMPLE_CATALOG, TEST_QA

BUCKET = "tailor-plan-test"
JUDGES = ["amazon.nova-pro-v1:0"]


@pytest.fixture
def cfg() -> Settings:
    return load_settings(env={"TAILOR__AWS__BUCKET": BUCKET})


@pytest.fixture
def s3(cfg: Settings) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        with mock.patch.object(evaluation, "settings_and_s3", return_value=(cfg, client)), \
                mock.patch.object(evaluation, "check_model_access", return_value=[]):
            yield client


def _sync_catalog(s3: Any, cfg: Settings) -> None:
    key = f"{cfg.catalog.versions_prefix}abc/industrial_catalog.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=SAMPLE_CATALOG.read_bytes())
    s3.put_object(Bucket=BUCKET, Key=cfg.catalog.current_marker_key,
                  Body=json.dumps({"catalog_version": "abc", "version_key": key}).encode())


def _put_qa(s3: Any, items: list[dict[str, Any]], key: str = "qa/test.json") -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(items, ensure_ascii=False).encode())
    return f"s3://{BUCKET}/{key}"


def _plan(**params: Any) -> list[dict[str, Any]]:
    params = {"approaches": ["rag", "finetune", "hybrid"], "judge_models": JUDGES, "sample_limit": None,
              "dataset": None, "calibrate_judges": True, **params}
    return evaluation.plan_batches.function(params=params, run_id="manual__2026-12-01T00:00:00+00:00")


def _written(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="eval/").get("Contents", [])]


def _test_items() -> list[dict[str, Any]]:
    return json.loads(TEST_QA.read_text(encoding="utf-8"))


def test_product_names_are_matched_against_the_synced_catalog(s3: Any, cfg: Settings) -> None:
    _sync_catalog(s3, cfg)
    items = _test_items()[:3]
    shouted = [{**i, "product_name": i["product_name"].upper()} for i in items]  # same products under name_key
    assert len(_plan(dataset=_put_qa(s3, shouted))) == 3
    misspelled = [*items[:2], {**items[2], "product_name": items[2]["product_name"][:-1]}]
    before = _written(s3)
    with pytest.raises(AirflowFailException) as caught:
        _plan(dataset=_put_qa(s3, misspelled, "qa/misspelled.json"))
    message = str(caught.value)
    assert message.startswith("QA dataset rejected, no model was called:\n")
    assert f"s3://{BUCKET}/qa/misspelled.json item 2: product_name " in message
    assert "matches no product of catalog version " in message
    assert f"did you mean {items[2]['product_name']!r}?" in message
    assert _written(s3) == before, "nothing may be written for a rejected dataset"


def test_without_a_synced_catalog_the_check_is_skipped_with_a_warning(s3: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=evaluation.__name__):
        batches = _plan(sample_limit=4)
    assert len(batches) == 3 and all(len(b["sample_ids"]) == 4 for b in batches)
    assert any("no catalog synced yet" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("judges", [["amazon.nova-pro-v1:0", "a b"], [""], ["x" * 300]], ids=["space", "empty", "long"])
def test_judge_models_are_checked_before_anything_is_read(s3: Any, judges: list[str]) -> None:
    with (mock.patch.object(s3, "get_object", side_effect=AssertionError("read")) as get_object,
          pytest.raises(AirflowFailException, match=r"^judge_models rejected, no model was called:\njudge_models")):
        _plan(judge_models=judges)
    get_object.assert_not_called()


@pytest.mark.parametrize(("dataset", "says"), [
    ("s3://another-bucket/qa/test.json", "not in the bake-off bucket tailor-plan-test"),
    ("../../etc/passwd", "local files are read under"),
    ("/dev/zero", "local files are read under"),
    ("data/qa", "is not a regular file"),
])
def test_dataset_param_reads_only_what_it_is_for(s3: Any, dataset: str, says: str) -> None:
    with pytest.raises(AirflowFailException) as caught:
        _plan(dataset=dataset)
    assert says in str(caught.value)
    assert _written(s3) == []


def test_mapped_tasks_stay_within_max_map_length(s3: Any, cfg: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [{"product_name": "Vortex Mixer VM-200", "question": f"Question number {n}?", "answer": "An answer."}
             for n in range(500)]
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "20")
    batches = _plan(dataset=_put_qa(s3, items))
    assert len(batches) <= 20  # with batch_size alone: 3 x ceil(500 / batch_size) tasks
    assert 3 * -(-500 // cfg.evaluation.batch_size) > 20
    for approach in ("rag", "finetune", "hybrid"):
        ids = [i for b in batches if b["approach"] == approach for i in b["sample_ids"]]
        assert len(ids) == 500 == len(set(ids))


# --- qa_dataset_build's catalog Param reads only what it is for ------------------------------------------------


@pytest.mark.parametrize("reference", ["../../../etc/passwd", "/etc/passwd", "/dev/zero", "data/../../Makefile",
                                       "s3://another-bucket/catalog.txt"])
def test_qa_build_catalog_param_reads_nothing_outside_include_or_the_bucket(s3: Any, cfg: Settings,
                                                                            reference: str) -> None:
    from tailor_airflow import qa_build

    with pytest.raises(AirflowFailException, match="catalog Param rejected"):
        qa_build._load_catalog(qa_build._resolve_catalog(reference, cfg, s3), cfg, s3)


def test_qa_build_catalog_param_accepts_packaged_files_and_bucket_keys(s3: Any, cfg: Settings) -> None:
    from tailor_airflow import qa_build

    packaged = qa_build._resolve_catalog("data/catalog/realistic_catalog.txt", cfg, s3)
    assert len(qa_build._load_catalog(packaged, cfg, s3).products) == 15
    s3.put_object(Bucket=BUCKET, Key="uploads/catalog.txt", Body=SAMPLE_CATALOG.read_bytes())
    key = qa_build._resolve_catalog("uploads/catalog.txt", cfg, s3)
    assert key == f"s3://{BUCKET}/uploads/catalog.txt" and len(qa_build._load_catalog(key, cfg, s3).products) == 15


def test_the_champions_prompt_format_is_read_once_for_every_endpoint_batch(s3: Any, cfg: Settings) -> None:
    from tailor_airflow.clients import CHAMPION_KEY

    _sync_catalog(s3, cfg)
    s3.put_object(Bucket=BUCKET, Key=CHAMPION_KEY, Body=json.dumps({"method": "instruction_tuning"}).encode())
    with mock.patch.object(s3, "get_object", wraps=s3.get_object) as get_object:
        batches = _plan(dataset=_put_qa(s3, _test_items()[:3]))
    assert [c.kwargs["Key"] for c in get_object.call_args_list].count(CHAMPION_KEY) == 1
    assert {b["finetune_method"] for b in batches} == {"instruction_tuning"}
    with mock.patch.object(s3, "get_object", wraps=s3.get_object) as get_object:
        rag_only = _plan(dataset=_put_qa(s3, _test_items()[:3]), approaches=["rag"])
    assert CHAMPION_KEY not in [c.kwargs["Key"] for c in get_object.call_args_list]
    assert {b["finetune_method"] for b in rag_only} == {None}


def test_an_over_budget_run_is_refused_before_anything_is_written(s3: Any, cfg: Settings) -> None:
    _sync_catalog(s3, cfg)
    dataset = _put_qa(s3, _test_items())
    before = _written(s3)
    with pytest.raises(AirflowFailException) as caught:
        _plan(dataset=dataset, max_run_cost_usd=0.001)
    message = str(caught.value)
    assert message.startswith("estimated spend $") and "is over max_run_cost_usd $0.00; no model was called" in message
    assert "judging: 201 answers (incl. 66 golden) x 1 judge(s) = 201 calls" in message
    assert _written(s3) == before
    batches = _plan(dataset=dataset, max_run_cost_usd=None)  # the setting's 25 USD holds this run
    assert len(batches) == 9
    snapshot = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{batches[0]['prefix']}dataset.json")["Body"].read())
    assert 0 < snapshot["estimated_cost_usd"] < cfg.evaluation.max_run_cost_usd

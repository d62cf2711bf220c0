"""monthly_finetune's prepare_training_data and deployment_configs, run as plain functions (no Airflow, no AWS):
the settings they refuse before anything is uploaded, and the request/model they build."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tailor.config import load_settings
from tailor.qa import QADataset
from tailor_airflow import finetune
from tests.unit.test_training_data import SnapshotSDK

ROLE = "arn:aws:iam::111122223333:role/tailor-sagemaker-execution"
RUN_ID = "manual__2026-12-01T03:00:00+00:00"


class S3Stub:
    """Records put_object; answers nothing else (the catalog store and QA loading are patched)."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(region_name="us-east-1")
        self.puts: list[str] = []

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803 (boto3's names)
        self.puts.append(f"s3://{Bucket}/{Key}")


def run_prepare(env: dict[str, str], s3: S3Stub) -> dict[str, Any]:
    cfg = load_settings(env=env)
    store = mock.Mock()
    store.current.return_value = {"version_key": "catalog/versions/abc/catalog.txt", "catalog_version": "abc"}
    catalog = SimpleNamespace(products=[SimpleNamespace(to_document=lambda: "Vortex Mixer VM-200: 20 l bowl.")])
    store.load.return_value = catalog
    empty = QADataset(source="test.json", items=(), sha256="0" * 64)
    with mock.patch.object(finetune, "settings_and_s3", return_value=(cfg, s3)), \
            mock.patch("tailor.kb_sync.CatalogStore", return_value=store), \
            mock.patch("tailor.qa.load_qa", return_value=empty), \
            mock.patch("tailor_airflow.clients.jumpstart_sdk", return_value=SnapshotSDK()):
        return finetune.prepare_training_data.function(params={}, run_id=RUN_ID)


def test_prepare_builds_the_jumpstart_request_and_uploads_under_training() -> None:
    s3 = S3Stub()
    out = run_prepare({"TAILOR__FINETUNE__ROLE_ARN": ROLE}, s3)
    job, config = out["job_name"], out["training_config"]
    assert s3.puts == [f"s3://tailor-bakeoff/finetune/{job}/training/catalog.txt"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in config["InputDataConfig"]}
    assert channels["training"] == f"s3://tailor-bakeoff/finetune/{job}/training/"
    assert channels["code"].startswith("s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/")
    assert config["RoleArn"] == ROLE and config["TrainingJobName"] == job
    assert config["Environment"]["accept_eula"] == "true"
    assert "local_trainable_layers" not in config["HyperParameters"]
    assert out["jumpstart_model_version"] == "2.16.2"


def test_an_unset_role_fails_naming_the_setting_before_anything_is_uploaded() -> None:
    s3 = S3Stub()
    with pytest.raises(AirflowFailException, match="TAILOR__FINETUNE__ROLE_ARN"):
        run_prepare({}, s3)
    assert s3.puts == []


def test_a_license_not_accepted_fails_naming_the_setting_before_anything_is_uploaded() -> None:
    s3 = S3Stub()
    with pytest.raises(AirflowFailException, match="EulaNotAccepted: .*TAILOR__FINETUNE__ACCEPT_EULA"):
        run_prepare({"TAILOR__FINETUNE__ROLE_ARN": ROLE, "TAILOR__FINETUNE__ACCEPT_EULA": "false"}, s3)
    assert s3.puts == []


def test_a_setting_outside_the_spec_fails_before_anything_is_uploaded() -> None:
    s3 = S3Stub()
    with pytest.raises(AirflowFailException, match="'lora_r' must be >= 1.*nothing was uploaded"):
        run_prepare({"TAILOR__FINETUNE__ROLE_ARN": ROLE, "TAILOR__FINETUNE__LORA_R": "0"}, s3)
    assert s3.puts == []


def test_deployment_configs_load_the_uncompressed_model_prefix() -> None:
    cfg = load_settings(env={"TAILOR__FINETUNE__ROLE_ARN": ROLE})
    prefix = "s3://tailor-bakeoff/finetune/tailor-ft-abc/output/tailor-ft-abc/output/model/"
    with mock.patch("tailor.config.settings", return_value=cfg):
        out = finetune.deployment_configs.function(
            "tailor-ft-abc", {"Training": {"ModelArtifacts": {"S3ModelArtifacts": prefix},
                                           "BillableTimeInSeconds": 10}})
    container = out["model"]["PrimaryContainer"]
    assert "ModelDataUrl" not in container
    assert container["ModelDataSource"] == {"S3DataSource": {"S3Uri": prefix, "S3DataType": "S3Prefix",
                                                             "CompressionType": "None"}}
    assert out["model"]["ExecutionRoleArn"] == ROLE and out["model_data_url"] == prefix

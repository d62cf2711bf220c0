"""What monthly_finetune records: the training data digest, the champion pointer, the lineage and the challenger's
deployment requests -- decided in tailor, as plain functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tailor.config import load_settings
from tailor.lineage import champion_pointer, lineage_record, training_data_digest
from tailor.training_data import challenger_name, deployment_requests

WHEN = datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
PREPARED = {"job_name": "tailor-ft-20261201", "method": "instruction_tuning", "catalog_version": "abc123",
            "training_data_sha256": "d" * 64, "test_set_version": "qa-1"}
ROLE = "arn:aws:iam::111122223333:role/tailor-sagemaker-execution"


def test_the_digest_depends_on_the_contents_not_the_order_files_were_written() -> None:
    files = {"train.jsonl": "a\n", "template.json": "{}"}
    assert training_data_digest(files) == training_data_digest(dict(reversed(files.items())))
    assert training_data_digest(files) != training_data_digest({**files, "train.jsonl": "b\n"})
    assert len(training_data_digest({})) == 64


def test_the_champion_pointer_names_job_method_and_configuration() -> None:
    pointer = champion_pointer(endpoint_name="tailor-finetuned-champion", prepared=PREPARED,
                               config_name="tailor-ft-20261201", model_data_url="s3://b/finetune/x/output/model/",
                               evaluation={"challenger": 0.81, "champion": 0.79}, actions=("UpdateEndpoint",),
                               run_id="manual__1", promoted_at=WHEN)
    assert pointer["method"] == "instruction_tuning" and pointer["job_name"] == PREPARED["job_name"]
    assert pointer["endpoint_config_name"] == "tailor-ft-20261201" and pointer["actions"] == ["UpdateEndpoint"]
    assert pointer["promoted_at"] == "2026-12-01T03:30:00+00:00"
    json.dumps(pointer)  # written as JSON as is


def test_a_lineage_of_a_run_that_failed_before_training_is_still_complete_and_says_so() -> None:
    record = lineage_record(run_id="manual__1", job_name="tailor-ft-x", prepared={}, training={}, decision=None,
                            challenger_deleted=False, problems=[], recorded_at=WHEN)
    assert record["status"] == "failed"  # the run never got to decide
    assert record["catalog_version"] is None and record["final_metrics"] == {} and record["model_data_url"] is None
    assert record["challenger_endpoint_gone"] is True
    json.dumps(record)


def test_a_lineage_records_the_training_job_and_a_challenger_left_running() -> None:
    training = {"TrainingJobStatus": "Completed", "BillableTimeInSeconds": 1800,
                "HyperParameters": {"epochs": "3"}, "ModelArtifacts": {"S3ModelArtifacts": "s3://b/out/model/"},
                "FinalMetricDataList": [{"MetricName": "train_loss", "Value": 0.42}]}
    problems = ["challenger endpoint tailor-ft-x-challenger may still be running: ThrottlingException"]
    record = lineage_record(run_id="manual__1", job_name="tailor-ft-x", prepared=PREPARED, training=training,
                            decision={"outcome": "promoted"}, challenger_deleted=False, problems=problems,
                            recorded_at=WHEN)
    assert record["final_metrics"] == {"train_loss": 0.42} and record["billable_seconds"] == 1800
    assert record["model_data_url"] == "s3://b/out/model/" and record["training_data_sha256"] == "d" * 64
    assert record["challenger_endpoint_gone"] is False and record["problems"] == problems


def test_the_challenger_deployment_requests_name_one_job_everywhere() -> None:
    ft = load_settings(env={}).finetune
    requests = deployment_requests(ft, job_name="tailor-ft-x", model_data_url="s3://b/finetune/x/output/model/",
                                   role_arn=ROLE)
    assert requests["challenger_endpoint"] == challenger_name("tailor-ft-x") == "tailor-ft-x-challenger"
    assert requests["endpoint"]["Endpoint"] == {"EndpointName": "tailor-ft-x-challenger",
                                                "EndpointConfigName": "tailor-ft-x"}
    assert requests["model"]["ModelName"] == "tailor-ft-x" and requests["model"]["ExecutionRoleArn"] == ROLE
    variant = requests["endpoint"]["EndpointConfig"]["ProductionVariants"][0]
    assert variant["ModelName"] == "tailor-ft-x" and variant["InstanceType"] == ft.endpoint_instance_type
    assert requests["model_data_url"] == "s3://b/finetune/x/output/model/"

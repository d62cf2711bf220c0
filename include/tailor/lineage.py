"""What monthly_finetune records about itself: the training data's digest, the champion pointer and the lineage.

Plain functions over plain values (the tasks pass in what they read from S3, SageMaker and XCom), so what is
recorded, under which names, is decided and tested here, not in Airflow task bodies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tailor.endpoints import lineage_status


def training_data_digest(files: Mapping[str, str]) -> str:
    """SHA-256 of the training files' contents in file-name order: the same data gives the same digest."""
    return hashlib.sha256("".join(files[name] for name in sorted(files)).encode()).hexdigest()


def champion_pointer(*, endpoint_name: str, prepared: Mapping[str, Any], config_name: str, model_data_url: str,
                     evaluation: Mapping[str, Any], actions: Sequence[str], run_id: str,
                     promoted_at: datetime) -> dict[str, Any]:
    """``finetune/champion.json``: which training job, configuration and method the champion endpoint serves
    (the weekly evaluation prompts the endpoint in that ``method``'s format)."""
    return {"endpoint_name": endpoint_name, "job_name": prepared["job_name"], "method": prepared["method"],
            "endpoint_config_name": config_name, "model_data_url": model_data_url,
            "catalog_version": prepared["catalog_version"], "promoted_at": promoted_at.isoformat(),
            "run_id": run_id, "evaluation": dict(evaluation), "actions": list(actions)}


def lineage_record(*, run_id: str, job_name: str, prepared: Mapping[str, Any], training: Mapping[str, Any],
                   decision: Mapping[str, Any] | None, challenger_deleted: bool, problems: Sequence[str],
                   recorded_at: datetime) -> dict[str, Any]:
    """``finetune/<job>/lineage.json``: data in (catalog version, training data digest, test set version), the
    training job (DescribeTrainingJob: status, cost, hyperparameters, metrics, artifacts), the champion decision and
    whether the challenger endpoint is gone. ``prepared`` and ``training`` may be empty (the run failed early)."""
    return {
        "run_id": run_id, "job_name": job_name, "status": lineage_status(decision),
        "catalog_version": prepared.get("catalog_version"), "method": prepared.get("method"),
        "training_data_sha256": prepared.get("training_data_sha256"),
        "test_set_version": prepared.get("test_set_version"),
        "training_status": training.get("TrainingJobStatus"), "failure_reason": training.get("FailureReason"),
        "billable_seconds": training.get("BillableTimeInSeconds"),
        "hyperparameters": training.get("HyperParameters"),
        "final_metrics": {m["MetricName"]: m["Value"] for m in training.get("FinalMetricDataList", [])},
        "model_data_url": (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "decision": decision, "challenger_endpoint_deleted": challenger_deleted,
        "challenger_endpoint_gone": not any(p.startswith("challenger") for p in problems),
        "problems": list(problems), "recorded_at": recorded_at.isoformat(),
    }

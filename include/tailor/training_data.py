"""Fine-tuning inputs: training files from a catalog version, the job name, and the trained model's location.

The CreateTrainingJob request itself is built by :mod:`tailor.jumpstart` from what the SageMaker SDK resolves
at task run time (image, script, gated weights, job settings).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tailor.catalog import Catalog
from tailor.qa import QADataset, normalise

METHODS = ("domain_adaptation", "instruction_tuning")
#: The S3 folder (under ``finetune/<job>/``) of the ``training`` channel's files.
TRAINING_PREFIX = "training/"
#: JumpStart instruction-tuning template (training channel ``template.json``).
INSTRUCTION_TEMPLATE = {
    "prompt": "Below is a question about one of our products. Write a response that answers it.\n\n"
              "### Question:\n{instruction}\n\n### Response:\n",
    "completion": "{response}",
}


def job_name_for(run_id: str) -> str:
    """Deterministic, valid (<= 63 chars) training-job name: a task retry finds the job it started."""
    return f"tailor-ft-{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"


def training_files(method: str, catalog: Catalog, train_set: QADataset | None) -> dict[str, str]:
    """The training channel's files (name -> content) for ``method``."""
    if method == "domain_adaptation":
        return {"catalog.txt": "\n\n".join(p.to_document() for p in catalog.products)}
    if method == "instruction_tuning":
        if train_set is None:
            raise ValueError("instruction_tuning needs the QA train set (qa.train_set)")
        records = [{"instruction": i.question, "context": "", "response": i.answer} for i in train_set.items]
        return {"train.jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n",
                "template.json": json.dumps(INSTRUCTION_TEMPLATE)}
    raise ValueError(f"unknown fine-tuning method {method!r} (use one of {', '.join(METHODS)})")


def assert_no_test_leak(files: dict[str, str], test_set: QADataset) -> None:
    """Refuse training data that contains a test question (the seed uploaded its test file into training)."""
    corpus = normalise(" ".join(files.values()))
    # a question of punctuation only normalises to "", which is "in" every text: it cannot leak
    leaked = [i.question for i in test_set.items if (key := normalise(i.question)) and key in corpus]
    if leaked:
        raise ValueError(f"{len(leaked)} test question(s) found in the training data, e.g. {leaked[0]!r}; "
                         "the QA test set must never be in a training channel")


def model_artifacts_prefix(output_uri: str, job_name: str) -> str:
    """Where SageMaker puts an uncompressed model (``OutputDataConfig.CompressionType: NONE``): the job's
    ``S3ModelArtifacts``, ``<S3OutputPath>/<job>/output/model/`` (a prefix, not a ``model.tar.gz``)."""
    return f"{output_uri.rstrip('/')}/{job_name}/output/model/"


def model_data_source(artifacts: str) -> dict[str, Any]:
    """``PrimaryContainer.ModelDataSource`` (CreateModel) for uncompressed model files under an S3 prefix.

    SageMaker's CreateModel API: ``S3DataType: S3Prefix`` with ``CompressionType: None`` needs the URI to end in
    ``/`` (the files are copied under /opt/ml/model as they are); a ``model.tar.gz`` would be ``ModelDataUrl``.
    """
    if not artifacts.startswith("s3://"):
        raise ValueError(f"model artifacts must be an s3:// URI, got {artifacts!r}")
    if artifacts.endswith(".tar.gz"):
        raise ValueError(f"{artifacts} is a compressed artifact: the JumpStart job writes uncompressed files "
                         "(CompressionType NONE), so S3ModelArtifacts must be a prefix")
    uri = artifacts if artifacts.endswith("/") else artifacts + "/"
    return {"S3DataSource": {"S3Uri": uri, "S3DataType": "S3Prefix", "CompressionType": "None"}}


def training_request(ft: Any, *, sdk: Any, region: str, role_arn: str, job_name: str, method: str, train_uri: str,
                     output_uri: str, epochs: int, learning_rate: float, instance_type: str) -> tuple[dict, Any]:
    """The CreateTrainingJob request for ``ft`` (:class:`tailor.config.FinetuneSettings`) and the JumpStart facts
    it came from: resolved through ``sdk`` (:class:`tailor.jumpstart.JumpStartSDK`) for the region and instance
    type, then built by :func:`tailor.jumpstart.training_job_request` (raises
    :class:`tailor.jumpstart.EulaNotAccepted` when ``ft.accept_eula`` is false, ValueError for settings outside
    the spec). Nothing is uploaded or started here."""
    from tailor.jumpstart import TuningChoices, resolve_training, training_job_request

    resolved = resolve_training(ft.jumpstart_model_id, region, instance_type, sdk=sdk,
                                model_version=ft.jumpstart_model_version)
    choices = TuningChoices(epochs=epochs, learning_rate=learning_rate, max_input_length=ft.max_input_length,
                            per_device_train_batch_size=ft.per_device_train_batch_size, lora_r=ft.lora_r,
                            lora_alpha=ft.lora_alpha)
    request = training_job_request(
        resolved, job_name=job_name, role_arn=role_arn, method=method, choices=choices, train_uri=train_uri,
        output_uri=output_uri, accept_eula=ft.accept_eula, max_runtime_seconds=ft.max_runtime_seconds,
        tags={"project": "tailor-bakeoff"})
    return request, resolved

"""Fine-tuning inputs: training files from a catalog version, and the JumpStart CreateTrainingJob config.

There is no JumpStart operator in the Amazon provider, so the config is built here from settings: the
training image and base-model URIs are pinned in config (the offline path); hyperparameters follow the
JumpStart Llama 3.1 recipe (``epoch``, ``learning_rate``, ``instruction_tuned``, ``chat_dataset``,
``max_input_length``, LoRA knobs) and the EULA is accepted through the ``accept_eula`` environment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tailor.catalog import Catalog
from tailor.config import FinetuneSettings
from tailor.qa import QADataset, normalise

METHODS = ("domain_adaptation", "instruction_tuning")
#: JumpStart instruction-tuning template (train channel ``template.json``).
INSTRUCTION_TEMPLATE = {
    "prompt": "Below is a question about one of our products. Write a response that answers it.\n\n"
              "### Question:\n{instruction}\n\n### Response:\n",
    "completion": "{response}",
}


def job_name_for(run_id: str) -> str:
    """Deterministic, valid (<= 63 chars) training-job name: a task retry finds the job it started."""
    return f"tailor-ft-{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"


def training_files(method: str, catalog: Catalog, train_set: QADataset | None) -> dict[str, str]:
    """The train channel's files (name -> content) for ``method``."""
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


def training_job_config(
    ft: FinetuneSettings, *, job_name: str, method: str, train_uri: str, output_uri: str,
    epochs: int, learning_rate: float, instance_type: str,
) -> dict[str, Any]:
    """CreateTrainingJob request for a JumpStart Llama 3.1 fine-tune."""
    hyperparameters = {
        "epoch": str(epochs),
        "learning_rate": str(learning_rate),
        "instruction_tuned": str(method == "instruction_tuning"),
        "chat_dataset": "False",
        "max_input_length": str(ft.max_input_length),
        "per_device_train_batch_size": str(ft.per_device_train_batch_size),
        "lora_r": str(ft.lora_r),
        "lora_alpha": str(ft.lora_alpha),
        "local_trainable_layers": str(ft.local_trainable_layers),
    }
    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {"TrainingImage": ft.training_image_uri, "TrainingInputMode": "File"},
        "RoleArn": ft.role_arn,
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": train_uri, "S3DataDistributionType": "FullyReplicated"}}},
            {"ChannelName": "model", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": ft.base_model_uri, "S3DataDistributionType": "FullyReplicated"}}},
        ],
        "OutputDataConfig": {"S3OutputPath": output_uri},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 256},
        "StoppingCondition": {"MaxRuntimeInSeconds": ft.max_runtime_seconds},
        "Environment": {"accept_eula": "true"},
        "Tags": [{"Key": "project", "Value": "tailor-bakeoff"}],
    }

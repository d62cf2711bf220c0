"""Fine-tuning inputs: training files from a catalog version, the JumpStart CreateTrainingJob config, and the
CreateModel / CreateEndpointConfig requests that serve the result.

There is no JumpStart operator in the Amazon provider, so the config is built here from settings: the
training image and base-model URIs are pinned in config (the offline path); hyperparameters follow the
JumpStart Llama 3.1 recipe (``epoch``, ``learning_rate``, ``instruction_tuned``, ``chat_dataset``,
``add_input_output_demarcation_key``, ``max_input_length``, LoRA knobs) and the EULA is accepted through the
``accept_eula`` environment. The instruction template is :data:`tailor.prompts.INSTRUCTION_TEMPLATE`: the
served prompt of an instruction-tuned endpoint is its prompt, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tailor.catalog import Catalog
from tailor.config import FinetuneSettings
from tailor.prompts import DEMARCATION_KEY
from tailor.prompts import INSTRUCTION_TEMPLATE as INSTRUCTION_TEMPLATE  # re-exported: kept with its served prompt
from tailor.qa import QADataset, normalise

METHODS = ("domain_adaptation", "instruction_tuning")
#: JumpStart's ``add_input_output_demarcation_key`` (default True: "### Response:\n" added between prompt and
#: completion; JumpStart spec hyperparameters, aws/amazon-sagemaker-examples llama_3_2_3b fine-tuning notebook).
#: Our template's prompt ends in that key already, so JumpStart must not add it a second time.
ADD_DEMARCATION_KEY = not INSTRUCTION_TEMPLATE["prompt"].endswith(DEMARCATION_KEY)
#: Endpoint container timeouts (seconds) JumpStart deploys Llama 3.1 with (spec ``inference_config_components``
#: lmi ``deploy_kwargs``: ``model_data_download_timeout`` / ``container_startup_health_check_timeout`` 1200).
MODEL_DATA_DOWNLOAD_TIMEOUT = 1200
CONTAINER_STARTUP_HEALTH_CHECK_TIMEOUT = 1200


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
        "add_input_output_demarcation_key": str(ADD_DEMARCATION_KEY),
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


def hosting_configs(ft: FinetuneSettings, *, name: str, model_data_url: str) -> dict[str, Any]:
    """CreateModel and CreateEndpointConfig requests serving a trained artifact the JumpStart way.

    ``OPTION_MAX_MODEL_LEN`` is the serving context (prompt + generated tokens, LMI ``option.max_model_len``):
    ``finetune.max_model_len``, not the training ``max_input_length`` (see :func:`check_serving_context`). The
    production variant gets the container timeouts JumpStart deploys Llama 3.1 with (an 8B LMI container takes
    minutes to download and load the model before it answers its health check).
    """
    model = {"ModelName": name, "ExecutionRoleArn": ft.role_arn,
             "PrimaryContainer": {"Image": ft.inference_image_uri, "ModelDataUrl": model_data_url,
                                  "Environment": {"OPTION_MAX_MODEL_LEN": str(ft.max_model_len)}}}
    endpoint_config = {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": ft.endpoint_instance_type,
        "ModelDataDownloadTimeoutInSeconds": MODEL_DATA_DOWNLOAD_TIMEOUT,
        "ContainerStartupHealthCheckTimeoutInSeconds": CONTAINER_STARTUP_HEALTH_CHECK_TIMEOUT}]}
    return {"model": model, "endpoint_config": endpoint_config}


def check_serving_context(max_model_len: int, context_needed: int) -> None:
    """Refuse an endpoint whose context (``finetune.max_model_len``) is shorter than the longest request we send
    it (``context_needed``: :func:`tailor.prompts.serving_context_needed`): it could not answer, only cost."""
    if max_model_len < context_needed:
        raise ValueError(
            f"finetune.max_model_len={max_model_len} is shorter than the longest request the evaluation sends the "
            f"endpoint ({context_needed} tokens: hybrid prompt + evaluation.max_tokens): raise it "
            "(TAILOR__FINETUNE__MAX_MODEL_LEN) or lower knowledge_base.top_k / chunk_max_tokens / max_tokens")

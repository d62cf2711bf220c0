"""Fine-tuning inputs: training files from a catalog version, the job name, the trained model's location, and
the CreateModel / CreateEndpointConfig requests that serve the result.

The CreateTrainingJob request itself is built by :mod:`tailor.jumpstart` from what the SageMaker SDK resolves
at task run time (image, script, gated weights, job settings). The instruction template is
:data:`tailor.prompts.INSTRUCTION_TEMPLATE`: the served prompt of an instruction-tuned endpoint is its prompt, byte
for byte; its prompt already ends in JumpStart's demarcation key, so the job is told not to add it again.
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
#: The S3 folder (under ``finetune/<job>/``) of the ``training`` channel's files.
TRAINING_PREFIX = "training/"
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
    extra = {"add_input_output_demarcation_key": str(ADD_DEMARCATION_KEY)} if method == "instruction_tuning" else {}
    choices = TuningChoices(epochs=epochs, learning_rate=learning_rate, max_input_length=ft.max_input_length,
                            per_device_train_batch_size=ft.per_device_train_batch_size, lora_r=ft.lora_r,
                            lora_alpha=ft.lora_alpha, extra=extra)
    request = training_job_request(
        resolved, job_name=job_name, role_arn=role_arn, method=method, choices=choices, train_uri=train_uri,
        output_uri=output_uri, accept_eula=ft.accept_eula, max_runtime_seconds=ft.max_runtime_seconds,
        tags={"project": "tailor-bakeoff"})
    return request, resolved


def hosting_configs(ft: FinetuneSettings, *, name: str, model_data_url: str, role_arn: str) -> dict[str, Any]:
    """CreateModel and CreateEndpointConfig requests serving a trained artifact the JumpStart way.

    ``OPTION_MAX_MODEL_LEN`` is the serving context (prompt + generated tokens, LMI ``option.max_model_len``):
    ``finetune.max_model_len``, not the training ``max_input_length`` (see :func:`check_serving_context`). The
    production variant gets the container timeouts JumpStart deploys Llama 3.1 with (an 8B LMI container takes
    minutes to download and load the model before it answers its health check).
    """
    model = {"ModelName": name, "ExecutionRoleArn": role_arn,
             "PrimaryContainer": {"Image": ft.inference_image_uri,
                                  "ModelDataSource": model_data_source(model_data_url),
                                  "Environment": {"OPTION_MAX_MODEL_LEN": str(ft.max_model_len)}}}
    endpoint_config = {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": ft.endpoint_instance_type,
        "ModelDataDownloadTimeoutInSeconds": MODEL_DATA_DOWNLOAD_TIMEOUT,
        "ContainerStartupHealthCheckTimeoutInSeconds": CONTAINER_STARTUP_HEALTH_CHECK_TIMEOUT}]}
    return {"model": model, "endpoint_config": endpoint_config}


def challenger_name(job_name: str) -> str:
    """The challenger endpoint of a training job (its model and endpoint config are named ``job_name``)."""
    return f"{job_name}-challenger"


def deployment_requests(ft: FinetuneSettings, *, job_name: str, model_data_url: str,
                        role_arn: str) -> dict[str, Any]:
    """CreateModel, CreateEndpointConfig and CreateEndpoint requests of the challenger serving ``model_data_url``."""
    hosting = hosting_configs(ft, name=job_name, model_data_url=model_data_url, role_arn=role_arn)
    endpoint = {"EndpointConfig": hosting["endpoint_config"],
                "Endpoint": {"EndpointName": challenger_name(job_name), "EndpointConfigName": job_name}}
    return {"model": hosting["model"], "endpoint": endpoint, "challenger_endpoint": challenger_name(job_name),
            "model_data_url": model_data_url}


def check_serving_context(max_model_len: int, context_needed: int) -> None:
    """Refuse an endpoint whose context (``finetune.max_model_len``) is shorter than the longest request we send
    it (``context_needed``: :func:`tailor.prompts.serving_context_needed`): it could not answer, only cost."""
    if max_model_len < context_needed:
        raise ValueError(
            f"finetune.max_model_len={max_model_len} is shorter than the longest request the evaluation sends the "
            f"endpoint ({context_needed} tokens: hybrid prompt + evaluation.max_tokens): raise it "
            "(TAILOR__FINETUNE__MAX_MODEL_LEN) or lower knowledge_base.top_k / chunk_max_tokens / max_tokens")

"""SageMaker: training jobs that really train, UpdateEndpoint, and InvokeEndpoint serving the trained model.

moto keeps the control-plane objects (jobs, models, endpoint configs, endpoints) but completes training jobs
instantly, lacks UpdateEndpoint and answers InvokeEndpoint with canned data. Here:

* ``CreateTrainingJob`` runs :func:`localaws.training.fine_tune` in a child process (as SageMaker runs a job in
  its own container; its memory returns to the OS when it ends) on the job's ``train`` channel: InProgress ->
  Completed (``model.tar.gz`` at ``ModelArtifacts.S3ModelArtifacts``, final metrics, ``BillableTimeInSeconds``)
  or Failed with ``FailureReason`` (the algorithm's own error).
* ``UpdateEndpoint`` points an endpoint at another endpoint config (blue/green by config name).
* ``InvokeEndpoint`` serves the model behind the endpoint with JumpStart's text-generation contract:
  ``{"inputs": str, "parameters": {...}}`` -> ``{"generated_text": str}``, with ``details`` (``finish_reason``,
  ``generated_tokens``) when the parameters set ``"details": true``, as LMI/TGI do. A model whose artifact lives
  in a JumpStart cache bucket (``s3://jumpstart-cache-prod-...``) is served as the base model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from localaws import faults, serving

log = logging.getLogger(__name__)
BASE_MODEL_PREFIX = "s3://jumpstart-cache-prod-"
_STATE: dict[str, str] = {"endpoint_url": ""}
_training_lock = threading.Lock()  # one training at a time: 2 cores


def _s3() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=_STATE["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="localaws", aws_secret_access_key="localaws")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _download_prefix(uri: str, target: Path) -> int:
    s3, (bucket, prefix) = _s3(), _split(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):].lstrip("/") or Path(obj["Key"]).name
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(destination))
            count += 1
    return count


def _run_training(job: FakeTrainingJob) -> None:
    from localaws.models import smollm2_dir
    from localaws.training import TrainingFailed, fine_tune_in_subprocess, pack

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"train-{job.training_job_name}-"))
    try:
        with _training_lock:
            job.training_start_time = utcnow()
            job.secondary_status = "Downloading"
            faults.check("sagemaker:training")
            channels = {c["ChannelName"]: c for c in job.input_data_config or []}
            if "train" not in channels:
                raise ValueError(f"no 'train' channel (got {sorted(channels)})")
            uri = channels["train"]["DataSource"]["S3DataSource"]["S3Uri"]
            if _download_prefix(uri, workdir / "train") == 0:
                raise ValueError(f"the train channel {uri} is empty")
            job.secondary_status = "Training"
            metrics = fine_tune_in_subprocess(smollm2_dir(), workdir / "train", job.hyper_parameters or {},
                                              workdir / "model",
                                              on_line=lambda line: log.info("[%s] %s", job.training_job_name, line))
            job.secondary_status = "Uploading"
            pack(workdir / "model", workdir / "model.tar.gz")
            bucket, key = _split(job.model_artifacts["S3ModelArtifacts"])
            _s3().upload_file(str(workdir / "model.tar.gz"), bucket, key)
        now = utcnow()
        job.final_metric_data_list = [{"MetricName": k, "Value": float(v), "Timestamp": now} for k, v in metrics.items()]
        job.training_job_status = job.secondary_status = "Completed"
        log.info("training job %s Completed: %s", job.training_job_name, metrics)
    except faults.InjectedFault as fault:
        job.failure_reason = fault.message
        job.training_job_status = job.secondary_status = "Failed"
    except TrainingFailed as failure:  # the algorithm's own error, as SageMaker reports it
        log.error("training job %s Failed: %s", job.training_job_name, failure)
        job.failure_reason = f"AlgorithmError: {failure}"
        job.training_job_status = job.secondary_status = "Failed"
    except Exception as exc:  # the job's Failed state, with the reason, as on AWS
        log.exception("training job %s Failed", job.training_job_name)
        job.failure_reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
        job.training_job_status = job.secondary_status = "Failed"
    finally:
        job.training_end_time = job.last_modified_time = utcnow()
        job.billable_time_in_seconds = job.training_time_in_seconds = max(1, int(time.monotonic() - started))
        shutil.rmtree(workdir, ignore_errors=True)


_original_create_training_job = SageMakerModelBackend.create_training_job


def _create_training_job(self: SageMakerModelBackend, **kwargs: Any) -> FakeTrainingJob:
    if kwargs.get("training_job_name") in self.training_jobs:
        raise ValidationError(f"Training job {kwargs['training_job_name']} already exists")  # as AWS does
    job = _original_create_training_job(self, **kwargs)
    job.training_job_status, job.secondary_status = "InProgress", "Starting"
    job.training_end_time = None
    job.final_metric_data_list = []
    threading.Thread(target=_run_training, args=(job,), daemon=True, name=f"train-{job.training_job_name}").start()
    return job


_original_create_endpoint = SageMakerModelBackend.create_endpoint


def _create_endpoint(self: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
    if endpoint_name in self.endpoints:  # AWS's wording: the provider's operator falls back to an update on it
        arn = self.endpoints[endpoint_name].arn
        raise ValidationError(f'Cannot create already existing endpoint "{arn}".')
    endpoint = _original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
    try:
        faults.check("sagemaker:CreateEndpoint")
    except faults.InjectedFault as fault:  # the endpoint exists but never comes up, as on AWS
        endpoint.endpoint_status, endpoint.failure_reason = "Failed", fault.message
    return endpoint


def update_endpoint(self: SageMakerResponse) -> Any:
    from moto.core.responses import ActionResult

    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    backend = self.sagemaker_backend
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        raise ValidationError(f"Could not find endpoint \"{name}\".")
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        raise ValidationError(f"Could not find endpoint configuration \"{config_name}\".")
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    endpoint.last_modified_time = str(utcnow())
    return ActionResult({"EndpointArn": endpoint.arn})


def _error(status: int, error_type: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    # moto takes the HTTP status from the "status" header of a returned tuple, not from its first item
    return status, {"status": status, "x-amzn-ErrorType": error_type, "Content-Type": "application/json"}, \
        json.dumps(body)


# --- InvokeEndpoint: the LMI container's errors, as SageMaker hands them back ------------------------------------
#
# * LMI (djl-serving 0.29, rolling batch) answers a request that fails inside the engine with HTTP 424 and the
#   body {"error": <message>, "code": 424} (djl_python rolling_batch.stop_on_any_exception sets code 424;
#   RollingBatch.java turns "code"/"error" into the response status and body; since LMI 0.31 the message is
#   "exception occurred during rolling batch inference"). An invalid request (no "inputs", bad parameters) gets
#   the same {"error", "code": 424} shape from its input parser (djl_python utils.rolling_batch_inference).
# * SageMaker returns a container's non-2xx answer as ModelError, HTTP 424, with OriginalStatusCode,
#   OriginalMessage (the container's body) and LogStreamArn (botocore sagemaker-runtime model, ModelError), and
#   the message 'Received client error (424) from primary with message "<body>". See https://<region>.console.aws
#   .amazon.com/cloudwatch/home?region=<region>#logEventViewer:group=/aws/sagemaker/Endpoints/<endpoint> in
#   account <account> for more information.' (observed: "client"/"server" by the status class, e.g.
#   awslabs/realtime-fraud-detection-with-gnn-on-dgl#1331; a public LMI report with the 424 body above).
# * The serving context is the model's OPTION_MAX_MODEL_LEN environment variable (CreateModel's
#   PrimaryContainer.Environment; LMI option.max_model_len); unset, LMI takes the model's own maximum, 131072 for
#   Llama 3.1 (max_position_embeddings of its config.json), which the local model stands in for.
#   :func:`localaws.serving.check_context` applies it (and explains where it is stricter than LMI 0.29).

LLAMA31_MAX_POSITION_EMBEDDINGS = 131072


def _model_error(backend: SageMakerModelBackend, endpoint_name: str, status: int, error: str) -> Any:
    """A container error (``{"error", "code"}`` from LMI with HTTP ``status``) as SageMaker's ModelError."""
    original = json.dumps({"error": error, "code": status}, separators=(",", ":"))  # compact, as Gson writes it
    region, account = backend.region_name, backend.account_id
    group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    kind = "client" if 400 <= status < 500 else "server"
    message = (f'Received {kind} error ({status}) from primary with message "{original}". See '
               f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group="
               f"{group} in account {account} for more information.")
    log.warning("InvokeEndpoint %s: the container answered %d: %s", endpoint_name, status, error)  # "CloudWatch"
    return _error(424, "ModelError", {"Message": message, "OriginalStatusCode": status, "OriginalMessage": original,
                                      "LogStreamArn": f"arn:aws:logs:{region}:{account}:log-group:{group}"})


def max_model_len(environment: dict[str, str] | None) -> int:
    """The serving context of a model from its container environment (``OPTION_MAX_MODEL_LEN``, LMI's
    ``option.max_model_len``); LMI refuses to start on a value that is not a positive integer or exceeds the
    model's maximum (vLLM: the user-specified max_model_len may not exceed the derived one)."""
    raw = (environment or {}).get("OPTION_MAX_MODEL_LEN")
    if raw is None:
        return LLAMA31_MAX_POSITION_EMBEDDINGS
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if not 0 < value <= LLAMA31_MAX_POSITION_EMBEDDINGS:
        raise ValueError(f"OPTION_MAX_MODEL_LEN={raw!r} must be an integer in 1..{LLAMA31_MAX_POSITION_EMBEDDINGS} "
                         "(the model's max_position_embeddings): the container cannot start with it")
    return value


def invoke_endpoint(self: SageMakerRuntimeResponse) -> Any:
    name = self.path.split("/")[2]
    try:
        faults.check("sagemaker-runtime:InvokeEndpoint")
    except faults.InjectedFault as fault:
        return _error(fault.code, fault.error, {"message": fault.message})
    backend = sagemaker_backends[self.current_account][self.region]
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        return _error(400, "ValidationError", {"message": f"Endpoint {name} of account {self.current_account} "
                                                          "not found."})
    # the endpoint serves its current config's model (during a blue/green update, the old one until it is done)
    config = backend.endpoint_configs[endpoint.endpoint_config_name]
    variant = config.production_variants[0]
    model = backend._models[variant["ModelName"]]
    container = model.primary_container or model.containers[0]
    try:
        context = max_model_len(container.get("Environment"))
    except ValueError as exc:  # on AWS the endpoint would never have come up
        return _model_error(backend, name, 500, str(exc))
    try:
        request = json.loads(self.body or b"{}")
        if not isinstance(request, dict):
            raise ValueError("the request body must be a JSON object")
        body = serving.generate(_model_dir(container["ModelDataUrl"]), request, max_model_len=context)
    except (ValueError, KeyError, TypeError) as exc:  # ContextLengthExceeded is a ValueError
        return _model_error(backend, name, 424, str(exc))
    headers = {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": variant["VariantName"]}
    return 200, headers, json.dumps(body)


_model_dirs: dict[str, Path] = {}
_model_lock = threading.Lock()


def _model_dir(url: str) -> Path:
    """The local folder of a model artifact (the base model for JumpStart cache URIs), extracted once."""
    from localaws.models import cache_dir, smollm2_dir

    if url.startswith(BASE_MODEL_PREFIX):
        return smollm2_dir()
    with _model_lock:
        if url in _model_dirs:
            return _model_dirs[url]
        s3, (bucket, key) = _s3(), _split(url)
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        target = cache_dir() / "artifacts" / hashlib.sha1(f"{url}#{etag}".encode()).hexdigest()[:16]
        if not (target / "config.json").exists():
            target.mkdir(parents=True, exist_ok=True)
            archive = target / "model.tar.gz"
            s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
            archive.unlink()
        _model_dirs[url] = target
        return target


def install(endpoint_url: str) -> None:
    _STATE["endpoint_url"] = endpoint_url
    SageMakerModelBackend.create_training_job = _create_training_job
    SageMakerModelBackend.create_endpoint = _create_endpoint
    SageMakerResponse.update_endpoint = update_endpoint
    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint

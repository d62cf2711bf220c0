"""SageMaker: training jobs that really train, UpdateEndpoint, and InvokeEndpoint serving the trained model.

moto keeps the control-plane objects (jobs, models, endpoint configs, endpoints) but completes training jobs
instantly, lacks UpdateEndpoint and answers InvokeEndpoint with canned data. Here:

* ``CreateTrainingJob`` first enforces the JumpStart training contract
  (:func:`localaws.jumpstart_content.check_training_request`): create-time violations answer
  ``ValidationException``, job-time ones create the job and end it ``Failed`` with the rule's ``FailureReason``.
  An accepted job runs :func:`localaws.training.fine_tune` in a child process (as SageMaker runs a job in its own
  container; its memory returns to the OS when it ends) on the job's ``training`` channel with the local model
  (the gated ``SageMakerGatedModelS3Uri`` is validated, not downloaded): InProgress -> Completed (uncompressed model
  files under ``ModelArtifacts.S3ModelArtifacts`` = ``<S3OutputPath>/<job>/output/model/`` with
  ``CompressionType: NONE``, else ``model.tar.gz``; final metrics, ``BillableTimeInSeconds``) or Failed with
  ``FailureReason`` (the algorithm's own error).
* Hosting as strict as AWS's (details and sources at ``# --- hosting``): CreateModel, CreateEndpointConfig and
  CreateEndpoint refuse an existing name; CreateEndpoint and UpdateEndpoint are asynchronous (Creating/Updating,
  then InService or Failed after ``LOCALAWS_ENDPOINT_SECONDS``, default 1 s); UpdateEndpoint (blue/green by config
  name, which moto lacks) and DeleteEndpoint refuse an endpoint that is not settled, UpdateEndpoint a Failed one;
  a failed update rolls back to the old config with a ``FailureReason`` (fault ``sagemaker:UpdateEndpoint``);
  "Could not find ..." messages have AWS's shape (``"arn:..."``).
* ``InvokeEndpoint`` serves the model behind the endpoint with JumpStart's text-generation contract:
  ``{"inputs": str, "parameters": {...}}`` -> ``{"generated_text": str}``, with ``details`` (``finish_reason``,
  ``generated_tokens``) when the parameters set ``"details": true``, as LMI/TGI do. The model comes from the
  container's ``ModelDataUrl`` (a ``model.tar.gz``) or ``ModelDataSource`` (uncompressed files under an S3 prefix);
  one in a JumpStart cache bucket (``s3://jumpstart-cache-prod-...``) is served as the base model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeTrainingJob, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter
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


#: The channel JumpStart's recipe reads (``/opt/ml/input/data/training``).
TRAINING_CHANNEL = "training"
_pending = threading.local()  # the raw CreateTrainingJob request of this request thread (moto drops Environment)
_REQUEST_KEYS = ("TrainingJobName", "AlgorithmSpecification", "RoleArn", "HyperParameters", "InputDataConfig",
                 "OutputDataConfig", "ResourceConfig", "StoppingCondition", "EnableNetworkIsolation",
                 "EnableInterContainerTrafficEncryption", "Environment", "Tags")


def _prefix_has_objects(uri: str) -> bool:
    bucket, prefix = _split(uri)
    try:
        return _s3().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0
    except Exception:  # no such bucket: nothing under the URL either, as AWS words it
        return False


def _upload_dir(source: Path, uri: str) -> None:
    """The model files, uncompressed, under an S3 prefix (what SageMaker does with ``CompressionType: NONE``)."""
    s3, (bucket, prefix) = _s3(), _split(uri)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, prefix + path.relative_to(source).as_posix())


def _set_fields(resource: FakeTrainingJob | FakeEndpoint, **fields: Any) -> None:
    """Set fields that moto's resource classes do not declare (``FailureReason`` of a training job,
    ``PendingDeploymentSummary``, ...) or declare narrower (``None`` only): their ``response_object`` serializes
    the instance's attributes, so these show in the Describe* responses as they do on AWS."""
    vars(resource).update(fields)


def _run_training(job: FakeTrainingJob, violation: Any = None) -> None:
    from localaws.models import smollm2_dir
    from localaws.training import TrainingFailed, fine_tune_in_subprocess, pack

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"train-{job.training_job_name}-"))
    try:
        if violation is not None:  # the request passed AWS's create-time checks; the container fails it at once
            job.training_start_time, job.secondary_status = utcnow(), "Training"
            raise TrainingFailed(violation.message)
        with _training_lock:
            job.training_start_time = utcnow()
            job.secondary_status = "Downloading"
            faults.check("sagemaker:training")
            channels = {c["ChannelName"]: c for c in job.input_data_config or []}
            uri = channels[TRAINING_CHANNEL]["DataSource"]["S3DataSource"]["S3Uri"]
            if _download_prefix(uri, workdir / TRAINING_CHANNEL) == 0:
                raise ValueError(f"the training channel {uri} is empty")
            job.secondary_status = "Training"
            metrics = fine_tune_in_subprocess(smollm2_dir(), workdir / TRAINING_CHANNEL, job.hyper_parameters or {},
                                              workdir / "model",
                                              on_line=lambda line: log.info("[%s] %s", job.training_job_name, line))
            job.secondary_status = "Uploading"
            artifacts = job.model_artifacts["S3ModelArtifacts"]
            if artifacts.endswith("/"):  # CompressionType NONE: the files as they are
                _upload_dir(workdir / "model", artifacts)
            else:
                pack(workdir / "model", workdir / "model.tar.gz")
                bucket, key = _split(artifacts)
                _s3().upload_file(str(workdir / "model.tar.gz"), bucket, key)
        now = utcnow()
        job.final_metric_data_list = [{"MetricName": k, "Value": float(v), "Timestamp": now}
                                      for k, v in metrics.items()]
        job.training_job_status = job.secondary_status = "Completed"
        log.info("training job %s Completed: %s", job.training_job_name, metrics)
    except faults.InjectedFault as fault:
        _set_fields(job, failure_reason=fault.message)
        job.training_job_status = job.secondary_status = "Failed"
    except TrainingFailed as failure:  # the algorithm's own error, as SageMaker reports it
        log.error("training job %s Failed: %s", job.training_job_name, failure)
        _set_fields(job, failure_reason=f"AlgorithmError: {failure}")
        job.training_job_status = job.secondary_status = "Failed"
    except Exception as exc:  # the job's Failed state, with the reason, as on AWS
        log.exception("training job %s Failed", job.training_job_name)
        _set_fields(job, failure_reason=f"AlgorithmError: {type(exc).__name__}: {exc}")
        job.training_job_status = job.secondary_status = "Failed"
    finally:
        job.training_end_time = job.last_modified_time = utcnow()
        seconds = max(1, int(time.monotonic() - started))
        _set_fields(job, billable_time_in_seconds=seconds, training_time_in_seconds=seconds)
        shutil.rmtree(workdir, ignore_errors=True)


_original_create_training_job = SageMakerModelBackend.create_training_job
_original_create_training_job_response = SageMakerResponse.create_training_job


def create_training_job(self: SageMakerResponse) -> Any:
    """The response handler: keeps the whole request (moto's drops ``Environment``) for the backend's checks."""
    _pending.request = {key: value for key in _REQUEST_KEYS if (value := self._get_param(key)) is not None}
    try:
        return _original_create_training_job_response(self)
    finally:
        _pending.request = None


def _create_training_job(self: SageMakerModelBackend, **kwargs: Any) -> FakeTrainingJob:
    from localaws.jumpstart_content import ContractViolation, check_training_request

    if kwargs.get("training_job_name") in self.training_jobs:
        raise ValidationError(f"Training job {kwargs['training_job_name']} already exists")  # as AWS does
    request = getattr(_pending, "request", None) or {}
    violation = None
    try:
        check_training_request(request, region=self.region_name, prefix_has_objects=_prefix_has_objects)
    except ContractViolation as found:
        if found.at_create:
            raise ValidationError(found.message) from None
        violation = found  # AWS creates the job; the container fails it
    job = _original_create_training_job(self, **kwargs)
    _set_fields(job, environment=dict(request.get("Environment") or {}))
    if (job.output_data_config or {}).get("CompressionType") == "NONE":  # uncompressed: a prefix, as on AWS
        output = job.output_data_config["S3OutputPath"].rstrip("/")
        job.model_artifacts = {"S3ModelArtifacts": f"{output}/{job.training_job_name}/output/model/"}
    job.training_job_status, job.secondary_status = "InProgress", "Starting"
    _set_fields(job, training_end_time=None)
    job.final_metric_data_list = []
    threading.Thread(target=_run_training, args=(job, violation), daemon=True,
                     name=f"train-{job.training_job_name}").start()
    return job


# --- hosting: models, endpoint configurations, endpoints ----------------------------------------------------------
#
# Rules and their sources (AWS wording observed in error reports; moto 5.2.5 does none of this):
# * Names are unique per account and region; creating an existing one is a ValidationException:
#   'Cannot create already existing model "arn:aws:sagemaker:<region>:<account>:model/<name>".'
#   (astronomer/astronomer-providers#1055), '... endpoint configuration "arn:...:endpoint-config/<name>".'
#   (awslabs/spot-tagging-bot-for-digital-assets#2), '... endpoint "arn:...:endpoint/<name>".'
#   (aws/sagemaker-python-sdk#101, aws/amazon-sagemaker-examples#2491). moto silently replaces models and configs.
# * A missing resource: ValidationException 'Could not find endpoint "arn:...".' (DeleteEndpoint, in
#   aws/amazon-sagemaker-examples; the prefixes AWS's aws/amazon-sagemaker-operator-for-k8s matches for
#   Describe/Delete/UpdateEndpoint), 'Could not find model "arn:...".' (CreateEndpointConfig, observed),
#   'Could not find endpoint configuration "arn:...".'. moto quotes with '...': rewritten to AWS's "...".
# * CreateEndpoint: "it sets the endpoint status to Creating. After it creates the endpoint, it sets the status to
#   InService" (CreateEndpoint API reference). UpdateEndpoint: Updating, then InService; blue/green, the old fleet
#   serves meanwhile (UpdateEndpoint API reference); DescribeEndpoint shows the new config under
#   PendingDeploymentSummary while it deploys, EndpointConfigName changes when it is done (DescribeEndpoint API
#   reference: PendingDeploymentSummary "only returned when the endpoint is creating or updating with a new
#   endpoint configuration").
# * A failed update leaves the endpoint InService on its old EndpointConfigName with a FailureReason ("the status
#   is InService but update operation fails": DescribeEndpoint API reference, FailureReason; AWS's controller test
#   aws-controllers-k8s/sagemaker-controller test_endpoint.py update_endpoint_failed_test); a successful update
#   clears it (same test). Fault ``sagemaker:UpdateEndpoint`` makes the next update(s) roll back so.
# * UpdateEndpoint/DeleteEndpoint on an endpoint that is Creating/Updating/...: ValidationException
#   'Cannot update in-progress endpoint "arn:...".' (observed for DeleteEndpoint while Creating; prefix in
#   aws/amazon-sagemaker-operator-for-k8s); UpdateEndpoint on a Failed endpoint: 'Cannot update failed endpoint
#   "arn:..."' ("DeleteEndpoint is the only operation that can be performed on a failed endpoint": DescribeEndpoint
#   API reference, EndpointStatus; message as matched in public code and hashicorp/terraform-provider-aws tests).

_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
_endpoint_lock = threading.RLock()  # request threads and the status timers change endpoints
_MOTO_NOT_FOUND = re.compile(r"^Could not find (?P<kind>[a-z_ ]+?) '(?P<arn>arn:[^']+)'\.?$")


def _transition_seconds() -> float:
    """How long an endpoint stays Creating/Updating here (minutes on AWS)."""
    return float(os.environ.get("LOCALAWS_ENDPOINT_SECONDS") or 1.0)


def _arn(backend: SageMakerModelBackend, kind: str, name: str) -> str:
    return arn_formatter(kind, name, backend.account_id, backend.region_name)


def _aws_not_found(method: Callable[..., Any]) -> Callable[..., Any]:
    """moto's "Could not find <kind> '<arn>'." (or "endpoint_config") as AWS says it: ... <kind> "<arn>"."""

    @functools.wraps(method)
    def wrapper(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except ValidationError as error:
            found = _MOTO_NOT_FOUND.match(error.message or "")
            if found is None:
                raise
            kind = found["kind"].replace("endpoint_config", "endpoint configuration")
            raise ValidationError(f'Could not find {kind} "{found["arn"]}".') from None

    return wrapper


_original = {name: getattr(SageMakerModelBackend, name) for name in (
    "create_model", "describe_model", "delete_model", "create_endpoint_config", "describe_endpoint_config",
    "delete_endpoint_config", "create_endpoint", "describe_endpoint")}


def _create_model(self: SageMakerModelBackend, **kwargs: Any) -> Any:
    if kwargs["model_name"] in self._models:
        raise ValidationError(f'Cannot create already existing model "{_arn(self, "model", kwargs["model_name"])}".')
    for container in [kwargs.get("primary_container"), *(kwargs.get("containers") or [])]:
        if container:
            _check_model_data(container)
    return _original["create_model"](self, **kwargs)


def _delete_model(self: SageMakerModelBackend, model_name: str) -> None:
    if model_name not in self._models:  # moto: 'Could not find model "<name>".', without the ARN AWS gives
        raise ValidationError(f'Could not find model "{_arn(self, "model", model_name)}".')
    _original["delete_model"](self, model_name)


def _create_endpoint_config(self: SageMakerModelBackend, **kwargs: Any) -> Any:
    name = kwargs["endpoint_config_name"]
    if name in self.endpoint_configs:
        raise ValidationError(
            f'Cannot create already existing endpoint configuration "{_arn(self, "endpoint-config", name)}".')
    return _original["create_endpoint_config"](self, **kwargs)


def _settle_later(backend: SageMakerModelBackend, endpoint: FakeEndpoint, finish: Callable[[], None]) -> None:
    """Run ``finish`` (the end of a Creating/Updating) after the transition time, unless the endpoint was deleted."""

    def run() -> None:
        with _endpoint_lock:
            if backend.endpoints.get(endpoint.endpoint_name) is endpoint:
                finish()
                endpoint.last_modified_time = utcnow()

    timer = threading.Timer(_transition_seconds(), run)
    timer.daemon = True
    timer.start()


_original_describe_training_job = SageMakerModelBackend.describe_training_job


def _describe_training_job(self: SageMakerModelBackend, training_job_name: str) -> dict[str, Any]:
    """DescribeTrainingJob with the job's ``Environment`` (AWS returns it; moto drops it)."""
    described = _original_describe_training_job(self, training_job_name)
    environment = getattr(self.training_jobs[training_job_name], "environment", None)
    return {**described, "Environment": environment} if environment else described


def _create_endpoint(self: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
    with _endpoint_lock:
        if endpoint_name in self.endpoints:  # the provider's operator falls back to an update on this message
            raise ValidationError(f'Cannot create already existing endpoint "{self.endpoints[endpoint_name].arn}".')
        endpoint = _original["create_endpoint"](self, endpoint_name, endpoint_config_name, tags)
        fault = faults.take("sagemaker:CreateEndpoint")
        endpoint.endpoint_status = "Creating"

    def finish() -> None:  # the endpoint exists but never comes up on a fault, as on AWS
        endpoint.endpoint_status = "Failed" if fault else "InService"
        endpoint.failure_reason = fault.message if fault else None

    _settle_later(self, endpoint, finish)
    return endpoint


def _delete_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> None:
    with _endpoint_lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise ValidationError(f'Could not find endpoint "{_arn(self, "endpoint", endpoint_name)}".')
        if endpoint.endpoint_status in _IN_PROGRESS:
            raise ValidationError(f'Cannot update in-progress endpoint "{endpoint.arn}".')
        del self.endpoints[endpoint_name]


def update_endpoint(self: SageMakerResponse) -> Any:
    from moto.core.responses import ActionResult

    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    backend = self.sagemaker_backend
    with _endpoint_lock:
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(f'Could not find endpoint "{_arn(backend, "endpoint", name)}".')
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            raise ValidationError(
                f'Could not find endpoint configuration "{_arn(backend, "endpoint-config", config_name)}".')
        if endpoint.endpoint_status == "Failed":
            raise ValidationError(f'Cannot update failed endpoint "{endpoint.arn}".')
        if endpoint.endpoint_status != "InService":
            raise ValidationError(f'Cannot update in-progress endpoint "{endpoint.arn}".')
        fault = faults.take("sagemaker:UpdateEndpoint")
        endpoint.endpoint_status = "Updating"
        _set_fields(endpoint, pending_deployment_summary={"EndpointConfigName": config_name, "StartTime": utcnow()})
        endpoint.last_modified_time = utcnow()

    def finish() -> None:
        endpoint.endpoint_status = "InService"
        _set_fields(endpoint, pending_deployment_summary=None)
        if fault:  # rolled back: the old fleet keeps serving the old config
            _set_fields(endpoint, failure_reason=fault.message)
            return
        endpoint.endpoint_config_name, endpoint.failure_reason = config_name, None
        endpoint.production_variants = endpoint._process_production_variants(config.production_variants)

    _settle_later(backend, endpoint, finish)
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
        body = serving.generate(_model_dir(_model_data_uri(container)), request, max_model_len=context)
    except (ValueError, KeyError, TypeError) as exc:  # ContextLengthExceeded is a ValueError
        return _model_error(backend, name, 424, str(exc))
    headers = {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": variant["VariantName"]}
    return 200, headers, json.dumps(body)


_model_dirs: dict[str, Path] = {}
_model_lock = threading.Lock()


def _model_data_uri(container: dict[str, Any]) -> str:
    """A container's model: ``ModelDataUrl`` (a ``model.tar.gz``) or ``ModelDataSource.S3DataSource.S3Uri``."""
    source = (container.get("ModelDataSource") or {}).get("S3DataSource")
    return source["S3Uri"] if source else container["ModelDataUrl"]


def _check_model_data(container: dict[str, Any]) -> None:
    """CreateModel's rules for a container's model data (API reference: ``ModelDataSource``, ``S3ModelDataSource``)."""
    source = container.get("ModelDataSource")
    if source is None:
        return
    if container.get("ModelDataUrl"):
        raise ValidationError("ModelDataUrl and ModelDataSource cannot both be specified for a container.")
    s3 = source.get("S3DataSource") or {}
    uri, data_type, compression = s3.get("S3Uri", ""), s3.get("S3DataType"), s3.get("CompressionType")
    if data_type not in ("S3Prefix", "S3Object") or compression not in ("None", "Gzip"):
        raise ValidationError(f"Invalid ModelDataSource: S3DataType {data_type!r} must be S3Prefix or S3Object and "
                              f"CompressionType {compression!r} None or Gzip.")
    if data_type == "S3Prefix" and (compression != "None" or not uri.endswith("/")):
        raise ValidationError(f"Invalid ModelDataSource: an S3Prefix model data source needs CompressionType None "
                              f"and an S3Uri ending with '/' (got {uri!r}, {compression}).")
    if not _prefix_has_objects(uri):
        raise ValidationError(f"Could not find model data at {uri}.")


def _model_dir(url: str) -> Path:
    """The local folder of a model artifact (the base model for JumpStart cache URIs): a ``model.tar.gz``
    extracted once, or the uncompressed files under an S3 prefix (``.../``) downloaded once."""
    from localaws.models import cache_dir, smollm2_dir

    if url.startswith(BASE_MODEL_PREFIX):
        return smollm2_dir()
    with _model_lock:
        if url in _model_dirs:
            return _model_dirs[url]
        if url.endswith("/"):
            bucket, prefix = _split(url)
            try:
                etag = _s3().head_object(Bucket=bucket, Key=prefix + "config.json")["ETag"].strip('"')
            except Exception:
                raise ValueError(f"no model files (config.json) under {url}") from None
            target = cache_dir() / "artifacts" / hashlib.sha1(f"{url}#{etag}".encode()).hexdigest()[:16]
            if not (target / "config.json").exists():
                shutil.rmtree(target, ignore_errors=True)
                if _download_prefix(url, target) == 0 or not (target / "config.json").exists():
                    raise ValueError(f"no model files (config.json) under {url}")
            _model_dirs[url] = target
            return target
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
    patches: list[tuple[type, str, Callable[..., Any]]] = [
        (SageMakerModelBackend, "create_training_job", _create_training_job),
        (SageMakerResponse, "create_training_job", create_training_job),
        (SageMakerModelBackend, "describe_training_job", _describe_training_job),
        (SageMakerModelBackend, "create_model", _create_model),
        (SageMakerModelBackend, "describe_model", _aws_not_found(_original["describe_model"])),
        (SageMakerModelBackend, "delete_model", _delete_model),
        (SageMakerModelBackend, "create_endpoint_config", _aws_not_found(_create_endpoint_config)),
        (SageMakerModelBackend, "describe_endpoint_config", _aws_not_found(_original["describe_endpoint_config"])),
        (SageMakerModelBackend, "delete_endpoint_config", _aws_not_found(_original["delete_endpoint_config"])),
        (SageMakerModelBackend, "create_endpoint", _aws_not_found(_create_endpoint)),
        (SageMakerModelBackend, "describe_endpoint", _aws_not_found(_original["describe_endpoint"])),
        (SageMakerModelBackend, "delete_endpoint", _delete_endpoint),
        (SageMakerResponse, "update_endpoint", update_endpoint),  # moto has no UpdateEndpoint
        (SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint),
    ]
    for cls, name, function in patches:  # moto's classes, patched in place
        setattr(cls, name, function)

"""SageMaker JumpStart, offline: the content buckets the local AWS serves and the training contract it enforces.

What the SDK reads (sagemaker-core 2.27.0, ``jumpstart/cache.py``, ``accessors.py``, ``utils.py``,
``region_config.json``): the regional content bucket ``jumpstart-cache-prod-<region>`` (override:
``AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE``) holds ``models_manifest.json`` (a list of model headers: ``model_id``,
``version``, ``min_version``, ``spec_key``) and each spec at its ``spec_key``; the SDK reads both with S3
GetObject and re-checks the manifest with HeadObject (its ETag) when its 6-hour cache expires. Script tarballs
live in the same bucket (``script_uris``: ``s3://<content bucket>/<training_prepacked_script_key or
training_script_key>``); gated weights in ``jumpstart-private-cache-prod-<region>`` (override:
``AWS_JUMPSTART_GATED_CONTENT_BUCKET_OVERRIDE``) at the spec's ``gated_model_key_env_var_value`` for the instance
family. This module serves our spec snapshot (``data/jumpstart/``, written from the published 70B sibling's facts,
sources inside it), a manifest for it, a stand-in script tarball and stand-in gated objects: the local AWS cannot run
JumpStart's container or an 8B model, so it validates requests against the contract instead.

:func:`check_training_request` is that contract. Each rule names the AWS behaviour it stands for: a
``ValidationException`` from CreateTrainingJob (AWS checks it at create time) or a job that goes ``Failed`` with a
``FailureReason`` (AWS accepts the request and the container fails); rules AWS does not enforce at all but
JumpStart's estimator always satisfies are marked ``policy`` (the twin refuses them at create time so a regression
in our request builder is caught, never silently accepted).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_ID = "meta-textgeneration-llama-3-1-8b-instruct"
DATA_DIR = Path(__file__).parent / "data" / "jumpstart"
#: sagemaker-core jumpstart/constants.py ``JUMPSTART_DEFAULT_MANIFEST_FILE_S3_KEY``
MANIFEST_KEY = "models_manifest.json"
GATED_MODEL_ENV = "SageMakerGatedModelS3Uri"
#: Names the SageMaker training toolkit reserves and the v2 SDK estimator adds to every script-mode job
#: (estimator.py ``_script_mode_hyperparam_update``: job name, region, log level) -- not in the spec, accepted.
TOOLKIT_HYPERPARAMETERS = frozenset({"sagemaker_job_name", "sagemaker_region", "sagemaker_container_log_level"})
#: CreateTrainingJob ``StoppingCondition.MaxRuntimeInSeconds``: "The maximum value is 28 days" (API reference).
MAX_RUNTIME_SECONDS = 28 * 24 * 3600


def content_bucket(region: str) -> str:
    """The JumpStart content bucket of a region (sagemaker-core ``jumpstart/region_config.json``)."""
    return f"jumpstart-cache-prod-{region}"


def gated_bucket(region: str) -> str:
    """The JumpStart gated (private) content bucket of a region (same source)."""
    return f"jumpstart-private-cache-prod-{region}"


@functools.cache
def spec() -> dict[str, Any]:
    """Our spec snapshot of the 8B Instruct model (``_source`` says where each fact comes from)."""
    return json.loads((DATA_DIR / f"{MODEL_ID}.spec.json").read_text(encoding="utf-8"))


def spec_key(model: Mapping[str, Any] | None = None) -> str:
    """Where the spec lives in the content bucket (the published manifest's ``community_models/...`` layout)."""
    model = model or spec()
    return f"community_models/{model['model_id']}/specs_v{model['version']}.json"


def manifest() -> list[dict[str, Any]]:
    """``models_manifest.json``: one header per served model (the fields ``JumpStartModelHeader`` reads)."""
    model = spec()
    return [{"model_id": model["model_id"], "version": model["version"], "min_version": model["min_sdk_version"],
             "spec_key": spec_key(model), "deprecated": False, "provider": model["provider"],
             "search_keywords": ["Text Generation"]}]


STAND_IN_SCRIPT = b'''"""localaws stand-in for JumpStart's transfer_learning.py (the local AWS trains its own model)."""
raise SystemExit("stand-in: the JumpStart training script is not available offline")
'''


@functools.cache
def stand_in_script_tarball() -> bytes:
    """A ``sourcedir.tar.gz`` holding a stand-in ``transfer_learning.py`` (byte-for-byte reproducible)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("transfer_learning.py")
        info.size, info.mtime, info.mode = len(STAND_IN_SCRIPT), 0, 0o644
        tar.addfile(info, io.BytesIO(STAND_IN_SCRIPT))
    return gzip.compress(raw.getvalue(), mtime=0)


def gated_keys() -> dict[str, str]:
    """Instance family -> key of the gated training weights (``gated_model_key_env_var_value``)."""
    variants = spec()["training_instance_type_variants"]["variants"]
    return {family: v["properties"]["gated_model_key_env_var_value"]
            for family, v in variants.items() if "gated_model_key_env_var_value" in v.get("properties", {})}


def content_objects() -> dict[str, bytes]:
    """Key -> body of every object the content bucket serves."""
    model = spec()
    objects = {MANIFEST_KEY: json.dumps(manifest(), indent=1).encode(),
               spec_key(model): json.dumps(model, indent=1).encode(),
               model["hosting_eula_key"]: b"localaws stand-in for the Llama 3.1 Community License text\n"}
    for key in ("training_script_key", "training_prepacked_script_key"):
        objects[model[key]] = stand_in_script_tarball()
    return objects


def gated_objects() -> dict[str, bytes]:
    """Key -> body of the gated bucket's stand-in weights (the local AWS trains SmolLM2-135M instead)."""
    return {key: f"localaws stand-in for {MODEL_ID} training weights ({family})\n".encode()
            for family, key in gated_keys().items()}


def serve(s3: Any, region: str = "us-east-1", *, bucket: str | None = None,
          gated: str | None = None) -> tuple[str, str]:
    """Create the content and gated buckets on ``s3`` (a boto3 client) and put the objects; returns their names."""
    buckets = ((bucket or content_bucket(region), content_objects()), (gated or gated_bucket(region), gated_objects()))
    for name, objects in buckets:
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name, **location)
        for key, body in objects.items():
            s3.put_object(Bucket=name, Key=key, Body=body)
    return buckets[0][0], buckets[1][0]


# --- the contract ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str
    #: "create": CreateTrainingJob answers ValidationException; "job": the job is created and ends Failed with a
    #: FailureReason; "policy": AWS accepts it, JumpStart's estimator never sends it, the twin refuses at create time
    at: str
    source: str


RULES = {rule.id: rule for rule in (
    Rule("request-limits", "HyperParameters <= 100 entries (keys <= 256, values <= 2500 chars), Environment <= 100 "
         "(keys [a-zA-Z_][a-zA-Z0-9_]* <= 512, values <= 512), 1-20 channels named [A-Za-z0-9.-_]{1,64}, "
         "MaxRuntimeInSeconds 1..28 days", "create",
         "botocore sagemaker 2017-07-24 service model, CreateTrainingJob shapes; API reference: 'The maximum value "
         "is 28 days'; message shape 'Value ... at ... failed to satisfy constraint' as AWS/moto phrase it"),
    Rule("training-image", "TrainingImage is the spec's regional image for the instance family", "create",
         "spec training_instance_type_variants (SDK image_uris.retrieve); a missing image is a CreateTrainingJob "
         "ValidationException 'Cannot find the requested image' (aws/amazon-sagemaker-examples#1476). An existing "
         "but wrong image AWS would start and the job would fail later: the twin refuses it earlier"),
    Rule("channel-objects", "every channel's S3 prefix holds objects", "create",
         "ValidationException 'No S3 objects found under S3 URL \"...\" given in input data source...' at "
         "CreateTrainingJob (aws/amazon-sagemaker-feedback#126; public botocore tracebacks)"),
    Rule("spec-job-settings", "EnableNetworkIsolation, EnableInterContainerTrafficEncryption and "
         "OutputDataConfig.CompressionType=NONE as the spec's training_enable_network_isolation / estimator_kwargs "
         "say", "policy",
         "sagemaker-core jumpstart/artifacts/kwargs.py _retrieve_estimator_init_kwargs; v2 job.py _load_config"),
    Rule("code-channel", "a 'code' channel holds the spec's script tarball (prepacked preferred)", "job",
         "v2 estimator.py: network isolation -> code channel + /opt/ml/input/data/code/sourcedir.tar.gz; "
         "sagemaker-core jumpstart/artifacts/script_uris.py"),
    Rule("entry-point", "sagemaker_program / sagemaker_submit_directory are the spec's container-scope values", "job",
         "spec hyperparameters (scope container); the training toolkit runs sagemaker_program from "
         "sagemaker_submit_directory"),
    Rule("training-channel", "a 'training' channel (JumpStart's recipe reads 'training', not 'train')", "job",
         "aws/amazon-sagemaker-examples generative_ai Llama 3/3.1 notebooks: estimator.fit({'training': ...}); "
         "sagemaker-train defaults.py names the default dataset channel 'training'"),
    Rule("no-model-channel", "no 'model' channel: gated weights come only from SageMakerGatedModelS3Uri", "job",
         "sagemaker-core types.py use_training_model_artifact (gated -> never); sagemaker-train defaults.py: 'A model "
         "channel and SageMakerGatedModelS3Uri environment variable cannot be used together'; "
         "incremental_training_supported false"),
    Rule("hyperparameter-names", "every hyperparameter is in the spec (or a training-toolkit name)", "job",
         "spec hyperparameters; sagemaker-core jumpstart/validators.py ('cannot find hyperparameter ... in model "
         "specs')"),
    Rule("hyperparameter-values", "values within the spec's type, options and range", "job",
         "sagemaker-core jumpstart/validators.py _validate_hyperparameter"),
    Rule("accept-eula", "Environment accept_eula=true (the model is gated)", "job",
         "spec gated_bucket/hosting_eula_key; AWS's notebooks: JumpStartEstimator(environment={'accept_eula': "
         "'true'})"),
    Rule("gated-weights", "Environment SageMakerGatedModelS3Uri is the gated bucket's key for the instance family",
         "job", "sagemaker-core jumpstart/artifacts/environment_variables.py _retrieve_gated_model_uri_env_var_value"),
)}


class ContractViolation(Exception):
    """A training request JumpStart would refuse: ``rule.at`` says whether at create time or as a Failed job."""

    def __init__(self, rule_id: str, message: str) -> None:
        self.rule = RULES[rule_id]
        self.message = message
        super().__init__(f"[{rule_id}] {message}")

    @property
    def at_create(self) -> bool:
        return self.rule.at in ("create", "policy")

    @property
    def error_code(self) -> str | None:
        """The CreateTrainingJob error code, or None when AWS would create the job and fail it."""
        return "ValidationException" if self.at_create else None

    @property
    def failure_reason(self) -> str:
        """DescribeTrainingJob ``FailureReason`` for a job-time rule (the container's own error, as on AWS)."""
        return f"AlgorithmError: {self.message}"


def _decoded(value: str) -> str:
    """A hyperparameter as the training toolkit reads it: the v2 SDK JSON-encodes script-mode values."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def _family(instance_type: str) -> str:
    found = re.match(r"^ml[._]([a-z\d\-]+)\.?\w*$", instance_type)  # sagemaker-core get_instance_type_family
    return found[1] if found else ""


def _constraint(value: str, where: str, constraint: str) -> str:
    return f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy constraint: {constraint}"


def _check_limits(request: Mapping[str, Any]) -> None:
    hyperparameters = request.get("HyperParameters") or {}
    environment = request.get("Environment") or {}
    channels = request.get("InputDataConfig") or []
    problems = []
    if len(hyperparameters) > 100:
        problems.append(_constraint(f"{len(hyperparameters)} entries", "hyperParameters",
                                    "Member must have length less than or equal to 100"))
    for key, value in hyperparameters.items():
        if len(key) > 256 or len(str(value)) > 2500:
            problems.append(_constraint(key[:40], "hyperParameters", "Map keys must have length <= 256 and values "
                                        "length <= 2500"))
    if len(environment) > 100:
        problems.append(_constraint(f"{len(environment)} entries", "environment",
                                    "Member must have length less than or equal to 100"))
    for key, value in environment.items():
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or len(key) > 512 or len(str(value)) > 512:
            problems.append(_constraint(key[:40], "environment", "Map keys must match [a-zA-Z_][a-zA-Z0-9_]* "
                                        "(<= 512) and values have length <= 512"))
    if not 1 <= len(channels) <= 20:
        problems.append(_constraint(f"{len(channels)} channels", "inputDataConfig",
                                    "Member must have length between 1 and 20"))
    for channel in channels:
        name = str(channel.get("ChannelName", ""))
        if not re.fullmatch(r"[A-Za-z0-9.\-_]{1,64}", name):
            problems.append(_constraint(name, "inputDataConfig.member.channelName",
                                        "Member must satisfy regular expression pattern: [A-Za-z0-9\\.\\-_]+"))
    runtime = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if runtime is not None and not 1 <= int(runtime) <= MAX_RUNTIME_SECONDS:
        problems.append(_constraint(str(runtime), "stoppingCondition.maxRuntimeInSeconds",
                                    f"Member must be between 1 and {MAX_RUNTIME_SECONDS} (28 days)"))
    if problems:
        raise ContractViolation("request-limits", problems[0])


def _channel_uris(request: Mapping[str, Any]) -> dict[str, str]:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in request.get("InputDataConfig") or [] if "S3DataSource" in c.get("DataSource", {})}


def check_training_request(request: Mapping[str, Any], *, region: str = "us-east-1",
                           prefix_has_objects: Callable[[str], bool] | None = None,
                           content: str | None = None, gated: str | None = None) -> None:
    """Raise :class:`ContractViolation` for the first rule a CreateTrainingJob request for our JumpStart model
    breaks, create-time rules first (as AWS answers them before the job exists); return None if it passes.

    ``prefix_has_objects(s3_uri)`` checks that a channel's prefix is not empty (the server passes one reading its
    own S3); ``content``/``gated`` name the buckets when the overrides are in use.
    """
    model = spec()
    content, gated = content or content_bucket(region), gated or gated_bucket(region)
    _check_limits(request)

    instance_type = str((request.get("ResourceConfig") or {}).get("InstanceType", ""))
    family = _family(instance_type)
    variants = model["training_instance_type_variants"]
    alias = variants["variants"].get(family, {}).get("regional_properties", {}).get("image_uri", "")
    expected_image = variants["regional_aliases"].get(region, {}).get(alias.lstrip("$")) if alias else None
    image = (request.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if image != expected_image:
        raise ContractViolation("training-image", f"Cannot find the requested image: {image} (JumpStart "
                                f"{model['model_id']} {model['version']} trains {instance_type} in {region} on "
                                f"{expected_image})")

    channels = _channel_uris(request)
    if prefix_has_objects is not None:
        for uri in channels.values():
            if not prefix_has_objects(uri):
                bucket = uri.removeprefix("s3://").split("/", 1)[0]
                raise ContractViolation("channel-objects", (
                    f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the '
                    f"bucket exists in the selected region ({region}), that objects exist under that S3 prefix, and "
                    f'that the role "{request.get("RoleArn")}" has "s3:ListBucket" permissions on bucket '
                    f'"{bucket}".'))

    kwargs = model["estimator_kwargs"]
    expected_settings = {
        "EnableNetworkIsolation": bool(model["training_enable_network_isolation"]),
        "EnableInterContainerTrafficEncryption": bool(kwargs.get("encrypt_inter_container_traffic", False)),
        "OutputDataConfig.CompressionType": "NONE" if kwargs.get("disable_output_compression") else "GZIP",
    }
    actual_settings = {
        "EnableNetworkIsolation": bool(request.get("EnableNetworkIsolation", False)),
        "EnableInterContainerTrafficEncryption": bool(request.get("EnableInterContainerTrafficEncryption", False)),
        "OutputDataConfig.CompressionType": (request.get("OutputDataConfig") or {}).get("CompressionType", "GZIP"),
    }
    wrong = [f"{k}={actual_settings[k]} (JumpStart sends {v})" for k, v in expected_settings.items()
             if actual_settings[k] != v]
    if wrong:
        raise ContractViolation("spec-job-settings", "localaws JumpStart policy: " + ", ".join(wrong))

    # --- from here on AWS would create the job; the container fails it ---
    scripts = {f"s3://{content}/{model[k]}" for k in ("training_prepacked_script_key", "training_script_key")
               if model.get(k)}
    if channels.get("code") not in scripts:
        raise ContractViolation("code-channel", f"no JumpStart training script: the 'code' channel is "
                                f"{channels.get('code')!r}, expected one of {sorted(scripts)}")
    hyperparameters = {str(k): _decoded(str(v)) for k, v in (request.get("HyperParameters") or {}).items()}
    table = {h["name"]: h for h in model["hyperparameters"]}
    for name in ("sagemaker_program", "sagemaker_submit_directory"):
        if hyperparameters.get(name) != table[name]["default"]:
            raise ContractViolation("entry-point", f"hyperparameter {name}={hyperparameters.get(name)!r}: the "
                                    f"container needs {table[name]['default']!r} to run JumpStart's script")
    if "training" not in channels:
        raise ContractViolation("training-channel", f"no 'training' channel (got {sorted(channels)}): JumpStart's "
                                "recipe reads its data from /opt/ml/input/data/training")
    if "model" in channels:
        raise ContractViolation("no-model-channel", f"a 'model' channel ({channels['model']}) was given: "
                                f"{model['model_id']} is gated and does not support incremental training; its "
                                f"weights come from {GATED_MODEL_ENV}")
    unknown = sorted(set(hyperparameters) - set(table) - TOOLKIT_HYPERPARAMETERS)
    if unknown:
        raise ContractViolation("hyperparameter-names", f"unrecognized hyperparameter(s) {', '.join(unknown)}: "
                                f"cannot find them in the model specs of {model['model_id']}")
    for name, value in hyperparameters.items():
        if name in table and (problem := _value_problem(table[name], value)):
            raise ContractViolation("hyperparameter-values", problem)
    environment = request.get("Environment") or {}
    if str(environment.get("accept_eula", "")).lower() != "true":
        raise ContractViolation("accept-eula", f"{model['model_id']} is gated: set the environment variable "
                                "accept_eula=true to accept its end-user license agreement (EULA)")
    key = gated_keys().get(family)
    expected_weights = f"s3://{gated}/{key}" if key else None
    if environment.get(GATED_MODEL_ENV) != expected_weights:
        raise ContractViolation("gated-weights", f"{GATED_MODEL_ENV}={environment.get(GATED_MODEL_ENV)!r}: the "
                                f"training weights for {instance_type} are {expected_weights}")


def _value_problem(entry: Mapping[str, Any], value: str) -> str | None:
    """The SDK's validators.py rules for one value, as a message (None when it is valid)."""
    name, kind = entry["name"], entry["type"]
    if kind == "bool":
        return None if value.lower() in ("true", "false") else f"Expecting boolean valued hyperparameter {name!r}, " \
                                                              f"but got {value!r}."
    if kind == "text":
        if "options" in entry and value not in entry["options"]:
            return f"Hyperparameter '{name}' must have one of the following values: {', '.join(entry['options'])}."
        return None
    try:
        number = float(value)
    except ValueError:
        return f"Hyperparameter '{name}' must be numeric type ('{value}')."
    if kind == "int" and not re.fullmatch(r"[+-]?\d+", value):
        return f"Hyperparameter '{name}' must be integer type ('{value}')."
    if "min" in entry and number < entry["min"]:
        return f"Hyperparameter '{name}' can be no less than {entry['min']}."
    if "max" in entry and number > entry["max"]:
        return f"Hyperparameter '{name}' can be no greater than {entry['max']}."
    return None

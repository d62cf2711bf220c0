"""The CreateTrainingJob request of a SageMaker JumpStart fine-tune (Meta Llama 3.1), resolved at task run time.

There is no JumpStart operator in the Amazon provider, so this module builds what the SageMaker Python SDK's
``JumpStartEstimator`` would send, in two steps:

1. :func:`resolve_training` asks the SDK's JumpStart utilities (``sagemaker-core``: ``image_uris``,
   ``script_uris``, ``hyperparameters``, ``environment_variables`` and the model spec) for one model, region and
   instance type. The SDK reads the JumpStart content bucket over S3 (``models_manifest.json``, then the model's
   spec), so it must run at task run time, never at DAG parse time: the import is lazy and costs ~3.5 s. Offline the
   same SDK code reads the local AWS's content bucket through the S3 client it is given.
2. :func:`training_job_request` turns the resolved facts (a plain, JSON-able :class:`ResolvedTraining`) plus our own
   choices (method, epochs, ...) into the request dict for ``SageMakerTrainingOperator(config=...)``. It is pure:
   unit-tested without the SDK.

What the request carries, and where each piece comes from (SDK 2.27.0 sources; v2 ``JumpStartEstimator``):

* ``AlgorithmSpecification.TrainingImage``: the spec's regional image for the instance family
  (``image_uris.retrieve(image_scope="training")``; for Llama 3.1 the Hugging Face PyTorch training DLC).
* ``HyperParameters``: the spec's defaults (container scope included: ``sagemaker_program=transfer_learning.py``,
  ``sagemaker_submit_directory=/opt/ml/input/data/code/sourcedir.tar.gz``) overridden by ours; every name must be
  in the spec and every value within its options/range (the SDK's ``jumpstart/validators.py`` rules).
* ``InputDataConfig``: ``training`` (JumpStart reads ``training``, not ``train``), optional ``validation``, and
  ``code``: the script tarball (``script_uris.retrieve(script_scope="training")``, which prefers the spec's
  ``training_prepacked_script_key``) -- with network isolation the container cannot fetch it itself, so the v2
  estimator mounts it as the ``code`` channel (``estimator.py``: ``CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH``).
* No ``model`` channel: a gated model never uses a training artifact channel (``types.py``
  ``use_training_model_artifact``); the base weights come from ``Environment.SageMakerGatedModelS3Uri`` in the
  gated content bucket (``environment_variables.retrieve_default(script="training", instance_type=...)``), and
  ``accept_eula=true`` accepts Meta's license (an explicit decision of ours: :class:`EulaNotAccepted` otherwise).
* ``estimator_kwargs`` (``EnableInterContainerTrafficEncryption``, ``OutputDataConfig.CompressionType = NONE``,
  ``StoppingCondition.MaxRuntimeInSeconds``), ``training_enable_network_isolation`` and
  ``training_volume_size`` -- the volume only for instance types that take an EBS volume
  (``common_utils.volume_size_supported``); NVMe families (g5, p4d, ...) get the SDK estimator's default 30 GB,
  which SageMaker ignores there (CreateTrainingJob API reference, ``VolumeSizeInGB``).

Emulator-only knobs (e.g. the local AWS's ``local_trainable_layers``) are not JumpStart hyperparameters: they are
refused here and never reach AWS.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

METHODS = ("domain_adaptation", "instruction_tuning")
TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"
CODE_CHANNEL = "code"
GATED_MODEL_ENV = "SageMakerGatedModelS3Uri"
#: The SDK estimator's default volume (v2 ``Estimator(volume_size=30)``), sent where the spec's volume does not
#: apply (instances with NVMe instance storage, where SageMaker ignores it).
DEFAULT_VOLUME_SIZE_GB = 30
#: CreateTrainingJob ``StoppingCondition.MaxRuntimeInSeconds``: "The maximum value is 28 days" (API reference).
MAX_RUNTIME_LIMIT_SECONDS = 28 * 24 * 3600
#: Our settings -> JumpStart hyperparameter names (the Llama recipe's names, as the spec lists them).
_OURS = {"epochs": "epoch", "learning_rate": "learning_rate", "max_input_length": "max_input_length",
         "per_device_train_batch_size": "per_device_train_batch_size", "lora_r": "lora_r", "lora_alpha": "lora_alpha"}


class EulaNotAccepted(ValueError):
    """The model is gated and its license was not accepted in config (``finetune.accept_eula``)."""


@dataclass(frozen=True)
class HyperparameterSpec:
    """One hyperparameter of a JumpStart spec: name, type (int/float/text/bool), default, scope, options, range."""

    name: str
    type: str
    default: str
    scope: str = "algorithm"
    options: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    def check(self, value: str) -> None:
        """Raise ValueError if ``value`` breaks the spec (the rules of the SDK's ``jumpstart/validators.py``)."""
        if self.type == "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"hyperparameter {self.name!r} must be a boolean, got {value!r}")
        elif self.type == "text":
            if self.options is not None and value not in self.options:
                raise ValueError(f"hyperparameter {self.name!r} must be one of {', '.join(self.options)}; "
                                 f"got {value!r}")
            if self.min is not None and len(value) < self.min:
                raise ValueError(f"hyperparameter {self.name!r} must have length >= {self.min:g}")
            if self.max is not None and len(value) > self.max:
                raise ValueError(f"hyperparameter {self.name!r} must have length <= {self.max:g}")
        elif self.type in ("int", "float"):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"hyperparameter {self.name!r} must be numeric, got {value!r}") from None
            if math.isnan(number):
                raise ValueError(f"hyperparameter {self.name!r} must be numeric, got {value!r}")
            if self.type == "int" and not re.fullmatch(r"[+-]?\d+", value):
                raise ValueError(f"hyperparameter {self.name!r} must be an integer, got {value!r}")
            if self.min is not None and number < self.min:
                raise ValueError(f"hyperparameter {self.name!r} must be >= {self.min:g}, got {value}")
            if self.max is not None and number > self.max:
                raise ValueError(f"hyperparameter {self.name!r} must be <= {self.max:g}, got {value}")

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any]) -> HyperparameterSpec:
        """From one entry of a spec's ``hyperparameters`` list."""
        options = entry.get("options")
        return cls(name=str(entry["name"]), type=str(entry["type"]), default=str(entry.get("default")),
                   scope=str(entry.get("scope", "algorithm")),
                   options=tuple(str(o) for o in options) if options is not None else None,
                   min=float(entry["min"]) if entry.get("min") is not None else None,
                   max=float(entry["max"]) if entry.get("max") is not None else None)


@dataclass(frozen=True)
class ResolvedTraining:
    """What JumpStart says about training one model, in one region, on one instance type (JSON-able for XCom)."""

    model_id: str
    model_version: str
    region: str
    instance_type: str
    image_uri: str
    script_uri: str
    default_hyperparameters: Mapping[str, str]
    hyperparameter_specs: tuple[HyperparameterSpec, ...]
    environment: Mapping[str, str]
    gated: bool
    enable_network_isolation: bool
    encrypt_inter_container_traffic: bool
    disable_output_compression: bool
    max_run: int | None
    volume_size: int | None
    supported_instance_types: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedTraining:
        values = dict(data)
        values["hyperparameter_specs"] = tuple(
            HyperparameterSpec(**{**h, "options": tuple(h["options"]) if h.get("options") is not None else None})
            for h in data["hyperparameter_specs"])
        values["default_hyperparameters"] = dict(data["default_hyperparameters"])
        values["environment"] = dict(data["environment"])
        values["supported_instance_types"] = tuple(data.get("supported_instance_types", ()))
        return cls(**values)

    def spec_of(self, name: str) -> HyperparameterSpec | None:
        return next((h for h in self.hyperparameter_specs if h.name == name), None)


@dataclass(frozen=True)
class TuningChoices:
    """Our fine-tuning settings, in our words (mapped onto the spec's names by :func:`jumpstart_hyperparameters`)."""

    epochs: int
    learning_rate: float
    max_input_length: int
    per_device_train_batch_size: int
    lora_r: int
    lora_alpha: int
    #: any further JumpStart hyperparameters by their spec names (e.g. ``{"seed": "7"}``); checked like the rest
    extra: Mapping[str, str] = field(default_factory=dict)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def jumpstart_hyperparameters(resolved: ResolvedTraining, method: str, choices: TuningChoices) -> dict[str, str]:
    """The spec's defaults (container scope included) overridden by ours; every name and value checked."""
    if method not in METHODS:
        raise ValueError(f"unknown fine-tuning method {method!r} (use one of {', '.join(METHODS)})")
    ours = {spec_name: _text(getattr(choices, attr)) for attr, spec_name in _OURS.items()}
    ours["instruction_tuned"] = _text(method == "instruction_tuning")
    ours["chat_dataset"] = "False"  # our instruction data is instruction/response JSONL + template.json
    ours.update({str(k): _text(v) for k, v in choices.extra.items()})
    hyperparameters = {**resolved.default_hyperparameters, **ours}
    problems = []
    for name, value in hyperparameters.items():
        spec = resolved.spec_of(name)
        if spec is None:
            problems.append(f"{name!r} is not a hyperparameter of {resolved.model_id} {resolved.model_version} "
                            "(emulator-only knobs such as local_trainable_layers never go to AWS)")
            continue
        try:
            spec.check(value)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("invalid JumpStart hyperparameters: " + "; ".join(problems))
    return hyperparameters


def _s3_channel(name: str, uri: str) -> dict[str, Any]:
    # what the SDK's TrainingInput(s3_data=uri) sends: an S3 prefix, fully replicated
    return {"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}


def training_job_request(
    resolved: ResolvedTraining, *, job_name: str, role_arn: str, method: str, choices: TuningChoices,
    train_uri: str, output_uri: str, accept_eula: bool, validation_uri: str | None = None,
    max_runtime_seconds: int | None = None, tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob request (``SageMakerTrainingOperator(config=...)``) for a resolved JumpStart model."""
    if resolved.gated and not accept_eula:
        raise EulaNotAccepted(
            f"{resolved.model_id} is gated: its license (Llama 3.1 Community License) must be accepted before "
            "training (set finetune.accept_eula: true, or TAILOR__FINETUNE__ACCEPT_EULA=true, once you have read "
            "it); nothing was started")
    for name, uri in (("train_uri", train_uri), ("output_uri", output_uri), ("validation_uri", validation_uri)):
        if uri is not None and not uri.startswith("s3://"):
            raise ValueError(f"{name} must be an s3:// URI, got {uri!r}")
    max_run = max_runtime_seconds if max_runtime_seconds is not None else resolved.max_run
    if max_run is None or not 1 <= max_run <= MAX_RUNTIME_LIMIT_SECONDS:
        raise ValueError(f"max runtime {max_run!r} s is outside 1..{MAX_RUNTIME_LIMIT_SECONDS} (28 days)")
    channels = [_s3_channel(TRAINING_CHANNEL, train_uri)]
    if validation_uri is not None:
        channels.append(_s3_channel(VALIDATION_CHANNEL, validation_uri))
    channels.append(_s3_channel(CODE_CHANNEL, resolved.script_uri))
    environment = dict(resolved.environment)
    if resolved.gated:
        if GATED_MODEL_ENV not in environment:
            raise ValueError(f"{resolved.model_id} is gated but JumpStart gave no {GATED_MODEL_ENV} for "
                             f"{resolved.instance_type}: pick one of {', '.join(resolved.supported_instance_types)}")
        environment["accept_eula"] = "true"
    output: dict[str, Any] = {"S3OutputPath": output_uri}
    if resolved.disable_output_compression:
        output["CompressionType"] = "NONE"
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {"TrainingImage": resolved.image_uri, "TrainingInputMode": "File"},
        "RoleArn": role_arn,
        "HyperParameters": jumpstart_hyperparameters(resolved, method, choices),
        "InputDataConfig": channels,
        "OutputDataConfig": output,
        "ResourceConfig": {"InstanceType": resolved.instance_type, "InstanceCount": 1,
                           "VolumeSizeInGB": resolved.volume_size or DEFAULT_VOLUME_SIZE_GB},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_run},
        "EnableNetworkIsolation": resolved.enable_network_isolation,
        "EnableInterContainerTrafficEncryption": resolved.encrypt_inter_container_traffic,
        "Environment": environment,
        "Tags": [{"Key": "sagemaker-sdk:jumpstart-model-id", "Value": resolved.model_id},
                 {"Key": "sagemaker-sdk:jumpstart-model-version", "Value": resolved.model_version},
                 *({"Key": k, "Value": v} for k, v in (tags or {}).items())],
    }
    return request


# --- resolution through the SageMaker Python SDK ----------------------------------------------------------------


class JumpStartSDK(Protocol):
    """The SDK lookups :func:`resolve_training` makes (``sagemaker-core``'s, or a test double's)."""

    def specs(self, *, model_id: str, model_version: str, region: str) -> Any: ...

    def image_uri(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> str: ...

    def script_uri(self, *, model_id: str, model_version: str, region: str) -> str: ...

    def default_hyperparameters(self, *, model_id: str, model_version: str, region: str,
                                instance_type: str) -> dict[str, str]: ...

    def environment(self, *, model_id: str, model_version: str, region: str,
                    instance_type: str) -> dict[str, str]: ...

    def volume_size_supported(self, instance_type: str) -> bool: ...


class SageMakerCoreSDK:
    """:class:`JumpStartSDK` over ``sagemaker-core`` (imported here, at task run time only).

    ``s3_client`` reads the JumpStart content bucket: pass one built from the Airflow connection so the local AWS's
    endpoint applies offline. The SDK makes only GetObject (``models_manifest.json``, the spec) and, when a cached
    manifest expires, HeadObject calls; bucket names honour ``AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE`` /
    ``AWS_JUMPSTART_GATED_CONTENT_BUCKET_OVERRIDE``.
    """

    def __init__(self, boto_session: Any, s3_client: Any | None = None) -> None:
        from sagemaker.core.helper.session_helper import Session

        self.session = Session(boto_session=boto_session)
        if s3_client is not None:
            self.session.s3_client = s3_client

    def specs(self, *, model_id: str, model_version: str, region: str) -> Any:
        from sagemaker.core.jumpstart.utils import verify_model_region_and_return_specs

        return verify_model_region_and_return_specs(model_id=model_id, version=model_version, scope="training",
                                                    region=region, sagemaker_session=self.session)

    def image_uri(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> str:
        from sagemaker.core import image_uris

        return image_uris.retrieve(framework=None, region=region, model_id=model_id, model_version=model_version,
                                   image_scope="training", instance_type=instance_type,
                                   sagemaker_session=self.session)

    def script_uri(self, *, model_id: str, model_version: str, region: str) -> str:
        from sagemaker.core import script_uris

        return script_uris.retrieve(region=region, model_id=model_id, model_version=model_version,
                                    script_scope="training", sagemaker_session=self.session)

    def default_hyperparameters(self, *, model_id: str, model_version: str, region: str,
                                instance_type: str) -> dict[str, str]:
        from sagemaker.core import hyperparameters

        return hyperparameters.retrieve_default(region=region, model_id=model_id, model_version=model_version,
                                                instance_type=instance_type, include_container_hyperparameters=True,
                                                sagemaker_session=self.session)

    def environment(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> dict[str, str]:
        from sagemaker.core import environment_variables

        return environment_variables.retrieve_default(region=region, model_id=model_id, model_version=model_version,
                                                      instance_type=instance_type, script="training",
                                                      include_aws_sdk_env_vars=False, sagemaker_session=self.session)

    def volume_size_supported(self, instance_type: str) -> bool:
        from sagemaker.core.common_utils import volume_size_supported

        return bool(volume_size_supported(instance_type))


def resolve_training(model_id: str, region: str, instance_type: str, *, sdk: JumpStartSDK,
                     model_version: str = "*") -> ResolvedTraining:
    """Ask JumpStart (through ``sdk``) for everything the training request needs; call at task run time only."""
    ids = {"model_id": model_id, "model_version": model_version, "region": region}
    specs = sdk.specs(**ids)
    kwargs = dict(getattr(specs, "estimator_kwargs", None) or {})
    volume = getattr(specs, "training_volume_size", None)
    hyperparameter_specs = tuple(
        HyperparameterSpec(name=h.name, type=h.type, default=str(h.default), scope=str(h.scope),
                           options=tuple(str(o) for o in h.options) if getattr(h, "options", None) else None,
                           min=float(h.min) if getattr(h, "min", None) is not None else None,
                           max=float(h.max) if getattr(h, "max", None) is not None else None)
        for h in specs.hyperparameters)
    return ResolvedTraining(
        model_id=model_id, model_version=str(specs.version), region=region, instance_type=instance_type,
        image_uri=sdk.image_uri(**ids, instance_type=instance_type),
        script_uri=sdk.script_uri(**ids),
        default_hyperparameters={k: str(v) for k, v in
                                 sdk.default_hyperparameters(**ids, instance_type=instance_type).items()},
        hyperparameter_specs=hyperparameter_specs,
        environment={k: str(v) for k, v in sdk.environment(**ids, instance_type=instance_type).items()},
        gated=bool(getattr(specs, "gated_bucket", False) or getattr(specs, "hosting_eula_key", None)),
        enable_network_isolation=bool(getattr(specs, "training_enable_network_isolation", False)),
        encrypt_inter_container_traffic=bool(kwargs.get("encrypt_inter_container_traffic", False)),
        disable_output_compression=bool(kwargs.get("disable_output_compression", False)),
        max_run=int(kwargs["max_run"]) if kwargs.get("max_run") is not None else None,
        # the SDK sets the spec's volume only where the instance type takes an EBS volume (artifacts/kwargs.py)
        volume_size=int(volume) if volume is not None and sdk.volume_size_supported(instance_type) else None,
        supported_instance_types=tuple(getattr(specs, "supported_training_instance_types", None) or ()),
    )

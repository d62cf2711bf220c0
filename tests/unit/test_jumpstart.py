"""The JumpStart training request builder (tailor.jumpstart): the pure part, without the SageMaker SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from tailor.jumpstart import (
    EulaNotAccepted,
    HyperparameterSpec,
    ResolvedTraining,
    TuningChoices,
    jumpstart_hyperparameters,
    resolve_training,
    training_job_request,
)

MODEL = "meta-textgeneration-llama-3-1-8b-instruct"
IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
         "2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04")
SCRIPT = ("s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/training/meta-textgeneration/prepack/"
          "inference-meta-textgeneration/v1.2.0/sourcedir.tar.gz")
WEIGHTS = ("s3://jumpstart-private-cache-prod-us-east-1/meta-training/g5/v1.0.0/"
           "train-meta-textgeneration-llama-3-1-8b-instruct.tar.gz")
SPECS = (
    HyperparameterSpec("epoch", "int", "5", min=1, max=1000),
    HyperparameterSpec("learning_rate", "float", "0.0001", min=1e-08, max=1),
    HyperparameterSpec("lora_r", "int", "8", min=1),
    HyperparameterSpec("lora_alpha", "int", "32", min=1),
    HyperparameterSpec("instruction_tuned", "text", "False", options=("True", "False")),
    HyperparameterSpec("chat_dataset", "text", "False", options=("True", "False")),
    HyperparameterSpec("per_device_train_batch_size", "int", "4", min=1, max=1000),
    HyperparameterSpec("seed", "int", "10", min=1, max=1000),
    HyperparameterSpec("max_input_length", "int", "-1", min=-1),
    HyperparameterSpec("enable_fsdp", "text", "True", options=("True", "False")),
    HyperparameterSpec("sagemaker_submit_directory", "text", "/opt/ml/input/data/code/sourcedir.tar.gz",
                       scope="container"),
    HyperparameterSpec("sagemaker_program", "text", "transfer_learning.py", scope="container"),
    HyperparameterSpec("sagemaker_container_log_level", "text", "20", scope="container"),
)
#: What the SDK resolves for us-east-1 / ml.g5.12xlarge (the values tests/localaws/test_jumpstart_contract.py
#: obtains through the SDK from the local AWS's content bucket).
RESOLVED = ResolvedTraining(
    model_id=MODEL, model_version="2.16.2", region="us-east-1", instance_type="ml.g5.12xlarge",
    image_uri=IMAGE, script_uri=SCRIPT,
    default_hyperparameters={h.name: h.default for h in SPECS},
    hyperparameter_specs=SPECS,
    environment={"SageMakerGatedModelS3Uri": WEIGHTS},
    gated=True, enable_network_isolation=True, encrypt_inter_container_traffic=True,
    disable_output_compression=True, max_run=360000, volume_size=None,
    supported_instance_types=("ml.g5.12xlarge", "ml.g5.24xlarge", "ml.g5.48xlarge"),
)
CHOICES = TuningChoices(epochs=5, learning_rate=0.0001, max_input_length=1024, per_device_train_batch_size=4,
                        lora_r=8, lora_alpha=32)
URIS = {"train_uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/train/",
        "output_uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/output"}


def request(resolved: ResolvedTraining = RESOLVED, **overrides: Any) -> dict:
    kwargs: dict[str, Any] = {
        "job_name": "tailor-ft-abc", "role_arn": "arn:aws:iam::123456789012:role/tailor-sagemaker-execution",
        "method": "domain_adaptation", "choices": CHOICES, "accept_eula": True, **URIS, **overrides}
    return training_job_request(resolved, **kwargs)


def test_domain_adaptation_request_is_what_jumpstart_sends() -> None:
    sent = request()
    assert sent["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    hp = sent["HyperParameters"]
    assert hp["sagemaker_program"] == "transfer_learning.py"
    assert hp["sagemaker_submit_directory"] == "/opt/ml/input/data/code/sourcedir.tar.gz"
    assert (hp["epoch"], hp["learning_rate"], hp["max_input_length"]) == ("5", "0.0001", "1024")
    assert (hp["instruction_tuned"], hp["chat_dataset"], hp["enable_fsdp"]) == ("False", "False", "True")
    assert all(isinstance(v, str) for v in hp.values())
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent["InputDataConfig"]}
    assert channels == {"training": URIS["train_uri"], "code": SCRIPT}
    assert sent["Environment"] == {"SageMakerGatedModelS3Uri": WEIGHTS, "accept_eula": "true"}
    assert sent["EnableNetworkIsolation"] is True
    assert sent["EnableInterContainerTrafficEncryption"] is True
    assert sent["OutputDataConfig"] == {"S3OutputPath": URIS["output_uri"], "CompressionType": "NONE"}
    assert sent["StoppingCondition"] == {"MaxRuntimeInSeconds": 360000}
    # g5 has NVMe instance storage: the SDK sends its default volume, which SageMaker ignores there
    assert sent["ResourceConfig"] == {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert {"Key": "sagemaker-sdk:jumpstart-model-id", "Value": MODEL} in sent["Tags"]
    assert "model" not in channels and "train" not in channels


def test_instruction_tuning_switches_the_recipe_and_a_validation_channel_is_optional() -> None:
    sent = request(method="instruction_tuning", validation_uri="s3://tailor-bakeoff/finetune/x/validation/")
    assert sent["HyperParameters"]["instruction_tuned"] == "True"
    assert [c["ChannelName"] for c in sent["InputDataConfig"]] == ["training", "validation", "code"]


def test_ebs_instances_get_the_spec_volume() -> None:
    sent = request(replace(RESOLVED, instance_type="ml.p3.16xlarge", volume_size=256))
    assert sent["ResourceConfig"]["VolumeSizeInGB"] == 256


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"local_trainable_layers": "10"}, "'local_trainable_layers' is not a hyperparameter"),
    ({"seed": "0"}, "'seed' must be >= 1"),
    ({"enable_fsdp": "yes"}, "must be one of True, False"),
    ({"seed": "1.5"}, "'seed' must be an integer"),
], ids=["emulator-knob", "below-min", "not-an-option", "not-an-integer"])
def test_hyperparameters_outside_the_spec_never_reach_aws(extra: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid JumpStart hyperparameters") as raised:
        request(choices=replace(CHOICES, extra=extra))
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("epochs", 0, "'epoch' must be >= 1"), ("learning_rate", 2.0, "'learning_rate' must be <= 1"),
    ("lora_r", 0, "'lora_r' must be >= 1"),
], ids=["epochs", "learning_rate", "lora_r"])
def test_our_settings_are_checked_against_the_spec(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        jumpstart_hyperparameters(RESOLVED, "domain_adaptation", replace(CHOICES, **{field: value}))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fine-tuning method 'lora'"):
        request(method="lora")


def test_a_gated_model_needs_the_license_accepted() -> None:
    with pytest.raises(EulaNotAccepted, match="Llama 3.1 Community License"):
        request(accept_eula=False)
    ungated = replace(RESOLVED, gated=False, environment={})
    assert "accept_eula" not in request(ungated, accept_eula=False)["Environment"]


def test_a_gated_model_without_weights_for_the_instance_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="no SageMakerGatedModelS3Uri for ml.g5.12xlarge: pick one of ml.g5.12xlarge"):
        request(replace(RESOLVED, environment={}))


def test_runtime_override_and_its_aws_limit() -> None:
    assert request(max_runtime_seconds=86400)["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    with pytest.raises(ValueError, match="28 days"):
        request(max_runtime_seconds=28 * 24 * 3600 + 1)


def test_uris_must_be_s3() -> None:
    with pytest.raises(ValueError, match="train_uri must be an s3:// URI"):
        request(train_uri="/tmp/train")


def test_resolved_training_survives_xcom_json() -> None:
    back = ResolvedTraining.from_dict(json.loads(json.dumps(RESOLVED.to_dict())))
    assert back == RESOLVED
    assert request(back) == request()


@pytest.mark.parametrize(("spec", "value", "ok"), [
    (HyperparameterSpec("n", "int", "1", min=-1), "+3", True),
    (HyperparameterSpec("n", "int", "1", min=-1), "-2", False),
    (HyperparameterSpec("n", "int", "1"), "nan", False),
    (HyperparameterSpec("x", "float", "0.1", min=0, max=1), "1e-05", True),
    (HyperparameterSpec("x", "float", "0.1", min=0, max=1), "abc", False),
    (HyperparameterSpec("b", "bool", "true"), "FALSE", True),
    (HyperparameterSpec("b", "bool", "true"), "no", False),
    (HyperparameterSpec("t", "text", "ab", max=3), "abcd", False),
], ids=["int-plus", "int-below-min", "int-nan", "float-exp", "float-text", "bool-upper", "bool-no", "text-long"])
def test_hyperparameter_spec_rules(spec: HyperparameterSpec, value: str, ok: bool) -> None:
    if ok:
        spec.check(value)
    else:
        with pytest.raises(ValueError):
            spec.check(value)


class RecordingSDK:
    """A JumpStartSDK double that records what it was asked and answers like sagemaker-core does."""

    def __init__(self, *, volume_supported: bool) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.volume_supported = volume_supported

    def _record(self, name: str, **kwargs: object) -> None:
        self.calls.append((name, kwargs))

    def specs(self, **kw: object) -> SimpleNamespace:
        self._record("specs", **kw)
        return SimpleNamespace(
            version="2.16.2", gated_bucket=True, training_enable_network_isolation=True, training_volume_size=256,
            estimator_kwargs={"disable_output_compression": True, "encrypt_inter_container_traffic": True,
                              "max_run": 360000},
            supported_training_instance_types=["ml.g5.12xlarge"],
            # the SDK's JumpStartHyperparameter only has the attributes its JSON had (no options -> no attribute)
            hyperparameters=[SimpleNamespace(name="epoch", type="int", default=5, scope="algorithm", min=1, max=1000),
                             SimpleNamespace(name="chat_dataset", type="text", default="False", scope="algorithm",
                                             options=["True", "False"])])

    def image_uri(self, **kw: object) -> str:
        self._record("image_uri", **kw)
        return IMAGE

    def script_uri(self, **kw: object) -> str:
        self._record("script_uri", **kw)
        return SCRIPT

    def default_hyperparameters(self, **kw: object) -> dict:
        self._record("default_hyperparameters", **kw)
        return {"epoch": 5, "chat_dataset": "False"}

    def environment(self, **kw: object) -> dict:
        self._record("environment", **kw)
        return {"SageMakerGatedModelS3Uri": WEIGHTS}

    def volume_size_supported(self, instance_type: str) -> bool:
        self._record("volume_size_supported", instance_type=instance_type)
        return self.volume_supported


@pytest.mark.parametrize(("supported", "volume"), [(False, None), (True, 256)])
def test_resolve_training_asks_for_the_region_instance_and_version(supported: bool, volume: int | None) -> None:
    sdk = RecordingSDK(volume_supported=supported)
    resolved = resolve_training(MODEL, "eu-west-1", "ml.g5.12xlarge", sdk=sdk, model_version="2.*")
    ids = {"model_id": MODEL, "model_version": "2.*", "region": "eu-west-1"}
    assert ("image_uri", {**ids, "instance_type": "ml.g5.12xlarge"}) in sdk.calls
    assert ("environment", {**ids, "instance_type": "ml.g5.12xlarge"}) in sdk.calls
    assert ("default_hyperparameters", {**ids, "instance_type": "ml.g5.12xlarge"}) in sdk.calls
    assert ("script_uri", ids) in sdk.calls
    assert resolved.model_version == "2.16.2"  # the exact version the wildcard resolved to, for the lineage
    assert resolved.default_hyperparameters == {"epoch": "5", "chat_dataset": "False"}
    assert resolved.spec_of("chat_dataset") == HyperparameterSpec("chat_dataset", "text", "False",
                                                                  options=("True", "False"))
    epoch = resolved.spec_of("epoch")
    assert epoch is not None and epoch.options is None and epoch.max == 1000
    assert (resolved.gated, resolved.max_run, resolved.volume_size) == (True, 360000, volume)
    assert resolved.disable_output_compression and resolved.encrypt_inter_container_traffic


def test_importing_the_builder_loads_no_sdk_and_no_boto3() -> None:
    """Parse time is a product feature: the SDK (~3.5 s, pandas + scipy) is imported at task run time only."""
    code = ("import sys, tailor.jumpstart; "
            "print(sorted(m for m in ('sagemaker', 'boto3', 'botocore', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "[]"

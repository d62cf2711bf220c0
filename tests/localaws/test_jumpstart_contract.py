"""JumpStart offline: the content the local AWS serves, the SDK resolving against it, and the training contract.

Resolution runs through every JumpStartSDK backend available: a double that reads the served manifest and spec over
S3 and looks up the facts as sagemaker-core does (always), and sagemaker-core itself when it is installed (the
wiring adds it to requirements; meanwhile run this file in a venv that has it). Both read the same moto S3 over
HTTP through an endpoint-configured client, as the Airflow connection's client would.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from localaws import jumpstart_content as jc
from tailor.jumpstart import ResolvedTraining, SageMakerCoreSDK, TuningChoices, resolve_training, training_job_request

KW = {"region_name": "us-east-1", "aws_access_key_id": "localaws", "aws_secret_access_key": "localaws"}
BACKENDS = ["double"] + (["sagemaker-core"] if importlib.util.find_spec("sagemaker") else [])
CHOICES = TuningChoices(epochs=5, learning_rate=0.0001, max_input_length=1024, per_device_train_batch_size=4,
                        lora_r=8, lora_alpha=32)
TRAIN = "s3://tailor-bakeoff/finetune/tailor-ft-abc/train/"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, **KW)
    jc.serve(client)
    client.create_bucket(Bucket="tailor-bakeoff")
    client.put_object(Bucket="tailor-bakeoff", Key="finetune/tailor-ft-abc/train/catalog.txt", Body=b"catalog")
    return client


class SpecDouble:
    """JumpStartSDK that reads models_manifest.json and the spec from the content bucket as sagemaker-core does
    (GetObject), then looks up image, script, defaults and gated weights by its rules."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.reads: list[str] = []

    def _get(self, bucket: str, key: str) -> Any:
        self.reads.append(key)
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    @staticmethod
    def _buckets(region: str) -> tuple[str, str]:
        return (os.environ.get("AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE") or jc.content_bucket(region),
                os.environ.get("AWS_JUMPSTART_GATED_CONTENT_BUCKET_OVERRIDE") or jc.gated_bucket(region))

    def _spec(self, model_id: str, model_version: str, region: str) -> dict:
        bucket = self._buckets(region)[0]
        headers = [h for h in self._get(bucket, jc.MANIFEST_KEY) if h["model_id"] == model_id
                   and re.fullmatch(model_version.replace(".", r"\.").replace("*", ".*"), h["version"])]
        assert headers, f"{model_id} {model_version} not in the manifest"
        return self._get(bucket, headers[-1]["spec_key"])

    def specs(self, *, model_id: str, model_version: str, region: str) -> Any:
        spec = self._spec(model_id, model_version, region)
        return SimpleNamespace(**{**spec, "hyperparameters": [SimpleNamespace(**h) for h in spec["hyperparameters"]]})

    def image_uri(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> str:
        variants = self._spec(model_id, model_version, region)["training_instance_type_variants"]
        family = instance_type.split(".")[1]
        alias = variants["variants"][family]["regional_properties"]["image_uri"]
        return variants["regional_aliases"][region][alias[1:]]

    def script_uri(self, *, model_id: str, model_version: str, region: str) -> str:
        spec = self._spec(model_id, model_version, region)
        key = spec.get("training_prepacked_script_key") or spec["training_script_key"]
        return f"s3://{self._buckets(region)[0]}/{key}"

    def default_hyperparameters(self, *, model_id: str, model_version: str, region: str,
                                instance_type: str) -> dict[str, str]:
        return {h["name"]: str(h["default"]) for h in self._spec(model_id, model_version, region)["hyperparameters"]}

    def environment(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> dict[str, str]:
        variants = self._spec(model_id, model_version, region)["training_instance_type_variants"]["variants"]
        key = variants.get(instance_type.split(".")[1], {}).get("properties", {}).get("gated_model_key_env_var_value")
        return {"SageMakerGatedModelS3Uri": f"s3://{self._buckets(region)[1]}/{key}"} if key else {}

    def volume_size_supported(self, instance_type: str) -> bool:
        family = instance_type.split(".")[1]
        return "d" not in family and not family.startswith(("g5", "g6", "g7e", "p5", "p6-b200", "trn1", "trn2"))


def sdk_for(backend: str, s3: Any) -> Any:
    if backend == "double":
        return SpecDouble(s3)
    import boto3

    return SageMakerCoreSDK(boto3.Session(**KW), s3_client=s3)


def resolved(s3: Any, backend: str = "double", region: str = "us-east-1",
             instance_type: str = "ml.g5.12xlarge") -> ResolvedTraining:
    return resolve_training(jc.MODEL_ID, region, instance_type, sdk=sdk_for(backend, s3), model_version="2.*")


def build(res: ResolvedTraining, **overrides: Any) -> dict[str, Any]:
    kwargs = {"job_name": "tailor-ft-abc", "role_arn": "arn:aws:iam::123456789012:role/tailor-sagemaker-execution",
              "method": "domain_adaptation", "choices": CHOICES, "accept_eula": True, "train_uri": TRAIN,
              "output_uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/output", **overrides}
    return training_job_request(res, **kwargs)


def objects_in(s3: Any) -> Callable[[str], bool]:
    def has(uri: str) -> bool:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0

    return has


# --- what the content bucket serves ------------------------------------------------------------------------------


def test_manifest_points_at_the_served_spec_and_the_scripts_are_tarballs(s3: Any) -> None:
    bucket = jc.content_bucket("us-east-1")
    (header,) = json.loads(s3.get_object(Bucket=bucket, Key="models_manifest.json")["Body"].read())
    assert header["model_id"] == jc.MODEL_ID and header["spec_key"].endswith(f"specs_v{header['version']}.json")
    spec = json.loads(s3.get_object(Bucket=bucket, Key=header["spec_key"])["Body"].read())
    assert spec["_source"] and spec["gated_bucket"] is True
    for key in (spec["training_script_key"], spec["training_prepacked_script_key"]):
        with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
            assert tar.getnames() == ["transfer_learning.py"]
    for key in jc.gated_keys().values():
        s3.head_object(Bucket=jc.gated_bucket("us-east-1"), Key=key)
    assert jc.stand_in_script_tarball() == jc.stand_in_script_tarball()  # reproducible bytes


# --- resolution -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_resolution_against_the_local_content_bucket(s3: Any, backend: str) -> None:
    res = resolved(s3, backend)
    assert res.model_version == "2.16.2"
    assert res.image_uri == ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
                             "2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04")
    assert res.script_uri == ("s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/training/"
                              "meta-textgeneration/prepack/inference-meta-textgeneration/v1.2.0/sourcedir.tar.gz")
    assert res.environment == {"SageMakerGatedModelS3Uri": "s3://jumpstart-private-cache-prod-us-east-1/"
                               "meta-training/g5/v1.0.0/train-meta-textgeneration-llama-3-1-8b-instruct.tar.gz"}
    assert res.default_hyperparameters["sagemaker_program"] == "transfer_learning.py"
    assert res.default_hyperparameters["per_device_train_batch_size"] == "4"
    assert (res.gated, res.enable_network_isolation, res.disable_output_compression) == (True, True, True)
    assert (res.max_run, res.volume_size) == (360000, None)
    assert res == resolved(s3, "double")  # every backend agrees with the double


@pytest.mark.parametrize("backend", BACKENDS)
def test_resolution_is_per_region_and_instance_family(s3: Any, backend: str) -> None:
    jc.serve(s3, "ap-east-1")
    hk = resolved(s3, backend, region="ap-east-1", instance_type="ml.g4dn.12xlarge")
    assert hk.image_uri.startswith("871362719292.dkr.ecr.ap-east-1.amazonaws.com/huggingface-pytorch-training:")
    assert hk.environment["SageMakerGatedModelS3Uri"] == (
        "s3://jumpstart-private-cache-prod-ap-east-1/meta-training/g4dn/v1.0.0/"
        "train-meta-textgeneration-llama-3-1-8b-instruct.tar.gz")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bucket_overrides_are_honoured(s3: Any, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    jc.serve(s3, bucket="local-jumpstart-content", gated="local-jumpstart-gated")
    monkeypatch.setenv("AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE", "local-jumpstart-content")
    monkeypatch.setenv("AWS_JUMPSTART_GATED_CONTENT_BUCKET_OVERRIDE", "local-jumpstart-gated")
    res = resolved(s3, backend)
    assert res.script_uri.startswith("s3://local-jumpstart-content/source-directory-tarballs/")
    assert res.environment["SageMakerGatedModelS3Uri"].startswith("s3://local-jumpstart-gated/meta-training/g5/")
    jc.check_training_request(build(res), content="local-jumpstart-content", gated="local-jumpstart-gated",
                              prefix_has_objects=objects_in(s3))


def test_the_sdk_reads_the_manifest_then_the_spec(s3: Any) -> None:
    double = SpecDouble(s3)
    resolve_training(jc.MODEL_ID, "us-east-1", "ml.g5.12xlarge", sdk=double, model_version="2.*")
    assert double.reads[:2] == [jc.MANIFEST_KEY, jc.spec_key()]


# --- the contract -------------------------------------------------------------------------------------------------


def test_the_builder_request_passes_the_contract(s3: Any) -> None:
    res = resolved(s3)
    for method in ("domain_adaptation", "instruction_tuning"):
        jc.check_training_request(build(res, method=method), prefix_has_objects=objects_in(s3))


def test_the_v2_sdk_form_of_script_mode_hyperparameters_is_accepted(s3: Any) -> None:
    sent = build(resolved(s3))  # JumpStartEstimator v2 JSON-encodes these and adds job name and region
    sent["HyperParameters"].update({"sagemaker_program": '"transfer_learning.py"', "sagemaker_region": '"us-east-1"',
                                    "sagemaker_submit_directory": '"/opt/ml/input/data/code/sourcedir.tar.gz"',
                                    "sagemaker_job_name": '"tailor-ft-abc"'})
    jc.check_training_request(sent)


def _channel(sent: dict, name: str, uri: str | None = None, rename: str | None = None, drop: bool = False) -> None:
    channels = sent["InputDataConfig"]
    for channel in list(channels):
        if channel["ChannelName"] == name:
            if drop:
                channels.remove(channel)
            if rename:
                channel["ChannelName"] = rename
            if uri:
                channel["DataSource"]["S3DataSource"]["S3Uri"] = uri


def _model_channel(sent: dict) -> None:
    sent["InputDataConfig"].append({"ChannelName": "model", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://jumpstart-private-cache-prod-us-east-1/meta-training/g5/",
        "S3DataDistributionType": "FullyReplicated"}}})


VIOLATIONS: list[tuple[str, Callable[[dict], None], str, str]] = [
    ("too-many-hyperparameters", lambda r: r["HyperParameters"].update({f"h{i}": "1" for i in range(100)}),
     "request-limits", "Member must have length less than or equal to 100"),
    ("runtime-over-28-days", lambda r: r["StoppingCondition"].update(MaxRuntimeInSeconds=2419201),
     "request-limits", "maxRuntimeInSeconds"),
    ("bad-channel-name", lambda r: _channel(r, "training", rename="train ing"), "request-limits", "channelName"),
    ("the-old-pytorch-image", lambda r: r["AlgorithmSpecification"].update(TrainingImage=(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker")),
     "training-image", "Cannot find the requested image"),
    ("another-regions-image", lambda r: r["AlgorithmSpecification"].update(TrainingImage=r["AlgorithmSpecification"]
     ["TrainingImage"].replace("us-east-1", "us-west-2")), "training-image", "Cannot find the requested image"),
    ("empty-training-prefix", lambda r: _channel(r, "training", uri="s3://tailor-bakeoff/finetune/none/"),
     "channel-objects", 'No S3 objects found under S3 URL "s3://tailor-bakeoff/finetune/none/"'),
    ("no-network-isolation", lambda r: r.update(EnableNetworkIsolation=False), "spec-job-settings",
     "EnableNetworkIsolation=False"),
    ("no-encryption", lambda r: r.pop("EnableInterContainerTrafficEncryption"), "spec-job-settings",
     "EnableInterContainerTrafficEncryption=False"),
    ("compressed-output", lambda r: r["OutputDataConfig"].pop("CompressionType"), "spec-job-settings",
     "CompressionType=GZIP"),
    ("no-code-channel", lambda r: _channel(r, "code", drop=True), "code-channel", "no JumpStart training script"),
    ("no-program", lambda r: r["HyperParameters"].pop("sagemaker_program"), "entry-point", "sagemaker_program=None"),
    ("other-submit-dir", lambda r: r["HyperParameters"].update(sagemaker_submit_directory="s3://x/sourcedir.tar.gz"),
     "entry-point", "sagemaker_submit_directory"),
    ("train-instead-of-training", lambda r: _channel(r, "training", rename="train"), "training-channel",
     "no 'training' channel"),
    ("a-model-channel", _model_channel, "no-model-channel", "does not support incremental training"),
    ("emulator-knob", lambda r: r["HyperParameters"].update(local_trainable_layers="10"), "hyperparameter-names",
     "local_trainable_layers"),
    ("epoch-0", lambda r: r["HyperParameters"].update(epoch="0"), "hyperparameter-values", "'epoch' can be no less"),
    ("bool-as-true", lambda r: r["HyperParameters"].update(instruction_tuned="true"), "hyperparameter-values",
     "must have one of the following values: True, False"),
    ("float-epoch", lambda r: r["HyperParameters"].update(epoch="2.5"), "hyperparameter-values", "integer type"),
    ("no-eula", lambda r: r["Environment"].pop("accept_eula"), "accept-eula", "accept_eula=true"),
    ("eula-false", lambda r: r["Environment"].update(accept_eula="false"), "accept-eula", "accept_eula=true"),
    ("no-weights", lambda r: r["Environment"].pop("SageMakerGatedModelS3Uri"), "gated-weights", "g5/v1.0.0"),
    ("g4dn-weights-on-g5", lambda r: r["Environment"].update(SageMakerGatedModelS3Uri=r["Environment"]
     ["SageMakerGatedModelS3Uri"].replace("/g5/", "/g4dn/")), "gated-weights", "g5/v1.0.0"),
]


@pytest.mark.parametrize(("mutate", "rule", "fragment"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_each_rule_refuses_what_jumpstart_refuses(s3: Any, mutate: Callable[[dict], None], rule: str,
                                                  fragment: str) -> None:
    sent = copy.deepcopy(build(resolved(s3)))
    mutate(sent)
    with pytest.raises(jc.ContractViolation) as raised:
        jc.check_training_request(sent, prefix_has_objects=objects_in(s3))
    violation = raised.value
    assert violation.rule.id == rule and fragment in violation.message
    if violation.rule.at == "job":  # AWS creates the job; it ends Failed with the container's reason
        assert violation.error_code is None and violation.failure_reason.startswith("AlgorithmError: ")
    else:
        assert violation.error_code == "ValidationException"


def test_every_rule_is_exercised_and_names_its_source() -> None:
    assert {v[2] for v in VIOLATIONS} == set(jc.RULES)
    assert all(r.source and r.at in ("create", "job", "policy") for r in jc.RULES.values())


def test_the_seed_request_fails_at_create_time_on_its_image() -> None:
    """The request training_data.training_job_config built before issue 12 (pytorch image, train + model)."""
    seed = {"AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                                       "pytorch-training:2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker"},
            "HyperParameters": {"epoch": "5", "local_trainable_layers": "0"},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": TRAIN}}}],
            "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "VolumeSizeInGB": 256},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400}, "Environment": {"accept_eula": "true"}}
    with pytest.raises(jc.ContractViolation, match=r"\[training-image\]"):
        jc.check_training_request(seed)

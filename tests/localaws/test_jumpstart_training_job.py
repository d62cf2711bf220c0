"""The JumpStart training contract through the real local AWS server: the SDK resolves against the buckets the
server serves (under the SDK's own names, no override), CreateTrainingJob accepts the request monthly_finetune
builds and refuses the old one, job-time violations end Failed; CreateModel takes the uncompressed model prefix."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from devstack.stack import Stack
from localaws import jumpstart_content as jc
from tailor.jumpstart import SageMakerCoreSDK, TuningChoices, resolve_training, training_job_request

ROLE = "arn:aws:iam::123456789012:role/tailor-sagemaker-execution"
BUCKET = "tailor-jumpstart-contract"
CHOICES = TuningChoices(epochs=1, learning_rate=0.0001, max_input_length=256, per_device_train_batch_size=4,
                        lora_r=8, lora_alpha=32)
OLD_REQUEST_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
                     "2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker")


@pytest.fixture
def stack(local_aws: Stack) -> Any:
    local_aws.clear_faults()
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="finetune/job/training/catalog.txt", Body=b"The Vortex Mixer VM-200 ...")
    try:
        yield local_aws
    finally:
        local_aws.clear_faults()


def resolved(stack: Stack, instance_type: str = "ml.g5.12xlarge") -> Any:
    import boto3

    session = boto3.Session(region_name="us-east-1", aws_access_key_id="localaws", aws_secret_access_key="localaws")
    sdk = SageMakerCoreSDK(session, s3_client=stack.client("s3"))
    return resolve_training(jc.MODEL_ID, "us-east-1", instance_type, sdk=sdk, model_version="2.16.2")


def request(stack: Stack, name: str, instance_type: str = "ml.g5.12xlarge") -> dict[str, Any]:
    return training_job_request(
        resolved(stack, instance_type), job_name=name, role_arn=ROLE, method="domain_adaptation", choices=CHOICES,
        train_uri=f"s3://{BUCKET}/finetune/job/training/", output_uri=f"s3://{BUCKET}/finetune/job/output",
        accept_eula=True)


def wait_for(sagemaker: Any, name: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] == status or time.monotonic() > deadline:
            assert job["TrainingJobStatus"] == status, job
            return job
        time.sleep(0.2)


def test_the_sdk_resolves_against_the_buckets_the_server_serves(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE", raising=False)
    monkeypatch.delenv("AWS_JUMPSTART_GATED_CONTENT_BUCKET_OVERRIDE", raising=False)
    res = resolved(stack)
    assert res.script_uri.startswith("s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/")
    assert res.environment["SageMakerGatedModelS3Uri"].startswith("s3://jumpstart-private-cache-prod-us-east-1/")
    assert res.image_uri.endswith("/huggingface-pytorch-training:2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04")


def test_the_built_request_is_accepted_and_keeps_its_environment(stack: Stack) -> None:
    sagemaker = stack.client("sagemaker")
    # the job is accepted and created; a fault ends it before it trains (no CPU spent here, the e2e trains)
    stack.arm_fault("sagemaker:training", "AlgorithmError", message="AlgorithmError: stopped by the test")
    sent = request(stack, "tailor-contract-accepted")
    assert "local_trainable_layers" not in sent["HyperParameters"]
    sagemaker.create_training_job(**sent)
    job = wait_for(sagemaker, "tailor-contract-accepted", "Failed")
    assert job["FailureReason"] == "AlgorithmError: stopped by the test"
    assert job["AlgorithmSpecification"]["TrainingImage"] == sent["AlgorithmSpecification"]["TrainingImage"]
    assert job["Environment"] == sent["Environment"]  # kept, as AWS's DescribeTrainingJob returns it
    # uncompressed output: the model is a prefix, as SageMaker reports it
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{BUCKET}/finetune/job/output/tailor-contract-accepted/output/model/")


def test_the_old_request_is_refused_at_create_time(stack: Stack) -> None:
    """What training_data.training_job_config sent before issue 12: pytorch-training image, ``train`` and
    ``model`` channels, no code channel, the emulator's knob as a hyperparameter."""
    from botocore.exceptions import ClientError

    sagemaker = stack.client("sagemaker")
    channel = {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated"}
    old: dict[str, Any] = {
        "TrainingJobName": "tailor-contract-old",
        "AlgorithmSpecification": {"TrainingImage": OLD_REQUEST_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {"epoch": "5", "learning_rate": "0.0001", "instruction_tuned": "False",
                            "chat_dataset": "False", "local_trainable_layers": "0"},
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {
                **channel, "S3Uri": f"s3://{BUCKET}/finetune/job/training/"}}},
            {"ChannelName": "model", "DataSource": {"S3DataSource": {
                **channel, "S3Uri": "s3://jumpstart-cache-prod-us-east-1/meta-textgeneration/"
                                    "meta-textgeneration-llama-3-1-8b-instruct/artifacts/inference-prepack/v2.0.0/"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/finetune/job/output/"},
        "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 256},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "Environment": {"accept_eula": "true"},
    }
    with pytest.raises(ClientError) as refused:
        sagemaker.create_training_job(**old)
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith(f"Cannot find the requested image: {OLD_REQUEST_IMAGE}")
    names = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]
    assert "tailor-contract-old" not in names  # nothing was created
    # with the right image, the rest of the old request still fails: compressed output is refused at create time
    old["AlgorithmSpecification"]["TrainingImage"] = request(stack, "x")["AlgorithmSpecification"]["TrainingImage"]
    with pytest.raises(ClientError, match="ValidationException") as refused:
        sagemaker.create_training_job(**old)
    assert "EnableNetworkIsolation=False" in refused.value.response["Error"]["Message"]


@pytest.mark.parametrize(("name", "mutate", "reason"), [
    ("tailor-contract-no-eula", lambda r: r["Environment"].pop("accept_eula"), "accept_eula=true"),
    ("tailor-contract-train", lambda r: r["InputDataConfig"][0].update(ChannelName="train"), "no 'training' channel"),
    ("tailor-contract-knob", lambda r: r["HyperParameters"].update(local_trainable_layers="10"),
     "local_trainable_layers"),
], ids=["no-eula", "train-channel", "emulator-knob"])
def test_job_time_violations_create_the_job_and_fail_it(stack: Stack, name: str, mutate: Any, reason: str) -> None:
    sagemaker = stack.client("sagemaker")
    sent = copy.deepcopy(request(stack, name))
    mutate(sent)
    sagemaker.create_training_job(**sent)
    job = wait_for(sagemaker, name, "Failed")
    assert job["FailureReason"].startswith("AlgorithmError: ") and reason in job["FailureReason"]


def test_empty_training_prefix_is_refused_at_create_time(stack: Stack) -> None:
    from botocore.exceptions import ClientError

    sent = request(stack, "tailor-contract-empty")
    sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/finetune/nothing/"
    with pytest.raises(ClientError, match="No S3 objects found under S3 URL") as refused:
        stack.client("sagemaker").create_training_job(**sent)
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_create_model_takes_an_uncompressed_prefix(stack: Stack) -> None:
    from botocore.exceptions import ClientError

    from tailor.training_data import model_data_source

    s3, sagemaker = stack.client("s3"), stack.client("sagemaker")
    prefix = f"s3://{BUCKET}/finetune/job/output/tailor-ft-x/output/model/"
    s3.put_object(Bucket=BUCKET, Key="finetune/job/output/tailor-ft-x/output/model/config.json",
                  Body=json.dumps({"model_type": "llama"}).encode())

    def create(name: str, container: dict[str, Any]) -> None:
        sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img", **container})

    create("tailor-contract-model", {"ModelDataSource": model_data_source(prefix)})
    described = sagemaker.describe_model(ModelName="tailor-contract-model")["PrimaryContainer"]
    assert described["ModelDataSource"]["S3DataSource"]["S3Uri"] == prefix
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("no-slash", {"ModelDataSource": {"S3DataSource": {"S3Uri": prefix.rstrip("/"), "S3DataType": "S3Prefix",
                                                           "CompressionType": "None"}}}, "ending with '/'"),
        ("gzip-prefix", {"ModelDataSource": {"S3DataSource": {"S3Uri": prefix, "S3DataType": "S3Prefix",
                                                              "CompressionType": "Gzip"}}}, "CompressionType None"),
        ("empty", {"ModelDataSource": model_data_source(f"s3://{BUCKET}/finetune/none/")}, "Could not find model"),
        ("both", {"ModelDataSource": model_data_source(prefix), "ModelDataUrl": "s3://b/model.tar.gz"},
         "cannot both be specified"),
    ]
    for name, container, fragment in refused:
        with pytest.raises(ClientError, match="ValidationException") as error:
            create(f"tailor-contract-{name}", container)
        assert fragment in error.value.response["Error"]["Message"], name


def test_the_sdks_reads_are_allowed_by_the_airflow_role_policy(stack: Stack) -> None:
    """The SDK reads the content bucket with the Airflow connection's credentials: the local AWS records those
    calls (as it does for the DAGs), and the Airflow role's policy must allow each of them."""
    import boto3

    from localaws.calls import ACCOUNT, RECORDED_KEY_ID
    from tests.iam_policy import AIRFLOW_POLICY, allowed, render

    kw = {"region_name": "us-east-1", "aws_access_key_id": RECORDED_KEY_ID, "aws_secret_access_key": "x"}
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, **kw)
    before = len(stack.recorded_calls())
    resolve_training(jc.MODEL_ID, "us-east-1", "ml.g5.12xlarge", model_version="2.16.2",
                     sdk=SageMakerCoreSDK(boto3.Session(**kw), s3_client=s3))
    calls = [c for c in stack.recorded_calls()[before:] if "jumpstart" in c["resource"]]
    resources = {c["resource"] for c in calls}
    assert {"arn:aws:s3:::jumpstart-cache-prod-us-east-1/models_manifest.json",
            f"arn:aws:s3:::jumpstart-cache-prod-us-east-1/{jc.spec_key()}"} <= resources, resources
    values = {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, "BucketName": "b", "CatalogQueueName": "q",
              "KnowledgeBaseId": "k", "SageMakerExecutionRoleName": "r"}
    policy = json.loads(render(AIRFLOW_POLICY.read_text(), values))
    denied = [(c["action"], c["resource"]) for c in calls if not allowed(policy, c["action"], c["resource"],
                                                                          c["context"])]
    assert not denied, denied

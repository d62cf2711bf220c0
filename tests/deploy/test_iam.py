"""include/iam/*.json: least-privilege policies that still allow every AWS call the DAGs make.

The Airflow role's policy is checked three ways:
- form: valid JSON, Version 2012-10-17, no wildcard actions, no Resource "*", known service prefixes only,
  placeholders that all render, under IAM's 6,144-character limit for managed policies;
- coverage: every boto3 call in dags/, plugins/ and include/tailor/ (found by parsing the code) and every call of
  the provider operators, sensors and triggers the DAGs use (listed here, each proven by its line in the installed
  provider) maps to IAM actions, and a small policy evaluator allows each of them on the resources the DAGs really
  touch (bucket prefixes, model ids and names taken from the config);
- least privilege: nothing in the policy goes unused, and neighbouring resources are denied (another bucket,
  deleting the champion endpoint, an unlisted model, passing the role to another service...).
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tailor_airflow import qa_build
from tests.deploy.compose_model import REPO
from tests.iam_policy import AIRFLOW_POLICY, IAM_DIR, allowed, listify, render

SAGEMAKER_POLICY = IAM_DIR / "sagemaker-execution-role-policy.json"
TRUST_POLICY = IAM_DIR / "sagemaker-trust-policy.json"
ALL_DOCUMENTS = (AIRFLOW_POLICY, SAGEMAKER_POLICY, TRUST_POLICY)

#: Placeholders (CloudFormation Fn::Sub style); docs/aws.md shows how to render them.
SAMPLE = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "111122223333",
    "BucketName": "acme-tailor-bakeoff",
    "CatalogQueueName": "tailor-catalog-events",
    "KnowledgeBaseId": "KBABCDEFGH",
    "SageMakerExecutionRoleName": "tailor-sagemaker-execution",
}
KNOWN_PREFIXES = {"s3", "sqs", "bedrock", "sagemaker", "iam", "ecr", "logs", "cloudwatch", "sts"}
#: Actions AWS offers no resource-level permission for: the only ones allowed on Resource "*".
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
#: IAM's size limit for a customer managed policy (characters, whitespace excluded).
MANAGED_POLICY_LIMIT = 6144

#: Where qa_dataset_build writes (its prefix is fixed in code, not a setting).
QA_OUTPUT = qa_build.OUTPUT_PREFIX
SERVICES = ("s3", "sqs", "bedrock", "bedrock-agent", "bedrock-agent-runtime", "bedrock-runtime", "sagemaker",
            "sagemaker-runtime")
#: Method calls on objects that are not boto3 clients but share an operation's name (re.search vs Search).
NOT_CLIENTS = {"re", "_CONTROL_RE", "_LONE_SURROGATE",  # compiled patterns: .search() is no API call
               # the SageMaker SDK's JumpStart lookups (image_uris.retrieve is no Bedrock Retrieve): their S3
               # calls are in SDK_CALLS
               "image_uris", "script_uris", "hyperparameters", "environment_variables",
               "aws_hook"}  # an Airflow hook: get_session() is its boto3 session, not Bedrock's GetSession

#: Every boto3 call in our code (found by `calls_in_code()`; paginators and waiters by their name) -> API operation.
CODE_CALLS = {
    "get_object": ("s3", "GetObject"),
    "put_object": ("s3", "PutObject"),
    "copy_object": ("s3", "CopyObject"),
    "delete_object": ("s3", "DeleteObject"),
    "paginator:list_objects_v2": ("s3", "ListObjectsV2"),
    "retrieve": ("bedrock-agent-runtime", "Retrieve"),
    "converse": ("bedrock-runtime", "Converse"),
    "get_foundation_model": ("bedrock", "GetFoundationModel"),
    "get_ingestion_job": ("bedrock-agent", "GetIngestionJob"),
    "invoke_endpoint": ("sagemaker-runtime", "InvokeEndpoint"),
    "describe_endpoint": ("sagemaker", "DescribeEndpoint"),
    "create_endpoint": ("sagemaker", "CreateEndpoint"),
    "update_endpoint": ("sagemaker", "UpdateEndpoint"),
    "delete_endpoint": ("sagemaker", "DeleteEndpoint"),
    "create_model": ("sagemaker", "CreateModel"),
    "describe_model": ("sagemaker", "DescribeModel"),
    "delete_model": ("sagemaker", "DeleteModel"),
    "create_endpoint_config": ("sagemaker", "CreateEndpointConfig"),
    "describe_endpoint_config": ("sagemaker", "DescribeEndpointConfig"),
    "delete_endpoint_config": ("sagemaker", "DeleteEndpointConfig"),
    "describe_training_job": ("sagemaker", "DescribeTrainingJob"),
}
#: Calls the SageMaker SDK (sagemaker-core) makes with our S3 client when prepare_training_data resolves JumpStart
#: (the manifest and the model's spec; HeadObject re-checks the manifest's ETag): (file under sagemaker/core, text,
#: service, operation), each proven by its line in the installed SDK.
SDK_CALLS = [
    ("jumpstart/cache.py", "self._s3_client.get_object(Bucket=self.s3_bucket_name, Key=key)", "s3", "GetObject"),
    ("jumpstart/cache.py", "self._s3_client.head_object(Bucket=self.s3_bucket_name, Key=key)", "s3", "HeadObject"),
]
#: Calls made by the provider classes the DAGs use (apache-airflow-providers-amazon), each with the source text
#: in the installed provider that makes it: (file under airflow/providers/amazon/aws, text, service, operation).
PROVIDER_CALLS = [
    # BedrockIngestDataOperator (catalog_kb_sync*)
    ("operators/bedrock.py", "self.hook.conn.start_ingestion_job(", "bedrock-agent", "StartIngestionJob"),
    # BedrockIngestionJobSensor, our StrictIngestionJobSensor's non-deferrable path
    ("sensors/bedrock.py", "self.hook.conn.get_ingestion_job(", "bedrock-agent", "GetIngestionJob"),
    # MessageQueueTrigger(scheme="sqs") -> SqsSensorTrigger (the catalog-drops AssetWatcher)
    ("triggers/sqs.py", "client.receive_message(", "sqs", "ReceiveMessage"),
    ("triggers/sqs.py", "client.delete_message_batch(", "sqs", "DeleteMessageBatch"),
    # S3KeySensor(deferrable, wildcard) and SageMakerHook.check_s3_url (every training input channel)
    ("hooks/s3.py", 'get_paginator("list_objects_v2")', "s3", "ListObjectsV2"),
    ("hooks/s3.py", "self.get_conn().head_bucket(Bucket=bucket_name)", "s3", "HeadBucket"),
    ("hooks/s3.py", "self.get_conn().head_object(**params)", "s3", "HeadObject"),
    ("hooks/sagemaker.py", "self.check_s3_url(channel[", "s3", "HeadBucket"),
    # SageMakerTrainingOperator (ResumableTrainingOperator) + SageMakerTrigger(job_type="Training")
    ("hooks/sagemaker.py", "self.get_conn().create_training_job(**config)", "sagemaker", "CreateTrainingJob"),
    ("hooks/sagemaker.py", "self.get_conn().describe_training_job(TrainingJobName=name)", "sagemaker",
     "DescribeTrainingJob"),
    ("waiters/sagemaker.json", '"operation": "DescribeTrainingJob"', "sagemaker", "DescribeTrainingJob"),
    # SageMakerModelOperator
    ("hooks/sagemaker.py", "self.get_conn().create_model(**config)", "sagemaker", "CreateModel"),
    ("hooks/sagemaker.py", "self.get_conn().describe_model(ModelName=name)", "sagemaker", "DescribeModel"),
    # SageMakerEndpointOperator(operation="create"), which falls back to update for an existing endpoint
    ("hooks/sagemaker.py", "self.get_conn().create_endpoint_config(**config)", "sagemaker", "CreateEndpointConfig"),
    ("hooks/sagemaker.py", "self.get_conn().describe_endpoint_config(EndpointConfigName=name)", "sagemaker",
     "DescribeEndpointConfig"),
    ("hooks/sagemaker.py", "self.get_conn().create_endpoint(**config)", "sagemaker", "CreateEndpoint"),
    ("hooks/sagemaker.py", "self.get_conn().update_endpoint(**config)", "sagemaker", "UpdateEndpoint"),
    ("hooks/sagemaker.py", "self.get_conn().describe_endpoint(EndpointName=name)", "sagemaker", "DescribeEndpoint"),
]
#: API operation -> the IAM actions AWS checks for it (S3 and Bedrock name them differently from the API).
API_TO_IAM = {
    ("s3", "GetObject"): {"s3:GetObject"},
    ("s3", "HeadObject"): {"s3:GetObject"},
    ("s3", "PutObject"): {"s3:PutObject"},
    ("s3", "CopyObject"): {"s3:GetObject", "s3:PutObject"},
    ("s3", "DeleteObject"): {"s3:DeleteObject"},
    ("s3", "ListObjectsV2"): {"s3:ListBucket"},
    ("s3", "HeadBucket"): {"s3:ListBucket"},
    ("sqs", "ReceiveMessage"): {"sqs:ReceiveMessage"},
    ("sqs", "DeleteMessageBatch"): {"sqs:DeleteMessage"},
    ("bedrock-agent", "StartIngestionJob"): {"bedrock:StartIngestionJob"},
    ("bedrock-agent", "GetIngestionJob"): {"bedrock:GetIngestionJob"},
    ("bedrock-agent-runtime", "Retrieve"): {"bedrock:Retrieve"},
    ("bedrock-runtime", "Converse"): {"bedrock:InvokeModel"},
    ("bedrock", "GetFoundationModel"): {"bedrock:GetFoundationModel"},
    ("sagemaker-runtime", "InvokeEndpoint"): {"sagemaker:InvokeEndpoint"},
    # The training request carries Tags (AddTags on create) and a RoleArn (PassRole).
    ("sagemaker", "CreateTrainingJob"): {"sagemaker:CreateTrainingJob", "sagemaker:AddTags", "iam:PassRole"},
    ("sagemaker", "DescribeTrainingJob"): {"sagemaker:DescribeTrainingJob"},
    ("sagemaker", "CreateModel"): {"sagemaker:CreateModel", "iam:PassRole"},
    ("sagemaker", "DescribeModel"): {"sagemaker:DescribeModel"},
    ("sagemaker", "CreateEndpointConfig"): {"sagemaker:CreateEndpointConfig"},
    ("sagemaker", "DescribeEndpointConfig"): {"sagemaker:DescribeEndpointConfig"},
    ("sagemaker", "CreateEndpoint"): {"sagemaker:CreateEndpoint"},
    ("sagemaker", "UpdateEndpoint"): {"sagemaker:UpdateEndpoint"},
    ("sagemaker", "DescribeEndpoint"): {"sagemaker:DescribeEndpoint"},
    ("sagemaker", "DeleteEndpoint"): {"sagemaker:DeleteEndpoint"},
    ("sagemaker", "DeleteModel"): {"sagemaker:DeleteModel"},
    ("sagemaker", "DeleteEndpointConfig"): {"sagemaker:DeleteEndpointConfig"},
}


# ---------------------------------------------------------------------------------------------------------------
# Policy documents (the evaluator: tests/iam_policy.py, shared with the e2e IAM check)


@cache
def document(path: Path, rendered: bool = True) -> dict[str, Any]:
    text = path.read_text()
    return json.loads(render(text, SAMPLE) if rendered else text)


def policy_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in listify(s["Action"])}


# ---------------------------------------------------------------------------------------------------------------
# What the DAGs touch, from the config (include/config/defaults.yaml) and the code's naming rules


@cache
def settings() -> Any:
    from tailor.config import load_settings

    return load_settings(env={"TAILOR__AWS__BUCKET": SAMPLE["BucketName"]})


def judge_models() -> list[str]:
    """The production default judges (plugins/tailor_airflow/defaults.py), not the local override in os.environ."""
    from tailor_airflow.defaults import DEFAULT_JUDGE_MODELS

    return list(DEFAULT_JUDGE_MODELS)


def configured_models() -> list[tuple[str | None, str]]:
    """(profile prefix or None, foundation model id) of the generator and the default judges."""
    from tailor.model_access import split_model_id

    models = []
    for model_id in (settings().evaluation.generator_model_id, *judge_models()):
        prefix, base = split_model_id(model_id)
        assert base is not None, f"{model_id} names no foundation model"
        models.append((prefix, base))
    return models


def airflow_uses() -> list[tuple[str, str, dict[str, str]]]:
    """(IAM action, resource ARN, condition context) for every authorization the DAGs need."""
    from tailor.training_data import job_name_for

    cfg = settings()
    region, account = SAMPLE["AWS::Region"], SAMPLE["AWS::AccountId"]
    bucket = f"arn:aws:s3:::{cfg.aws.bucket}"
    cat, kb_prefix, out = cfg.catalog, cfg.knowledge_base.data_prefix, cfg.evaluation.output_prefix
    job = job_name_for("scheduled__2026-12-01T03:00:00+00:00")
    run = "manual__2026-12-07T06:00:00+00:00"
    qa = "v20261207-abc123/"  # a generated QA set's version folder
    jumpstart = f"arn:aws:s3:::jumpstart-cache-prod-{region}"
    sm = f"arn:aws:sagemaker:{region}:{account}"
    challenger, champion = f"{sm}:endpoint/{job}-challenger", f"{sm}:endpoint/{cfg.finetune.champion_endpoint}"
    kb = f"arn:aws:bedrock:{region}:{account}:knowledge-base/{SAMPLE['KnowledgeBaseId']}"
    uses = [
        ("s3:ListBucket", bucket, {}),  # list incoming drops and kb-data/, head_bucket of the training channel
        *[("s3:GetObject", f"{bucket}/{key}", {}) for key in (
            f"{cat.incoming_prefix}catalog.txt", cat.current_marker_key, f"{cat.versions_prefix}abc123/catalog.txt",
            f"finetune/{job}/training/catalog.txt", f"{out}{run}/dataset.json", "qa/test.json")],
        *[("s3:PutObject", f"{bucket}/{key}", {}) for key in (
            f"{cat.quarantine_prefix}catalog.txt", f"{cat.quarantine_prefix}catalog.txt.reason.json",
            f"{cat.versions_prefix}abc123/catalog.txt", cat.current_marker_key, f"{kb_prefix}pump-x1.txt",
            f"{kb_prefix}pump-x1.txt.metadata.json", f"finetune/{job}/training/catalog.txt", "finetune/champion.json",
            f"finetune/{job}/lineage.json", f"{out}{run}/answers/rag/batch-0000.jsonl", f"{out}{run}/report.html",
            f"{QA_OUTPUT}{qa}replies.jsonl", f"{QA_OUTPUT}{qa}train.json", f"{QA_OUTPUT}{qa}test.json",
            f"{QA_OUTPUT}{qa}manifest.json")],
        *[("s3:DeleteObject", f"{bucket}/{key}", {}) for key in (
            f"{cat.incoming_prefix}catalog.txt", f"{kb_prefix}discontinued.txt",
            f"{QA_OUTPUT}{qa}manifest.json")],  # qa_dataset_build: a re-run is incomplete until its new manifest
        # the SageMaker SDK resolving JumpStart (prepare_training_data): the manifest, then the model's spec
        ("s3:GetObject", f"{jumpstart}/models_manifest.json", {}),
        ("s3:GetObject", f"{jumpstart}/{jumpstart_spec_key()}", {}),
        *[(a, f"arn:aws:sqs:{region}:{account}:{SAMPLE['CatalogQueueName']}", {})
          for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage")],
        *[(a, kb, {}) for a in ("bedrock:StartIngestionJob", "bedrock:GetIngestionJob", "bedrock:Retrieve")],
        # a profile id is authorised on the profile and on the model in every destination region (AWS docs:
        # inference-profiles-prereq.html); the lifecycle check reads the foundation model in the run's region
        *[("bedrock:InvokeModel", f"arn:aws:bedrock:{destination}::foundation-model/{base}", {})
          for _, base in configured_models() for destination in (region, "us-west-2")],
        *[("bedrock:InvokeModel", f"arn:aws:bedrock:{region}:{account}:inference-profile/{prefix}.{base}", {})
          for prefix, base in configured_models() if prefix],
        *[("bedrock:GetFoundationModel", f"arn:aws:bedrock:{region}::foundation-model/{base}", {})
          for _, base in configured_models()],
        *[(a, f"{sm}:training-job/{job}", {}) for a in
          ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:AddTags")],
        # a retry that finds a different model/config under its own name deletes and recreates it
        *[(a, f"{sm}:model/{job}", {}) for a in
          ("sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel")],
        *[(a, f"{sm}:endpoint-config/{job}", {}) for a in
          ("sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig", "sagemaker:DeleteEndpointConfig",
           "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint")],
        *[(a, endpoint, {}) for endpoint in (challenger, champion) for a in
          ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
           "sagemaker:InvokeEndpoint")],
        ("sagemaker:DeleteEndpoint", challenger, {}),
        ("sagemaker:DeleteEndpoint", champion, {}),  # a Failed champion cannot be updated: replaced
        ("iam:PassRole", f"arn:aws:iam::{account}:role/{SAMPLE['SageMakerExecutionRoleName']}",
         {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]
    return uses


def airflow_denied() -> list[tuple[str, str, dict[str, str]]]:
    region, account = SAMPLE["AWS::Region"], SAMPLE["AWS::AccountId"]
    bucket = f"arn:aws:s3:::{SAMPLE['BucketName']}"
    sm = f"arn:aws:sagemaker:{region}:{account}"
    role = f"arn:aws:iam::{account}:role/{SAMPLE['SageMakerExecutionRoleName']}"
    return [
        ("s3:GetObject", "arn:aws:s3:::another-teams-bucket/data.csv", {}),
        ("s3:PutObject", "arn:aws:s3:::another-teams-bucket/x", {}),
        ("s3:PutObject", f"{bucket}/catalog/incoming/forged.txt", {}),  # drops come from people, not the DAGs
        ("s3:DeleteObject", f"{bucket}/catalog/versions/abc123/catalog.txt", {}),  # versions are kept
        ("s3:DeleteObject", f"{bucket}/finetune/champion.json", {}),
        ("s3:DeleteObject", f"{bucket}/qa/generated/v1/test.json", {}),  # generated sets are kept
        ("s3:PutObject", f"{bucket}/qa/test.json", {}),  # the deployer's QA set is theirs
        ("s3:PutBucketPolicy", bucket, {}),
        # JumpStart: the SDK reads specs; the weights, scripts and other models are the execution role's business
        ("s3:ListBucket", f"arn:aws:s3:::jumpstart-cache-prod-{region}", {}),
        ("s3:GetObject", f"arn:aws:s3:::jumpstart-cache-prod-{region}/meta-textgeneration/"
                         "meta-textgeneration-llama-3-1-8b-instruct/artifacts/inference-prepack/v2.0.0/x", {}),
        ("s3:GetObject", f"arn:aws:s3:::jumpstart-cache-prod-{region}/community_models/"
                         "meta-textgeneration-llama-3-1-405b-instruct/specs_v1.0.0.json", {}),
        ("s3:GetObject", f"arn:aws:s3:::jumpstart-private-cache-prod-{region}/meta-training/g5/v1.0.0/"
                         "train-meta-textgeneration-llama-3-1-8b-instruct.tar.gz", {}),
        ("sqs:SendMessage", f"arn:aws:sqs:{region}:{account}:{SAMPLE['CatalogQueueName']}", {}),
        ("sqs:ReceiveMessage", f"arn:aws:sqs:{region}:{account}:payments-queue", {}),
        ("bedrock:StartIngestionJob", f"arn:aws:bedrock:{region}:{account}:knowledge-base/OTHERKB123", {}),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{region}::foundation-model/anthropic.claude-3-opus-20240229-v1:0",
         {}),
        ("sagemaker:DeleteEndpoint", f"{sm}:endpoint/production-recommender", {}),
        ("sagemaker:InvokeEndpoint", f"{sm}:endpoint/production-recommender", {}),
        ("sagemaker:UpdateEndpoint", f"{sm}:endpoint/production-recommender", {}),
        ("sagemaker:CreateTrainingJob", f"{sm}:training-job/someone-elses-job", {}),
        ("sagemaker:CreateModel", f"{sm}:endpoint-config/tailor-ft-abc", {}),
        ("iam:PassRole", f"arn:aws:iam::{account}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:PassRole", role, {}),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Finding the calls


@cache
def operation_names() -> dict[str, set[str]]:
    """boto3 method name -> services offering it, from botocore's service models (no network)."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    names: dict[str, set[str]] = {}
    for service in SERVICES:
        for operation in session.get_service_model(service).operation_names:
            names.setdefault(xform_name(operation), set()).add(service)
    return names


def calls_in_code() -> dict[str, list[str]]:
    """boto3 calls (and paginator/waiter names) in dags/, plugins/ and include/tailor/, with where they are."""
    found: dict[str, list[str]] = {}
    for root in ("dags", "plugins", "include/tailor"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name, receiver = node.func.attr, node.func.value
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                first = node.args[0] if node.args else None
                if (name in ("get_paginator", "get_waiter") and isinstance(first, ast.Constant)
                        and isinstance(first.value, str)):
                    found.setdefault(f"{name.removeprefix('get_')}:{first.value}", []).append(where)
                elif name in operation_names() and not (isinstance(receiver, ast.Name) and receiver.id in NOT_CLIENTS):
                    found.setdefault(name, []).append(where)
    return found


def jumpstart_spec_key() -> str:
    """The spec key the manifest served for our model points at (the key layout of JumpStart's manifest)."""
    from localaws import jumpstart_content

    return jumpstart_content.spec_key()


def sdk_root() -> Path:
    import sagemaker.core as core

    return Path(core.__file__).parent


def provider_root() -> Path:
    import airflow.providers.amazon.aws as aws

    return Path(aws.__file__).parent


def all_api_calls() -> set[tuple[str, str]]:
    return set(CODE_CALLS.values()) | {(svc, op) for _, _, svc, op in PROVIDER_CALLS + SDK_CALLS}


# ---------------------------------------------------------------------------------------------------------------
# Form


@pytest.mark.parametrize("path", ALL_DOCUMENTS, ids=lambda p: p.name)
def test_document_is_valid_and_versioned(path: Path) -> None:
    raw = document(path, rendered=False)
    assert raw["Version"] == "2012-10-17"
    assert isinstance(raw["Statement"], list) and raw["Statement"]
    sids = [s.get("Sid") for s in raw["Statement"]]
    assert all(sids) and len(set(sids)) == len(sids), "every statement needs a unique Sid"
    for statement in raw["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}
        assert "Resource" in statement or "Principal" in statement


@pytest.mark.parametrize("path", ALL_DOCUMENTS, ids=lambda p: p.name)
def test_placeholders_all_render(path: Path) -> None:
    tokens = set(re.findall(r"\$\{([^}]+)\}", path.read_text()))
    assert tokens <= set(SAMPLE), f"unknown placeholders {tokens - set(SAMPLE)}"
    rendered = render(path.read_text(), SAMPLE)
    assert "${" not in rendered
    compact = json.dumps(json.loads(rendered), separators=(",", ":"))
    assert len(compact) <= MANAGED_POLICY_LIMIT, f"{len(compact)} characters: over IAM's managed-policy limit"


@pytest.mark.parametrize("path", ALL_DOCUMENTS, ids=lambda p: p.name)
def test_no_wildcard_actions_and_known_services(path: Path) -> None:
    for statement in document(path)["Statement"]:
        for action in listify(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{action}: wildcard or malformed action"
            assert action.split(":")[0] in KNOWN_PREFIXES, f"{action}: unknown service prefix"


@pytest.mark.parametrize("path", (AIRFLOW_POLICY, SAGEMAKER_POLICY), ids=lambda p: p.name)
def test_resource_star_only_where_aws_offers_nothing_narrower(path: Path) -> None:
    for statement in document(path)["Statement"]:
        if "*" in listify(statement["Resource"]):
            assert set(listify(statement["Action"])) <= NO_RESOURCE_LEVEL, statement["Sid"]
        for resource in listify(statement["Resource"]):
            assert resource == "*" or resource.startswith("arn:aws:"), resource


def test_trust_policy_lets_only_sagemaker_of_this_account_assume_the_role() -> None:
    (statement,) = document(TRUST_POLICY)["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == SAMPLE["AWS::AccountId"]


# ---------------------------------------------------------------------------------------------------------------
# Coverage of the calls


def test_every_boto3_call_in_the_code_is_known() -> None:
    """A new AWS call in dags/, plugins/ or include/tailor/ must be added to CODE_CALLS (and to the policy)."""
    found = calls_in_code()
    assert set(found) == set(CODE_CALLS), {k: found.get(k) for k in set(found) ^ set(CODE_CALLS)}
    for name, (service, _) in CODE_CALLS.items():
        if ":" not in name:
            assert service in operation_names()[name], f"{name} is not an operation of {service}"


def test_provider_calls_are_in_the_installed_provider() -> None:
    root = provider_root()
    for relative, text, _, _ in PROVIDER_CALLS:
        assert text in (root / relative).read_text(), f"{relative} no longer contains {text!r}: re-read it"


def test_sdk_calls_are_in_the_installed_sagemaker_core() -> None:
    root = sdk_root()
    for relative, text, _, _ in SDK_CALLS:
        assert text in (root / relative).read_text(), f"{relative} no longer contains {text!r}: re-read it"


def test_every_call_is_a_real_operation_mapped_to_iam_actions() -> None:
    import botocore.session

    session = botocore.session.get_session()
    for service, operation in all_api_calls():
        assert operation in session.get_service_model(service).operation_names, (service, operation)
        assert (service, operation) in API_TO_IAM, f"{service} {operation} has no IAM mapping"


def test_policy_grants_every_action_the_calls_need_and_nothing_else() -> None:
    policy = document(AIRFLOW_POLICY)
    needed = set().union(*(API_TO_IAM[call] for call in all_api_calls()))
    assert needed == policy_actions(policy), {"missing": needed - policy_actions(policy),
                                             "unused": policy_actions(policy) - needed}
    used = {action for action, _, _ in airflow_uses()}
    assert used == needed, "airflow_uses() must exercise every needed action on a real resource"


@pytest.mark.parametrize("use", airflow_uses(), ids=lambda u: f"{u[0]} {u[1].split(':', 5)[-1]}")
def test_policy_allows_what_the_dags_do(use: tuple[str, str, dict[str, str]]) -> None:
    action, resource, context = use
    assert allowed(document(AIRFLOW_POLICY), action, resource, context), f"denied: {action} on {resource}"


@pytest.mark.parametrize("use", airflow_denied(), ids=lambda u: f"{u[0]} {u[1].split(':', 5)[-1]}")
def test_policy_denies_neighbouring_resources(use: tuple[str, str, dict[str, str]]) -> None:
    action, resource, context = use
    assert not allowed(document(AIRFLOW_POLICY), action, resource, context), f"allowed: {action} on {resource}"


def test_removing_a_statement_breaks_a_dag_call() -> None:
    """The evaluator is not vacuous: without the teardown statement the challenger cannot be deleted."""
    policy = json.loads(json.dumps(document(AIRFLOW_POLICY)))
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "TeardownChallengerOnly"]
    denied = [(action, resource) for action, resource, context in airflow_uses()
              if not allowed(policy, action, resource, context)]
    assert len(denied) == 1 and denied[0][0] == "sagemaker:DeleteEndpoint" and denied[0][1].endswith("-challenger")


def test_models_in_the_policy_are_the_configured_ones() -> None:
    policy = document(AIRFLOW_POLICY)
    (statement,) = [s for s in policy["Statement"] if "bedrock:InvokeModel" in listify(s["Action"])]
    in_policy = {r.split("foundation-model/")[1] for r in statement["Resource"] if "foundation-model/" in r}
    assert in_policy == {base for _, base in configured_models()}
    profiles = {r.split("inference-profile/*.")[1] for r in statement["Resource"] if "inference-profile/" in r}
    assert profiles == in_policy, "each model may also be called through a cross-region inference profile"


# ---------------------------------------------------------------------------------------------------------------
# The SageMaker execution role


def _ecr_arn(image_uri: str) -> str:
    match = re.fullmatch(r"(\d+)\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+).*", image_uri)
    assert match is not None, f"{image_uri} is no ECR image URI"
    account, region, repository = match.groups()
    return f"arn:aws:ecr:{region}:{account}:repository/{repository}"


def sagemaker_uses() -> list[tuple[str, str, dict[str, str]]]:
    """What the training job and the endpoint do with the execution role: the request monthly_finetune builds for
    the sample region / instance type (the script tarball, gated weights and images JumpStart resolves)."""
    from localaws import jumpstart_content as jc
    from tailor.training_data import job_name_for, model_artifacts_prefix

    cfg = settings()
    region, account = SAMPLE["AWS::Region"], SAMPLE["AWS::AccountId"]
    bucket = f"arn:aws:s3:::{cfg.aws.bucket}"
    job = job_name_for("scheduled__2026-12-01T03:00:00+00:00")
    model = model_artifacts_prefix(f"s3://{cfg.aws.bucket}/finetune/{job}/output", job).removeprefix("s3://")
    spec = jc.spec()
    variants = spec["training_instance_type_variants"]
    family = cfg.finetune.training_instance_type.split(".")[1]
    training_image = variants["regional_aliases"][region][
        variants["variants"][family]["regional_properties"]["image_uri"].lstrip("$")]
    script = spec["training_prepacked_script_key"]
    weights = jc.gated_keys()[family]
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/TrainingJobs"
    return [
        ("s3:ListBucket", bucket, {"s3:prefix": f"finetune/{job}/training/"}),
        ("s3:GetObject", f"{bucket}/finetune/{job}/training/catalog.txt", {}),
        ("s3:PutObject", f"arn:aws:s3:::{model}model.safetensors", {}),  # uncompressed output
        ("s3:ListBucket", bucket, {"s3:prefix": model.split("/", 1)[1]}),  # the endpoint's S3Prefix model
        ("s3:GetObject", f"arn:aws:s3:::{model}config.json", {}),
        ("s3:ListBucket", f"arn:aws:s3:::{jc.content_bucket(region)}", {"s3:prefix": script.rsplit("/", 1)[0] + "/"}),
        ("s3:GetObject", f"arn:aws:s3:::{jc.content_bucket(region)}/{script}", {}),
        ("s3:ListBucket", f"arn:aws:s3:::{jc.gated_bucket(region)}", {"s3:prefix": weights}),
        ("s3:GetObject", f"arn:aws:s3:::{jc.gated_bucket(region)}/{weights}", {}),
        *[(a, _ecr_arn(image), {}) for image in (training_image, cfg.finetune.inference_image_uri)
          for a in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")],
        ("ecr:GetAuthorizationToken", "*", {}),
        ("logs:CreateLogGroup", log_group, {}),
        *[(a, f"{log_group}:log-stream:{job}/algo-1", {}) for a in
          ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")],
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}),
    ]


@pytest.mark.parametrize("use", sagemaker_uses(), ids=lambda u: f"{u[0]} {u[1].split(':', 5)[-1]}")
def test_sagemaker_role_allows_training_and_hosting(use: tuple[str, str, dict[str, str]]) -> None:
    assert allowed(document(SAGEMAKER_POLICY), *use), f"denied: {use}"


def test_sagemaker_role_has_no_unused_action_and_no_reach_beyond_finetune() -> None:
    policy = document(SAGEMAKER_POLICY)
    assert policy_actions(policy) == {action for action, _, _ in sagemaker_uses()}
    bucket = f"arn:aws:s3:::{SAMPLE['BucketName']}"
    for action, resource, context in [
        ("s3:GetObject", f"{bucket}/eval/run/scored.jsonl", {}),
        ("s3:GetObject", f"{bucket}/catalog/current.json", {}),
        ("s3:PutObject", f"{bucket}/kb-data/pump.txt", {}),
        ("s3:ListBucket", bucket, {"s3:prefix": "catalog/"}),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Billing"}),
        ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:999999999999:repository/someone-else", {}),
        ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:763104351884:repository/tensorflow-training", {}),
        ("s3:GetObject", "arn:aws:s3:::jumpstart-private-cache-prod-us-east-1/meta-training/g5/v1.0.0/"
                         "train-meta-textgeneration-llama-3-1-405b-instruct.tar.gz", {}),
        ("s3:GetObject", "arn:aws:s3:::jumpstart-cache-prod-us-east-1/source-directory-tarballs/training/"
                         "huggingface-llm/x/sourcedir.tar.gz", {}),
        ("s3:ListBucket", "arn:aws:s3:::jumpstart-private-cache-prod-us-east-1", {"s3:prefix": "other/"}),
    ]:
        assert not allowed(policy, action, resource, context), f"allowed: {action} on {resource}"

"""Every AWS call the DAGs make, as the IAM authorizations AWS would check: (action, resource ARN, context).

The front door records each request signed with :data:`RECORDED_KEY_ID` (the Airflow connection's access key in
the local stacks; the test clients and the bootstrap sign with another key), so a test can evaluate the shipped
IAM policy (``include/iam/airflow-role-policy.json``) against what the DAGs really did, not against a list we keep
by hand. Read them with ``GET {endpoint}/_localaws/calls``; ``DELETE`` forgets them.

Actions and resources follow the Service Authorization Reference (docs.aws.amazon.com/service-authorization/
latest/reference/): ``list_amazons3.html`` (GetObject/HeadObject -> ``s3:GetObject`` on the object, ListObjectsV2
and HeadBucket -> ``s3:ListBucket`` on the bucket, CopyObject -> GetObject on the source + PutObject, DeleteObjects
-> ``s3:DeleteObject`` per key), ``list_amazonbedrock.html`` (Converse -> ``bedrock:InvokeModel`` on the foundation
model or inference profile; Retrieve/StartIngestionJob/GetIngestionJob on the knowledge base; GetFoundationModel on
the foundation model), ``list_amazonsagemaker.html`` (each operation on its named resource; CreateTrainingJob and
CreateModel also ``iam:PassRole`` on the role, with ``iam:PassedToService``), ``list_amazonsqs.html``.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, unquote

from localaws.bedrock_models import split_profile

#: The access key id of the Airflow connection in the local stacks: only its requests are recorded.
RECORDED_KEY_ID = "localaws-airflow"
ACCOUNT = "123456789012"  # moto's default account

Use = tuple[str, str, dict[str, str]]
_lock = threading.Lock()
_calls: list[dict[str, Any]] = []
_SIGNED = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")


def record(environ: dict[str, Any], body: bytes) -> None:
    """Record the request's authorizations if the Airflow connection signed it (never fails the request)."""
    signed = _SIGNED.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not signed or signed["key"] != RECORDED_KEY_ID:
        return
    try:
        uses = authorizations(signed["service"], signed["region"], environ, body)
    except Exception as exc:  # noqa: BLE001 - an unparsed request is recorded as such, for the test to report
        uses = [("localaws:Unparsed", f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}: {exc}", {})]
    with _lock:
        _calls.extend({"action": a, "resource": r, "context": c, "service": signed["service"],
                       "request": f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"} for a, r, c in uses)


def recorded() -> list[dict[str, Any]]:
    with _lock:
        return list(_calls)


def clear() -> None:
    with _lock:
        _calls.clear()


def authorizations(service: str, region: str, environ: dict[str, Any], body: bytes) -> list[Use]:
    """The (IAM action, resource ARN, condition context) AWS checks for one request."""
    method, path = environ.get("REQUEST_METHOD", "GET"), unquote(environ.get("PATH_INFO", ""))
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if service == "s3":
        return _s3(method, path, query, environ, body)
    if service == "sqs":
        payload = json.loads(body or b"{}")
        operation = target.split(".")[-1] or (parse_qs(body.decode()).get("Action") or [""])[0]
        queue = (payload.get("QueueUrl") or parse_qs(body.decode()).get("QueueUrl", [""])[0]).rstrip("/")
        action = {"DeleteMessageBatch": "DeleteMessage"}.get(operation, operation)
        return [(f"sqs:{action}", f"arn:aws:sqs:{region}:{ACCOUNT}:{queue.rsplit('/', 1)[-1]}", {})]
    if service == "bedrock" and path.startswith("/foundation-models"):  # every Bedrock API signs as "bedrock"
        model = re.fullmatch(r"/foundation-models/([^/]+)/?", path)
        if model:
            return [("bedrock:GetFoundationModel", f"arn:aws:bedrock:{region}::foundation-model/{model[1]}", {})]
        return [("bedrock:ListFoundationModels", "*", {})]
    if service == "bedrock" and path.startswith("/knowledgebases"):
        kb = re.match(r"/knowledgebases/([^/]+)", path)
        arn = f"arn:aws:bedrock:{region}:{ACCOUNT}:knowledge-base/{kb[1] if kb else '?'}"
        if path.rstrip("/").endswith("/retrieve"):
            return [("bedrock:Retrieve", arn, {})]
        if re.search(r"/ingestionjobs/?$", path) and method in ("PUT", "POST"):
            return [("bedrock:StartIngestionJob", arn, {})]
        if "/ingestionjobs/" in path:
            return [("bedrock:GetIngestionJob", arn, {})]
        return [(f"bedrock:{method}{path}", arn, {})]
    if service == "bedrock" and path.startswith("/model/"):
        model = re.fullmatch(r"/model/(.+)/(converse|invoke)(-stream)?", path)
        model_id = model[1] if model else "?"
        if model_id.startswith("arn:"):
            return [("bedrock:InvokeModel", model_id, {})]
        prefix, rest = split_profile(model_id)
        if prefix is not None:  # a profile: checked on it and on the model
            return [("bedrock:InvokeModel", f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/{model_id}", {}),
                    ("bedrock:InvokeModel", f"arn:aws:bedrock:{region}::foundation-model/{rest}", {})]
        return [("bedrock:InvokeModel", f"arn:aws:bedrock:{region}::foundation-model/{model_id}", {})]
    if service == "sagemaker" and path.startswith("/endpoints/"):  # sagemaker-runtime signs as "sagemaker"
        name = path.split("/")[2]
        return [("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{region}:{ACCOUNT}:endpoint/{name.lower()}", {})]
    if service == "sagemaker":
        return _sagemaker(target.split(".")[-1], json.loads(body or b"{}"), region)
    return [(f"{service}:{target or method}", path, {})]


def _s3(method: str, path: str, query: dict[str, list[str]], environ: dict[str, Any], body: bytes) -> list[Use]:
    bucket, _, key = path.lstrip("/").partition("/")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:
        if method == "POST" and "delete" in query:
            keys = re.findall(rb"<Key>(.*?)</Key>", body)
            return [("s3:DeleteObject", f"{bucket_arn}/{unquote(k.decode())}", {}) for k in keys]
        if method in ("GET", "HEAD"):
            return [("s3:ListBucket", bucket_arn, {})]
        return [({"PUT": "s3:CreateBucket", "DELETE": "s3:DeleteBucket"}.get(method, f"s3:{method}"), bucket_arn, {})]
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD"):
        return [("s3:GetObject", object_arn, {})]
    if method == "DELETE":
        return [("s3:DeleteObject", object_arn, {})]
    if method in ("PUT", "POST"):
        uses: list[Use] = [("s3:PutObject", object_arn, {})]
        if source := environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            uses.append(("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/').split('?')[0]}", {}))
        return uses
    return [(f"s3:{method}", object_arn, {})]


#: SageMaker operation -> (resource type, request field naming it).
_SAGEMAKER = {
    "CreateTrainingJob": ("training-job", "TrainingJobName"),
    "DescribeTrainingJob": ("training-job", "TrainingJobName"),
    "StopTrainingJob": ("training-job", "TrainingJobName"),
    "CreateModel": ("model", "ModelName"), "DescribeModel": ("model", "ModelName"),
    "DeleteModel": ("model", "ModelName"),
    "CreateEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DescribeEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DeleteEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "CreateEndpoint": ("endpoint", "EndpointName"), "DescribeEndpoint": ("endpoint", "EndpointName"),
    "UpdateEndpoint": ("endpoint", "EndpointName"), "DeleteEndpoint": ("endpoint", "EndpointName"),
}


def _sagemaker(operation: str, payload: dict[str, Any], region: str) -> list[Use]:
    kind, field = _SAGEMAKER.get(operation, ("?", ""))
    # SageMaker ARNs carry the resource name in lower case
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{str(payload.get(field, '?')).lower()}"
    uses: list[Use] = [(f"sagemaker:{operation}", arn, {})]
    if operation in ("CreateEndpoint", "UpdateEndpoint"):  # the endpoint config is authorised too
        config = str(payload.get("EndpointConfigName", "?")).lower()
        uses.append((f"sagemaker:{operation}", f"arn:aws:sagemaker:{region}:{ACCOUNT}:endpoint-config/{config}", {}))
    if payload.get("Tags") and operation.startswith("Create"):
        uses.append(("sagemaker:AddTags", arn, {}))
    role = payload.get("RoleArn") or payload.get("ExecutionRoleArn")
    if role and operation in ("CreateTrainingJob", "CreateModel"):
        uses.append(("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    return uses

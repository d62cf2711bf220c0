"""IAM proven by the calls we make: every AWS call the DAGs made in this session (recorded by the local AWS as the
authorizations AWS would check, ``localaws.calls``) is allowed by ``include/iam/airflow-role-policy.json``.

Named to run after the other end-to-end tests, so in ``make test`` it judges the calls of every DAG run of the
session (catalog syncs, quarantines, fine-tune, evaluations, QA builds, faults). Run alone, it first makes the
calls of one catalog sync, so it never passes on nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from devstack.stack import Stack, run_dag
from localaws.calls import ACCOUNT
from tests.conftest import SAMPLE_CATALOG
from tests.deploy.test_iam import AIRFLOW_POLICY, allowed, render
from tests.e2e.test_catalog_kb_sync import _drop, _task_states


def _policy(stack: Stack) -> dict:
    import json

    from tailor.config import settings

    values = {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, "BucketName": stack.resources["bucket"],
              "CatalogQueueName": stack.resources["queue_url"].rstrip("/").rsplit("/", 1)[-1],
              "KnowledgeBaseId": stack.resources["knowledge_base_id"],
              "SageMakerExecutionRoleName": settings().finetune.role_arn.rsplit("/", 1)[-1]}
    return json.loads(render(Path(AIRFLOW_POLICY).read_text(), values))


def test_every_call_the_dags_made_is_allowed_by_the_airflow_policy(local_aws: Stack, airflow_db) -> None:
    calls = local_aws.recorded_calls()
    if not calls:  # run alone
        run = run_dag("catalog_kb_sync", {"catalog_key": _drop(local_aws, SAMPLE_CATALOG.name,
                                                                SAMPLE_CATALOG.read_bytes())})
        assert run.state == "success", _task_states(run)
        calls = local_aws.recorded_calls()
    policy = _policy(local_aws)
    denied = sorted({(c["action"], c["resource"], c["request"]) for c in calls
                     if not allowed(policy, c["action"], c["resource"], c["context"])})
    counts = Counter(c["action"] for c in calls)
    print(f"\n{len(calls)} authorizations of the DAGs' calls checked against the Airflow role policy: "
          + ", ".join(f"{a} {n}" for a, n in sorted(counts.items())))
    assert not denied, "calls the Airflow role's policy would deny:\n" + "\n".join(map(str, denied[:40]))
    # the recorder saw the DAGs' calls, not nothing: a sync reads, writes and ingests
    assert {"s3:GetObject", "s3:PutObject", "bedrock:StartIngestionJob", "bedrock:GetIngestionJob"} <= set(counts)


def test_the_recorder_maps_calls_to_the_authorizations_aws_checks() -> None:
    """Shape checks of localaws.calls on hand-made requests (the e2e test above relies on them)."""
    from localaws.calls import authorizations

    def env(method: str, path: str, **extra: str) -> dict:
        return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": extra.pop("query", ""), **extra}

    assert authorizations("s3", "us-east-1", env("GET", "/b/qa/x.json"), b"") == [
        ("s3:GetObject", "arn:aws:s3:::b/qa/x.json", {})]
    assert authorizations("s3", "us-east-1", env("GET", "/b", query="list-type=2&prefix=kb-data/"), b"") == [
        ("s3:ListBucket", "arn:aws:s3:::b", {})]
    assert authorizations("s3", "us-east-1", env("PUT", "/b/v/c.txt", HTTP_X_AMZ_COPY_SOURCE="/b/in/c.txt"), b"") == [
        ("s3:PutObject", "arn:aws:s3:::b/v/c.txt", {}), ("s3:GetObject", "arn:aws:s3:::b/in/c.txt", {})]
    assert authorizations("s3", "us-east-1", env("POST", "/b", query="delete="),
                          b"<Delete><Object><Key>kb-data/a.txt</Key></Object></Delete>") == [
        ("s3:DeleteObject", "arn:aws:s3:::b/kb-data/a.txt", {})]
    profile = authorizations("bedrock", "us-east-1",
                             env("POST", "/model/us.meta.llama3-1-8b-instruct-v1:0/converse"), b"{}")
    assert profile == [
        ("bedrock:InvokeModel", f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/"
                                "us.meta.llama3-1-8b-instruct-v1:0", {}),
        ("bedrock:InvokeModel", "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-1-8b-instruct-v1:0", {})]
    model = authorizations("sagemaker", "us-east-1", env("POST", "/", HTTP_X_AMZ_TARGET="SageMaker.CreateModel"),
                           b'{"ModelName": "Job-1", "ExecutionRoleArn": "arn:aws:iam::1:role/r"}')
    assert model == [("sagemaker:CreateModel", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/job-1", {}),
                     ("iam:PassRole", "arn:aws:iam::1:role/r", {"iam:PassedToService": "sagemaker.amazonaws.com"})]

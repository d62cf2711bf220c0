"""IAM proven by the calls we make: the AWS calls the DAGs make (recorded by the local AWS as the authorizations AWS
would check, ``localaws.calls``) are allowed by ``include/iam/airflow-role-policy.json``.

Every e2e test is checked that way after it ran (``_calls_allowed_by_the_airflow_policy`` in tests/e2e/conftest.py:
the catalog syncs, quarantines, fine-tunes, evaluations, QA builds and faults of the session, in any order). This
file proves the check is not vacuous and stands alone: it makes the calls of one catalog sync that ingests (from no
published version, so the sample is ingested again and the Knowledge Base ends as it was) and judges them here.
"""

from __future__ import annotations

from collections import Counter

import pytest

from devstack.stack import Stack
from localaws.calls import ACCOUNT
from tests.e2e.helpers import airflow_policy, denied_calls, sync_sample

pytestmark = pytest.mark.e2e


def test_every_call_of_a_catalog_sync_is_allowed_by_the_airflow_policy(local_aws: Stack, airflow_db) -> None:
    local_aws.client("s3").delete_object(Bucket=local_aws.resources["bucket"], Key="catalog/current.json")
    before = len(local_aws.recorded_calls())
    sync_sample(local_aws)
    calls = local_aws.recorded_calls()[before:]
    denied = denied_calls(airflow_policy(local_aws), calls)
    counts = Counter(c["action"] for c in calls)
    print(f"\n{len(calls)} authorizations of the DAG's calls checked against the Airflow role policy: "
          + ", ".join(f"{a} {n}" for a, n in sorted(counts.items())))
    assert not denied, "calls the Airflow role's policy would deny:\n" + "\n".join(map(str, denied[:40]))
    # the recorder saw the DAG's calls, not nothing: a sync reads, writes and ingests
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

"""Test-wide setup: a private Airflow home (configured before anything imports Airflow) and the local AWS."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LOCAL_SCALE, LOCALAWS_SCALE, REPO, Stack, airflow_env, bootstrap, migrate_airflow_db

# Airflow reads its configuration when first imported: point it at a throw-away home now.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="tailor-airflow-"))
os.environ.update(airflow_env(_AIRFLOW_HOME))
# Parse-time settings (retry delay, judges, poll intervals) are frozen when the first test imports a DAG file,
# which may be long before the local AWS starts: apply the local sizing now so test order cannot change them.
os.environ.update(LOCAL_SCALE)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
TEST_QA = REPO / "include" / "data" / "qa" / "test.json"


@pytest.fixture(scope="session")
def local_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local AWS server (a child process) with the bake-off's resources; Airflow env points at it."""
    from localaws.process import LocalAWSProcess

    log = tmp_path_factory.mktemp("localaws") / "localaws.log"
    with LocalAWSProcess(log_path=log, env=LOCALAWS_SCALE) as aws:
        stack = bootstrap(aws.endpoint_url, warehouse_path=tmp_path_factory.mktemp("warehouse") / "warehouse.db")
        stack.aws_secret = secrets.token_urlsafe(32)  # distinctive: the e2e tests scan the task logs for it
        os.environ.update(stack.env())
        yield stack


@pytest.fixture(scope="session")
def airflow_db(local_aws: Stack) -> Path:
    """A migrated metadata DB in the private Airflow home (needed by dag.test())."""
    migrate_airflow_db(dict(os.environ))
    return _AIRFLOW_HOME

"""Shared state of the end-to-end tests, so that every file passes alone and in any order.

The e2e tests share one local AWS per session (``local_aws`` in tests/conftest.py). What a test needs from it is
asked for by a fixture that checks, then fixes, on every use:

* ``synced_kb``: the sample catalog (tests/conftest.py ``SAMPLE_CATALOG``) is the version the Knowledge Base holds;
  synced only if it is not. Tests that sync something else (another catalog, a variant, a catalog with a product
  removed) need not put it back: the next test asking for ``synced_kb`` gets the sample again.
* ``champion_endpoint``: the champion endpoint is InService (a promoted fine-tune, else a base-model stand-in).
* ``completed_training_job``: a Completed training job (a fine-tune's, else a small one started here).
* ``faults``: the local AWS's fault switch disarmed before and after the test.

They are function-scoped on purpose: a session-scoped fixture runs once and could not notice that a later test
changed the state; the check costs one or two calls when nothing needs fixing. (Module fixtures call the same
``tests.e2e.helpers.ensure_*`` functions.)

Every e2e test is also an IAM check: ``_calls_allowed_by_the_airflow_policy`` takes the AWS calls the Airflow
connection made during the test (its fixtures included), as recorded by the local AWS, and fails the test's
teardown if ``include/iam/airflow-role-policy.json`` would deny one. That used to be one test named to run last
(``test_zzz_iam_calls.py``); now every DAG run is judged wherever it runs.

Order: ``pytest`` runs the e2e files in REVERSED file order (``pytest_collection_modifyitems`` below; tests keep
their order inside a file, and the e2e block keeps its place among the other folders). Forward order was the one
the files used to depend on (catalog sync first, fine-tune before the evaluation and fault tests), so the suite's
normal run proves they no longer do, at no extra cost. ``TAILOR_E2E_ORDER=forward pytest tests/e2e`` runs them in
file order (what the reversed run is checked against); any file also passes alone (``pytest tests/e2e/<file>``).
A hook was preferred to pytest-random-order: no new dependency, and a failure is reproducible without a seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.e2e.helpers import (
    airflow_policy,
    denied_calls,
    ensure_champion,
    ensure_completed_training_job,
    ensure_sample_synced,
)

E2E_DIR = Path(__file__).parent
ORDER_ENV = "TAILOR_E2E_ORDER"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reverse the order of the e2e modules (not of the tests inside one) unless ``TAILOR_E2E_ORDER=forward``."""
    order = os.environ.get(ORDER_ENV, "reversed")
    if order not in ("reversed", "forward"):
        raise pytest.UsageError(f"{ORDER_ENV} must be 'reversed' or 'forward', not {order!r}")
    if order == "forward":
        return
    slots = [i for i, item in enumerate(items) if Path(str(item.path)).parent == E2E_DIR]
    modules: dict[Path, list[pytest.Item]] = {}
    for i in slots:
        modules.setdefault(Path(str(items[i].path)), []).append(items[i])
    reordered = [item for module in reversed(list(modules)) for item in modules[module]]
    for i, item in zip(slots, reordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def _recorder_started(local_aws: Stack) -> dict:
    """Forget calls recorded before the first e2e test (other folders' tests), once; -> the rendered policy."""
    local_aws.recorded_calls(clear=True)
    return airflow_policy(local_aws)


@pytest.fixture(autouse=True)
def _calls_allowed_by_the_airflow_policy(local_aws: Stack, _recorder_started: dict) -> Iterator[None]:
    yield
    denied = denied_calls(_recorder_started, local_aws.recorded_calls(clear=True))
    assert not denied, "calls the Airflow role's policy would deny:\n" + "\n".join(map(str, denied[:40]))


@pytest.fixture
def synced_kb(local_aws: Stack, airflow_db: Path) -> dict:
    """The sample catalog is the version in the Knowledge Base -> its ``catalog/current.json`` marker."""
    return ensure_sample_synced(local_aws)


@pytest.fixture
def champion_endpoint(local_aws: Stack) -> str:
    """The champion endpoint, InService -> its name."""
    return ensure_champion(local_aws)


@pytest.fixture
def completed_training_job(local_aws: Stack) -> str:
    """A Completed training job -> its name."""
    return ensure_completed_training_job(local_aws)


@pytest.fixture
def faults(local_aws: Stack, airflow_db: Path) -> Iterator[Stack]:
    """The local AWS with no fault armed; every fault disarmed again afterwards."""
    local_aws.clear_faults()
    try:
        yield local_aws
    finally:
        local_aws.clear_faults()

"""Live end to end: a real scheduler, triggerer, dag-processor and API server (``make airflow``'s stack).

Driven through the REST API v2 only (plus S3 puts, which is how users feed the product): the DAGs parse with no
import errors, an S3 drop becomes an asset-triggered ``catalog_kb_sync`` run through SQS and the AssetWatcher,
a Params-triggered ``weekly_evaluation`` succeeds and writes warehouse rows, and an invalid Params payload is
refused by the API. Everything the stack started is stopped by PID at the end, also on failure.
Run alone with ``pytest -m live``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.airflow import ApiError, LiveAirflow
from tests.conftest import SAMPLE_CATALOG

pytestmark = pytest.mark.live
EXPECTED_DAGS = {"catalog_kb_sync", "catalog_kb_sync_poll", "monthly_finetune", "weekly_evaluation", "qa_dataset_build"}
RUN_TIMEOUT_S = 420
DONE = {"success", "failed"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    stack = LiveAirflow(home=tmp_path_factory.mktemp("live-airflow"))
    started = time.monotonic()
    with stack:
        print(f"\nlive Airflow healthy in {time.monotonic() - started:.1f} s at {stack.url}")
        yield stack
    assert all(p.poll() is not None for p in stack.processes.values()) or not stack.processes


def _runs(live: LiveAirflow, dag_id: str) -> list[dict]:
    return live.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]


def _wait_for_run(live: LiveAirflow, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = live.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in DONE:
            return run
        time.sleep(2)
    raise AssertionError(f"{dag_id} run {run_id} not finished within {timeout:.0f} s; logs in {live.home / 'logs'}")


def _task_states(live: LiveAirflow, dag_id: str, run_id: str) -> dict[str, str]:
    tis = live.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    return {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in tis}


def _unpause(live: LiveAirflow, dag_id: str) -> None:
    live.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def test_dags_parse_without_import_errors(live: LiveAirflow) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        dag_ids = {d["dag_id"] for d in live.request("GET", "/api/v2/dags?limit=100")["dags"]}
        if EXPECTED_DAGS <= dag_ids:
            break
        time.sleep(2)
    assert EXPECTED_DAGS <= dag_ids, f"parsed: {sorted(dag_ids)}"
    errors = live.request("GET", "/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]


def test_s3_drop_triggers_an_asset_run_of_catalog_kb_sync(live: LiveAirflow) -> None:
    assert live.stack is not None
    _unpause(live, "catalog_kb_sync")
    # The watcher starts about a minute after the unpause; the bootstrap's s3:TestEvent (S3 sends one when a
    # notification is configured) then starts a no-op run, which tells us the watcher is live.
    deadline = time.monotonic() + 180
    while not _runs(live, "catalog_kb_sync") and time.monotonic() < deadline:
        time.sleep(1)
    warm_up = _runs(live, "catalog_kb_sync")
    assert warm_up, "the AssetWatcher never consumed the queue's s3:TestEvent within 180 s"
    for run in warm_up:
        done = _wait_for_run(live, "catalog_kb_sync", run["dag_run_id"])
        assert done["state"] == "success", "a test event must not fail the sync"
    before = {r["dag_run_id"] for r in warm_up}

    put_at = time.time()
    live.stack.client("s3").put_object(Bucket=live.stack.resources["bucket"],
                                       Key="catalog/incoming/live-catalog.txt", Body=SAMPLE_CATALOG.read_bytes())
    deadline, new = time.monotonic() + 120, []
    while not new and time.monotonic() < deadline:
        new = [r for r in _runs(live, "catalog_kb_sync") if r["dag_run_id"] not in before]
        time.sleep(0.5)
    assert new, "no catalog_kb_sync run appeared within 120 s of the S3 put"
    run = new[0]
    assert run["run_type"] == "asset_triggered", run
    run = _wait_for_run(live, "catalog_kb_sync", run["dag_run_id"])
    from datetime import datetime

    started = datetime.fromisoformat(run["start_date"]).timestamp()
    print(f"\nS3 put -> asset-triggered run start: {started - put_at:.1f} s")
    assert run["state"] == "success", _task_states(live, "catalog_kb_sync", run["dag_run_id"])
    events = live.request("GET", f"/api/v2/dags/catalog_kb_sync/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
    assert events["total_entries"] >= 1
    marker = live.stack.client("s3").get_object(Bucket=live.stack.resources["bucket"], Key="catalog/current.json")
    assert b"live-catalog.txt" in marker["Body"].read()


def test_invalid_params_are_refused_by_the_api(live: LiveAirflow) -> None:
    for conf, field in (({"sample_limit": 0}, "sample_limit"), ({"approaches": ["fine-tuning"]}, "approaches")):
        with pytest.raises(ApiError) as refused:
            live.request("POST", "/api/v2/dags/weekly_evaluation/dagRuns", {"logical_date": None, "conf": conf})
        assert refused.value.status == 400, refused.value
        assert field in refused.value.body, refused.value.body
    assert _runs(live, "weekly_evaluation") == [], "a refused payload must not create a run"


def test_params_run_of_weekly_evaluation_writes_the_warehouse(live: LiveAirflow) -> None:
    conf = {"approaches": ["rag"], "sample_limit": 2, "judge_models": ["amazon.nova-pro-v1:0"]}
    triggered = live.request("POST", "/api/v2/dags/weekly_evaluation/dagRuns", {"logical_date": None, "conf": conf})
    run_id = triggered["dag_run_id"]
    assert triggered["conf"] == conf and triggered["state"] == "queued"  # paused: nothing runs yet
    _unpause(live, "weekly_evaluation")
    # catchup=False still schedules the latest missed Monday on unpause (a full 45-question run): fail it as
    # soon as it appears, before its tasks start, so only the Params run uses the 2 cores.
    deadline, caught_up = time.monotonic() + 60, []
    while not caught_up and time.monotonic() < deadline:
        caught_up = [r for r in _runs(live, "weekly_evaluation") if r["run_type"] == "scheduled"]
        time.sleep(0.2)
    for other in caught_up:
        live.request("PATCH", f"/api/v2/dags/weekly_evaluation/dagRuns/{other['dag_run_id']}", {"state": "failed"})

    run = _wait_for_run(live, "weekly_evaluation", run_id)
    assert run["state"] == "success", _task_states(live, "weekly_evaluation", run_id)
    warehouse = Path(live.home) / "warehouse.db"
    with sqlite3.connect(warehouse) as db:
        runs = db.execute("SELECT approach, n_samples, status FROM eval_run WHERE run_id = ?", (run_id,)).fetchall()
        judged = db.execute("SELECT COUNT(*) FROM eval_score WHERE run_id = ? AND metric = 'judge'",
                            (run_id,)).fetchone()[0]
    assert runs == [("rag", 2, "complete")]
    assert judged == 2 * 1 * 4  # samples x judges x criteria


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    """Startup failure path: a port already taken makes the api-server die; everything started is stopped."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = LiveAirflow(home=tmp_path / "broken", port=taken.getsockname()[1])
        with pytest.raises((RuntimeError, TimeoutError)):
            stack.start(startup_timeout=90)
    assert stack.processes == {}
    with pytest.raises(OSError):  # nothing of ours answers on that port any more
        stack.request("GET", "/api/v2/monitor/health", auth=False)

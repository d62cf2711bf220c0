"""Live end to end: a real scheduler, triggerer, dag-processor and API server (``make airflow``'s stack).

Driven through the REST API v2 only (plus S3 puts, which is how users feed the product): the DAGs parse with no
import errors, an S3 drop becomes an asset-triggered ``catalog_kb_sync`` run through SQS and the AssetWatcher,
clearing that run (as an operator would) twice starts no second ingestion, two drops half a second apart sync
one after the other and the later file wins, a Params-triggered ``weekly_evaluation`` succeeds and writes
warehouse rows, clearing it twice rewrites exactly the same rows, an invalid Params payload is refused by the
API, and no log file of the stack holds the AWS secret key, the admin password or the JWT secret. Tests run in
file order and share the stack. Everything the stack started is stopped by PID at the end, also on failure.
Run alone with ``pytest -m live``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.airflow import FINISHED, ApiError, LiveAirflow
from tests.conftest import SAMPLE_CATALOG

pytestmark = pytest.mark.live
INCOMING = "catalog/incoming/"
EXPECTED_DAGS = {"catalog_kb_sync", "catalog_kb_sync_poll", "monthly_finetune", "weekly_evaluation", "qa_dataset_build"}
RUN_TIMEOUT_S = 420
#: Run ids of earlier tests that later tests (clears) reuse: the tests run in file order on one stack.
RUNS: dict[str, str] = {}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    stack = LiveAirflow(home=tmp_path_factory.mktemp("live-airflow"))
    started = time.monotonic()
    with stack:
        print(f"\nlive Airflow healthy in {time.monotonic() - started:.1f} s at {stack.url}")
        yield stack
    assert all(p.poll() is not None for p in stack.processes.values()) or not stack.processes


def _task_states(live: LiveAirflow, dag_id: str, run_id: str) -> dict[str, str]:
    return {key: ti["state"] for key, ti in live.task_instances(dag_id, run_id).items()}


def _clear_and_wait(live: LiveAirflow, dag_id: str, run_id: str) -> dict:
    """Clear every task of a finished run, as an operator does in the UI, and wait for the run to end again."""
    before = live.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    assert before["state"] in FINISHED, before
    live.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
                 {"dry_run": False, "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True})
    queued = live.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    assert queued["state"] not in FINISHED, f"the clear did not reset the run: {queued}"
    run = live.wait_for_run(dag_id, run_id)
    assert run["end_date"] != before["end_date"]
    return run


def _ingestion_jobs(live: LiveAirflow) -> list[dict]:
    assert live.stack is not None
    return live.stack.client("bedrock-agent").list_ingestion_jobs(
        knowledgeBaseId=live.stack.resources["knowledge_base_id"],
        dataSourceId=live.stack.resources["data_source_id"])["ingestionJobSummaries"]


def _marker(live: LiveAirflow) -> dict:
    assert live.stack is not None
    return json.loads(live.stack.client("s3").get_object(Bucket=live.stack.resources["bucket"],
                                                         Key="catalog/current.json")["Body"].read())


def test_dags_parse_without_import_errors(live: LiveAirflow) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        dag_ids = {d["dag_id"] for d in live.request("GET", "/api/v2/dags?limit=100")["dags"]}
        if dag_ids >= EXPECTED_DAGS:
            break
        time.sleep(2)
    assert dag_ids >= EXPECTED_DAGS, f"parsed: {sorted(dag_ids)}"
    errors = live.request("GET", "/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]


def test_s3_drop_triggers_an_asset_run_of_catalog_kb_sync(live: LiveAirflow) -> None:
    assert live.stack is not None
    live.unpause("catalog_kb_sync")
    # The watcher starts about a minute after the unpause; the bootstrap's s3:TestEvent (S3 sends one when a
    # notification is configured) then starts a no-op run, which tells us the watcher is live.
    deadline = time.monotonic() + 180
    while not live.dag_runs("catalog_kb_sync") and time.monotonic() < deadline:
        time.sleep(1)
    warm_up = live.dag_runs("catalog_kb_sync")
    assert warm_up, "the AssetWatcher never consumed the queue's s3:TestEvent within 180 s"
    for run in warm_up:
        done = live.wait_for_run("catalog_kb_sync", run["dag_run_id"])
        assert done["state"] == "success", "a test event must not fail the sync"
    before = {r["dag_run_id"] for r in warm_up}

    put_at = time.time()
    live.stack.client("s3").put_object(Bucket=live.stack.resources["bucket"],
                                       Key="catalog/incoming/live-catalog.txt", Body=SAMPLE_CATALOG.read_bytes())
    deadline = time.monotonic() + 120
    new: list[dict] = []
    while not new and time.monotonic() < deadline:
        new = [r for r in live.dag_runs("catalog_kb_sync") if r["dag_run_id"] not in before]
        time.sleep(0.5)
    assert new, "no catalog_kb_sync run appeared within 120 s of the S3 put"
    run = new[0]
    assert run["run_type"] == "asset_triggered", run
    run = live.wait_for_run("catalog_kb_sync", run["dag_run_id"])
    from datetime import datetime

    started = datetime.fromisoformat(run["start_date"]).timestamp()
    print(f"\nS3 put -> asset-triggered run start: {started - put_at:.1f} s")
    assert run["state"] == "success", _task_states(live, "catalog_kb_sync", run["dag_run_id"])
    events = live.request("GET", f"/api/v2/dags/catalog_kb_sync/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
    assert events["total_entries"] >= 1
    marker = live.stack.client("s3").get_object(Bucket=live.stack.resources["bucket"], Key="catalog/current.json")
    assert b"live-catalog.txt" in marker["Body"].read()
    RUNS["catalog_kb_sync"] = run["dag_run_id"]


def test_clearing_the_sync_run_twice_starts_no_second_ingestion(live: LiveAirflow) -> None:
    run_id = RUNS.get("catalog_kb_sync")
    assert run_id, "needs the asset-triggered run of the previous test"
    marker, jobs = _marker(live), _ingestion_jobs(live)
    assert [j["ingestionJobId"] for j in jobs if j["status"] == "COMPLETE"].count(marker["ingestion_job_id"]) == 1
    for attempt in (1, 2):
        run = _clear_and_wait(live, "catalog_kb_sync", run_id)
        tis = live.task_instances("catalog_kb_sync", run_id)
        assert run["state"] == "success", {k: ti["state"] for k, ti in tis.items()}
        assert tis["validate_catalogs[-1]"]["try_number"] == 1 + attempt, "the clear must have re-run the tasks"
        assert tis["start_ingestion[-1]"]["state"] == "skipped", "the handled drop must not be ingested again"
        assert _ingestion_jobs(live) == jobs, "one ingestion per catalog version"
        assert _marker(live) == marker


def _time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _catalog_variant(tag: str) -> bytes:
    text = SAMPLE_CATALOG.read_text()
    old = "Description: The Vortex Mixer VM-200 is"
    changed = text.replace(old, old.replace("VM-200", f"VM-200 ({tag})"), 1)
    assert changed != text
    return changed.encode()


def test_two_drops_within_a_second_sync_one_after_the_other_and_the_later_wins(live: LiveAirflow) -> None:
    """The real AssetWatcher and max_active_runs=1. The watcher may hand both S3 messages over in one asset
    event (one run, which keeps the newest drop) or in two (two runs, serialized): either way every message is
    consumed once, no run overlaps another or fails (no ConflictException), and the KB ends on the later file."""
    from tailor.catalog import parse_catalog
    from tailor.kb_sync import catalog_keys_from_messages, messages_from_asset_event_extras

    assert live.stack is not None
    s3, bucket = live.stack.client("s3"), live.stack.resources["bucket"]
    before = {r["dag_run_id"] for r in live.dag_runs("catalog_kb_sync")}
    jobs_before = {j["ingestionJobId"] for j in _ingestion_jobs(live)}
    first, second = INCOMING + "concurrent-first.txt", INCOMING + "concurrent-second.txt"
    s3.put_object(Bucket=bucket, Key=first, Body=_catalog_variant("first drop"))
    time.sleep(0.5)
    s3.put_object(Bucket=bucket, Key=second, Body=_catalog_variant("second drop"))

    deadline, new = time.monotonic() + RUN_TIMEOUT_S, []
    while time.monotonic() < deadline:
        new = [r for r in live.dag_runs("catalog_kb_sync") if r["dag_run_id"] not in before]
        waiting = s3.list_objects_v2(Bucket=bucket, Prefix=INCOMING).get("Contents", [])
        if new and not waiting and all(r["state"] in FINISHED for r in new):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"the drops were not both handled within {RUN_TIMEOUT_S} s: runs {new}")
    runs = sorted(new, key=lambda r: _time(r["start_date"]))
    events = [live.request("GET", f"/api/v2/dags/catalog_kb_sync/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")
              ["asset_events"] for r in runs]
    keys = catalog_keys_from_messages(messages_from_asset_event_extras([e["extra"] for es in events for e in es]),
                                      INCOMING, ".txt")
    print(f"\ntwo drops 0.5 s apart -> {sum(map(len, events))} asset event(s), {len(runs)} run(s): "
          + ", ".join(f"{r['dag_run_id']} {r['start_date']}..{r['end_date']}" for r in runs))
    assert sorted(keys) == [first, second], f"each drop's S3 message must reach a run exactly once: {keys}"
    for run in runs:
        tis = live.task_instances("catalog_kb_sync", run["dag_run_id"])
        assert run["state"] == "success", {k: ti["state"] for k, ti in tis.items()}
        assert tis["start_ingestion[-1]"]["try_number"] <= 1, "a ConflictException retry happened"
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert _time(later["start_date"]) >= _time(earlier["end_date"]), "max_active_runs=1: no overlap"
    marker = _marker(live)
    assert marker["version_key"].endswith("/concurrent-second.txt"), marker
    assert marker["catalog_version"] == parse_catalog(_catalog_variant("second drop"), second).version
    assert s3.get_object(Bucket=bucket, Key=marker["version_key"])["Body"].read() == _catalog_variant("second drop")
    new_jobs = [j for j in _ingestion_jobs(live) if j["ingestionJobId"] not in jobs_before]
    assert 1 <= len(new_jobs) <= len(runs) and all(j["status"] == "COMPLETE" for j in new_jobs), new_jobs
    assert marker["ingestion_job_id"] in {j["ingestionJobId"] for j in new_jobs}


def test_invalid_params_are_refused_by_the_api(live: LiveAirflow) -> None:
    for conf, field in (({"sample_limit": 0}, "sample_limit"), ({"approaches": ["fine-tuning"]}, "approaches")):
        with pytest.raises(ApiError) as refused:
            live.request("POST", "/api/v2/dags/weekly_evaluation/dagRuns", {"logical_date": None, "conf": conf})
        assert refused.value.status == 400, refused.value
        assert field in refused.value.body, refused.value.body
    assert live.dag_runs("weekly_evaluation") == [], "a refused payload must not create a run"


def test_params_run_of_weekly_evaluation_writes_the_warehouse(live: LiveAirflow) -> None:
    conf = {"approaches": ["rag"], "sample_limit": 2, "judge_models": ["amazon.nova-pro-v1:0"]}
    triggered = live.request("POST", "/api/v2/dags/weekly_evaluation/dagRuns", {"logical_date": None, "conf": conf})
    run_id = triggered["dag_run_id"]
    assert triggered["conf"] == conf and triggered["state"] == "queued"  # paused: nothing runs yet
    live.unpause("weekly_evaluation")
    # catchup=False still schedules the latest missed Monday on unpause (a full 45-question run): fail it as
    # soon as it appears, before its tasks start, so only the Params run uses the 2 cores.
    deadline = time.monotonic() + 60
    caught_up: list[dict] = []
    while not caught_up and time.monotonic() < deadline:
        caught_up = [r for r in live.dag_runs("weekly_evaluation") if r["run_type"] == "scheduled"]
        time.sleep(0.2)
    for other in caught_up:
        live.request("PATCH", f"/api/v2/dags/weekly_evaluation/dagRuns/{other['dag_run_id']}", {"state": "failed"})

    run = live.wait_for_run("weekly_evaluation", run_id)
    assert run["state"] == "success", _task_states(live, "weekly_evaluation", run_id)
    warehouse = Path(live.home) / "warehouse.db"
    with sqlite3.connect(warehouse) as db:
        runs = db.execute("SELECT approach, n_samples, status FROM eval_run WHERE run_id = ?", (run_id,)).fetchall()
        judged = db.execute("SELECT COUNT(*) FROM eval_score WHERE run_id = ? AND metric = 'judge'",
                            (run_id,)).fetchone()[0]
    assert runs == [("rag", 2, "complete")]
    assert judged == 2 * 1 * 4  # samples x judges x criteria
    RUNS["weekly_evaluation"] = run_id


def _warehouse_rows(live: LiveAirflow, run_id: str) -> tuple[list, list, list]:
    with sqlite3.connect(Path(live.home) / "warehouse.db") as db:
        runs = db.execute("SELECT approach, n_samples, n_scored, status FROM eval_run WHERE run_id = ? "
                          "ORDER BY approach", (run_id,)).fetchall()
        written = [w for (w,) in db.execute("SELECT written_at FROM eval_run WHERE run_id = ?", (run_id,))]
        scores = db.execute("SELECT approach, sample_id, metric, judge_model, criterion FROM eval_score "
                            "WHERE run_id = ? ORDER BY 1, 2, 3, 4, 5", (run_id,)).fetchall()
    return runs, scores, written


def test_clearing_the_weekly_run_twice_rewrites_exactly_the_same_rows(live: LiveAirflow) -> None:
    from tailor_airflow.evaluation import run_prefix

    assert live.stack is not None
    run_id = RUNS.get("weekly_evaluation")
    assert run_id, "needs the Params run of the previous test"
    s3, bucket = live.stack.client("s3"), live.stack.resources["bucket"]

    def outputs() -> list[str]:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=run_prefix("eval/", run_id))
        return sorted(o["Key"] for o in listing.get("Contents", []))

    runs, scores, written = _warehouse_rows(live, run_id)
    files = outputs()
    assert runs and len(scores) == len(set(scores)) > 0 and "summary_results.csv" in " ".join(files)
    for _ in range(2):
        run = _clear_and_wait(live, "weekly_evaluation", run_id)
        assert run["state"] == "success", _task_states(live, "weekly_evaluation", run_id)
        again_runs, again_scores, again_written = _warehouse_rows(live, run_id)
        assert again_runs == runs, "one eval_run row per run x approach, same counts"
        assert again_scores == scores, "the same eval_score keys, none duplicated or left over"
        assert min(again_written) > max(written), "the clear must have rewritten the rows"
        assert outputs() == files, "the run's S3 outputs are overwritten in place, never duplicated"
        written = again_written


def test_no_secret_appears_in_any_log(live: LiveAirflow) -> None:
    """After every run above: the AWS secret key of aws_default, the admin password and the JWT signing key."""
    assert live.stack is not None
    secrets = {"aws secret access key": live.stack.aws_secret, "admin password": live.password,
               "JWT secret": (live.home / "jwt_secret").read_text()}
    assert all(len(value) >= 16 for value in secrets.values()), "the secrets must be distinctive to be found"
    assert live.stack.aws_secret in live.environment()["AIRFLOW_CONN_AWS_DEFAULT"], "the tasks use this secret"
    files = [p for p in (live.home / "logs").rglob("*") if p.is_file()]
    task_logs = [p for p in files if "dag_id=" in str(p)]
    assert len(task_logs) >= 20, f"expected the task logs of the runs above, found {len(task_logs)}"
    leaks = [(str(p.relative_to(live.home)), name) for p in files for name, value in secrets.items()
             if value.encode() in p.read_bytes()]
    print(f"\nscanned {len(files)} log files ({len(task_logs)} task logs) for {len(secrets)} secrets")
    assert leaks == []


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

"""tailor.warehouse against a real PostgreSQL server (started by conftest.py; the tests fail if it cannot start).

Each test writes into its own schema, so tests are independent on one shared cluster. Three ways in:
``postgres`` through Airflow's PostgresHook (psycopg 3, its default with SQLAlchemy 2, so ``executemany``),
``postgres`` through a psycopg2 connection (``execute_values``), and the ``redshift`` code path (temp staging
tables + MERGE) run on PostgreSQL >= 15, which has MERGE: a syntax/behaviour check, not a Redshift test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from tailor.exceptions import ConfigError
from tailor.warehouse import RUN_COLUMNS, Warehouse
from tests.unit.test_warehouse import APPROACHES, run_row, score_rows, write_history


class Psycopg2Hook:
    """A DbApiHook-like shim whose connections are psycopg2's (the writer then uses execute_values)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def get_conn(self):
        import psycopg2

        return psycopg2.connect(self.dsn)


@pytest.fixture(params=["postgres-psycopg3", "postgres-psycopg2", "redshift-sql-on-postgres"])
def wh(request, postgres_hook, postgres_server) -> Warehouse:
    variant = request.param
    hook = Psycopg2Hook(postgres_server.uri) if variant == "postgres-psycopg2" else postgres_hook
    if variant.startswith("redshift") and server_version(postgres_hook) < 150000:
        pytest.skip("MERGE needs PostgreSQL >= 15 to emulate the Redshift path")
    warehouse = Warehouse(hook, variant.split("-")[0], schema=f"t_{uuid.uuid4().hex[:12]}")
    warehouse.ensure_schema()
    return warehouse


def server_version(hook) -> int:
    conn = hook.get_conn()
    try:
        return int(conn.info.server_version)
    finally:
        conn.close()


def query(wh: Warehouse, sql: str, params: tuple = ()) -> list[tuple]:
    conn = wh.hook.get_conn()
    try:
        cur = conn.cursor()
        cur.execute(f'SET search_path TO "{wh.schema}"')
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()


def snapshot(wh: Warehouse) -> tuple[list, list]:
    return (query(wh, "SELECT * FROM eval_run ORDER BY run_id, approach"),
            query(wh, "SELECT * FROM eval_score ORDER BY run_id, approach, sample_id, metric"))  # fmt: skip


def test_rewriting_the_same_run_three_times_leaves_exactly_one_set(wh: Warehouse) -> None:
    for attempt in range(3):
        assert wh.write_run(run_row("r1", "rag", n_samples=10 + attempt), score_rows(tag=str(attempt))) == 6
    assert query(wh, "SELECT COUNT(*), MAX(n_samples) FROM eval_run") == [(1, 12)]
    assert query(wh, "SELECT COUNT(*), COUNT(DISTINCT rationale) FROM eval_score") == [(6, 2)]
    wh.write_run(run_row("r1", "rag"), score_rows(1))  # fewer samples: the stale ones go
    assert query(wh, "SELECT COUNT(*) FROM eval_score") == [(2,)]


@pytest.mark.parametrize(
    ("bad_run", "bad_scores"),
    [
        pytest.param(run_row("r1", "rag"), score_rows(2) + [{"sample_id": None, "metric": "x", "score": 0.1}],
                     id="null-sample-id-in-bulk-insert"),
        pytest.param(run_row("r1", "rag", dag_run_started_at=None), score_rows(4),
                     id="null-started-at-in-final-upsert"),
    ],
)  # fmt: skip
def test_failure_mid_write_keeps_previous_rows_and_no_partial_new_ones(wh, bad_run, bad_scores) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(3, tag="old"))
    before = snapshot(wh)
    with pytest.raises(Exception, match="null value"):
        wh.write_run(bad_run, bad_scores)
    assert snapshot(wh) == before


def test_out_of_range_score_is_rejected_before_any_write(wh: Warehouse) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(2))
    before = snapshot(wh)
    bad = {"sample_id": "s9", "metric": "judge_score", "judge_model": "j", "score": 1.01}
    with pytest.raises(ValueError, match=r"score 1\.01 outside \[0, 1\] for run 'r1' approach 'rag' sample 's9'"):
        wh.write_run(run_row("r1", "rag", n_samples=42), score_rows(2) + [bad])
    assert snapshot(wh) == before


def test_invalid_schema_identifier_is_rejected(postgres_hook) -> None:
    with pytest.raises(ConfigError, match="'public; DROP SCHEMA public'"):
        Warehouse(postgres_hook, "postgres", schema="public; DROP SCHEMA public")


def test_null_scores_are_stored_and_excluded_from_avg(wh: Warehouse) -> None:
    rows = score_rows(2, value=0.8) + [{"sample_id": "s7", "metric": "bertscore_f1", "score": None, "error": "t/o"}]
    wh.write_run(run_row("r1", "rag"), rows)
    result = query(wh, "SELECT AVG(score), COUNT(score), COUNT(*) FROM eval_score WHERE metric = 'bertscore_f1'")
    assert result == [(pytest.approx(0.8), 2, 3)]


def test_views_over_a_history_of_runs(wh: Warehouse) -> None:
    write_history(wh)
    latest = query(wh, "SELECT run_id, approach, status FROM v_eval_latest ORDER BY approach")
    assert latest == [("r3", a, "complete") for a in sorted(APPROACHES)]
    columns = query(wh, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = 'v_eval_latest' ORDER BY ordinal_position", (wh.schema,))  # fmt: skip
    assert [c for (c,) in columns] == list(RUN_COLUMNS)
    cost = query(wh, "SELECT run_id, approach, monthly_cost_usd, judge_score_mean, cost_per_quality_point "
                     "FROM v_cost_quality ORDER BY approach")  # fmt: skip
    assert cost == [("r3", a, 50.0, 0.25, pytest.approx(2.0)) for a in sorted(APPROACHES)]
    trend = query(wh, "SELECT run_date, run_id FROM v_eval_trend")  # run_date in the session time zone (UTC here)
    assert [row for row in trend[::3]] == [(date(2026, 11, 13), "r1"), (date(2026, 11, 20), "r2"),
                                           (date(2026, 11, 28), "r3")]  # fmt: skip
    started = query(wh, "SELECT DISTINCT dag_run_started_at FROM eval_run WHERE run_id = 'r3'")
    assert started == [(datetime(2026, 11, 28, 4, 30, tzinfo=UTC),)]
    wh.write_run(run_row("r4", "rag", "2026-12-04T10:00:00Z", status="partial"), score_rows())
    assert {r for (r,) in query(wh, "SELECT run_id FROM v_eval_latest")} == {"r3"}
    wh.ensure_schema()  # idempotent: tables kept, views recreated
    assert query(wh, "SELECT COUNT(*) FROM v_eval_latest") == [(3,)]


def test_bulk_write_of_thousands_of_scores(wh: Warehouse) -> None:
    rows = [{"sample_id": f"s{i:05d}", "metric": m, "judge_model": "j" if m == "judge_score" else "",
             "score": (i % 101) / 100} for i in range(2500) for m in ("bertscore_f1", "judge_score")]  # fmt: skip
    for _ in range(2):
        assert wh.write_run(run_row("big", "hybrid", n_samples=2500), rows) == 5000
    assert query(wh, "SELECT COUNT(*), MIN(score), MAX(score) FROM eval_score") == [(5000, 0.0, 1.0)]


def test_per_run_tables_are_replaced_as_a_whole(wh: Warehouse) -> None:
    paired = {"metric": "judge_score", "approach_a": "rag", "approach_b": "finetune", "n": 40, "mean_a": 0.8,
              "mean_b": 0.7, "mean_diff": 0.1, "ci95_low": 0.05, "ci95_high": 0.15, "p_value": 0.001, "p_holm": 0.003,
              "significant": True, "winner": "rag", "mde": 0.04, "verdict": "rag better than finetune"}
    for _ in range(3):
        wh.replace_run_rows("eval_paired", "r1", [paired, {**paired, "metric": "bertscore_f1", "winner": None,
                                                           "significant": False}])
    wh.replace_run_rows("eval_judge_agreement", "r1", [{"criterion": "overall", "judge_models": "a,b", "alpha": None}])
    assert query(wh, "SELECT metric, significant, winner FROM eval_paired ORDER BY metric") == [
        ("bertscore_f1", False, None), ("judge_score", True, "rag")]
    assert query(wh, "SELECT criterion, alpha FROM eval_judge_agreement") == [("overall", None)]


def test_the_previous_complete_run_and_its_scores_are_read_back(wh: Warehouse) -> None:
    wh.write_run(run_row("old", "rag", dag_run_started_at="2026-11-09T06:00:00+00:00"), score_rows(2, 0.75))
    wh.write_run(run_row("partial", "rag", dag_run_started_at="2026-11-16T06:00:00+00:00", status="partial"),
                 score_rows(2))
    wh.write_run(run_row("now", "rag", dag_run_started_at="2026-11-23T06:00:00+00:00"), score_rows(2))
    assert wh.previous_complete_run("now") == "old" and wh.previous_complete_run("old") is None
    assert sorted((r["sample_id"], r["bertscore_f1"]) for r in wh.run_scores("old", ["bertscore_f1"])) == [
        ("s0", 0.75), ("s1", 0.75)]

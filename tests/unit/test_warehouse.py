"""Unit tests of tailor.warehouse on SQLite, through Airflow's real SqliteHook (connection from AIRFLOW_CONN_<ID>).

The helpers ``run_row``/``score_rows``/``APPROACHES`` are reused by tests/warehouse/test_postgres.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tailor.exceptions import ConfigError
from tailor.warehouse import RUN_COLUMNS, SQL_DIR, Warehouse, identifier, split_statements

APPROACHES = ("rag", "finetune", "hybrid")
CONN_ID = "tailor_warehouse_test"


def run_row(run_id: str, approach: str, started: str = "2026-11-20T10:00:00+00:00", **extra: Any) -> dict:
    row = {
        "run_id": run_id, "approach": approach, "dag_run_started_at": started, "n_samples": 3, "n_scored": 2,
        "n_errors": 1, "bertscore_f1_mean": 0.8, "judge_score_mean": 0.5, "judge_score_ci95_low": 0.4,
        "judge_score_ci95_high": 0.6, "latency_p50_ms": 120.0, "latency_p95_ms": 300.0, "monthly_cost_usd": 50.0,
        "run_cost_usd": 0.25, "dataset_version": "qa-abc123", "prompt_version": "p1", "generator_model": "smollm2",
        "judge_models": "judge-a,judge-b", "status": "complete",
    }  # fmt: skip
    row.update(extra)
    return row


def score_rows(n: int = 3, value: float | None = 0.5, tag: str = "") -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({"sample_id": f"s{i}", "metric": "bertscore_f1", "score": value, "rationale": tag or None})
        rows.append({"sample_id": f"s{i}", "metric": "judge_score", "judge_model": "judge-a",
                     "criterion": "correctness", "score": value, "rationale": f"ok {tag}"})  # fmt: skip
    return rows


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", "sqlite://" + quote(str(tmp_path / "wh.db"), safe=""))
    return SqliteHook(sqlite_conn_id=CONN_ID)


@pytest.fixture
def wh(hook) -> Warehouse:
    warehouse = Warehouse(hook, "sqlite")
    warehouse.ensure_schema()
    return warehouse


def query(hook, sql: str, params: tuple = ()) -> list[tuple]:
    conn = hook.get_conn()
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def snapshot(hook) -> tuple[list, list]:
    return (query(hook, "SELECT * FROM eval_run ORDER BY run_id, approach"),
            query(hook, "SELECT * FROM eval_score ORDER BY run_id, approach, sample_id, metric"))  # fmt: skip


# --- idempotence -----------------------------------------------------------------------------------------------


def test_rewriting_the_same_run_three_times_leaves_exactly_one_set(wh: Warehouse, hook) -> None:
    for attempt in range(3):
        assert wh.write_run(run_row("r1", "rag", n_samples=10 + attempt), score_rows(tag=str(attempt))) == 6
    assert query(hook, "SELECT COUNT(*), MAX(n_samples) FROM eval_run") == [(1, 12)]
    assert query(hook, "SELECT COUNT(*), COUNT(DISTINCT rationale) FROM eval_score") == [(6, 2)]
    assert {r for (r,) in query(hook, "SELECT rationale FROM eval_score WHERE metric = 'judge_score'")} == {"ok 2"}


def test_a_rewrite_with_fewer_samples_removes_the_stale_ones(wh: Warehouse, hook) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(5))
    wh.write_run(run_row("r1", "rag"), score_rows(2))
    wh.write_run(run_row("r1", "hybrid"), score_rows(4))  # another approach of the same run is untouched
    counts = query(hook, "SELECT approach, COUNT(*) FROM eval_score GROUP BY approach ORDER BY approach")
    assert counts == [("hybrid", 8), ("rag", 4)]


def test_ensure_schema_is_idempotent(wh: Warehouse, hook) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows())
    wh.ensure_schema()
    assert query(hook, "SELECT COUNT(*) FROM v_eval_latest") == [(1,)]


# --- atomicity -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_run", "bad_scores"),
    [
        pytest.param(run_row("r1", "rag"), score_rows(2) + [{"sample_id": None, "metric": "x", "score": 0.1}],
                     id="null-sample-id-in-bulk-insert"),
        pytest.param(run_row("r1", "rag", dag_run_started_at=None), score_rows(4),
                     id="null-started-at-in-final-upsert"),
    ],
)  # fmt: skip
def test_failure_mid_write_keeps_previous_rows_and_no_partial_new_ones(wh, hook, bad_run, bad_scores) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(3, tag="old"))
    before = snapshot(hook)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        wh.write_run(bad_run, bad_scores)
    assert snapshot(hook) == before


class FailingExecutemanyHook:
    """A hook shim whose connections' cursors raise in executemany (after the DELETE has run)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def get_conn(self):
        inner = self.inner.get_conn()

        class Cursor:
            def __init__(self) -> None:
                self._cur = inner.cursor()

            def execute(self, *args):
                return self._cur.execute(*args)

            def executemany(self, *args):
                raise sqlite3.OperationalError("disk I/O error (simulated)")

        class Conn:
            in_transaction = property(lambda self: inner.in_transaction)
            execute, commit, rollback, close = inner.execute, inner.commit, inner.rollback, inner.close

            def cursor(self):
                return Cursor()

        return Conn()


def test_driver_error_during_bulk_insert_rolls_back_the_delete(wh: Warehouse, hook) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(3))
    before = snapshot(hook)
    with pytest.raises(sqlite3.OperationalError, match="simulated"):
        Warehouse(FailingExecutemanyHook(hook), "sqlite").write_run(run_row("r1", "rag", n_samples=99), score_rows(1))
    assert snapshot(hook) == before


# --- validation before any write -------------------------------------------------------------------------------


HOSTILE = ["x'); DROP TABLE eval_score; --", 'r" OR "1"="1', "'; DELETE FROM eval_run WHERE '1'='1",
           "Robert'); --\n\x00?%s"]


def test_hostile_values_are_bound_and_stored_verbatim(wh: Warehouse, hook) -> None:
    """Values are never spliced into SQL: quotes, comments, placeholders and a NUL are stored as data."""
    wh.write_run(run_row("safe", "rag"), score_rows(1))
    for i, text in enumerate(HOSTILE):
        rows = [{"sample_id": text, "metric": "judge", "judge_model": text, "criterion": "correctness",
                 "score": 0.5, "rationale": text, "error": text}]
        wh.write_run(run_row(text, "rag", dataset_version=text, generator_model=text), rows)
        wh.write_run(run_row(text, "rag", dataset_version=text, generator_model=text), rows)  # rewrite: keyed
        assert query(hook, "SELECT sample_id, judge_model, rationale, error FROM eval_score WHERE run_id = ?",
                     (text,)) == [(text, text, text, text)], i
        assert query(hook, "SELECT dataset_version, generator_model FROM eval_run WHERE run_id = ?",
                     (text,)) == [(text, text)]
    assert query(hook, "SELECT COUNT(*) FROM eval_run") == [(1 + len(HOSTILE),)]
    assert query(hook, "SELECT COUNT(*) FROM eval_score WHERE run_id = 'safe'") == [(2,)]



@pytest.mark.parametrize("bad", ["bad-name", "x; DROP TABLE eval_run", "1abc", "a" * 64, "", "naïve", "ok\n"])
def test_invalid_identifiers_are_rejected_naming_them(hook, bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid SQL schema name") as err:
        Warehouse(hook, "postgres", schema=bad)
    assert repr(bad) in str(err.value)
    assert identifier("eval_run") == '"eval_run"' and identifier("_a" + "b" * 61) == '"_a' + "b" * 61 + '"'


def test_bad_configuration_is_a_config_error(hook) -> None:
    with pytest.raises(ConfigError, match="'mysql'"):
        Warehouse(hook, "mysql")
    with pytest.raises(ConfigError, match="sqlite"):
        Warehouse(hook, "sqlite", schema="analytics")


@pytest.mark.parametrize("bad_score", [1.5, -0.01, float("nan"), float("inf"), True, "0.5"])
def test_out_of_range_scores_are_rejected_before_any_write(wh: Warehouse, hook, bad_score) -> None:
    wh.write_run(run_row("r1", "rag"), score_rows(2))
    before = snapshot(hook)
    rows = score_rows(2) + [{"sample_id": "s9", "metric": "judge_score", "judge_model": "j", "score": bad_score}]
    with pytest.raises(ValueError, match=r"outside \[0, 1\]") as err:
        wh.write_run(run_row("r1", "rag", n_samples=42), rows)
    for part in ("'r1'", "'rag'", "'s9'", "'judge_score'"):
        assert part in str(err.value)
    assert snapshot(hook) == before


@pytest.mark.parametrize(
    ("run", "scores", "message"),
    [
        (run_row("r1", "rag", status="done"), [], "status"),
        (run_row("r1", "rag", colour="red"), [], "unknown eval_run columns: colour"),
        (run_row("r1", ""), [], "approach"),
        (run_row("r1", "rag"), [{"sample_id": "s", "metric": "m", "weight": 1}], "unknown eval_score columns"),
        (run_row("r1", "rag"), [{"sample_id": "s", "metric": "m", "approach": "hybrid"}], "given for"),
        (run_row("r1", "rag"), [{"sample_id": "s", "metric": "m"}, {"sample_id": "s", "metric": "m"}], "duplicate"),
    ],
)
def test_malformed_rows_are_rejected(wh: Warehouse, hook, run, scores, message) -> None:
    with pytest.raises(ValueError, match=message):
        wh.write_run(run, scores)
    assert snapshot(hook) == ([], [])


# --- NULL scores and the views ---------------------------------------------------------------------------------


def test_null_scores_are_stored_and_excluded_from_avg(wh: Warehouse, hook) -> None:
    rows = score_rows(2, value=0.8) + [{"sample_id": "s7", "metric": "bertscore_f1", "score": None,
                                        "error": "generation timed out"}]  # fmt: skip
    wh.write_run(run_row("r1", "rag"), rows)
    result = query(hook, "SELECT AVG(score), COUNT(score), COUNT(*) FROM eval_score WHERE metric = 'bertscore_f1'")
    assert result == [(pytest.approx(0.8), 2, 3)]
    assert query(hook, "SELECT judge_model, criterion, error FROM eval_score WHERE score IS NULL") == [
        ("", "", "generation timed out")
    ]


def write_history(wh: Warehouse) -> None:
    """r1 complete; r2 later but partial (hybrid failed); r3 latest and complete, given in another time zone."""
    for approach in APPROACHES:
        wh.write_run(run_row("r1", approach, "2026-11-13T10:00:00+00:00", monthly_cost_usd=10.0), score_rows())
        status = "failed" if approach == "hybrid" else "complete"
        wh.write_run(run_row("r2", approach, "2026-11-20T10:00:00+00:00", status=status), score_rows())
        # 23:30 at UTC-5 is 04:30 UTC on the 28th: later than r2/r1 whatever the offsets in the input.
        wh.write_run(run_row("r3", approach, "2026-11-27T23:30:00-05:00", judge_score_mean=0.25), score_rows())


def test_views_return_one_row_per_approach_of_the_latest_complete_run(wh: Warehouse, hook) -> None:
    write_history(wh)
    latest = query(hook, "SELECT run_id, approach, status FROM v_eval_latest ORDER BY approach")
    assert latest == [("r3", a, "complete") for a in sorted(APPROACHES)]
    assert [c[1] for c in query(hook, "PRAGMA table_info(v_eval_latest)")] == list(RUN_COLUMNS)
    cost = query(hook, "SELECT run_id, approach, monthly_cost_usd, judge_score_mean, bertscore_f1_mean, "
                       "cost_per_quality_point FROM v_cost_quality ORDER BY approach")  # fmt: skip
    assert cost == [("r3", a, 50.0, 0.25, 0.8, pytest.approx(2.0)) for a in sorted(APPROACHES)]
    trend = query(hook, "SELECT run_date, run_id, approach, judge_score_mean, latency_p95_ms FROM v_eval_trend")
    assert [(d, r) for d, r, *_ in trend[::3]] == [("2026-11-13", "r1"), ("2026-11-20", "r2"), ("2026-11-28", "r3")]
    assert len(trend) == 9


def test_a_later_partial_run_does_not_displace_the_latest_complete_one(wh: Warehouse, hook) -> None:
    write_history(wh)
    wh.write_run(run_row("r3", "rag", "2026-11-27T23:30:00-05:00", status="partial"), score_rows())
    assert {r for (r,) in query(hook, "SELECT DISTINCT run_id FROM v_eval_latest")} == {"r1"}
    wh.write_run(run_row("r3", "rag", "2026-11-27T23:30:00-05:00"), score_rows())  # the re-run completes it
    assert query(hook, "SELECT run_id, COUNT(*) FROM v_eval_latest GROUP BY run_id") == [("r3", 3)]


def test_views_are_empty_without_data_and_zero_judge_mean_gives_null_cost_per_point(wh: Warehouse, hook) -> None:
    assert query(hook, "SELECT * FROM v_eval_latest") == []
    wh.write_run(run_row("r1", "rag", judge_score_mean=0.0), [])
    assert query(hook, "SELECT cost_per_quality_point FROM v_cost_quality") == [(None,)]


def test_redshift_statements_drop_check_constraints_only() -> None:
    ddl = (SQL_DIR / "ddl" / "002_eval_score.sql").read_text()
    portable, redshift = split_statements(ddl, "postgres"), split_statements(ddl, "redshift")
    assert len(portable) == len(redshift) == 1
    assert "CHECK" in portable[0] and "CHECK" not in redshift[0] and "PRIMARY KEY" in redshift[0]
    assert "--" not in portable[0]


# --- per-run tables: the paired verdict and judge agreement -----------------------------------------------------

PAIRED = {"metric": "judge_score", "approach_a": "rag", "approach_b": "finetune", "n": 40, "mean_a": 0.8,
          "mean_b": 0.7, "mean_diff": 0.1, "ci95_low": 0.05, "ci95_high": 0.15, "p_value": 0.001, "p_holm": 0.003,
          "significant": True, "winner": "rag", "mde": 0.04, "verdict": "rag better than finetune"}


def test_per_run_rows_are_replaced_as_a_whole(wh: Warehouse, hook) -> None:
    other = {**PAIRED, "metric": "bertscore_f1", "significant": False, "winner": None}
    for _ in range(3):
        assert wh.replace_run_rows("eval_paired", "r1", [PAIRED, other]) == 2
    wh.replace_run_rows("eval_paired", "r2", [PAIRED])
    assert query(hook, "SELECT run_id, COUNT(*) FROM eval_paired GROUP BY run_id ORDER BY run_id") == [("r1", 2),
                                                                                                       ("r2", 1)]
    wh.replace_run_rows("eval_paired", "r1", [PAIRED])  # a rerun with fewer rows removes the stale one
    assert query(hook, "SELECT metric, significant, winner FROM eval_paired WHERE run_id = 'r1'") == [
        ("judge_score", 1, "rag")]
    wh.replace_run_rows("eval_judge_agreement", "r1", [{"criterion": "overall", "judge_models": "a,b", "alpha": 0.7},
                                                       {"criterion": "correctness", "judge_models": "a,b",
                                                        "alpha": None}])
    assert query(hook, "SELECT criterion, alpha FROM eval_judge_agreement ORDER BY criterion") == [
        ("correctness", None), ("overall", 0.7)]


def test_per_run_rows_are_checked_before_any_write(wh: Warehouse, hook) -> None:
    with pytest.raises(ValueError, match="unknown per-run table 'eval_run'"):
        wh.replace_run_rows("eval_run", "r1", [])
    with pytest.raises(ValueError, match="unknown eval_paired columns: winer"):
        wh.replace_run_rows("eval_paired", "r1", [{**PAIRED, "winer": "rag"}])
    with pytest.raises(ValueError, match="eval_paired row of run 'r2' given for run 'r1'"):
        wh.replace_run_rows("eval_paired", "r1", [{**PAIRED, "run_id": "r2"}])
    assert query(hook, "SELECT COUNT(*) FROM eval_paired") == [(0,)]


def test_the_previous_complete_run_and_its_scores_are_read_back(wh: Warehouse) -> None:
    wh.write_run(run_row("old", "rag", started="2026-11-09T06:00:00+00:00"), score_rows(2, 0.75))
    wh.write_run(run_row("partial", "rag", started="2026-11-16T06:00:00+00:00", status="partial"), score_rows(2))
    wh.write_run(run_row("now", "rag", started="2026-11-23T06:00:00+00:00"), score_rows(2, 0.25))
    wh.write_run(run_row("later", "rag", started="2026-11-30T06:00:00+00:00"), score_rows(2))
    assert wh.previous_complete_run("now") == "old"  # not the partial run, not a later one
    assert wh.previous_complete_run("old") is None and wh.previous_complete_run("missing") is None
    scores = wh.run_scores("old", ["bertscore_f1", "judge_score"])  # per-sample metrics only, no judge x criterion
    assert sorted((r["approach"], r["sample_id"], r["bertscore_f1"]) for r in scores) == [
        ("rag", "s0", 0.75), ("rag", "s1", 0.75)]
    assert all("judge_score" not in r for r in scores)

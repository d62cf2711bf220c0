"""Warehouse write: ``Warehouse.write_run`` (the operator's path) against row-by-row INSERTs and COPY.

``n`` ``eval_score`` rows of one run x approach (10 per sample: BERTScore, key-fact match, and 2 judges x 4
criteria with a rationale), as the judge operator hands them over: a list of dicts. Every method writes the same
rows into the same, emptied, table and is timed from those dicts to the commit:

- ours: ``write_run`` through the Airflow hook the operator gets from its connection (``PostgresHook``: psycopg 3;
  ``SqliteHook``: sqlite3); it validates every row, deletes the slice, bulk-inserts, upserts ``eval_run``, commits.
  On PostgreSQL also through a psycopg2 connection (the writer's ``execute_values`` branch), for reference.
- row by row: one ``INSERT`` execute per row, autocommit off, one commit (no validation).
- COPY (PostgreSQL only): psycopg2 ``copy_expert`` of the same rows as CSV, built in the timing (no validation).
- floor (SQLite only): one bare ``executemany`` of the rows as tuples, no validation: what no Python writer beats.

Each method's table content is checked equal afterwards (row count, NULLs, score sum). Fastest of ``repeats``.

PostgreSQL is a throw-away local cluster (``devstack/postgres.py``, fsync off) started by the benchmark and stopped
by its PID at the end, even on failure. Goals (PostgreSQL only): ours >= 10x faster than row by row and at most 3x
COPY's time. SQLite is reported as a comparison without a goal: it is an in-process library with no round trip
per statement, so a row-by-row INSERT costs about what a bulk insert costs per row (the bare ``executemany``
floor, no validation at all, is only ~1.4x row by row): "10x row by row" is not physically reachable there.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

GOAL_VS_ROW_BY_ROW = 10.0
GOAL_VS_COPY = 3.0
RUN_ID, APPROACH = "bench-run", "rag"
JUDGES = ("judge-a", "judge-b")
CRITERIA = ("correctness", "completeness", "faithfulness", "no_hallucination")
RATIONALE = "States the bowl fill and speed range of the reference; omits the interlock. Sample {i}."
CONN_ID = "tailor_bench_warehouse"


def score_rows(n: int) -> list[dict[str, Any]]:
    """``n`` eval_score rows (10 per sample) of RUN_ID/APPROACH, as dicts, like the operator's."""
    rows: list[dict[str, Any]] = []
    i = 0
    while len(rows) < n:
        sample = f"s{i:06d}"
        rows.append({"sample_id": sample, "metric": "bertscore_f1", "score": 0.5 + (i % 50) / 100})
        rows.append({"sample_id": sample, "metric": "key_fact_match", "score": float(i % 2)})
        for judge in JUDGES:
            for k, criterion in enumerate(CRITERIA):
                rows.append({"run_id": RUN_ID, "approach": APPROACH, "sample_id": sample, "metric": "judge",
                             "judge_model": judge, "criterion": criterion, "score": ((i + k) % 5) / 4,
                             "rationale": RATIONALE.format(i=i), "error": None})
        i += 1
    return rows[:n]


def run_row() -> dict[str, Any]:
    return {"run_id": RUN_ID, "approach": APPROACH, "dag_run_started_at": "2026-11-24T10:00:00+00:00",
            "n_samples": 1, "n_scored": 1, "n_errors": 0, "status": "complete"}


def as_tuples(rows: Sequence[dict[str, Any]]) -> list[tuple]:
    """The rows as SCORE_COLUMNS tuples, defaults filled, nothing validated (what the baselines insert)."""
    return [(RUN_ID, APPROACH, r["sample_id"], r["metric"], r.get("judge_model", ""), r.get("criterion", ""),
             r.get("score"), r.get("rationale"), r.get("error")) for r in rows]


def _best(repeats: int, prepare: Callable[[], object], fn: Callable[[], object]) -> float:
    """Fastest of ``repeats`` timed ``fn()`` calls, each after an untimed ``prepare()`` (emptying the table)."""
    best = float("inf")
    for _ in range(repeats):
        prepare()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class Result:
    database: str
    method: str
    rows: int  # rows written in the timed run
    seconds: float  # for ``rows``
    scaled_from: int | None = None  # row by row on a subset: seconds are scaled linearly to ``rows``

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _airflow_home() -> None:
    """A project-local Airflow home (as ``make bench`` sets) when run on its own: hooks import Airflow."""
    if "AIRFLOW_HOME" not in os.environ:
        from devstack.stack import REPO, airflow_env

        os.environ.update(airflow_env(REPO / ".airflow"))


def _row_by_row(conn: Any, mark: str, table: str, tuples: list[tuple]) -> None:
    from tailor.warehouse import SCORE_COLUMNS

    sql = f"INSERT INTO {table} ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join([mark] * len(SCORE_COLUMNS))})"
    cur = conn.cursor()
    for row in tuples:
        cur.execute(sql, row)
    conn.commit()


def _check(conn: Any, table: str, expected: tuple) -> tuple:
    """(rows, non-NULL rationales, '' judge models, rounded score sum) of the table: every method wrote the same."""
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*), COUNT(rationale), SUM(CASE WHEN judge_model = '' THEN 1 ELSE 0 END), "
                f"ROUND(CAST(SUM(score) AS NUMERIC), 3) FROM {table}")
    found = tuple(float(v) if v is not None else None for v in cur.fetchone())
    if expected and found != expected:
        raise AssertionError(f"{table} holds {found}, expected {expected}")
    return found


def bench_sqlite(rows: Sequence[dict], row_by_row_rows: int | None = None, repeats: int = 2) -> list[Result]:
    """Ours (SqliteHook) vs row by row (sqlite3, one transaction) on a temp database file."""
    _airflow_home()
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    from tailor.warehouse import SCORE_COLUMNS, Warehouse

    subset = list(rows[: row_by_row_rows or len(rows)])
    insert = f"INSERT INTO eval_score ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join(['?'] * len(SCORE_COLUMNS))})"
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as tmp:
        path = Path(tmp) / "wh.db"
        with _env(f"AIRFLOW_CONN_{CONN_ID.upper()}", "sqlite://" + quote(str(path), safe="")):
            warehouse = Warehouse(SqliteHook(sqlite_conn_id=CONN_ID), "sqlite")
            warehouse.ensure_schema()
            conn = sqlite3.connect(path)
            try:
                def empty() -> None:
                    conn.execute("DELETE FROM eval_score")
                    conn.commit()

                ours = _best(repeats, empty, lambda: warehouse.write_run(run_row(), rows))
                expected = _check(conn, "eval_score", ())

                def row_by_row() -> None:
                    conn.execute("BEGIN")
                    _row_by_row(conn, "?", "eval_score", as_tuples(subset))

                slow = _best(repeats, empty, row_by_row)
                if len(subset) == len(rows):
                    _check(conn, "eval_score", expected)

                def bare() -> None:
                    conn.execute("BEGIN")
                    conn.executemany(insert, as_tuples(rows))
                    conn.commit()

                floor = _best(repeats, empty, bare)
                _check(conn, "eval_score", expected)
            finally:
                conn.close()
    scaled = None if len(subset) == len(rows) else len(subset)
    return [Result("SQLite", "ours: `write_run` via SqliteHook (validation + executemany)", len(rows), ours),
            Result("SQLite", "row by row: one INSERT per row, one commit", len(rows),
                   slow * len(rows) / len(subset), scaled),
            Result("SQLite", "floor: bare executemany of the tuples, no validation, one commit", len(rows), floor)]


def bench_postgres(rows: Sequence[dict], row_by_row_rows: int | None = None, repeats: int = 2,
                   timings: dict[str, float] | None = None) -> list[Result]:
    """Ours (PostgresHook, and a psycopg2 connection) vs row by row vs COPY, on a throw-away local cluster."""
    _airflow_home()
    import psycopg2
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from devstack.postgres import throwaway_postgres
    from tailor.warehouse import SCORE_COLUMNS, Warehouse

    class Psycopg2Hook:
        def __init__(self, dsn: str) -> None:
            self.dsn = dsn

        def get_conn(self) -> Any:
            return psycopg2.connect(self.dsn)

    schema = "bench"
    table = f"{schema}.eval_score"
    subset = list(rows[: row_by_row_rows or len(rows)])
    with throwaway_postgres(timings) as server, _env(f"AIRFLOW_CONN_{CONN_ID.upper()}", server.uri):
        hook = PostgresHook(postgres_conn_id=CONN_ID)
        Warehouse(hook, "postgres", schema=schema).ensure_schema()
        conn = psycopg2.connect(server.uri)
        try:
            def empty() -> None:
                conn.cursor().execute(f"TRUNCATE {table}")
                conn.commit()

            def ours(via: Any) -> float:
                warehouse = Warehouse(via, "postgres", schema=schema)
                return _best(repeats, empty, lambda: warehouse.write_run(run_row(), rows))

            ours_hook = ours(hook)
            expected = _check(conn, table, ())
            ours_psycopg2 = ours(Psycopg2Hook(server.uri))
            _check(conn, table, expected)

            slow = _best(repeats, empty, lambda: _row_by_row(conn, "%s", table, as_tuples(subset)))
            if len(subset) == len(rows):
                _check(conn, table, expected)

            def copy() -> None:
                buffer = io.StringIO()
                csv.writer(buffer).writerows(as_tuples(rows))
                buffer.seek(0)
                conn.cursor().copy_expert(f"COPY {table} ({', '.join(SCORE_COLUMNS)}) FROM STDIN WITH (FORMAT csv, "
                                          "FORCE_NOT_NULL (judge_model, criterion))", buffer)
                conn.commit()

            copied = _best(repeats, empty, copy)
            _check(conn, table, expected)
        finally:
            conn.close()
    return [Result("PostgreSQL", "ours: `write_run` via PostgresHook (psycopg 3: validation + COPY)", len(rows),
                   ours_hook),
            Result("PostgreSQL", "ours: `write_run` via a psycopg2 connection (validation + execute_values)",
                   len(rows), ours_psycopg2),
            Result("PostgreSQL", "row by row: one INSERT per row (psycopg2), one commit", len(rows),
                   slow * len(rows) / len(subset), None if len(subset) == len(rows) else len(subset)),
            Result("PostgreSQL", "COPY: psycopg2 `copy_expert` of the tuples as CSV, one commit", len(rows), copied)]


def measure(n_rows: int = 100_000, row_by_row_rows: int | None = None, postgres: bool = True, repeats: int = 2,
            timings: dict[str, float] | None = None) -> list[Result]:
    """Results on SQLite, then (``postgres``) on a throw-away PostgreSQL; row by row on ``row_by_row_rows``."""
    rows = score_rows(n_rows)
    results = bench_sqlite(rows, row_by_row_rows, repeats)
    if postgres:
        results += bench_postgres(rows, row_by_row_rows, repeats, timings)
    return results


@dataclass(frozen=True)
class Verdict:
    database: str
    vs_row_by_row: float  # ours: x faster than row by row
    reference_vs_row_by_row: float  # the fastest baseline (COPY, or SQLite's bare executemany): x faster
    vs_copy: float | None  # ours' time / COPY's time (PostgreSQL)

    @property
    def has_goal(self) -> bool:
        """Only PostgreSQL (a server: one round trip per row-by-row INSERT) has the issue's goals."""
        return self.database == "PostgreSQL"

    @property
    def met(self) -> bool:
        if not self.has_goal:
            return True
        return self.vs_row_by_row >= GOAL_VS_ROW_BY_ROW and (self.vs_copy is None or self.vs_copy <= GOAL_VS_COPY)

    def lines(self) -> list[str]:
        reference = "COPY" if self.vs_copy is not None else "the bare executemany floor"
        if not self.has_goal:
            return [f"- {self.database} (comparison, no goal): speed-up of ours over row by row "
                    f"**{self.vs_row_by_row:.1f}x**; {reference}'s speed-up over row by row: "
                    f"{self.reference_vs_row_by_row:.1f}x (ours / floor time: "
                    f"{self.reference_vs_row_by_row / self.vs_row_by_row:.2f})."]
        fast = "met" if self.vs_row_by_row >= GOAL_VS_ROW_BY_ROW else "MISSED"
        found = [f"- {self.database}: speed-up of ours over row by row **{self.vs_row_by_row:.1f}x** (goal >= "
                 f"{GOAL_VS_ROW_BY_ROW:g}x): {fast}. For reference, {reference}'s speed-up over row by row: "
                 f"{self.reference_vs_row_by_row:.1f}x."]
        if self.vs_copy is not None:
            found.append(f"- {self.database}: ours takes **{self.vs_copy:.2f}x** COPY's time (goal <= "
                         f"{GOAL_VS_COPY:g}x): {'met' if self.vs_copy <= GOAL_VS_COPY else 'MISSED'}.")
        return found


def verdicts(results: Sequence[Result]) -> list[Verdict]:
    """One Verdict per database of the results (ours = its first "ours" row: through the operator's hook)."""
    found = []
    for database in dict.fromkeys(r.database for r in results):
        rows = [r for r in results if r.database == database]
        ours = next(r for r in rows if r.method.startswith("ours"))
        slow = next(r for r in rows if r.method.startswith("row by row"))
        copy = next((r for r in rows if r.method.startswith("COPY")), None)
        reference = copy or next(r for r in rows if r.method.startswith("floor"))
        found.append(Verdict(database, slow.seconds / ours.seconds, slow.seconds / reference.seconds,
                             None if copy is None else ours.seconds / copy.seconds))
    return found


def table(results: Sequence[Result]) -> str:
    lines = ["| database | method | rows | seconds | rows/s |", "|---|---|---|---|---|"]
    for r in results:
        note = f" (timed on {r.scaled_from:,} rows, scaled x{r.rows / r.scaled_from:g})" if r.scaled_from else ""
        lines.append(f"| {r.database} | {r.method}{note} | {r.rows:,} | {r.seconds:.2f} | {r.rows_per_s:,.0f} |")
    return "\n".join(lines)


def _save(results: Sequence[Result]) -> None:
    """The operator's path's rows/s per database, for the "scale on paper" section."""
    import json
    from pathlib import Path

    ours = {r.database: r.rows_per_s for r in results if r.method.startswith("ours")}
    path = Path(__file__).resolve().parents[1] / "out" / "bench" / "warehouse.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"postgres_rows_per_s": ours.get("PostgreSQL"), "sqlite_rows_per_s": ours.get("SQLite"),
                                "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))


def missed_reason(verdict: Verdict) -> list[str]:
    """Why PostgreSQL's 10x goal is missed (when it is), with the measured figures, and the next step."""
    if verdict.vs_row_by_row >= GOAL_VS_ROW_BY_ROW:
        return []
    return [
        "",
        f"Why the PostgreSQL 10x goal is MISSED: on 127.0.0.1 a row-by-row INSERT pays only a loopback round trip "
        "(tens of microseconds) plus the server's own work on the row (heap, primary-key index, CHECK), which COPY "
        f"pays too: COPY itself is only {verdict.reference_vs_row_by_row:.1f}x row by row here, and ours is "
        f"{'faster than' if verdict.vs_copy and verdict.vs_copy < 1 else 'close to'} that COPY baseline "
        f"({verdict.vs_copy:.2f}x its time). No client can beat COPY by much, so 10x row by row is out of reach on a "
        "loopback connection. Over a real network every row-by-row INSERT pays a network round trip (~0.5-1 ms in "
        "one AWS region) that COPY pays once, so the ratio grows there; that was not measured. Next step: measure "
        "against a PostgreSQL across a network (e.g. RDS from the Airflow worker's subnet) before changing code.",
    ]


def run(n_rows: int = 100_000, row_by_row_rows: int | None = None, repeats: int = 2) -> tuple[str, bool]:
    """Return (markdown section, goal met)."""
    timings: dict[str, float] = {}
    results = measure(n_rows, row_by_row_rows, repeats=repeats, timings=timings)
    found = verdicts(results)
    lines = [line for verdict in found for line in verdict.lines()]
    ok = all(verdict.met for verdict in found)
    postgres = next((v for v in found if v.has_goal), None)
    _save(results)
    text = "\n".join([
        "## Warehouse write: ours vs row-by-row INSERT vs COPY",
        f"{n_rows:,} `eval_score` rows of one run x approach, from the list of dicts the operator builds to the "
        "commit, into the same emptied table each time; ours includes its per-row validation, the baselines "
        "validate nothing. PostgreSQL: a throw-away local cluster on 127.0.0.1 (fsync off) started by the benchmark "
        f"(initdb {timings.get('initdb_s', 0):.1f} s, start {timings.get('start_s', 0):.1f} s, not timed). "
        f"Fastest of {repeats} runs each. Goals (PostgreSQL, the production warehouse's kind): ours >= "
        f"{GOAL_VS_ROW_BY_ROW:g}x row by row and <= {GOAL_VS_COPY:g}x COPY's time. SQLite is a comparison without a "
        "goal: an in-process library has no round trip per statement, so a row-by-row INSERT costs about what a "
        "bulk insert costs per row, and even the bare `executemany` floor (no validation at all) is only a little "
        "faster than row by row: a 10x goal is not physically reachable there.",
        "",
        table(results),
        "",
        *lines,
        *(missed_reason(postgres) if postgres else []),
    ])
    return text, ok

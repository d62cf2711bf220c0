"""The evaluation warehouse writer: idempotent keyed replace of one run x approach (DESIGN.md §3).

Works over anything with ``get_conn()`` returning a DB-API connection (an Airflow ``DbApiHook`` such as
``SqliteHook``/``PostgresHook``/``RedshiftSQLHook``, or a shim), so this module imports no Airflow. One
``write_run`` is one transaction: delete the run x approach's ``eval_score`` rows, bulk-insert the new ones,
upsert its ``eval_run`` row last; any error rolls everything back. Values are always bound as parameters;
the only SQL text built here is from module constants and identifiers checked against ``IDENTIFIER``.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tailor.exceptions import ConfigError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"  # repo (or image: /opt/airflow) sql/, beside include/
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DIALECTS = ("sqlite", "postgres", "redshift")
STATUSES = ("complete", "partial", "failed")
RUN_TABLE, SCORE_TABLE = "eval_run", "eval_score"
RUN_KEY = ("run_id", "approach")
RUN_COLUMNS = RUN_KEY + (
    "dag_run_started_at", "n_samples", "n_scored", "n_errors",
    "bertscore_f1_mean", "bertscore_f1_std", "bertscore_f1_ci95_low", "bertscore_f1_ci95_high",
    "judge_score_mean", "judge_score_std", "judge_score_ci95_low", "judge_score_ci95_high",
    "key_fact_match", "retrieval_hit_rate", "latency_p50_ms", "latency_p95_ms", "monthly_cost_usd", "run_cost_usd",
    "dataset_version", "prompt_version", "generator_model", "judge_models", "status", "written_at",
)  # fmt: skip
SCORE_KEY = RUN_KEY + ("sample_id", "metric", "judge_model", "criterion")
SCORE_COLUMNS = SCORE_KEY + ("score", "rationale", "error")
_SCORE_COLUMN_SET = frozenset(SCORE_COLUMNS)
#: Per-run tables replaced as a whole (delete the run's rows, insert the new ones): their columns, in DDL order.
RUN_TABLES = {
    "eval_paired": ("run_id", "metric", "approach_a", "approach_b", "n", "mean_a", "mean_b", "mean_diff", "ci95_low",
                    "ci95_high", "p_value", "p_holm", "significant", "winner", "mde", "verdict"),
    "eval_judge_agreement": ("run_id", "criterion", "judge_models", "alpha"),
    "eval_judge_calibration": ("run_id", "judge_model", "criterion", "prompt_version", "golden_digest", "alpha",
                               "mae", "n"),
    "eval_finding": ("run_id", "seq", "kind", "approach", "metric", "delta", "ci95_low", "ci95_high", "message"),
}
TIMESTAMP_COLUMNS = ("dag_run_started_at", "written_at")
TEXT_CAP = 16_000  # chars; x4 UTF-8 bytes still fits Redshift's VARCHAR(65535) (a byte limit)
PAGE_SIZE = 1000
REDSHIFT_SKIP = "redshift:skip"  # DDL lines so tagged are dropped for Redshift (e.g. CHECK constraints)


class ConnectionHook(Protocol):
    """What the writer needs from an Airflow DbApiHook: a fresh DB-API connection per call."""

    def get_conn(self) -> Any: ...


def identifier(name: str, what: str = "identifier") -> str:
    """``name`` double-quoted, after checking it is a plain SQL identifier; ConfigError naming it otherwise."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ConfigError(f"invalid SQL {what} {name!r}: must match {IDENTIFIER.pattern}")
    return f'"{name}"'


def split_statements(sql: str, dialect: str) -> list[str]:
    """Statements of a DDL/view file: ``--`` comments stripped (files must not put ``--``/``;`` in literals)."""
    lines = [ln for ln in sql.splitlines() if not (dialect == "redshift" and REDSHIFT_SKIP in ln)]
    text = "\n".join(ln.split("--", 1)[0].rstrip() for ln in lines)
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def _timestamp(value: Any, column: str, dialect: str) -> Any:
    """UTC timestamp: a fixed-width ISO string for SQLite (sorts chronologically), a datetime elsewhere."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"{column} must be a datetime or ISO-8601 string, got {value!r}")
    u = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if dialect == "sqlite":
        return u.strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=UTC)


def _where(run_id: str, approach: str, sample_id: Any, metric: Any) -> str:
    return f"run {run_id!r} approach {approach!r} sample {sample_id!r} metric {metric!r}"


def _cap(text: Any) -> Any:
    suffix = " …[truncated]"
    return text[: TEXT_CAP - len(suffix)] + suffix if isinstance(text, str) and len(text) > TEXT_CAP else text


class Warehouse:
    """Writer for ``eval_run``/``eval_score`` on 'sqlite', 'postgres' or 'redshift' (optionally in ``schema``)."""

    def __init__(self, hook: ConnectionHook, dialect: str, schema: str | None = None, sql_dir: Path | None = None):
        if dialect not in DIALECTS:
            raise ConfigError(f"unknown warehouse dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
        if schema is not None:
            identifier(schema, "schema name")
            if dialect == "sqlite":
                raise ConfigError(f"schema {schema!r} given for sqlite, which has none: use another database file")
        self.hook, self.dialect, self.schema = hook, dialect, schema
        self.sql_dir = Path(sql_dir) if sql_dir else SQL_DIR
        self.mark = "?" if dialect == "sqlite" else "%s"
        self.run_table, self.score_table = identifier(RUN_TABLE, "table name"), identifier(SCORE_TABLE, "table name")

    # --- transactions --------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, create_schema: bool = False) -> Iterator[Any]:
        """A cursor inside ONE transaction on a fresh connection: commit on success, rollback on any error."""
        conn = self.hook.get_conn()
        try:
            if self.dialect == "sqlite":
                if not conn.in_transaction:
                    conn.execute("BEGIN")
            elif getattr(conn, "autocommit", False):
                conn.autocommit = False
            cur = conn.cursor()
            if self.schema is not None:
                if create_schema:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(self.schema)}")
                cur.execute(f"SET search_path TO {identifier(self.schema)}")
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def ensure_schema(self) -> list[Path]:
        """Create tables (sql/ddl/*.sql) and recreate views (sql/views/*.sql), in file-name order; return the files."""
        files = sorted((self.sql_dir / "ddl").glob("*.sql")) + sorted((self.sql_dir / "views").glob("*.sql"))
        if not files:
            raise ConfigError(f"no DDL/view files under {self.sql_dir}")
        with self._transaction(create_schema=True) as cur:
            for path in files:
                for statement in split_statements(path.read_text(encoding="utf-8"), self.dialect):
                    cur.execute(statement)
        return files

    # --- validation (before any write) ---------------------------------------------------------------------------

    def _run_values(self, run_row: Mapping[str, Any]) -> tuple[Any, ...]:
        unknown = sorted(set(run_row) - set(RUN_COLUMNS))
        if unknown:
            raise ValueError(f"unknown eval_run columns: {', '.join(unknown)}")
        row = {"written_at": datetime.now(UTC), **run_row}
        for key in RUN_KEY:
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"eval_run.{key} must be a non-empty string, got {row.get(key)!r}")
        if row.get("status") not in STATUSES:
            raise ValueError(f"eval_run.status must be one of {STATUSES}, got {row.get('status')!r} "
                             f"(run {row['run_id']!r}, approach {row['approach']!r})")  # fmt: skip
        for column in TIMESTAMP_COLUMNS:
            row[column] = _timestamp(row.get(column), column, self.dialect)
        return tuple(row.get(column) for column in RUN_COLUMNS)

    def _score_values(self, run_id: str, approach: str, score_rows: Sequence[Mapping[str, Any]]) -> list[tuple]:
        """SCORE_COLUMNS tuples of the rows, validated. Hot path (~10^5 rows a run): no per-row temporaries."""
        values, seen = [], set()
        for raw in score_rows:
            if not _SCORE_COLUMN_SET.issuperset(raw):
                raise ValueError(f"unknown eval_score columns: {', '.join(sorted(set(raw) - _SCORE_COLUMN_SET))}")
            get = raw.get
            sample_id, metric = get("sample_id"), get("metric")
            row_run, row_approach = get("run_id", run_id), get("approach", approach)
            if row_run != run_id or row_approach != approach:
                where = _where(run_id, approach, sample_id, metric)
                raise ValueError(f"score row of run {row_run!r} approach {row_approach!r} given for {where}")
            score = get("score")
            if score is not None:
                real = type(score) is float or (not isinstance(score, bool) and isinstance(score, numbers.Real))
                if not real or not 0.0 <= float(score) <= 1.0:
                    where = _where(run_id, approach, sample_id, metric)
                    raise ValueError(f"score {score!r} outside [0, 1] for {where}")
                score = float(score)
            key = (run_id, approach, sample_id, metric, get("judge_model") or "", get("criterion") or "")
            if key in seen:
                raise ValueError(f"duplicate score key {key!r}")
            seen.add(key)
            values.append((*key, score, _cap(get("rationale")), _cap(get("error"))))
        return values

    # --- the write -----------------------------------------------------------------------------------------------

    def write_run(self, run_row: Mapping[str, Any], score_rows: Sequence[Mapping[str, Any]]) -> int:
        """Replace one run x approach (its scores, then its eval_run row) atomically; return the score rows written."""
        run = self._run_values(run_row)
        scores = self._score_values(run[0], run[1], score_rows)
        with self._transaction() as cur:
            if self.dialect == "redshift":
                self._write_redshift(cur, run, scores)
            else:
                key = f"run_id = {self.mark} AND approach = {self.mark}"
                cur.execute(f"DELETE FROM {self.score_table} WHERE {key}", run[:2])
                self._insert(cur, self.score_table, scores)
                cur.execute(self._upsert_sql(), run)
        return len(scores)

    def replace_run_rows(self, table: str, run_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Replace the rows of ``run_id`` in one of :data:`RUN_TABLES` atomically; return the rows written."""
        if table not in RUN_TABLES:
            raise ValueError(f"unknown per-run table {table!r}: expected one of {', '.join(RUN_TABLES)}")
        columns = RUN_TABLES[table]
        values = []
        for row in rows:
            unknown = sorted(set(row) - set(columns))
            if unknown:
                raise ValueError(f"unknown {table} columns: {', '.join(unknown)}")
            if row.get("run_id", run_id) != run_id:
                raise ValueError(f"{table} row of run {row.get('run_id')!r} given for run {run_id!r}")
            values.append(tuple(run_id if c == "run_id" else _cap(row.get(c)) for c in columns))
        name = identifier(table, "table name")
        with self._transaction() as cur:
            cur.execute(f"DELETE FROM {name} WHERE run_id = {self.mark}", (run_id,))
            self._insert(cur, name, values, columns)
        return len(values)

    # --- reads (parameterised) ------------------------------------------------------------------------------------

    def previous_complete_run(self, run_id: str) -> str | None:
        """The latest run started before ``run_id`` in which every approach is 'complete' (None: there is none)."""
        sql = (f"SELECT run_id FROM {self.run_table} WHERE run_id <> {self.mark} "
               f"AND dag_run_started_at < (SELECT MIN(dag_run_started_at) FROM {self.run_table} WHERE run_id = "
               f"{self.mark}) GROUP BY run_id HAVING SUM(CASE WHEN status = 'complete' THEN 0 ELSE 1 END) = 0 "
               "ORDER BY MAX(dag_run_started_at) DESC, run_id DESC LIMIT 1")  # fmt: skip
        with self._transaction() as cur:
            cur.execute(sql, (run_id, run_id))
            found = cur.fetchone()
        return found[0] if found else None

    def run_scores(self, run_id: str, metrics: Sequence[str]) -> list[dict[str, Any]]:
        """The per-sample records of a run rebuilt from its ``eval_score`` rows of ``metrics`` (no judge x criterion
        rows): ``{approach, sample_id, error, <metric>: score}``, as :mod:`tailor.metrics.paired` reads them."""
        marks = ", ".join([self.mark] * len(metrics))
        sql = (f"SELECT approach, sample_id, metric, score, error FROM {self.score_table} WHERE run_id = {self.mark} "
               f"AND judge_model = '' AND criterion = '' AND metric IN ({marks})")  # fmt: skip
        records: dict[tuple[str, str], dict[str, Any]] = {}
        with self._transaction() as cur:
            cur.execute(sql, (run_id, *metrics))
            for approach, sample_id, metric, score, error in cur.fetchall():
                record = records.setdefault((approach, sample_id), {"approach": approach, "sample_id": sample_id,
                                                                    "error": error})
                record[metric] = score
        return list(records.values())

    def _insert(self, cur: Any, table: str, rows: list[tuple], column_names: Sequence[str] = SCORE_COLUMNS,
                       ) -> None:
        if not rows:
            return
        columns = ", ".join(column_names)
        driver = type(cur).__module__.split(".")[0]
        if driver == "psycopg" and self.dialect == "postgres":  # PostgresHook's default with SQLAlchemy 2
            # COPY FROM STDIN: rows streamed and adapted in C, ~5x executemany (benchmarks/warehouse_upsert.py)
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif driver == "psycopg2":
            from psycopg2.extras import execute_values

            execute_values(cur, f"INSERT INTO {table} ({columns}) VALUES %s", rows, page_size=PAGE_SIZE)
        elif self.dialect == "redshift":  # multi-row VALUES pages: redshift_connector's executemany is row by row
            row_marks = "(" + ", ".join([self.mark] * len(column_names)) + ")"
            for start in range(0, len(rows), PAGE_SIZE):
                page = rows[start : start + PAGE_SIZE]
                sql = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([row_marks] * len(page))
                cur.execute(sql, [value for row in page for value in row])
        else:  # sqlite3 (in-process, no round trips: executemany is its bulk path) and any other driver
            marks = ", ".join([self.mark] * len(column_names))
            cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def _upsert_sql(self) -> str:
        columns, marks = ", ".join(RUN_COLUMNS), ", ".join([self.mark] * len(RUN_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c not in RUN_KEY)
        return (f"INSERT INTO {self.run_table} ({columns}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(RUN_KEY)}) DO UPDATE SET {updates}")  # fmt: skip

    def _write_redshift(self, cur: Any, run: tuple, scores: list[tuple]) -> None:
        """Redshift: stage in temp tables, replace the score slice, MERGE the eval_run row (PKs aren't enforced)."""
        stage_score, stage_run = identifier("stage_eval_score"), identifier("stage_eval_run")
        cur.execute(f"CREATE TEMP TABLE {stage_score} (LIKE {self.score_table})")
        cur.execute(f"CREATE TEMP TABLE {stage_run} (LIKE {self.run_table})")
        self._insert(cur, stage_score, scores)
        cur.execute(f"DELETE FROM {self.score_table} WHERE run_id = %s AND approach = %s", run[:2])
        cur.execute(f"INSERT INTO {self.score_table} ({', '.join(SCORE_COLUMNS)}) "
                    f"SELECT {', '.join(SCORE_COLUMNS)} FROM {stage_score}")  # fmt: skip
        marks = ", ".join([self.mark] * len(RUN_COLUMNS))
        cur.execute(f"INSERT INTO {stage_run} ({', '.join(RUN_COLUMNS)}) VALUES ({marks})", run)
        on = " AND ".join(f"{self.run_table}.{c} = s.{c}" for c in RUN_KEY)
        updates = ", ".join(f"{c} = s.{c}" for c in RUN_COLUMNS if c not in RUN_KEY)
        cur.execute(f"MERGE INTO {self.run_table} USING {stage_run} s ON {on} "
                    f"WHEN MATCHED THEN UPDATE SET {updates} "
                    f"WHEN NOT MATCHED THEN INSERT ({', '.join(RUN_COLUMNS)}) "
                    f"VALUES ({', '.join('s.' + c for c in RUN_COLUMNS)})")  # fmt: skip
        cur.execute(f"DROP TABLE {stage_score}")
        cur.execute(f"DROP TABLE {stage_run}")

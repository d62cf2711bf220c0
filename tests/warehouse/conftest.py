"""A throw-away PostgreSQL cluster for the warehouse tests, started and stopped by the test session itself.

The server code lives in ``devstack/postgres.py`` (shared with ``benchmarks/warehouse_upsert.py``): binaries found
or installed with apt-get as root, a temp data directory, a free 127.0.0.1 port, stopped by its PID at the end of
the session even when tests fail. If it cannot be started the tests FAIL (never skip) with the reason and how to
fix it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from devstack.postgres import HOW_TO_FIX, PostgresServer, throwaway_postgres

PG_CONN_ID = "tailor_warehouse_pg"
_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start the cluster once per session; stop it by PID and delete its files afterwards, whatever happened."""
    started = time.monotonic()
    with ExitStack() as stack:
        error = None
        try:
            server = stack.enter_context(throwaway_postgres(_TIMINGS))
        except Exception as exc:  # noqa: BLE001 - any reason to not have a server is a test failure, with a fix
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:  # outside the except block: one clear message, no chained traceback
            pytest.fail(f"PostgreSQL could not be started for the warehouse tests: {error}\n{HOW_TO_FIX}",
                        pytrace=False)
        _TIMINGS["fixture_total_s"] = time.monotonic() - started
        yield server


@pytest.fixture(scope="session")
def postgres_hook(postgres_server: PostgresServer) -> Iterator[object]:
    """An Airflow PostgresHook on the throw-away cluster, its connection given as AIRFLOW_CONN_<ID> (a URI)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(f"AIRFLOW_CONN_{PG_CONN_ID.upper()}", postgres_server.uri)
        yield PostgresHook(postgres_conn_id=PG_CONN_ID)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS:
        parts = ", ".join(f"{k}={v:.2f}" for k, v in _TIMINGS.items())
        terminalreporter.write_line(f"throw-away PostgreSQL fixture: {parts}")

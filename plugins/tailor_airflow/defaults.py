"""Defaults every DAG of the package shares (parse-time safe: environment only)."""

from __future__ import annotations

import pendulum

from tailor.config import parse_time_setting

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    # Cloud calls are flaky; 60 s by default. The local stack sets TAILOR__AIRFLOW__RETRY_DELAY_SECONDS=1.
    "retry_delay": pendulum.duration(seconds=parse_time_setting("airflow", "retry_delay_seconds", 60)),
    "retry_exponential_backoff": True,
}

"""Defaults every DAG of the package shares (parse-time safe: environment only)."""

from __future__ import annotations

import os

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

#: Airflow connection of the results warehouse (SQLite file locally; Postgres or Redshift in production).
WAREHOUSE_CONN_ID = "tailor_warehouse"
#: Judges from three model families other than the generator's (Llama), as the seed used three; override the
#: default with TAILOR__EVALUATION__JUDGE_MODELS (comma-separated) or per run with the judge_models Param.
JUDGE_MODELS = [m.strip() for m in os.environ.get(
    "TAILOR__EVALUATION__JUDGE_MODELS",
    "anthropic.claude-3-5-haiku-20241022-v1:0,mistral.mistral-large-2407-v1:0,amazon.nova-pro-v1:0",
).split(",") if m.strip()]

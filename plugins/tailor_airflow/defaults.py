"""Defaults every DAG of the package shares (parse-time safe: environment only, tailor.config's parse-time settings)."""

from __future__ import annotations

import pendulum

from tailor.config import DEFAULT_JUDGE_MODELS, parse_time_setting

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    # Cloud calls are flaky; 60 s by default. The local stack sets TAILOR__AIRFLOW__RETRY_DELAY_SECONDS=1.
    "retry_delay": pendulum.duration(seconds=parse_time_setting("airflow", "retry_delay_seconds")),
    "retry_exponential_backoff": True,
}

#: Airflow connection of the results warehouse (SQLite file locally; Postgres or Redshift in production).
WAREHOUSE_CONN_ID = "tailor_warehouse"
#: The judges of the judge_models Param's default: TAILOR__EVALUATION__JUDGE_MODELS (comma-separated), else
#: tailor.config.DEFAULT_JUDGE_MODELS (three model families other than the generator's; see there).
JUDGE_MODELS = list(parse_time_setting("evaluation", "judge_models"))
__all__ = ["DEFAULT_ARGS", "DEFAULT_JUDGE_MODELS", "JUDGE_MODELS", "START_DATE", "WAREHOUSE_CONN_ID"]

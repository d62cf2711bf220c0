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
#: Judges from three model families other than the generator's (Meta Llama), each Active and invocable in us-east-1
#: (the runbook's region) as of 2026-11: Amazon Nova Pro (bare id), Anthropic Claude Haiku 4.5 and DeepSeek-R1
#: (inference profiles: AWS serves them there only so). Nova and Claude take a forced tool call; DeepSeek-R1 has no
#: tool use through Converse and answers in JSON text (tailor.model_access.tool_choice). Override the default with
#: TAILOR__EVALUATION__JUDGE_MODELS (comma-separated) or per run with the judge_models Param; weekly_evaluation
#: checks every judge's lifecycle and access (GetFoundationModel) before the first model call.
DEFAULT_JUDGE_MODELS = ("amazon.nova-pro-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "us.deepseek.r1-v1:0")
JUDGE_MODELS = [m.strip() for m in os.environ.get(
    "TAILOR__EVALUATION__JUDGE_MODELS", ",".join(DEFAULT_JUDGE_MODELS)).split(",") if m.strip()]

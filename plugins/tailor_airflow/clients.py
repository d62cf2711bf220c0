"""Task-time access to the settings and AWS clients (never called at DAG parse time)."""

from __future__ import annotations

from typing import Any


def settings_and_s3() -> tuple[Any, Any]:
    """The bake-off settings and an S3 client on the configured Airflow AWS connection."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tailor.config import settings

    cfg = settings()
    return cfg, S3Hook(aws_conn_id=cfg.aws.conn_id).get_conn()


def retrying_config(max_pool_connections: int, **options: Any) -> Any:
    """The botocore config of every model-calling client: adaptive retries (throttling backs off), 6 attempts."""
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 6}, max_pool_connections=max_pool_connections,
                  **options)

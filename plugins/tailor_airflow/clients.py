"""Task-time access to the settings and AWS clients (never called at DAG parse time)."""

from __future__ import annotations

from typing import Any

#: The champion pointer ``promote`` writes (the ``finetuned-model`` asset's URI): which job, config and method serve.
CHAMPION_KEY = "finetune/champion.json"


def settings_and_s3() -> tuple[Any, Any]:
    """The bake-off settings and an S3 client on the configured Airflow AWS connection."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tailor.config import settings

    cfg = settings()
    return cfg, S3Hook(aws_conn_id=cfg.aws.conn_id).get_conn()


def champion_method(cfg: Any, s3: Any) -> str:
    """The fine-tuning method of the model the champion endpoint serves, so it is prompted as it was trained:
    ``champion.json``'s ``method``; without a pointer (or one written before it recorded the method), the
    configured ``finetune.method``. A pointer that cannot be read for another reason (AccessDenied) raises."""
    import json

    from tailor.aws_errors import describe_or_none
    from tailor.prompts import served_method

    found = describe_or_none(lambda: s3.get_object(Bucket=cfg.aws.bucket, Key=CHAMPION_KEY))
    pointer = json.loads(found["Body"].read()) if found is not None else None
    return served_method(pointer, cfg.finetune.method)


def jumpstart_sdk(cfg: Any, s3: Any) -> Any:
    """The SageMaker SDK's JumpStart lookups (:class:`tailor.jumpstart.SageMakerCoreSDK`, imported here, at task
    run time) on the Airflow AWS connection: its boto session, and ``s3`` (built from the same connection, so its
    endpoint applies offline) to read the JumpStart content bucket."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.jumpstart import SageMakerCoreSDK

    aws_hook = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="s3")
    return SageMakerCoreSDK(aws_hook.get_session(region_name=s3.meta.region_name), s3_client=s3)


def retrying_config(max_pool_connections: int, **options: Any) -> Any:
    """The botocore config of every model-calling client: adaptive retries (throttling backs off), 6 attempts."""
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 6}, max_pool_connections=max_pool_connections,
                  **options)


def check_models(cfg: Any, models: list[Any], client: Any = None) -> list[str]:
    """Ask Bedrock (``GetFoundationModel``) whether each :class:`tailor.model_access.ConfiguredModel` can be called
    here, before any model call is paid: end of life, not offered in the region, or a bare id that needs its
    inference profile fail the task (``AirflowFailException`` naming the setting to change); Legacy models come
    back as warnings (also logged). AccessDenied and throttling are not answers about a model: re-raised."""
    import logging

    from airflow.providers.amazon.aws.hooks.bedrock import BedrockHook
    from airflow.sdk.exceptions import AirflowFailException
    from botocore.exceptions import ClientError

    from tailor.model_access import Availability, access_findings, split_model_id

    client = client or BedrockHook(aws_conn_id=cfg.aws.conn_id).conn
    answers: dict[str, Availability] = {}
    for model in models:
        _, base = split_model_id(model.model_id)
        if base is None or base in answers:
            continue
        try:
            answers[base] = Availability(details=client.get_foundation_model(modelIdentifier=base)["modelDetails"])
        except ClientError as error:
            found = error.response.get("Error", {})
            if found.get("Code") not in ("ValidationException", "ResourceNotFoundException"):
                raise
            answers[base] = Availability(error_code=found.get("Code"), error_message=found.get("Message"))
    errors, warnings = access_findings(models, answers, client.meta.region_name)
    if errors:
        raise AirflowFailException("model check failed, no model was called:\n" + "\n".join(errors))
    for warning in warnings:
        logging.getLogger(__name__).warning("%s", warning)
    return warnings


def warehouse(conn_id: str, schema: str | None = None) -> Any:
    """The results warehouse (:class:`tailor.warehouse.Warehouse`) behind an Airflow SQL connection."""
    from airflow.sdk import BaseHook

    from tailor.warehouse import Warehouse

    connection = BaseHook.get_connection(conn_id)
    dialect = {"sqlite": "sqlite", "postgres": "postgres", "redshift": "redshift"}.get(connection.conn_type or "")
    if dialect is None:
        raise ValueError(f"warehouse connection {conn_id!r} has type {connection.conn_type!r}; "
                         "use a sqlite, postgres or redshift connection")
    return Warehouse(connection.get_hook(), dialect, schema=schema)

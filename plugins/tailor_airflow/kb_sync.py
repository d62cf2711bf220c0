"""The catalog -> Knowledge Base sync, shared by the SQS-driven and the polling DAG.

``catalog_sync_tasks(keys)`` wires: validate (quarantine bad drops) -> stage a content-hashed version ->
skip if the KB already holds it -> ``BedrockIngestDataOperator`` -> strict ingestion sensor -> publish the
``kb-synced`` asset. Each task is a thin shell over :mod:`tailor.kb_sync`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.bedrock import BedrockIngestDataOperator
from airflow.sdk import Param, chain, task
from airflow.sdk.exceptions import AirflowFailException

from tailor.config import parse_time_setting
from tailor.kb_sync import catalog_key_pattern
from tailor_airflow.assets import KB_SYNCED
from tailor_airflow.sensors import StrictIngestionJobSensor

if TYPE_CHECKING:
    from tailor.kb_sync import CatalogStore

CATALOG_KEY_PARAM = {
    "catalog_key": Param(
        "",
        type="string",
        maxLength=1024,
        # Parse-time settings (environment only): the same prefixes the sync task reads from settings().
        pattern=catalog_key_pattern(parse_time_setting("catalog", "incoming_prefix"),
                                    parse_time_setting("catalog", "versions_prefix"),
                                    parse_time_setting("catalog", "suffix")),
        title="Catalog key",
        description=(
            "S3 key of one catalog drop to (re-)sync by hand, e.g. catalog/incoming/products.txt, or of an "
            "archived version to roll the Knowledge Base back to, e.g. catalog/versions/<version>/products.txt. "
            "Leave empty to sync what triggered the run (or, for the polling DAG, every waiting drop). Keys "
            "elsewhere in the bucket are refused: a sync never reads, moves or deletes them."
        ),
    )
}


def _store() -> CatalogStore:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tailor.config import settings
    from tailor.kb_sync import CatalogStore

    cfg = settings()
    s3 = S3Hook(aws_conn_id=cfg.aws.conn_id).get_conn()
    return CatalogStore(s3, cfg.aws.bucket, cfg.catalog, cfg.knowledge_base.data_prefix)


def _param_key(params: dict[str, Any]) -> list[str] | None:
    """The ``catalog_key`` of a manual run as an S3 key, or None; a key the sync may not touch fails the task."""
    from tailor.config import settings
    from tailor.exceptions import CatalogKeyError
    from tailor.kb_sync import catalog_key_of

    if not (value := (params.get("catalog_key") or "").strip()):
        return None
    cfg = settings()
    try:
        return [catalog_key_of(value, cfg.aws.bucket, cfg.catalog)]
    except CatalogKeyError as error:
        raise AirflowFailException(str(error)) from None


@task
def catalog_keys_from_events(**context: Any) -> list[str]:
    """Catalog keys from the triggering SQS/S3 events, or the ``catalog_key`` param of a manual run."""
    from tailor.config import settings
    from tailor.kb_sync import catalog_keys_from_messages, messages_from_asset_event_extras

    if (keys := _param_key(context["params"])) is not None:
        return keys
    extras = [event.extra for events in context["triggering_asset_events"].values() for event in events]
    cfg = settings().catalog
    keys = catalog_keys_from_messages(messages_from_asset_event_extras(extras), cfg.incoming_prefix, cfg.suffix)
    print(f"{len(extras)} asset event(s) -> catalog drops: {keys or 'none (test events or other keys)'}")
    return keys


@task
def incoming_catalog_keys(**context: Any) -> list[str]:
    """Every drop waiting under the incoming prefix (or the ``catalog_key`` param of a manual run)."""
    if (keys := _param_key(context["params"])) is not None:
        return keys
    keys = _store().incoming_keys()
    print(f"catalog drops waiting: {keys}")
    return keys


@task
def validate_catalogs(keys: list[str]) -> dict[str, Any]:
    """Validate every drop; quarantine the bad ones (KB untouched); keep the newest valid one."""
    return _store().check(keys).to_dict()


@task
def report_quarantined(checked: dict[str, Any]) -> None:
    """Fail the run (no retry: a bad file stays bad), naming each file, line and rule, if any was quarantined."""
    if rejected := checked["quarantined"]:
        details = "\n".join(f"- {q['key']} -> {q['quarantine_key']}:\n{q['error']}" for q in rejected)
        raise AirflowFailException(
            f"{len(rejected)} catalog drop(s) rejected and quarantined; the Knowledge Base was not changed "
            f"by them. Fix the file(s) and upload again:\n{details}"
        )


@task(multiple_outputs=True)
def stage_catalog(checked: dict[str, Any]) -> dict[str, Any]:
    """Version the newest valid drop and stage its product documents for the data source."""
    from tailor.config import settings

    cfg = settings()
    ids = {
        "knowledge_base_id": cfg.require("knowledge_base", "knowledge_base_id"),
        "data_source_id": cfg.require("knowledge_base", "data_source_id"),
    }
    if not checked["catalog_key"]:
        return ids | {"changed": False, "catalog_version": None}
    store = _store()
    staged = store.stage(checked["catalog_key"])
    if not staged["changed"]:
        store.remove_drops([checked["catalog_key"], *checked["superseded"]])
    return ids | staged


@task.short_circuit
def ingestion_needed(changed: bool) -> bool:
    """Skip the ingestion (and the asset event) when the KB already holds this content."""
    return bool(changed)


@task(outlets=[KB_SYNCED])
def publish_kb_version(
    staged: dict[str, Any], checked: dict[str, Any], ingestion: dict[str, Any], **context: Any
) -> dict[str, Any]:
    """Record the new Knowledge Base version, announce it on ``kb-synced`` and clear the handled drops."""
    store = _store()
    marker = store.publish(staged, ingestion["ingestion_job_id"], context["run_id"])
    store.remove_drops([checked["catalog_key"], *checked["superseded"]])
    context["outlet_events"][KB_SYNCED].extra = {
        "catalog_version": marker["catalog_version"],
        "ingestion_job_id": marker["ingestion_job_id"],
        "products": marker["products"],
    }
    print(f"Knowledge Base now holds catalog version {marker['catalog_version']}: {marker}")
    return marker


def catalog_sync_tasks(keys: Any) -> None:
    """Wire the sync after a task that yields the catalog keys to consider."""
    # A @task call or an operator's .output is an XComArg that stands for the value at run time; mypy cannot match
    # it to the task functions' parameter types (apache/airflow#39514), so these references are typed Any.
    checked: Any = validate_catalogs(keys)
    report_quarantined(checked)
    staged: Any = stage_catalog(checked)
    start = BedrockIngestDataOperator(
        task_id="start_ingestion",
        knowledge_base_id=staged["knowledge_base_id"],
        data_source_id=staged["data_source_id"],
        wait_for_completion=False,
    )
    wait = StrictIngestionJobSensor(
        task_id="wait_for_ingestion",
        knowledge_base_id=staged["knowledge_base_id"],
        data_source_id=staged["data_source_id"],
        ingestion_job_id=start.output,
        deferrable=True,
        poke_interval=parse_time_setting("knowledge_base", "ingestion_poll_seconds"),
        timeout_seconds=60 * parse_time_setting("knowledge_base", "ingestion_timeout_minutes"),
    )
    ingestion: Any = wait.output
    chain(ingestion_needed(staged["changed"]), start, wait, publish_kb_version(staged, checked, ingestion))

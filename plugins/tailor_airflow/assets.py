"""The assets the DAGs produce and consume (URIs from tailor.config's parse-time settings: environment only)."""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher

from tailor.config import bucket, parse_time_setting

#: The SQS queue that receives the bucket's ``catalog/incoming/*.txt`` notifications (TAILOR__AWS__CATALOG_QUEUE_URL).
CATALOG_QUEUE_URL: str = parse_time_setting("aws", "catalog_queue_url")


def _catalog_drop_watchers() -> list[AssetWatcher]:
    if not CATALOG_QUEUE_URL:  # no queue configured: the SQS DAG waits for manual runs; see its doc
        return []
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    trigger = MessageQueueTrigger(scheme="sqs", sqs_queue=CATALOG_QUEUE_URL, waiter_delay=5, max_messages=10)
    return [AssetWatcher(name="catalog_drop_queue", trigger=trigger)]


CATALOG_DROPS = Asset(
    name="catalog-drops", uri=f"s3://{bucket()}/catalog/incoming/", watchers=_catalog_drop_watchers()
)
KB_SYNCED = Asset(name="kb-synced", uri=f"s3://{bucket()}/catalog/current.json")
FINETUNED_MODEL = Asset(name="finetuned-model", uri=f"s3://{bucket()}/finetune/champion.json")

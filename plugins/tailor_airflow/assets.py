"""The assets the DAGs produce and consume (URIs are built from the environment only: parse-time safe)."""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetWatcher

from tailor.config import ENV_PREFIX, bucket

#: The SQS queue that receives the bucket's ``catalog/incoming/*.txt`` notifications.
CATALOG_QUEUE_URL = os.environ.get(f"{ENV_PREFIX}AWS__CATALOG_QUEUE_URL", "")


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

"""
### Catalog -> Knowledge Base re-sync (polling, for accounts without SQS)

Every 15 minutes a deferrable `S3KeySensor` waits for `s3://<bucket>/catalog/incoming/*.txt`; the run then
syncs every waiting drop exactly as `catalog_kb_sync` does (same tasks): validate and quarantine, stage a
content-hashed version, ingest into the Knowledge Base, publish `kb-synced`. Handled drops leave the
incoming prefix, so the next poll does not see them again. Trigger with `catalog_key` to re-sync one file.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import chain, dag
from airflow.timetables.trigger import CronTriggerTimetable

from tailor.config import bucket, parse_time_setting
from tailor_airflow.defaults import DEFAULT_ARGS, START_DATE
from tailor_airflow.kb_sync import CATALOG_KEY_PARAM, catalog_sync_tasks, incoming_catalog_keys


@dag(
    dag_id="catalog_kb_sync_poll",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=CATALOG_KEY_PARAM,
    tags=["knowledge-base", "bedrock", "catalog"],
    doc_md=__doc__,
)
def catalog_kb_sync_poll() -> None:
    wait_for_drop = S3KeySensor(
        task_id="wait_for_catalog_drop",
        bucket_name=bucket(),
        bucket_key=f"{parse_time_setting('catalog', 'incoming_prefix')}*{parse_time_setting('catalog', 'suffix')}",
        wildcard_match=True,
        deferrable=True,
        poke_interval=60,
        timeout=14 * 60,  # give up before the next poll starts
        soft_fail=True,  # nothing dropped is not a failure
    )
    keys = incoming_catalog_keys()
    chain(wait_for_drop, keys)
    catalog_sync_tasks(keys)


catalog_kb_sync_poll()

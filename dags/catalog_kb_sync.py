"""
### Catalog -> Knowledge Base re-sync (event-driven)

A product-catalog file lands in `s3://<bucket>/catalog/incoming/*.txt` -> S3 notification -> SQS ->
`AssetWatcher` -> this run. Each drop is validated; a bad one is moved to `catalog/quarantine/` with a
`.reason.json` naming file, line and rule, and the run fails while the Knowledge Base stays untouched.
The newest valid drop is versioned by content hash, staged as one document per product under the data
source prefix, ingested with `BedrockIngestDataOperator` and awaited; `kb-synced` then announces the version.
Unchanged content skips the ingestion.

**Re-sync by hand:** trigger with `catalog_key` set to the file's key. **No SQS in your account?** Use
`catalog_kb_sync_poll`. The queue comes from `TAILOR__AWS__CATALOG_QUEUE_URL`; without it this DAG only
runs when triggered by hand.
"""

from __future__ import annotations

from airflow.sdk import dag

from tailor_airflow.assets import CATALOG_DROPS
from tailor_airflow.defaults import DEFAULT_ARGS, START_DATE
from tailor_airflow.kb_sync import CATALOG_KEY_PARAM, catalog_keys_from_events, catalog_sync_tasks


@dag(
    dag_id="catalog_kb_sync",
    schedule=[CATALOG_DROPS],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # one ingestion per data source at a time (AWS refuses a second one)
    default_args=DEFAULT_ARGS,
    params=CATALOG_KEY_PARAM,
    tags=["knowledge-base", "bedrock", "catalog"],
    doc_md=__doc__,
)
def catalog_kb_sync() -> None:
    catalog_sync_tasks(catalog_keys_from_events())


catalog_kb_sync()

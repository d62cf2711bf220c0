"""``make demo``: the offline bake-off on the local AWS (exit 0 only if every DAG run succeeded)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devstack.stack import REPO, airflow_env, bootstrap, migrate_airflow_db, run_dag

OUT = REPO / "out"
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    os.environ.update(airflow_env(REPO / ".airflow"))
    from localaws.process import LocalAWSProcess

    with LocalAWSProcess(log_path=OUT / "localaws.log") as aws:
        stack = bootstrap(aws.endpoint_url)
        os.environ.update(stack.env())
        print(f"local AWS on {aws.endpoint_url}: {stack.resources}")
        migrate_airflow_db(os.environ.copy())

        key = "catalog/incoming/" + SAMPLE_CATALOG.name
        stack.client("s3").put_object(Bucket=stack.resources["bucket"], Key=key, Body=SAMPLE_CATALOG.read_bytes())
        print(f"dropped s3://{stack.resources['bucket']}/{key}")
        started = time.monotonic()
        run = run_dag("catalog_kb_sync", {"catalog_key": key})
        print(f"catalog_kb_sync: {run.state} in {time.monotonic() - started:.1f} s")
        if run.state != "success":
            return 1
        report_kb(stack)
    return 0


def report_kb(stack) -> None:
    import json

    bucket = stack.resources["bucket"]
    marker = json.loads(stack.client("s3").get_object(Bucket=bucket, Key="catalog/current.json")["Body"].read())
    print(f"Knowledge Base {stack.resources['knowledge_base_id']} holds catalog version "
          f"{marker['catalog_version']} ({marker['products']} products), ingestion job {marker['ingestion_job_id']}")
    question = "What PPE is required when operating the Vortex Mixer VM-200?"
    hits = stack.client("bedrock-agent-runtime").retrieve(
        knowledgeBaseId=stack.resources["knowledge_base_id"], retrievalQuery={"text": question},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 3}},
    )["retrievalResults"]
    top = hits[0]
    print(f"Retrieve {question!r}\n  top hit ({top['score']:.3f}, {top['metadata'].get('product_name')}): "
          f"{top['content']['text'][:200]}...")


if __name__ == "__main__":
    sys.exit(main())

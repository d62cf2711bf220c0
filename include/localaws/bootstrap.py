"""Create the AWS resources the DAGs expect, on any endpoint (the local one, by design).

The spec is plain data handed over by the caller (names of the bucket, queue, knowledge base...), so this
module knows nothing of the package that asks for them. Creating twice is harmless: existing resources
are found and reused.
"""

from __future__ import annotations

import json
from typing import Any

REGION = "us-east-1"


def _client(service: str, endpoint_url: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="localaws",
        aws_secret_access_key="localaws",
    )


def bootstrap(endpoint_url: str, spec: dict[str, Any]) -> dict[str, str]:
    """Create bucket, queue + S3 notification, knowledge base and data source; return their ids."""
    s3, sqs, agent = (_client(s, endpoint_url) for s in ("s3", "sqs", "bedrock-agent"))
    bucket = spec["bucket"]
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=spec["queue_name"])["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Filter at the notification: the SQS trigger deletes what it receives, so never send it other keys.
    rules = [{"Name": "prefix", "Value": spec["notification_prefix"]}]
    if spec.get("notification_suffix"):
        rules.append({"Name": "suffix", "Value": spec["notification_suffix"]})
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": rules}}}
            ]
        },
    )
    existing = {kb["name"]: kb["knowledgeBaseId"] for kb in agent.list_knowledge_bases()["knowledgeBaseSummaries"]}
    kb_id = existing.get(spec["knowledge_base_name"]) or agent.create_knowledge_base(
        name=spec["knowledge_base_name"],
        roleArn=f"arn:aws:iam::123456789012:role/{spec['knowledge_base_name']}-role",
        knowledgeBaseConfiguration={
            "type": "VECTOR",
            "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": spec["embedding_model_arn"]},
        },
        storageConfiguration={
            "type": "OPENSEARCH_SERVERLESS",
            "opensearchServerlessConfiguration": {
                "collectionArn": f"arn:aws:aoss:{REGION}:123456789012:collection/local",
                "vectorIndexName": "catalog",
                "fieldMapping": {"vectorField": "vector", "textField": "text", "metadataField": "metadata"},
            },
        },
    )["knowledgeBase"]["knowledgeBaseId"]
    summaries = agent.list_data_sources(knowledgeBaseId=kb_id)["dataSourceSummaries"]
    sources = {d["name"]: d["dataSourceId"] for d in summaries}
    ds_id = sources.get(spec["data_source_name"]) or agent.create_data_source(
        knowledgeBaseId=kb_id,
        name=spec["data_source_name"],
        dataSourceConfiguration={
            "type": "S3",
            "s3Configuration": {"bucketArn": f"arn:aws:s3:::{bucket}", "inclusionPrefixes": [spec["data_prefix"]]},
        },
        vectorIngestionConfiguration={
            "chunkingConfiguration": {
                "chunkingStrategy": "FIXED_SIZE",
                "fixedSizeChunkingConfiguration": {
                    "maxTokens": int(spec.get("chunk_max_tokens", 300)),
                    "overlapPercentage": int(spec.get("chunk_overlap_percent", 20)),
                },
            }
        },
    )["dataSource"]["dataSourceId"]
    return {"bucket": bucket, "queue_url": queue_url, "knowledge_base_id": kb_id, "data_source_id": ds_id}


def bootstrap_from_file(endpoint_url: str, path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return bootstrap(endpoint_url, json.load(handle))

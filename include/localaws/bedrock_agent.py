"""bedrock-agent data sources and ingestion jobs, and bedrock-agent-runtime ``Retrieve``.

moto 5.2.5 keeps Knowledge Bases but routes the data-source and ingestion operations to methods it does not
define; ``install()`` defines them on moto's ``AgentsforBedrockResponse``. ``Retrieve`` (bedrock-agent-runtime)
has no moto service at all and is answered by :func:`retrieve` from the server's WSGI front door.

An ingestion job is real: it lists the data source's S3 prefixes through the same endpoint, reads every text
document (and its ``<key>.metadata.json`` sidecar), chunks, embeds and swaps the knowledge base's index, going
STARTING -> IN_PROGRESS -> COMPLETE (or FAILED with ``failureReasons``) like AWS. A second job on a data source
with one still running is refused with ``ConflictException``, as AWS does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.bedrockagent.exceptions import ConflictException, ResourceNotFoundException, ValidationException
from moto.bedrockagent.responses import AgentsforBedrockResponse

from localaws import faults
from localaws.knowledge import Chunk, KnowledgeIndex, chunk_text

log = logging.getLogger(__name__)
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".html", ".htm", ".json")
METADATA_SUFFIX = ".metadata.json"
RUNNING = ("STARTING", "IN_PROGRESS", "STOPPING")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _new_id() -> str:
    return uuid.uuid4().hex[:10].upper()


@dataclass
class DataSource:
    knowledge_base_id: str
    data_source_id: str
    name: str
    configuration: dict[str, Any]
    vector_ingestion: dict[str, Any]
    description: str | None
    created_at: str = field(default_factory=_now)
    documents: dict[str, str] = field(default_factory=dict)  # uri -> content hash, as last indexed

    def to_dict(self) -> dict[str, Any]:
        result = {
            "knowledgeBaseId": self.knowledge_base_id,
            "dataSourceId": self.data_source_id,
            "name": self.name,
            "status": "AVAILABLE",
            "dataSourceConfiguration": self.configuration,
            "vectorIngestionConfiguration": self.vector_ingestion,
            "dataDeletionPolicy": "DELETE",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }
        if self.description:
            result["description"] = self.description
        return result


@dataclass
class IngestionJob:
    knowledge_base_id: str
    data_source_id: str
    ingestion_job_id: str
    description: str | None
    status: str = "STARTING"
    statistics: dict[str, int] = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        result = {
            "knowledgeBaseId": self.knowledge_base_id,
            "dataSourceId": self.data_source_id,
            "ingestionJobId": self.ingestion_job_id,
            "status": self.status,
            "statistics": self.statistics,
            "startedAt": self.started_at,
            "updatedAt": self.updated_at,
        }
        if self.failure_reasons:
            result["failureReasons"] = self.failure_reasons
        if self.description:
            result["description"] = self.description
        return result

    def set_status(self, status: str) -> None:
        self.status, self.updated_at = status, _now()


class Store:
    """All knowledge-base state of the server process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoint_url = ""
        self.data_sources: dict[tuple[str, str], DataSource] = {}
        self.jobs: dict[str, IngestionJob] = {}
        self.indexes: dict[str, KnowledgeIndex] = {}

    def data_source(self, knowledge_base_id: str, data_source_id: str) -> DataSource:
        try:
            return self.data_sources[(knowledge_base_id, data_source_id)]
        except KeyError:
            raise ResourceNotFoundException(
                f"Data source {data_source_id} not found in knowledge base {knowledge_base_id}"
            ) from None


STORE = Store()


def _path_ids(path: str) -> list[str]:
    """``/knowledgebases/KB/datasources/DS/ingestionjobs/JOB`` -> ``[KB, DS, JOB]``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    return parts[1::2]


# --- moto response methods -------------------------------------------------------------------------------


def create_data_source(self: AgentsforBedrockResponse) -> str:
    (knowledge_base_id,) = _path_ids(self.path)[:1]
    self.bedrockagent_backend.get_knowledge_base(knowledge_base_id)  # ResourceNotFound like AWS
    params = json.loads(self.body or "{}")
    configuration = params.get("dataSourceConfiguration") or {}
    if configuration.get("type") != "S3" or "bucketArn" not in configuration.get("s3Configuration", {}):
        raise ValidationException("only S3 data sources (s3Configuration.bucketArn) are supported locally")
    vector_ingestion = params.get("vectorIngestionConfiguration") or {}
    chunk_text("probe", vector_ingestion.get("chunkingConfiguration"))  # validate the strategy up front
    with STORE.lock:
        if any(
            ds.name == params["name"] and ds.knowledge_base_id == knowledge_base_id
            for ds in STORE.data_sources.values()
        ):
            raise ConflictException(f"a data source named {params['name']} already exists")
        source = DataSource(
            knowledge_base_id, _new_id(), params["name"], configuration, vector_ingestion, params.get("description")
        )
        STORE.data_sources[(knowledge_base_id, source.data_source_id)] = source
        STORE.indexes.setdefault(knowledge_base_id, KnowledgeIndex())
    return json.dumps({"dataSource": source.to_dict()})


def get_data_source(self: AgentsforBedrockResponse) -> str:
    knowledge_base_id, data_source_id = _path_ids(self.path)[:2]
    return json.dumps({"dataSource": STORE.data_source(knowledge_base_id, data_source_id).to_dict()})


def list_data_sources(self: AgentsforBedrockResponse) -> str:
    (knowledge_base_id,) = _path_ids(self.path)[:1]
    summaries = [
        {k: v for k, v in ds.to_dict().items() if k in ("knowledgeBaseId", "dataSourceId", "name", "status")}
        | {"updatedAt": ds.created_at}
        for ds in STORE.data_sources.values()
        if ds.knowledge_base_id == knowledge_base_id
    ]
    return json.dumps({"dataSourceSummaries": summaries})


def start_ingestion_job(self: AgentsforBedrockResponse) -> str:
    knowledge_base_id, data_source_id = _path_ids(self.path)[:2]
    faults.check("bedrock-agent:StartIngestionJob")
    params = json.loads(self.body or "{}")
    with STORE.lock:
        source = STORE.data_source(knowledge_base_id, data_source_id)
        running = [
            j for j in STORE.jobs.values() if j.data_source_id == data_source_id and j.status in RUNNING
        ]
        if running:
            raise ConflictException(
                f"Data source {data_source_id} already has ingestion job {running[0].ingestion_job_id} "
                f"{running[0].status}; wait for it to finish before starting another"
            )
        job = IngestionJob(knowledge_base_id, data_source_id, _new_id(), params.get("description"))
        STORE.jobs[job.ingestion_job_id] = job
    response = json.dumps({"ingestionJob": job.to_dict()})  # STARTING, before the worker moves it on
    threading.Thread(target=_run_ingestion, args=(job, source), daemon=True).start()
    return response


def get_ingestion_job(self: AgentsforBedrockResponse) -> str:
    knowledge_base_id, data_source_id, job_id = _path_ids(self.path)[:3]
    job = STORE.jobs.get(job_id)
    if job is None or (job.knowledge_base_id, job.data_source_id) != (knowledge_base_id, data_source_id):
        raise ResourceNotFoundException(f"Ingestion job {job_id} not found for data source {data_source_id}")
    return json.dumps({"ingestionJob": job.to_dict()})


def list_ingestion_jobs(self: AgentsforBedrockResponse) -> str:
    knowledge_base_id, data_source_id = _path_ids(self.path)[:2]
    STORE.data_source(knowledge_base_id, data_source_id)
    jobs = sorted(
        (j for j in STORE.jobs.values() if j.data_source_id == data_source_id),
        key=lambda j: j.started_at,
        reverse=True,
    )
    return json.dumps({"ingestionJobSummaries": [j.to_dict() for j in jobs]})


HANDLERS = {
    "create_data_source": create_data_source,
    "get_data_source": get_data_source,
    "list_data_sources": list_data_sources,
    "start_ingestion_job": start_ingestion_job,
    "get_ingestion_job": get_ingestion_job,
    "list_ingestion_jobs": list_ingestion_jobs,
}


def install(endpoint_url: str) -> None:
    """Define the missing operations on moto's response class (before the server takes requests)."""
    STORE.endpoint_url = endpoint_url
    for name, handler in HANDLERS.items():
        setattr(AgentsforBedrockResponse, name, handler)


# --- ingestion ---------------------------------------------------------------------------------------------


def _s3_client() -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=STORE.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="localaws",
        aws_secret_access_key="localaws",
    )


def _read_documents(source: DataSource) -> tuple[list[tuple[str, str, dict[str, Any]]], dict[str, int]]:
    """Return ``[(uri, text, metadata)]`` for the data source and the scan statistics."""
    s3_config = source.configuration["s3Configuration"]
    bucket = s3_config["bucketArn"].split(":::")[-1]
    prefixes = s3_config.get("inclusionPrefixes") or [""]
    s3 = _s3_client()
    keys = []
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    metadata_keys = {k for k in keys if k.endswith(METADATA_SUFFIX)}
    stats = dict.fromkeys(
        ("numberOfDocumentsScanned", "numberOfMetadataDocumentsScanned", "numberOfDocumentsFailed",
         "numberOfDocumentsSkipped"),
        0,
    )
    stats["numberOfMetadataDocumentsScanned"] = len(metadata_keys)
    documents = []
    for key in sorted(set(keys) - metadata_keys):
        stats["numberOfDocumentsScanned"] += 1
        if not key.lower().endswith(TEXT_SUFFIXES):
            stats["numberOfDocumentsSkipped"] += 1
            continue
        try:
            text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except UnicodeDecodeError:
            log.warning("ingestion: s3://%s/%s is not UTF-8 text; skipped", bucket, key)
            stats["numberOfDocumentsFailed"] += 1
            continue
        metadata: dict[str, Any] = {}
        if key + METADATA_SUFFIX in metadata_keys:
            sidecar = s3.get_object(Bucket=bucket, Key=key + METADATA_SUFFIX)["Body"].read()
            metadata = json.loads(sidecar).get("metadataAttributes", {})
        documents.append((f"s3://{bucket}/{key}", text, metadata))
    return documents, stats


def _run_ingestion(job: IngestionJob, source: DataSource) -> None:
    from localaws.models import embedder

    started = time.monotonic()
    try:
        job.set_status("IN_PROGRESS")
        faults.check("ingestion:run")
        documents, stats = _read_documents(source)
        chunking = source.vector_ingestion.get("chunkingConfiguration")
        chunks = [
            Chunk(f"{source.data_source_id}-{hashlib.sha1(f'{uri}#{i}'.encode()).hexdigest()[:16]}",
                  piece, uri, source.data_source_id, metadata)
            for uri, text, metadata in documents
            for i, piece in enumerate(chunk_text(text, chunking))
        ]
        vectors = embedder().embed([c.text for c in chunks])
        hashes = {uri: hashlib.sha256(text.encode()).hexdigest() for uri, text, _ in documents}
        previous = source.documents
        stats["numberOfNewDocumentsIndexed"] = sum(uri not in previous for uri in hashes)
        stats["numberOfModifiedDocumentsIndexed"] = sum(
            uri in previous and previous[uri] != h for uri, h in hashes.items()
        )
        stats["numberOfDocumentsDeleted"] = sum(uri not in hashes for uri in previous)
        STORE.indexes[source.knowledge_base_id].replace_source(source.data_source_id, chunks, vectors)
        source.documents = hashes
        job.statistics = stats
        job.set_status("COMPLETE")
        log.info(
            "ingestion %s COMPLETE: %d documents, %d chunks in %.1f s",
            job.ingestion_job_id, len(documents), len(chunks), time.monotonic() - started,
        )
    except faults.InjectedFault as fault:
        job.failure_reasons = [fault.message]
        job.set_status("STOPPED" if fault.error == "STOPPED" else "FAILED")
    except Exception as exc:  # any failure is the job's FAILED state, as on AWS
        log.exception("ingestion %s FAILED", job.ingestion_job_id)
        job.failure_reasons = [f"{type(exc).__name__}: {exc}"]
        job.set_status("FAILED")


# --- bedrock-agent-runtime Retrieve ------------------------------------------------------------------------


def retrieve(knowledge_base_id: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Answer ``POST /knowledgebases/{id}/retrieve`` with AWS's response shape (status, body)."""
    from localaws.models import embedder

    index = STORE.indexes.get(knowledge_base_id)
    if index is None:
        return 404, {"__type": "ResourceNotFoundException",
                     "message": f"Knowledge base {knowledge_base_id} not found (or has no data source)"}
    query = (request.get("retrievalQuery") or {}).get("text", "")
    if not query.strip():
        return 400, {"__type": "ValidationException", "message": "retrievalQuery.text must not be empty"}
    vector_config = (request.get("retrievalConfiguration") or {}).get("vectorSearchConfiguration") or {}
    if "filter" in vector_config:
        return 400, {"__type": "ValidationException", "message": "metadata filters are not supported locally"}
    top_k = int(vector_config.get("numberOfResults", 5))
    search_type = vector_config.get("overrideSearchType", "HYBRID")
    hits = index.search(query, embedder().embed([query])[0], top_k, search_type)
    return 200, {
        "retrievalResults": [
            {
                "content": {"type": "TEXT", "text": chunk.text},
                "location": {"type": "S3", "s3Location": {"uri": chunk.source_uri}},
                "score": score,
                "metadata": chunk.metadata
                | {
                    "x-amz-bedrock-kb-source-uri": chunk.source_uri,
                    "x-amz-bedrock-kb-chunk-id": chunk.chunk_id,
                    "x-amz-bedrock-kb-data-source-id": chunk.data_source_id,
                },
            }
            for chunk, score in hits
        ]
    }

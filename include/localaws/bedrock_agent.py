"""bedrock-agent data sources and ingestion jobs, and bedrock-agent-runtime ``Retrieve``.

moto 5.2.5 keeps Knowledge Bases but routes the data-source and ingestion operations to methods it does not
define; ``install()`` defines them on moto's ``AgentsforBedrockResponse``. ``Retrieve`` (bedrock-agent-runtime)
has no moto service at all and is answered by :func:`retrieve` from the server's WSGI front door.

An ingestion job is real: it lists the data source's S3 prefixes through the same endpoint, reads every text
document (and its ``<key>.metadata.json`` sidecar), chunks, embeds and swaps the knowledge base's index, going
STARTING -> IN_PROGRESS -> COMPLETE (or FAILED with ``failureReasons``) like AWS. Documents that fail (a body
that is not UTF-8 text, or the ``DOCUMENTS_FAILED`` fault of ``localaws.faults``) leave the job COMPLETE, counted in
``numberOfDocumentsFailed``, named in ``failureReasons`` and absent from the index, as reported from AWS. A second
job on a data source with one still running is refused with ``ConflictException``, as AWS does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


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


Document = tuple[str, str, dict[str, Any]]  # (s3 uri, text, metadata attributes)
#: ``failureReasons`` of a job, reason text -> the S3 URIs of the documents that failed for it.
Failures = dict[str, list[str]]
#: ``ingestion:run`` fault that fails documents instead of the job (see ``localaws.faults``).
DOCUMENTS_FAILED = "DOCUMENTS_FAILED"


def failure_reason(reason: str, uris: list[str]) -> str:
    """One ``failureReasons`` entry naming the documents that failed for one reason, in the shape reported from
    real jobs (observed, not documented by AWS: console warnings and GetIngestionJob ``failureReasons`` quoted in
    public code, e.g. "Encountered error: File body text exceeds size limit of 1000000 for semantic chunking.
    [Files: s3://cody-kb/output_part8.md]. Call to Customer Source did not succeed." and "Ignored 2 files as their
    file format was not supported. [Files: s3://vault-files/kb/aaa111, s3://vault-files/kb/bbb222.metadata.json]";
    find_string ids 8958924214, 55124000256, 67121772976). One entry per reason, every failed file listed."""
    return f"Encountered error: {reason} [Files: {', '.join(uris)}]. Call to Customer Source did not succeed."


def _read_documents(source: DataSource) -> tuple[list[Document], dict[str, int], Failures]:
    """Return ``[(uri, text, metadata)]`` for the data source, the scan statistics and the failed documents."""
    s3_config = source.configuration["s3Configuration"]
    bucket = s3_config["bucketArn"].split(":::")[-1]
    prefixes = s3_config.get("inclusionPrefixes") or [""]
    s3 = _s3_client()
    keys: list[str] = []
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
    undecodable: list[str] = []
    for key in sorted(set(keys) - metadata_keys):
        stats["numberOfDocumentsScanned"] += 1
        if not key.lower().endswith(TEXT_SUFFIXES):
            stats["numberOfDocumentsSkipped"] += 1
            continue
        try:
            text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except UnicodeDecodeError:
            log.warning("ingestion: s3://%s/%s is not UTF-8 text; failed", bucket, key)
            stats["numberOfDocumentsFailed"] += 1
            undecodable.append(f"s3://{bucket}/{key}")
            continue
        metadata: dict[str, Any] = {}
        if key + METADATA_SUFFIX in metadata_keys:
            sidecar = s3.get_object(Bucket=bucket, Key=key + METADATA_SUFFIX)["Body"].read()
            metadata = json.loads(sidecar).get("metadataAttributes", {})
        documents.append((f"s3://{bucket}/{key}", text, metadata))
    failures: Failures = {}
    if undecodable:
        # AWS takes .txt as ASCII text (knowledge-base-ds.html); its wording for an undecodable body is
        # UNCONFIRMED: the one observed for files it cannot read as a supported format is used.
        failures[f"Ignored {len(undecodable)} files as their file format was not supported."] = undecodable
    return documents, stats, failures


def _fail_documents(fault: faults.Fault, documents: list[Document], failures: Failures) -> list[Document]:
    """Apply a ``DOCUMENTS_FAILED`` fault: the documents it selects fail (recorded in ``failures`` under the
    fault's message) and the rest are returned to be indexed. ``DOCUMENTS_FAILED`` selects the first document in
    key order; ``DOCUMENTS_FAILED:<glob>`` every document whose S3 key matches the ``fnmatch`` glob. A glob that
    selects nothing is an error (the job ends FAILED saying so): a fault that fails no document proves nothing."""
    pattern = fault.error.partition(":")[2]
    failed = ([d for d in documents if fnmatch.fnmatchcase(d[0].split("/", 3)[3], pattern)] if pattern
              else documents[:1])
    if not failed:
        raise ValueError(f"localaws fault {fault.error!r} selects none of the {len(documents)} readable documents "
                         f"({', '.join(d[0] for d in documents[:5])}{', ...' if len(documents) > 5 else ''})")
    failed_uris = [uri for uri, _, _ in failed]
    failures.setdefault(fault.message, []).extend(failed_uris)
    log.warning("ingestion: fault %s fails %s", fault.error, ", ".join(failed_uris))
    return [d for d in documents if d[0] not in failed_uris]


def _run_ingestion(job: IngestionJob, source: DataSource) -> None:
    from localaws.models import embedder

    started = time.monotonic()
    try:
        job.set_status("IN_PROGRESS")
        armed = faults.take("ingestion:run")
        if armed is not None and armed.error.partition(":")[0] != DOCUMENTS_FAILED:
            raise faults.InjectedFault(armed)
        documents, stats, failures = _read_documents(source)
        if armed is not None:
            readable = len(documents)
            documents = _fail_documents(armed, documents, failures)
            stats["numberOfDocumentsFailed"] += readable - len(documents)
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
        failed_uris = {uri for uris in failures.values() for uri in uris}
        # A failed document is still in S3, so it is not "deleted"; it is not indexed either: the index is
        # replaced without it (a failed file is absent from the knowledge base: observed reports, FACTS.md
        # section 5; whether AWS keeps an older indexed copy of a document that now fails is UNCONFIRMED, and the
        # stricter choice, no copy, is made so no test can pass on stale content).
        stats["numberOfDocumentsDeleted"] = sum(uri not in hashes and uri not in failed_uris for uri in previous)
        STORE.indexes[source.knowledge_base_id].replace_source(source.data_source_id, chunks, vectors)
        source.documents = hashes
        job.statistics = stats
        # Failed documents do not fail the job: it still ends COMPLETE, with numberOfDocumentsFailed and
        # failureReasons naming them (FACTS.md section 5: observed run with "status":"COMPLETE" and
        # "numberOfDocumentsFailed": 1; the console shows the reasons as warnings).
        job.failure_reasons = [failure_reason(reason, uris) for reason, uris in failures.items()]
        job.set_status("COMPLETE")
        log.info(
            "ingestion %s COMPLETE: %d documents indexed, %d failed, %d chunks in %.1f s",
            job.ingestion_job_id, len(documents), len(failed_uris), len(chunks), time.monotonic() - started,
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

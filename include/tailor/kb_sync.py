"""Catalog -> Knowledge Base re-sync: which files arrived, quarantine, versioned staging, the "current" marker.

Plain Python over a boto3 S3 client (the Airflow tasks pass ``S3Hook().get_conn()``), so every rule here is
unit-testable without Airflow. Layout in the bucket (prefixes from settings)::

    catalog/incoming/<file>.txt          drops (S3 notification -> SQS -> AssetWatcher, or polled)
    catalog/quarantine/<file>.txt        rejected drops, with <file>.txt.reason.json beside them
    catalog/versions/<version>/<file>    every accepted catalog, by content hash (12 hex)
    catalog/current.json                 the version the Knowledge Base holds (written after COMPLETE)
    kb-data/<product>.txt (+ .metadata.json)  the data source's documents: one per product
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from tailor.catalog import Catalog, CatalogIssue, Product, parse_catalog
from tailor.config import CatalogSettings, is_folder
from tailor.exceptions import CatalogKeyError, CatalogValidationError

log = logging.getLogger(__name__)


def catalog_keys_from_messages(messages: list[dict[str, Any]], prefix: str, suffix: str = "") -> list[str]:
    """Object keys created under ``prefix`` from S3 event notifications delivered through SQS.

    Ignores ``s3:TestEvent`` and anything that is not an ObjectCreated event under the prefix; keys arrive
    URL-encoded (``+`` for spaces) and are decoded. Order follows the events' ``eventTime``; duplicates dropped.
    """
    found: list[tuple[str, str]] = []
    for message in messages:
        body = message.get("Body", message)
        event = json.loads(body) if isinstance(body, str) else body
        for record in event.get("Records", []) if isinstance(event, dict) else []:
            if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            key = unquote_plus(record.get("s3", {}).get("object", {}).get("key", ""))
            if key.startswith(prefix) and key.endswith(suffix) and key != prefix:
                found.append((record.get("eventTime", ""), key))
    keys: list[str] = []
    for _, key in sorted(found):
        if key not in keys:
            keys.append(key)
    return keys


def messages_from_asset_event_extras(extras: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """SQS messages carried by AssetWatcher events (``extra={"payload": {"message_batch": [...]}}``); an empty
    or missing extra carries none."""
    messages: list[dict[str, Any]] = []
    for extra in extras:
        payload = (extra or {}).get("payload") or {}
        messages.extend(payload.get("message_batch") or [])
    return messages


@dataclass(frozen=True)
class Checked:
    """The outcome of validating a batch of drops: the newest valid one wins, older valid ones are superseded."""

    catalog_key: str | None
    superseded: list[str]
    quarantined: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {"catalog_key": self.catalog_key, "superseded": self.superseded, "quarantined": self.quarantined}


#: Bedrock refuses a data source's ``.metadata.json`` over 10 KB (Knowledge Bases, "metadata files" limits).
METADATA_MAX_BYTES = 10 * 1024


def _slug(name: str) -> str:
    """A readable object name with 48 bits of the name's hash: "Mixer A" and "Mixer-A" must not share a document.
    Uniqueness within a catalog is still checked (:func:`document_keys`), never assumed."""
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]
    return f"{readable}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:12]}"


def document_metadata(product: Product, catalog_version: str) -> str:
    """The ``.metadata.json`` sidecar of a product's document (the filterable ``product_name``)."""
    return json.dumps({"metadataAttributes": {"product_name": product.name, "catalog_version": catalog_version}})


def document_keys(catalog: Catalog, data_prefix: str) -> dict[str, Product]:
    """The data source's document key of every product; a :class:`CatalogValidationError` naming both products if
    two would share a key (one would silently vanish from the Knowledge Base) or a sidecar would be over 10 KB."""
    keys: dict[str, Product] = {}
    issues = []
    for product in catalog.products:
        key = f"{data_prefix}{_slug(product.name)}.txt"
        if (other := keys.get(key)) is not None:
            issues.append(CatalogIssue(catalog.source, product.line, "document_key_collision",
                          f'products "{other.name}" (line {other.line}) and "{product.name}" would share the '
                          f"Knowledge Base document {key}; rename one of them"))
            continue
        size = len(document_metadata(product, catalog.version).encode())
        if size > METADATA_MAX_BYTES:  # the name limit of tailor.catalog keeps far below; a guard, not a rule
            issues.append(CatalogIssue(catalog.source, product.line, "metadata_too_large",
                          f'product "{product.name[:60]}" makes a {size}-byte .metadata.json, over Bedrock\'s '
                          f"{METADATA_MAX_BYTES} bytes; shorten its name"))
        keys[key] = product
    if issues:
        raise CatalogValidationError(issues)
    return keys


def is_under(key: str, prefix: str) -> bool:
    """``key`` lies strictly under the folder ``prefix`` (see :func:`tailor.config.is_folder`)."""
    return is_folder(prefix) and key.startswith(prefix) and key != prefix


def catalog_key_pattern(incoming_prefix: str, versions_prefix: str, suffix: str) -> str:
    """The JSON-schema ``pattern`` of the ``catalog_key`` Param: empty, or a key (optionally ``s3://bucket/``
    before it) under the incoming prefix or a version folder, ending in the suffix. :func:`catalog_key_of`
    re-checks in code, with the loaded settings."""
    folders = f"{re.escape(incoming_prefix)}|{re.escape(versions_prefix)}[^/]+/"
    return rf"^\s*$|^\s*(s3://[a-z0-9][a-z0-9.-]{{1,62}}/)?({folders})(?!\.\./)[^\x00-\x1f]*{re.escape(suffix)}\s*$"


def catalog_key_of(value: str, bucket: str, settings: CatalogSettings) -> str:
    """The S3 key a ``catalog_key`` Param names, or :class:`CatalogKeyError` saying why it may not be synced.

    Accepts a key (or an ``s3://<bucket>/<key>`` URI of the configured bucket) under the incoming prefix (a drop)
    or the versions prefix (a rollback), ending in the catalog suffix. Anything else - ``catalog/current.json``, a
    ``kb-data/`` document, another bucket - is refused before it is read, so no Param can move or delete it.
    """
    key = value.strip()
    if key.startswith("s3://"):
        named_bucket, _, key = key.removeprefix("s3://").partition("/")
        if named_bucket != bucket:
            raise CatalogKeyError(f"catalog_key {value!r} names bucket {named_bucket!r}; the catalog lives in "
                                  f"s3://{bucket}/ (give the key alone, e.g. {settings.incoming_prefix}products"
                                  f"{settings.suffix})")
    drop = is_under(key, settings.incoming_prefix)
    version = is_under(key, settings.versions_prefix) and "/" in key[len(settings.versions_prefix):]
    if not (drop or version) or not key.endswith(settings.suffix) or ".." in key.split("/"):
        raise CatalogKeyError(f"catalog_key {value!r} is not a catalog file: give a key under "
                              f"{settings.incoming_prefix} (a drop) or {settings.versions_prefix}<version>/ (a "
                              f"rollback) ending in {settings.suffix}")
    return key


class CatalogStore:
    """The catalog's S3 layout and the operations the sync performs on it."""

    def __init__(self, s3: Any, bucket: str, settings: CatalogSettings, data_prefix: str) -> None:
        # Settings are validated at load; checked again here because stage() deletes under data_prefix.
        if not is_folder(data_prefix):
            raise CatalogKeyError(f"data prefix {data_prefix!r} must be a non-empty folder ending in '/' (an empty "
                                  "one would make every sync delete the whole bucket's other objects)")
        self.s3, self.bucket, self.settings, self.data_prefix = s3, bucket, settings, data_prefix

    def _get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _put(self, key: str, body: bytes | str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def _keys(self, prefix: str) -> list[dict[str, Any]]:
        objects = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
        return objects

    def incoming_keys(self) -> list[str]:
        """Drops waiting under the incoming prefix, oldest first (what the polling DAG syncs)."""
        objects = [
            o for o in self._keys(self.settings.incoming_prefix)
            if o["Key"].endswith(self.settings.suffix) and o["Key"] != self.settings.incoming_prefix
        ]
        return [o["Key"] for o in sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))]

    def load(self, key: str) -> Catalog:
        """Read and validate one drop (raises :class:`CatalogValidationError`)."""
        return self._load(key)[0]

    def _load(self, key: str) -> tuple[Catalog, datetime]:
        """The validated catalog and the object's ``LastModified`` (when it was dropped). Its documents' keys
        are checked too, so a catalog that could not be staged is rejected (and quarantined) at validation."""
        obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        catalog = parse_catalog(obj["Body"].read(), f"s3://{self.bucket}/{key}", max_bytes=self.settings.max_bytes,
                                max_name_chars=self.settings.max_name_chars)
        document_keys(catalog, self.data_prefix)
        return catalog, obj["LastModified"]

    def quarantine(self, key: str, error: CatalogValidationError) -> str:
        """Move a rejected drop to the quarantine prefix with a ``.reason.json`` naming every issue. Only drops
        (keys under the incoming prefix) are ever moved: anything else raises before a byte is copied."""
        if not is_under(key, self.settings.incoming_prefix):
            raise CatalogKeyError(f"refusing to quarantine s3://{self.bucket}/{key}: only drops under "
                                  f"{self.settings.incoming_prefix} are moved")
        target = self.settings.quarantine_prefix + key[len(self.settings.incoming_prefix):]
        self.s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
        reason = {
            "source": f"s3://{self.bucket}/{key}",
            "quarantined_at": datetime.now(UTC).isoformat(),
            "issues": [
                {"line": i.line, "rule": i.rule, "message": str(i)} for i in error.issues
            ],
        }
        self._put(target + ".reason.json", json.dumps(reason, indent=2), "application/json")
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        log.error("quarantined s3://%s/%s -> %s: %s", self.bucket, key, target, error)
        return target

    def check(self, keys: list[str]) -> Checked:
        """Validate every drop of a batch; quarantine the bad ones; keep the newest good one. Keys outside the
        incoming and versions prefixes are refused before any is read (:class:`CatalogKeyError`)."""
        for key in keys:
            catalog_key_of(key, self.bucket, self.settings)
        valid: list[str] = []
        quarantined: list[dict[str, str]] = []
        for key in keys:
            try:
                catalog = self.load(key)
            except CatalogValidationError as error:
                if is_under(key, self.settings.incoming_prefix):
                    target = self.quarantine(key, error)
                else:  # an archived version (a rollback) that no longer validates: reported, left where it is
                    target = key
                    log.error("s3://%s/%s is not valid and is left in place: %s", self.bucket, key, error)
                quarantined.append({"key": key, "quarantine_key": target, "error": str(error)})
            except self.s3.exceptions.NoSuchKey:
                log.warning("s3://%s/%s is gone (already synced or moved); skipped", self.bucket, key)
            else:
                log.info("%s: valid, %d products, version %s", key, len(catalog.products), catalog.version)
                valid.append(key)
        return Checked(valid[-1] if valid else None, valid[:-1], quarantined)

    def current(self) -> dict[str, Any] | None:
        """The marker of the version the Knowledge Base holds, or None before the first sync."""
        try:
            return json.loads(self._get(self.settings.current_marker_key))
        except self.s3.exceptions.NoSuchKey:
            return None

    def stage(self, key: str) -> dict[str, Any]:
        """Version the drop and, if its content is new, replace the data source's documents with it.

        Returns ``{"catalog_version", "version_key", "changed", "products", "dropped_at", "stale"}``;
        ``changed`` is False when the Knowledge Base already holds this exact content, or when the drop is
        ``stale``: older (S3 ``LastModified``) than the drop the Knowledge Base holds, as when the S3 notices of
        two drops reach separate runs out of order (SQS standard queues do not keep order). Then nothing under
        the data prefix is touched; the drop stays under versions/. Only drops (keys under the incoming prefix)
        are compared: a manual re-sync of an older version's key under versions/ is a deliberate rollback.
        """
        catalog, modified = self._load(key)  # re-validated: the file may have been replaced since the check
        version_key = f"{self.settings.versions_prefix}{catalog.version}/{key.rsplit('/', 1)[-1]}"
        if version_key != key:  # a rollback names the version's own key: nothing to copy
            self.s3.copy_object(Bucket=self.bucket, Key=version_key, CopySource={"Bucket": self.bucket, "Key": key})
        current = self.current()
        held = current or {}
        is_drop = key.startswith(self.settings.incoming_prefix)
        held_since = held.get("dropped_at")
        stale = bool(is_drop and held_since and modified < datetime.fromisoformat(held_since)
                     and held.get("catalog_version") != catalog.version)
        staged = {
            "catalog_version": catalog.version,
            "catalog_sha256": catalog.sha256,
            "version_key": version_key,
            "products": len(catalog.products),
            "dropped_at": modified.isoformat() if is_drop else None,
            "stale": stale,
            "changed": not stale and (not current or current.get("catalog_version") != catalog.version),
        }
        if stale:
            log.warning("%s (dropped %s) is older than the drop the Knowledge Base holds (version %s, dropped "
                        "%s): its notice came late, so it is not synced (kept as %s). Upload it again to make "
                        "it current.", key, staged["dropped_at"], held["catalog_version"], held_since,
                        version_key)
            return staged
        if not staged["changed"]:
            log.info("catalog version %s is already in the Knowledge Base; ingestion skipped", catalog.version)
            return staged
        wanted = set()
        for doc_key, product in document_keys(catalog, self.data_prefix).items():
            self._put(doc_key, product.to_document())
            self._put(doc_key + ".metadata.json", document_metadata(product, catalog.version), "application/json")
            wanted.update({doc_key, doc_key + ".metadata.json"})
        stale_keys = [o["Key"] for o in self._keys(self.data_prefix)
                      if o["Key"] not in wanted and is_under(o["Key"], self.data_prefix)]
        for stale_key in stale_keys:  # products removed from the catalog leave the KB on the next ingestion
            self.s3.delete_object(Bucket=self.bucket, Key=stale_key)
        log.info(
            "staged catalog version %s: %d product documents under s3://%s/%s (%d stale removed)",
            catalog.version, len(catalog.products), self.bucket, self.data_prefix, len(stale_keys),
        )
        return staged

    def publish(self, staged: dict[str, Any], ingestion_job_id: str | None, run_id: str) -> dict[str, Any]:
        """Record the version the Knowledge Base now holds (only after the ingestion COMPLETEd)."""
        marker = {
            "catalog_version": staged["catalog_version"],
            "catalog_sha256": staged["catalog_sha256"],
            "version_key": staged["version_key"],
            "products": staged["products"],
            "dropped_at": staged.get("dropped_at"),
            "ingestion_job_id": ingestion_job_id,
            "run_id": run_id,
            "synced_at": datetime.now(UTC).isoformat(),
        }
        self._put(self.settings.current_marker_key, json.dumps(marker, indent=2), "application/json")
        return marker

    def remove_drops(self, keys: list[str]) -> None:
        """Delete handled drops from the incoming prefix (their content is kept under versions/). Keys elsewhere
        (a manual re-sync of ``catalog/versions/...``) are left alone: they are the archive."""
        for key in keys:
            if is_under(key, self.settings.incoming_prefix):
                self.s3.delete_object(Bucket=self.bucket, Key=key)


# --- the verdict on a finished ingestion job ------------------------------------------------------------------

#: Bedrock IngestionJobStatus values (botocore bedrock-agent model, ``IngestionJobStatus``) that are still running,
#: and the ones after which the job will not change any more.
INGESTION_RUNNING_STATES = ("STARTING", "IN_PROGRESS")
INGESTION_TERMINAL_STATES = ("COMPLETE", "FAILED", "STOPPING", "STOPPED")
#: How many ``failureReasons`` a message quotes, and how many characters of each (one reason can list many URIs).
QUOTED_REASONS = 3
REASON_CHARS = 400


@dataclass(frozen=True)
class IngestionVerdict:
    """What a sync may do after reading an ingestion job (:func:`ingestion_verdict`).

    ``done``: stop polling (the job, or the wait for it, is over). ``ok``: the Knowledge Base holds every document
    of the data source, so the catalog version may be published. ``final``: a failure that waiting on the same
    job again cannot change (retrying the wait is pointless; a new job is needed). ``message``: what the log or
    the task failure says.
    """

    status: str
    done: bool
    ok: bool
    final: bool
    message: str
    documents_failed: int = 0


def failure_reason_lines(reasons: Any) -> list[str]:
    """The job's ``failureReasons`` as plain strings. An entry that is itself a JSON-encoded list of strings (as
    reported for jobs with failed documents, e.g. ``'["Encountered error: Ignored 1 files ... [Files: s3://...]"]'``)
    is unpacked; anything else is kept as its text."""
    lines: list[str] = []
    for reason in reasons or []:
        text = str(reason).strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, list) and all(isinstance(item, str) for item in decoded):
                lines.extend(item.strip() for item in decoded if item.strip())
                continue
        if text:
            lines.append(text)
    return lines


def quote_reasons(reasons: list[str], limit: int = QUOTED_REASONS, chars: int = REASON_CHARS,
                  quote: bool = True) -> str:
    """The first ``limit`` reasons (in double quotes unless ``quote`` is False), each cut to ``chars`` characters,
    then how many were left out."""
    if not reasons:
        return "no reason given"
    mark = '"' if quote else ""
    quoted = [f"{mark}{r[:chars]}…{mark}" if len(r) > chars else f"{mark}{r}{mark}" for r in reasons[:limit]]
    rest = len(reasons) - limit
    return "; ".join(quoted) + (f" (and {rest} more reason{'s' if rest != 1 else ''})" if rest > 0 else "")


def _count(statistics: dict[str, Any], field: str) -> int:
    value = statistics.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def ingestion_verdict(job: dict[str, Any] | None) -> IngestionVerdict:
    """Decide from a GetIngestionJob ``ingestionJob`` dict whether the sync succeeded.

    ``COMPLETE`` alone is not success: a job whose documents partly failed still ends COMPLETE, with
    ``statistics.numberOfDocumentsFailed`` > 0 and ``failureReasons`` naming them (FACTS.md section 5, observed
    runs; the provider's sensor and waiter never look at the statistics). Such a job is a final failure: the
    Knowledge Base serves the documents that were indexed and lacks the failed ones, so the catalog version must
    not be published. FAILED, STOPPING and STOPPED are final failures too; ``TIMEOUT`` (our trigger's own status
    when its deadline passed) and a missing status are failures a retry may cure. STARTING/IN_PROGRESS are not
    done, and neither is a status this code does not know (the wait's own timeout ends it).
    """
    job = job or {}
    status = str(job.get("status") or "")
    job_id = job.get("ingestionJobId") or "(unknown id)"
    where = (f"Bedrock ingestion job {job_id} (knowledge base {job.get('knowledgeBaseId') or '?'}, data source "
             f"{job.get('dataSourceId') or '?'})")
    statistics = job.get("statistics") or {}
    reasons = failure_reason_lines(job.get("failureReasons"))
    if status in INGESTION_RUNNING_STATES or (status and status not in INGESTION_TERMINAL_STATES
                                              and status != "TIMEOUT"):
        # A state this code does not know (one AWS may add) is neither success nor failure: keep waiting, and let
        # the wait's own timeout end it.
        return IngestionVerdict(status, done=False, ok=False, final=False, message=f"{where} is {status}")
    failed, scanned = _count(statistics, "numberOfDocumentsFailed"), _count(statistics, "numberOfDocumentsScanned")
    if status == "COMPLETE" and not failed:
        counts = ", ".join(f"{_count(statistics, f)} {label}" for f, label in (
            ("numberOfDocumentsScanned", "scanned"), ("numberOfNewDocumentsIndexed", "new"),
            ("numberOfModifiedDocumentsIndexed", "modified"), ("numberOfDocumentsDeleted", "deleted"),
            ("numberOfDocumentsSkipped", "skipped")))
        warnings = f"; warnings: {quote_reasons(reasons)}" if reasons else ""
        return IngestionVerdict(status, done=True, ok=True, final=False,
                                message=f"{where} COMPLETE: {counts}, 0 failed{warnings}")
    if status == "COMPLETE":
        of = f" of {scanned}" if scanned >= failed else ""
        return IngestionVerdict(
            status, done=True, ok=False, final=True, documents_failed=failed,
            message=(
                f"{where} ended COMPLETE, but {failed}{of} documents scanned FAILED to ingest: the Knowledge Base now "
                f"serves the documents that were indexed and is missing the failed one{'s' if failed != 1 else ''}. "
                f"Failure reasons: {quote_reasons(reasons)}. The catalog version was NOT published: "
                "catalog/current.json is not advanced (it names the version held before, if any), kb-synced is not "
                "announced and the catalog drop stays in the incoming prefix. Check the documents named above in "
                "the data source's S3 prefix (content, size, .metadata.json sidecar; the job's warnings in the "
                "Bedrock console list the same reasons), fix the catalog and upload it again, or, for a transient "
                "cause, clear start_ingestion with its downstream tasks to run a new ingestion job."
            ),
        )
    shown = status or "without a status"
    message = (f"{where} ended {shown}: {quote_reasons(reasons, quote=False)}. The Knowledge Base keeps its "
               "previous version and the catalog drop stays in the incoming prefix")
    if status in INGESTION_TERMINAL_STATES:  # the job is over: waiting on it again cannot help
        return IngestionVerdict(status, done=True, ok=False, final=True, message=(
            f"{message}; fix the cause, then clear start_ingestion with its downstream tasks (or the whole run) to "
            "start a new ingestion job."))
    return IngestionVerdict(shown, done=True, ok=False, final=False,
                            message=f"{message}; a retry waits on the same job again.")

"""Tasks of ``qa_dataset_build``: plan -> generate candidate pairs (Converse) -> curate, split, validate, write.

Thin shells over :mod:`tailor.qa_generation`. Everything lands under ``qa/generated/<version>/`` where the
version is a content hash of catalog + params + prompt + reference test set, so a re-run overwrites its own files.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tailor_airflow.clients import retrying_config, settings_and_s3

#: The packaged sample catalog (relative to include/), used when no catalog has been synced yet.
SAMPLE_CATALOG = "data/catalog/industrial_catalog.txt"
OUTPUT_PREFIX = "qa/generated/"


def _resolve_catalog(reference: str | None, cfg: Any, s3: Any) -> str:
    """``s3://bucket/key`` (the bake-off bucket only), a file under include/, or a key in the bake-off bucket;
    empty: the version the Knowledge Base holds (``catalog/current.json``), else the packaged sample. A path
    outside include/ (``..``, absolute, a symlink out, a device) is refused: the Param reads nothing else."""
    from tailor.kb_sync import CatalogStore
    from tailor.objects import confined_path

    if not reference:
        marker = CatalogStore(s3, cfg.aws.bucket, cfg.catalog, cfg.knowledge_base.data_prefix).current()
        if marker is None:
            print(f"no catalog synced yet ({cfg.catalog.current_marker_key} missing): using the packaged sample "
                  f"{SAMPLE_CATALOG}")
            return str(confined_path(SAMPLE_CATALOG))
        print(f"catalog: version {marker['catalog_version']}, the one the Knowledge Base holds")
        return f"s3://{cfg.aws.bucket}/{marker['version_key']}"
    if reference.startswith("s3://"):
        return reference
    try:
        return str(confined_path(reference))
    except FileNotFoundError:  # not a packaged file: a key in the bake-off bucket
        return f"s3://{cfg.aws.bucket}/{reference.lstrip('/')}"
    except ValueError as error:
        raise AirflowFailException(f"catalog Param rejected, nothing was generated: {error}") from None


def _load_catalog(source: str, cfg: Any, s3: Any) -> Any:
    from tailor.catalog import parse_catalog
    from tailor.exceptions import CatalogValidationError
    from tailor.objects import read_confined

    try:
        data = read_confined(source, s3, bucket=cfg.aws.bucket, max_bytes=cfg.catalog.max_bytes)
        return parse_catalog(data, source, max_bytes=cfg.catalog.max_bytes,
                             max_name_chars=cfg.catalog.max_name_chars)
    except FileNotFoundError:
        raise AirflowFailException(f"catalog {source} not found: set the catalog Param to an s3:// URI, a key in "
                                   f"the bucket or a path under include/ (empty: the synced version)") from None
    except CatalogValidationError as error:
        raise AirflowFailException(f"catalog {source} is invalid, nothing was generated:\n{error}") from None
    except ValueError as error:  # another bucket, over the size limit
        raise AirflowFailException(f"catalog Param rejected, nothing was generated: {error}") from None


def _reference_test_set(cfg: Any, s3: Any) -> Any:
    from tailor.exceptions import QADatasetError
    from tailor.qa import load_qa

    try:
        return load_qa(cfg.qa.test_set, s3)
    except QADatasetError as error:
        raise AirflowFailException(f"reference test set {cfg.qa.test_set} (used to reject leaking pairs) is "
                                   f"invalid:\n{error}") from None


@task(multiple_outputs=True)
def plan_dataset(**context: Any) -> dict[str, Any]:
    """Resolve and validate the catalog, resolve the Params, and name the dataset version (content hash)."""
    from tailor.bedrock_ids import model_id_problems
    from tailor.model_access import ConfiguredModel
    from tailor.qa_generation import dataset_version, resolve_params
    from tailor_airflow.clients import check_models

    cfg, s3 = settings_and_s3()
    params = context["params"]
    source = _resolve_catalog(params.get("catalog"), cfg, s3)
    catalog = _load_catalog(source, cfg, s3)
    reference = _reference_test_set(cfg, s3)
    resolved = resolve_params(params, cfg.evaluation.generator_model_id)
    if problems := model_id_problems([resolved["generator_model_id"]], "generator_model_id"):
        raise AirflowFailException("\n".join(problems))
    check_models(cfg, [ConfiguredModel(resolved["generator_model_id"], "generator", "the generator_model_id Param "
                                       "(default: TAILOR__EVALUATION__GENERATOR_MODEL_ID)")])
    version = dataset_version(catalog.sha256, resolved, reference.version)
    products = [p.name for p in catalog.products[: resolved["product_limit"] or None]]
    print(f"dataset {version}: catalog {catalog.version} ({len(products)} of {len(catalog.products)} products), "
          f"params {resolved}")
    return {"version": version, "prefix": f"{OUTPUT_PREFIX}{version}/", "params": resolved,
            "catalog": {"source": source, "version": catalog.version, "sha256": catalog.sha256,
                        "products_total": len(catalog.products), "products_used": products},
            "reference_test_set": {"source": reference.source, "version": reference.version}}


def _catalog_products(plan: dict[str, Any], cfg: Any, s3: Any) -> list[Any]:
    catalog = _load_catalog(plan["catalog"]["source"], cfg, s3)
    if catalog.sha256 != plan["catalog"]["sha256"]:
        raise AirflowFailException(f"catalog {plan['catalog']['source']} changed since the plan task "
                                   f"({plan['catalog']['version']} -> {catalog.version}): re-run the DAG")
    return list(catalog.products[: plan["params"]["product_limit"] or None])


@task
def generate_candidates(plan: dict[str, Any]) -> dict[str, Any]:
    """One greedy Converse call per passage (bounded concurrency); raw replies persisted before any filtering."""
    from airflow.providers.amazon.aws.hooks.bedrock import BedrockRuntimeHook

    from tailor.objects import to_jsonl
    from tailor.qa_generation import generate_replies, passages, reply_record

    cfg, s3 = settings_and_s3()
    params = plan["params"]
    items = passages(_catalog_products(plan, cfg, s3), params["questions_per_section"])
    concurrency = cfg.evaluation.concurrency
    # A generation can outlast botocore's 60 s read timeout under load, and a timed-out call retried re-queues
    # the same generation behind the first: wait longer instead.
    config = retrying_config(max(10, concurrency), read_timeout=300)
    client = BedrockRuntimeHook(aws_conn_id=cfg.aws.conn_id, config=config).conn
    started = time.monotonic()
    replies = generate_replies(client, params["generator_model_id"], items, concurrency=concurrency)
    failed = [r for r in replies if r.error is not None]
    if replies and len(failed) == len(replies):  # nothing to curate: likely access or quota; worth a retry
        raise AirflowException(f"all {len(replies)} Converse calls to {params['generator_model_id']} failed, "
                               f"first error: {failed[0].error}")
    key = f"{plan['prefix']}replies.jsonl"
    # A re-run of the same version overwrites its files: until a new manifest is written, it is not complete.
    s3.delete_object(Bucket=cfg.aws.bucket, Key=f"{plan['prefix']}manifest.json")
    s3.put_object(Bucket=cfg.aws.bucket, Key=key, Body=to_jsonl([reply_record(r) for r in replies]))
    tokens = {"input": sum(r.input_tokens for r in replies), "output": sum(r.output_tokens for r in replies)}
    print(f"{len(replies)} Converse calls ({len(failed)} failed) in {time.monotonic() - started:.1f} s, "
          f"tokens {tokens} -> s3://{cfg.aws.bucket}/{key}")
    return {"replies_key": key, "calls": len(replies), "calls_failed": len(failed), "tokens": tokens}


@task
def curate_dataset(plan: dict[str, Any], generated: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Parse strictly, drop bad pairs (by reason), split by product section, validate, write train/test/manifest."""
    from tailor.catalog import SECTIONS
    from tailor.exceptions import QADatasetError
    from tailor.objects import read_jsonl
    from tailor.qa import parse_qa
    from tailor.qa_generation import (
        CurationSettings,
        curate,
        dataset_manifest,
        qa_records,
        reply_from_record,
        split_by_section,
    )

    cfg, s3 = settings_and_s3()
    params, prefix, bucket = plan["params"], plan["prefix"], cfg.aws.bucket
    replies = [reply_from_record(record) for record in read_jsonl(s3, bucket, generated["replies_key"])]
    sections = {(p.name, s): p.section(s) for p in _catalog_products(plan, cfg, s3) for s in SECTIONS}
    settings = CurationSettings(params["near_duplicate_threshold"], params["grounding_floor"])
    curated = curate(replies, sections, _reference_test_set(cfg, s3), settings)
    dropped = curated.drop_counts()
    for drop in curated.drops:
        print(f"dropped [{drop.reason}] {drop.product_name} / {drop.section}: {drop.detail}")
    for pair in curated.kept:
        print(f"kept {pair.product_name} / {pair.section}: {pair.question} -> {pair.answer}")
    print(f"{curated.candidates} candidates from {len(replies)} replies: {len(curated.kept)} kept "
          f"({curated.trimmed} answer(s) cut by max_tokens kept to their last full sentence), dropped {dropped}, "
          f"{curated.ignored_lines} stray line(s) ignored")
    train, test = split_by_section(curated.kept, params["test_fraction"])
    if not train or not test:
        groups = len({(c.product_name, c.section) for c in curated.kept})
        raise AirflowFailException(
            f"only {len(curated.kept)} pair(s) from {groups} product section(s) survived (dropped: {dropped}); "
            "a split by section needs kept pairs from at least 2 sections. Raise questions_per_section or "
            "product_limit, lower grounding_floor, or use a stronger generator_model_id. Raw replies: "
            f"s3://{bucket}/{generated['replies_key']}")
    files = {}
    for name, pairs in (("train", train), ("test", test)):
        data = json.dumps(qa_records(pairs), indent=2, ensure_ascii=False).encode("utf-8")
        try:
            parse_qa(data, f"s3://{bucket}/{prefix}{name}.json")  # the consumers' validator, before upload
        except QADatasetError as error:
            raise AirflowFailException(f"generated {name} set failed validation, nothing written:\n{error}") from None
        files[name] = data
    manifest = dataset_manifest(plan, generated, curated, train, test, passages_count=len(replies),
                                run_id=context["run_id"], created_at=datetime.now(UTC).isoformat())
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}.json", Body=data, ContentType="application/json")
    # Written last: a manifest marks a complete dataset.
    s3.put_object(Bucket=bucket, Key=f"{prefix}manifest.json", Body=json.dumps(manifest, indent=2).encode("utf-8"),
                  ContentType="application/json")
    print(f"dataset {plan['version']}: {len(train)} train / {len(test)} test pairs -> s3://{bucket}/{prefix}")
    return {"prefix": prefix, "version": plan["version"], "counts": manifest["counts"]}


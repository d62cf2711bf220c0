"""Tasks of ``weekly_evaluation``: plan batches -> answers (mapped, persisted first) -> scores -> publish."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from tailor.objects import read_jsonl, to_jsonl
from tailor_airflow.clients import champion_method, settings_and_s3


def run_prefix(output_prefix: str, run_id: str) -> str:
    """Where one run's outputs live: never shared with (or overwritten by) another run."""
    return f"{output_prefix}{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}/"


def _synced_catalog(cfg: Any, s3: Any) -> Any:
    """The catalog the Knowledge Base holds (``catalog.current_marker_key``), or None before the first sync."""
    import logging

    from tailor.exceptions import CatalogValidationError
    from tailor.kb_sync import CatalogStore

    store = CatalogStore(s3, cfg.aws.bucket, cfg.catalog, cfg.knowledge_base.data_prefix)
    marker = store.current()
    if marker is None:
        logging.getLogger(__name__).warning(
            "no catalog synced yet (s3://%s/%s missing): product names of the QA set are not checked against a "
            "catalog; run catalog_kb_sync first", cfg.aws.bucket, cfg.catalog.current_marker_key)
        return None
    try:
        return store.load(marker["version_key"])
    except s3.exceptions.NoSuchKey:
        raise AirflowFailException(f"the catalog the Knowledge Base holds, s3://{cfg.aws.bucket}/"
                                   f"{marker['version_key']}, is missing: re-run catalog_kb_sync") from None
    except CatalogValidationError as error:
        raise AirflowFailException(f"the catalog the Knowledge Base holds is invalid:\n{error}") from None


def check_model_access(cfg: Any, judge_models: list[str], approaches: list[str], client: Any = None) -> list[str]:
    """The weekly run's models (the generator when ``rag`` runs, every judge) checked before any call is paid."""
    from tailor.model_access import ConfiguredModel
    from tailor_airflow.clients import check_models

    models = [ConfiguredModel(m, "judge", "the judge_models Param (default: TAILOR__EVALUATION__JUDGE_MODELS)")
              for m in judge_models]
    if "rag" in approaches:
        models.insert(0, ConfiguredModel(cfg.evaluation.generator_model_id, "generator",
                                         "TAILOR__EVALUATION__GENERATOR_MODEL_ID (evaluation.generator_model_id)"))
    return check_models(cfg, models, client)


@task
def plan_batches(**context: Any) -> list[dict[str, Any]]:
    """Validate the judges and the QA set, match its products against the synced catalog (all before any model
    call), snapshot it under the run, and cut it into batches: at most ``[core] max_map_length`` of them."""
    from airflow.configuration import conf

    from tailor.bedrock_ids import model_id_problems
    from tailor.exceptions import QADatasetError
    from tailor.qa import batch_plan, check_products, load_qa

    cfg, s3 = settings_and_s3()
    params = context["params"]
    if problems := model_id_problems(params["judge_models"]):
        raise AirflowFailException("judge_models rejected, no model was called:\n" + "\n".join(problems))
    model_warnings = check_model_access(cfg, params["judge_models"], params["approaches"])
    # the Param comes from whoever triggers the run: the bake-off bucket only; qa.test_set is the deployer's
    bucket = cfg.aws.bucket if params.get("dataset") else None
    catalog = _synced_catalog(cfg, s3)
    try:
        dataset = load_qa(params.get("dataset") or cfg.qa.test_set, s3, bucket=bucket)
        if catalog is not None:
            check_products(dataset, [p.name for p in catalog.products], f"catalog version {catalog.version}")
    except QADatasetError as error:
        raise AirflowFailException(f"QA dataset rejected, no model was called:\n{error}") from None
    items = list(dataset.items[: params.get("sample_limit") or None])
    prefix = run_prefix(cfg.evaluation.output_prefix, context["run_id"])
    snapshot = {"source": dataset.source, "version": dataset.version, "items": [asdict(i) for i in items],
                "model_warnings": model_warnings}
    max_tasks = conf.getint("core", "max_map_length", fallback=1024)
    try:
        plan = batch_plan(len(items), params["approaches"], cfg.evaluation.batch_size, max_tasks)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    s3.put_object(Bucket=cfg.aws.bucket, Key=f"{prefix}dataset.json", Body=json.dumps(snapshot).encode())
    batches = [{"approach": b.approach, "index": b.index, "prefix": prefix,
                "sample_ids": [i.sample_id for i in items[b.start : b.stop]]} for b in plan]
    size = plan[0].stop - plan[0].start if plan else cfg.evaluation.batch_size
    print(f"{len(items)} samples of dataset {dataset.version} x {params['approaches']} -> {len(batches)} batches "
          f"of up to {size} (batch_size {cfg.evaluation.batch_size}, max_map_length {max_tasks})")
    return batches


def _ports(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.approaches import Ports
    from tailor_airflow.clients import retrying_config

    config = retrying_config(32)
    clients = [AwsBaseHook(aws_conn_id=conn_id, client_type=t, config=config).get_conn()
               for t in ("bedrock-agent-runtime", "bedrock-runtime", "sagemaker-runtime")]
    return Ports(*clients)


def _endpoint_missing(conn_id: str, name: str) -> str | None:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.aws_errors import describe_or_none

    sagemaker = AwsBaseHook(aws_conn_id=conn_id, client_type="sagemaker").get_conn()
    # only "not found" is an answer about the endpoint; AccessDenied or throttling fail the task (retried)
    described = describe_or_none(lambda: sagemaker.describe_endpoint(EndpointName=name), "endpoint")
    if described is None:
        return f"endpoint {name} not found: run monthly_finetune to deploy a champion"
    status = described["EndpointStatus"]
    return None if status in ("InService", "Updating") else f"endpoint {name} is {status}, not InService"


@task(map_index_template="{{ batch_label }}")
def generate_answers(batch: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Answer one batch with one approach and persist the per-sample JSONL before any scoring."""
    from tailor.approaches import AnswerSettings, answer_batch
    from tailor.qa import QAItem

    from airflow.sdk import get_current_context

    approach = batch["approach"]
    get_current_context()["batch_label"] = f"{approach} #{batch['index']}"  # names the mapped task in the UI
    cfg, s3 = settings_and_s3()
    snapshot = json.loads(s3.get_object(Bucket=cfg.aws.bucket, Key=f"{batch['prefix']}dataset.json")["Body"].read())
    wanted = set(batch["sample_ids"])
    items = [QAItem(**i) for i in snapshot["items"] if i["sample_id"] in wanted]
    settings = AnswerSettings(
        knowledge_base_id=cfg.require("knowledge_base", "knowledge_base_id"), top_k=cfg.knowledge_base.top_k,
        generator_model_id=cfg.evaluation.generator_model_id, endpoint_name=cfg.finetune.champion_endpoint,
        max_tokens=cfg.evaluation.max_tokens, temperature=cfg.evaluation.temperature,
        concurrency=cfg.evaluation.concurrency,
        finetune_method=champion_method(cfg, s3) if approach != "rag" else cfg.finetune.method,
    )
    missing = _endpoint_missing(cfg.aws.conn_id, settings.endpoint_name) if approach != "rag" else None
    if missing:  # the approach fails with a clear message; other approaches' batches go on
        records = [{"sample_id": i.sample_id, "approach": approach, "product_name": i.product_name,
                    "question": i.question, "reference": i.answer, "answer": None, "error": missing,
                    "latency_ms": None, "retrieval_ms": None, "input_tokens": None, "output_tokens": None,
                    "retrieved": [], "stop_reason": None, "truncated": None} for i in items]
    else:
        records = answer_batch(approach, items, _ports(cfg.aws.conn_id), settings)
    key = f"{batch['prefix']}answers/{approach}/batch-{batch['index']:04d}.jsonl"
    s3.put_object(Bucket=cfg.aws.bucket, Key=key, Body=to_jsonl(records))
    errors = sum(r["error"] is not None for r in records)
    print(f"{approach} batch {batch['index']}: {len(records)} answers ({errors} errors) -> s3://{cfg.aws.bucket}/{key}")
    return {"key": key, "approach": approach, "n": len(records), "errors": errors}


@task(multiple_outputs=True)
def score_answers(generated: list[dict[str, Any]]) -> dict[str, Any]:
    """BERTScore (one model load for the run), key-fact match and retrieval hit for every answer."""
    from tailor.metrics.bertscore import BertScorer
    from tailor.metrics.facts import key_fact_match
    from tailor.metrics.retrieval import retrieval_hit

    cfg, s3 = settings_and_s3()
    records = [r for g in generated for r in read_jsonl(s3, cfg.aws.bucket, g["key"])]
    answered = [r for r in records if r["error"] is None]
    scorer = BertScorer(cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers)
    report = scorer.score_report([r["answer"] or "" for r in answered], [r["reference"] for r in answered])
    for record, (_, _, f1), windowed in zip(answered, report.scores, report.windowed, strict=True):
        record["bertscore_f1"] = min(1.0, max(0.0, float(f1)))
        record["bertscore_windowed"] = windowed
        record["key_fact_match"] = key_fact_match(record["answer"] or "", record["reference"])
    print(f"BERTScore over windows (a text longer than the model's window, never truncated): {report.n_windowed} "
          f"of {len(answered)} pairs ({report.windowed_candidates} answers, {report.windowed_references} references)")
    for record in records:
        record.setdefault("bertscore_f1", None)
        record.setdefault("key_fact_match", None)
        record["retrieval_hit"] = (retrieval_hit(record["product_name"], record["retrieved"])
                                   if record["approach"] != "finetune" and record["error"] is None else None)
    prefix = generated[0]["key"].split("answers/")[0]
    s3.put_object(Bucket=cfg.aws.bucket, Key=f"{prefix}scored.jsonl", Body=to_jsonl(records))
    print(f"scored {len(answered)} of {len(records)} answers -> s3://{cfg.aws.bucket}/{prefix}scored.jsonl")
    from tailor.prompts import PROMPT_VERSION

    dataset = json.loads(s3.get_object(Bucket=cfg.aws.bucket, Key=f"{prefix}dataset.json")["Body"].read())
    return {"scored_uri": f"s3://{cfg.aws.bucket}/{prefix}scored.jsonl",
            "judged_uri": f"s3://{cfg.aws.bucket}/{prefix}judged.jsonl",
            "versions": {"dataset_version": dataset["version"], "prompt_version": PROMPT_VERSION,
                         "generator_model": cfg.evaluation.generator_model_id}}


@task
def publish_results(judged_uri: str, judged: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    """summary_results.csv + report.html under the run (the judge operator has written the warehouse)."""
    from tailor.cost import load_prices
    from tailor.report import render_report
    from tailor.summary import format_table, summarize, write_summary_csv

    cfg, s3 = settings_and_s3()
    judged_key = judged_uri.removeprefix(f"s3://{cfg.aws.bucket}/")
    records = read_jsonl(s3, cfg.aws.bucket, judged_key)
    prefix = judged_key.removesuffix("judged.jsonl")
    dataset = json.loads(s3.get_object(Bucket=cfg.aws.bucket, Key=f"{prefix}dataset.json")["Body"].read())
    prices, usage = load_prices()
    summaries = summarize(records, prices=prices, usage=usage,
                          endpoint_instance_type=cfg.finetune.endpoint_instance_type)
    notes = [cfg.evaluation.report_note] if cfg.evaluation.report_note else []
    notes += dataset.get("model_warnings") or []
    panel = judge_panel_problem(judged)
    notes += [panel] if panel else []
    html = render_report(summaries, run_id=context["run_id"], dataset_version=dataset["version"],
                         generated_at=datetime.now(timezone.utc), notes=notes)
    s3.put_object(Bucket=cfg.aws.bucket, Key=f"{prefix}summary_results.csv",
                  Body=write_summary_csv(summaries).encode(), ContentType="text/csv")
    s3.put_object(Bucket=cfg.aws.bucket, Key=f"{prefix}report.html", Body=html.encode(), ContentType="text/html")
    print(format_table(summaries))
    return {"prefix": prefix, "statuses": {s.approach: s.status for s in summaries},
            "errors": {s.approach: s.first_error for s in summaries if s.first_error}, "judge_panel": panel}


def judge_panel_problem(judged: dict[str, Any] | None) -> str | None:
    """What is wrong with the judge panel of a run (None: enough judges answered)."""
    if not judged or not judged.get("partial"):
        return None
    silent = [j for j in judged["judges"] if j not in judged["judges_answered"]]
    return (f"judge panel partial: {len(judged['judges_answered'])} of {len(judged['judges'])} judges answered "
            f"({judged['judges_required']} required; silent: {', '.join(silent)}); judge scores rest on fewer "
            "models than configured. See the judge_answers log for their errors")


@task
def check_complete(published: dict[str, Any]) -> None:
    """Results are kept either way; fail the run if an approach produced no answer at all."""
    failed = {a: published["errors"].get(a) for a, s in published["statuses"].items() if s == "failed"}
    problems = [f"{a} failed ({e})" for a, e in failed.items()]
    problems += [published["judge_panel"]] if published.get("judge_panel") else []
    if problems:
        raise AirflowFailException(
            "partial run: " + "; ".join(problems)
            + f". The results are kept in s3 under {published['prefix']} and in the warehouse.")

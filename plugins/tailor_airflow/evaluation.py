"""Tasks of ``weekly_evaluation``, each retry-safe: plan batches -> answers (mapped, persisted first) -> scores ->
(the judge operator) -> summaries (computed once) -> warehouse | CSV + report -> check.

Every task reads its inputs from, and writes its outputs to, the run's S3 prefix (:class:`tailor.records.RunLayout`),
and only the generation and judge tasks call a model: a retry of any later task pays for nothing."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from html import escape
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from tailor.records import Approach, RunLayout, SampleRecord, dump_records, load_records
from tailor_airflow.clients import champion_method, settings_and_s3


def run_prefix(output_prefix: str, run_id: str) -> str:
    """Where one run's outputs live: never shared with (or overwritten by) another run."""
    return RunLayout.for_run("", output_prefix, run_id).prefix


def _layout(cfg: Any, prefix: str) -> RunLayout:
    return RunLayout(cfg.aws.bucket, prefix)


def _read_json(s3: Any, layout: RunLayout, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())


def _records(s3: Any, layout: RunLayout, key: str) -> list[SampleRecord]:
    return load_records(s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())


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
    if any(not Approach.parse(a).uses_endpoint for a in approaches):
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
    layout = RunLayout.for_run(cfg.aws.bucket, cfg.evaluation.output_prefix, context["run_id"])
    snapshot = {"source": dataset.source, "version": dataset.version, "items": [asdict(i) for i in items],
                "model_warnings": model_warnings}
    estimate = spend_guard(cfg, params, [(i.question, i.answer) for i in items])
    snapshot["estimated_cost_usd"] = round(estimate.total_usd, 4)
    max_tasks = conf.getint("core", "max_map_length", fallback=1024)
    try:
        plan = batch_plan(len(items), params["approaches"], cfg.evaluation.batch_size, max_tasks)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    # read once for the run: every batch prompts the champion in the same format (None: rag only)
    method = champion_method(cfg, s3) if any(Approach.parse(a).uses_endpoint for a in params["approaches"]) else None
    s3.put_object(Bucket=layout.bucket, Key=layout.dataset, Body=json.dumps(snapshot).encode())
    batches = [{"approach": b.approach, "index": b.index, "prefix": layout.prefix, "finetune_method": method,
                "sample_ids": [i.sample_id for i in items[b.start : b.stop]]} for b in plan]
    size = plan[0].stop - plan[0].start if plan else cfg.evaluation.batch_size
    print(f"{len(items)} samples of dataset {dataset.version} x {params['approaches']} -> {len(batches)} batches "
          f"of up to {size} (batch_size {cfg.evaluation.batch_size}, max_map_length {max_tasks})")
    return batches


def spend_guard(cfg: Any, params: dict[str, Any], questions: list[tuple[str, str]]) -> Any:
    """Estimate the run's Bedrock spend and refuse it above ``max_run_cost_usd`` (Param, else the setting)."""
    from tailor.cost import estimate_run_cost
    from tailor.golden import balanced, load_golden

    kb = cfg.knowledge_base
    golden = len(balanced(load_golden(), cfg.evaluation.golden_limit)) if params.get("calibrate_judges", True) else 0
    estimate = estimate_run_cost(
        cfg.prices, questions=questions, approaches=params["approaches"],
        generator_model=cfg.evaluation.generator_model_id, judge_models=params["judge_models"],
        max_tokens=cfg.evaluation.max_tokens, context_chars=int(kb.top_k * kb.chunk_max_tokens * 4),
        judge_context_chars=cfg.evaluation.judge_context_chars, golden_answers=golden)
    limit = params.get("max_run_cost_usd")
    limit = cfg.evaluation.max_run_cost_usd if limit is None else float(limit)
    for line in estimate.lines:
        print(f"estimated spend, {line}")
    print(f"estimated spend: ${estimate.total_usd:.2f} of at most ${limit:.2f} (max_run_cost_usd)")
    if estimate.total_usd > limit:
        raise AirflowFailException(
            f"estimated spend ${estimate.total_usd:.2f} is over max_run_cost_usd ${limit:.2f}; no model was called. "
            + "; ".join(estimate.lines) + ". Lower sample_limit, use fewer approaches or judges, or raise the limit "
            "(the max_run_cost_usd Param, or TAILOR__EVALUATION__MAX_RUN_COST_USD)")
    return estimate


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
    from airflow.sdk import get_current_context

    from tailor.approaches import AnswerSettings, answer_batch
    from tailor.qa import QAItem

    approach = Approach.parse(batch["approach"])
    # names the mapped task in the UI (map_index_template): Airflow's documented way, outside its Context TypedDict
    get_current_context()["batch_label"] = f"{approach} #{batch['index']}"  # type: ignore[typeddict-unknown-key]
    cfg, s3 = settings_and_s3()
    layout = _layout(cfg, batch["prefix"])
    wanted = set(batch["sample_ids"])
    items = [QAItem(**i) for i in _read_json(s3, layout, layout.dataset)["items"] if i["sample_id"] in wanted]
    settings = AnswerSettings(
        knowledge_base_id=cfg.require("knowledge_base", "knowledge_base_id"), top_k=cfg.knowledge_base.top_k,
        generator_model_id=cfg.evaluation.generator_model_id, endpoint_name=cfg.finetune.champion_endpoint,
        max_tokens=cfg.evaluation.max_tokens, temperature=cfg.evaluation.temperature,
        concurrency=cfg.evaluation.concurrency,
        finetune_method=batch.get("finetune_method") or cfg.finetune.method,
    )
    missing = _endpoint_missing(cfg.aws.conn_id, settings.endpoint_name) if approach.uses_endpoint else None
    if missing:  # the approach fails with a clear message; other approaches' batches go on
        records = [SampleRecord(i.sample_id, approach, i.product_name, i.question, i.answer, error=missing)
                   for i in items]
    else:
        records = answer_batch(approach, items, _ports(cfg.aws.conn_id), settings)
    key = layout.answers(approach, batch["index"])
    s3.put_object(Bucket=layout.bucket, Key=key, Body=dump_records(records))
    errors = sum(r.error is not None for r in records)
    print(f"{approach} batch {batch['index']}: {len(records)} answers ({errors} errors) -> {layout.uri(key)}")
    return {"key": key, "approach": approach.value, "n": len(records), "errors": errors}


@task
def calibrate_judges(**context: Any) -> dict[str, Any]:
    """The run's judges score the golden set (human-scored answers; checkpointed like ``judge_answers``): how far
    each agrees with the humans, per criterion, to ``calibration.json`` under the run."""
    from airflow.providers.amazon.aws.hooks.bedrock import BedrockRuntimeHook

    from tailor.golden import balanced, calibration, judge_items, judgements_by_judge, load_golden
    from tailor.metrics.judge import JudgementCheckpoint, judge_many
    from tailor_airflow.clients import retrying_config

    cfg, s3 = settings_and_s3()
    params = context["params"]
    layout = RunLayout.for_run(cfg.aws.bucket, cfg.evaluation.output_prefix, context["run_id"])
    if not params.get("calibrate_judges", True):
        print("judge calibration off for this run (calibrate_judges Param): no golden-set call")
        return {"skipped": True}
    items = balanced(load_golden(), cfg.evaluation.golden_limit)
    chars = cfg.evaluation.judge_context_chars
    questions = [{**i, "context": i["context"][:chars] if i["context"] else None} for i in judge_items(items)]
    client = BedrockRuntimeHook(aws_conn_id=cfg.aws.conn_id, config=retrying_config(10)).conn
    with JudgementCheckpoint(s3, layout.bucket, layout.calibration_judgements) as checkpoint:
        judged = judge_many(client, params["judge_models"], questions, concurrency=cfg.evaluation.concurrency,
                            done=checkpoint.load(), on_judged=checkpoint.add)
    result = calibration(items, judgements_by_judge(judged))
    s3.put_object(Bucket=layout.bucket, Key=layout.calibration, Body=json.dumps(result).encode(),
                  ContentType="application/json")
    overall = {judge: r["overall"]["alpha"] for judge, r in result["judges"].items()}
    print(f"golden set ({len(items)} items): agreement with the human scores (alpha) {overall}")
    return {"skipped": False, "items": len(items), "overall_alpha": overall}


def _calibration_drift(cfg: Any, s3: Any, layout: RunLayout, run_id: str) -> tuple[dict[str, Any] | None, list[str]]:
    """This run's calibration (None: skipped) and its drift findings versus the last run's; the cross-run pointer is
    moved to this run (a retry finds its own run there and compares with the one before, as the first try did)."""
    from tailor.aws_errors import describe_or_none
    from tailor.golden import drift
    from tailor.records import calibration_pointer

    found = describe_or_none(lambda: s3.get_object(Bucket=layout.bucket, Key=layout.calibration))
    if found is None:
        return None, []
    current = json.loads(found["Body"].read())
    key = calibration_pointer(cfg.evaluation.output_prefix)
    pointer = describe_or_none(lambda: s3.get_object(Bucket=layout.bucket, Key=key))
    last = json.loads(pointer["Body"].read()) if pointer is not None else {}
    previous = last.get("previous") if last.get("run_id") == run_id else last.get("calibration")
    s3.put_object(Bucket=layout.bucket, Key=key, Body=json.dumps(
        {"run_id": run_id, "calibration": current, "previous": previous}).encode(), ContentType="application/json")
    return current, drift(current, previous)


@task(multiple_outputs=True)
def score_answers(generated: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
    """BERTScore (one model load for the run), key-fact match and retrieval hit for every answer."""
    from tailor.metrics.bertscore import BertScorer
    from tailor.metrics.facts import key_fact_match
    from tailor.metrics.retrieval import ndcg, reciprocal_rank, retrieval_hit
    from tailor.prompts import PROMPT_VERSION

    cfg, s3 = settings_and_s3()
    layout = RunLayout.for_run(cfg.aws.bucket, cfg.evaluation.output_prefix, context["run_id"])
    records = [r for g in generated for r in _records(s3, layout, g["key"])]
    answered = [r for r in records if r.error is None]
    scorer = BertScorer(cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers)
    report = scorer.score_report([r.answer or "" for r in answered], [r.reference for r in answered])
    for record, (_, _, f1), windowed in zip(answered, report.scores, report.windowed, strict=True):
        record.bertscore_f1 = min(1.0, max(0.0, float(f1)))
        record.bertscore_windowed = windowed
        record.key_fact_match = key_fact_match(record.answer or "", record.reference)
    print(f"BERTScore over windows (a text longer than the model's window, never truncated): {report.n_windowed} "
          f"of {len(answered)} pairs ({report.windowed_candidates} answers, {report.windowed_references} references)")
    for record in records:
        if record.approach.retrieves and record.error is None:
            chunks = [asdict(c) for c in record.retrieved]
            record.retrieval_hit = retrieval_hit(record.product_name, chunks)
            record.reciprocal_rank = reciprocal_rank(record.product_name, chunks)
            record.ndcg = ndcg(record.product_name, chunks)
    s3.put_object(Bucket=layout.bucket, Key=layout.scored, Body=dump_records(records))
    print(f"scored {len(answered)} of {len(records)} answers -> {layout.uri(layout.scored)}")
    dataset = _read_json(s3, layout, layout.dataset)
    return {"prefix": layout.prefix, "scored_uri": layout.uri(layout.scored), "judged_uri": layout.uri(layout.judged),
            "judgements_uri": layout.uri(layout.judgements),
            "versions": {"dataset_version": dataset["version"], "prompt_version": PROMPT_VERSION,
                         "generator_model": cfg.evaluation.generator_model_id}}


@task
def summarize_results(scored: dict[str, Any], judged: dict[str, Any], calibrated: dict[str, Any] | None = None,
                      **context: Any) -> dict[str, Any]:
    """Per-approach summaries, computed once for the warehouse and the report: ``summary.json`` under the run."""
    from tailor.metrics.agreement import judge_alpha
    from tailor.metrics.judge import DEFAULT_CRITERIA
    from tailor.metrics.paired import compare
    from tailor.model_access import self_preference
    from tailor.summary import summaries_to_json, summarize

    cfg, s3 = settings_and_s3()
    layout = _layout(cfg, scored["prefix"])
    records = _records(s3, layout, layout.judged)
    dataset = _read_json(s3, layout, layout.dataset)
    summaries = summarize([r.to_json() for r in records], prices=cfg.prices, usage=cfg.usage,
                          endpoint_instance_type=cfg.finetune.endpoint_instance_type)
    panel = judge_panel_problem(judged)
    calibration, drift = _calibration_drift(cfg, s3, layout, context["run_id"])
    for finding in drift:
        print(f"judge drift: {finding}")
    notes = [cfg.evaluation.report_note] if cfg.evaluation.report_note else []
    notes += (dataset.get("model_warnings") or []) + ([panel] if panel else []) + drift
    approaches = [Approach.parse(s.approach) for s in summaries]
    generators = [cfg.evaluation.generator_model_id] if any(not a.uses_endpoint for a in approaches) else []
    if any(a.uses_endpoint for a in approaches):  # the JumpStart id names the family first: meta-textgeneration-...
        generators.append(cfg.finetune.jumpstart_model_id.split("-", 1)[0] + ".jumpstart")
    notes += self_preference(judged["judges"], generators)
    rows = [r.to_json() for r in records]
    paired = compare(rows, [s.approach for s in summaries])  # seeded: the same records give the same intervals
    for comparison in paired:
        print(comparison.verdict)
    criteria = sorted({c for r in records for j in r.judgements or [] for c in j.scores}) or list(DEFAULT_CRITERIA)
    agreement = judge_alpha(rows, criteria)
    print(f"judge agreement (Krippendorff's alpha, interval): {agreement}")
    document = {"run_id": context["run_id"], "dataset_version": dataset["version"], "notes": notes,
                "versions": {**scored["versions"], "judge_models": ",".join(judged["judges"])},
                "summaries": summaries_to_json(summaries), "paired": [c.to_row() for c in paired],
                "judge_agreement": agreement, "calibration": calibration, "judge_drift": drift}
    s3.put_object(Bucket=layout.bucket, Key=layout.summary, Body=json.dumps(document).encode(),
                  ContentType="application/json")
    print(f"{len(summaries)} approach summaries -> {layout.uri(layout.summary)}")
    return {"prefix": layout.prefix, "statuses": {s.approach: s.status for s in summaries},
            "errors": {s.approach: s.first_error for s in summaries if s.first_error}, "judge_panel": panel,
            "judge_drift": drift}


@task
def load_warehouse(summarized: dict[str, Any], warehouse_conn_id: str, **context: Any) -> dict[str, int]:
    """``eval_run`` + ``eval_score`` rows of the run, one transaction per approach (a retry replaces them)."""
    from tailor.summary import summaries_from_json, warehouse_writes
    from tailor_airflow.clients import warehouse

    cfg, s3 = settings_and_s3()
    layout = _layout(cfg, summarized["prefix"])
    document = _read_json(s3, layout, layout.summary)
    records = [r.to_json() for r in _records(s3, layout, layout.judged)]
    # run_after, not start_date: clearing an old run resets its start_date, and it must not become "latest".
    dag_run = context["dag_run"]
    started = getattr(dag_run, "run_after", None) or dag_run.start_date or datetime.now(UTC)
    target = warehouse(warehouse_conn_id)
    target.ensure_schema()
    written = {}
    for run_row, rows in warehouse_writes(summaries_from_json(document["summaries"]), records,
                                          run_id=document["run_id"], started_at=started,
                                          versions=document["versions"]):
        written[run_row["approach"]] = target.write_run(run_row, rows)
        print(f"warehouse: {document['run_id']}/{run_row['approach']} written ({written[run_row['approach']]} "
              "score rows)")
    judges = document["versions"]["judge_models"]
    written["eval_paired"] = target.replace_run_rows("eval_paired", document["run_id"], document["paired"])
    written["eval_judge_agreement"] = target.replace_run_rows(
        "eval_judge_agreement", document["run_id"],
        [{"criterion": c, "judge_models": judges, "alpha": a} for c, a in document["judge_agreement"].items()])
    if document.get("calibration") is not None:
        from tailor.golden import calibration_rows

        written["eval_judge_calibration"] = target.replace_run_rows(
            "eval_judge_calibration", document["run_id"], calibration_rows(document["calibration"]))
    print(f"warehouse: {written['eval_paired']} paired comparisons, {written['eval_judge_agreement']} judge "
          f"agreement rows, {written.get('eval_judge_calibration', 0)} judge calibration rows")
    return written


@task
def publish_results(summarized: dict[str, Any], **context: Any) -> dict[str, Any]:
    """summary_results.csv + report.html under the run, from the summaries computed once."""
    from tailor.metrics.paired import paired_csv
    from tailor.report import render_report
    from tailor.summary import format_table, summaries_from_json, write_summary_csv

    cfg, s3 = settings_and_s3()
    layout = _layout(cfg, summarized["prefix"])
    document = _read_json(s3, layout, layout.summary)
    summaries = summaries_from_json(document["summaries"])
    html = render_report(summaries, run_id=document["run_id"], dataset_version=document["dataset_version"],
                         generated_at=datetime.now(UTC), notes=document["notes"], paired=document["paired"],
                         agreement=document["judge_agreement"], calibration=document.get("calibration"),
                         records=[r.to_json() for r in _records(s3, layout, layout.judged)])
    s3.put_object(Bucket=layout.bucket, Key=layout.summary_csv, Body=write_summary_csv(summaries).encode(),
                  ContentType="text/csv")
    s3.put_object(Bucket=layout.bucket, Key=layout.paired_csv, Body=paired_csv(document["paired"]).encode(),
                  ContentType="text/csv")
    s3.put_object(Bucket=layout.bucket, Key=layout.report, Body=html.encode(), ContentType="text/html")
    print(format_table(summaries))
    return {"csv": layout.uri(layout.summary_csv), "paired_csv": layout.uri(layout.paired_csv),
            "report": layout.uri(layout.report)}


def judge_panel_problem(judged: dict[str, Any] | None) -> str | None:
    """What is wrong with the judge panel of a run (None: enough judges answered)."""
    if not judged or not judged.get("partial"):
        return None
    silent = [j for j in judged["judges"] if j not in judged["judges_answered"]]
    return (f"judge panel partial: {len(judged['judges_answered'])} of {len(judged['judges'])} judges answered "
            f"({judged['judges_required']} required; silent: {', '.join(silent)}); judge scores rest on fewer "
            "models than configured. See the judge_answers log for their errors")


@task
def alert_on_findings(summarized: dict[str, Any], warehouse_conn_id: str, **context: Any) -> dict[str, Any]:
    """Regressions versus the last complete run (from the warehouse, paired per question), judge drift and a
    partial run: stored (``findings.json``, ``eval_finding``) and sent once per run through the configured
    notifiers."""
    from dataclasses import asdict as as_dict

    from tailor.alerts import Finding, alert_message, finding_rows, partial_run_findings, regressions
    from tailor.aws_errors import describe_or_none
    from tailor.metrics.paired import METRICS
    from tailor_airflow.clients import warehouse

    cfg, s3 = settings_and_s3()
    layout = _layout(cfg, summarized["prefix"])
    document = _read_json(s3, layout, layout.summary)
    run_id = document["run_id"]
    target = warehouse(warehouse_conn_id)
    previous = target.previous_complete_run(run_id)
    findings: list[Finding] = []
    if previous is not None:
        current = [r.to_json() for r in _records(s3, layout, layout.judged)]
        approaches = [s["approach"] for s in document["summaries"]]
        findings += regressions(current, target.run_scores(previous, METRICS), approaches, previous_run=previous)
    findings += [Finding("judge_drift", message) for message in document.get("judge_drift") or []]
    findings += partial_run_findings(summarized)
    target.replace_run_rows("eval_finding", run_id, finding_rows(findings))
    s3.put_object(Bucket=layout.bucket, Key=layout.findings, Body=json.dumps([as_dict(f) for f in findings]).encode(),
                  ContentType="application/json")
    print(f"{len(findings)} finding(s) versus {previous or 'no earlier complete run'}")
    for finding in findings:
        print(f"finding [{finding.kind}] {finding.message}")
    if not findings:
        return {"findings": 0, "notified": []}
    if describe_or_none(lambda: s3.get_object(Bucket=layout.bucket, Key=layout.alerted)) is not None:
        print(f"the alert of {run_id} was already sent (s3://{layout.bucket}/{layout.alerted}): not sending again")
        return {"findings": len(findings), "notified": []}
    message = alert_message(findings, run_id=run_id, report_uri=layout.uri(layout.report))
    sent = []
    for name, notifier in _notifiers(cfg, message, len(findings)):
        notifier.notify(context)  # not notifier(context): that renders the message as a Jinja template first
        sent.append(name)
    s3.put_object(Bucket=layout.bucket, Key=layout.alerted, Body=json.dumps({"notified": sent}).encode())
    print(f"alert sent through {sent or 'no notifier (none configured: set evaluation.alert_*)'}")
    return {"findings": len(findings), "notified": sent}


def _notifiers(cfg: Any, message: str, count: int) -> list[tuple[str, Any]]:
    """Airflow's notifiers for the configured connections (none configured: none)."""
    ev, found = cfg.evaluation, []
    subject = f"tailor weekly evaluation: {count} finding(s)"
    if ev.alert_smtp_conn_id:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to = [address.strip() for address in ev.alert_email_to.split(",") if address.strip()]
        if not to:
            raise AirflowFailException("evaluation.alert_smtp_conn_id is set but alert_email_to is empty: set "
                                       "TAILOR__EVALUATION__ALERT_EMAIL_TO")
        found.append(("smtp", SmtpNotifier(to=to, subject=subject, html_content=f"<pre>{escape(message)}</pre>",
                                           smtp_conn_id=ev.alert_smtp_conn_id)))
    if ev.alert_slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack import SlackNotifier
        except ImportError:
            raise AirflowFailException("evaluation.alert_slack_conn_id is set but the Slack provider is not "
                                       "installed: pip install apache-airflow-providers-slack") from None
        found.append(("slack", SlackNotifier(slack_conn_id=ev.alert_slack_conn_id, text=message,
                                             channel=ev.alert_slack_channel or "#general")))
    return found


@task
def check_complete(summarized: dict[str, Any]) -> None:
    """Results are kept either way; fail the run if an approach produced no answer at all or the panel shrank."""
    failed = {a: summarized["errors"].get(a) for a, s in summarized["statuses"].items() if s == "failed"}
    problems = [f"{a} failed ({e})" for a, e in failed.items()]
    problems += [summarized["judge_panel"]] if summarized.get("judge_panel") else []
    if problems:
        raise AirflowFailException(
            "partial run: " + "; ".join(problems)
            + f". The results are kept in s3 under {summarized['prefix']} and in the warehouse.")

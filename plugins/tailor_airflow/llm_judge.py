"""``LLMJudgeOperator``: blinded, per-answer LLM-as-judge scoring, written to the results warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseOperator


class LLMJudgeOperator(BaseOperator):
    """Judge every answer of an evaluation run with several LLM judges and write the results to a warehouse.

    Each answer is judged on its own with the approach hidden (no position or anchoring bias), through Bedrock
    Converse with a ``record_scores`` tool whose schema holds one score in [0, 1] per criterion and a
    rationale; a reply that cannot be parsed after retries is stored as NULL with its error, never as a
    sentinel. A sample's judge score is the mean over judges of the mean over criteria; the spread between
    judges is reported. Then, per approach and in one transaction each, ``eval_score`` rows (every metric of
    the run, plus one row per judge x criterion with its rationale) and the ``eval_run`` row (last) are
    written: re-running the task replaces its rows.

    :param answers_uri: S3 URI of the run's scored per-sample JSONL. (templated)
    :param output_uri: S3 URI where the judged JSONL is written. (templated)
    :param judge_model_ids: Bedrock model ids of the judges. (templated)
    :param run_id: The evaluation run's id, the warehouse key. (templated)
    :param criteria: Criteria names, each scored in [0, 1] (default: correctness, completeness,
        faithfulness, no_hallucination).
    :param concurrency: Judge calls in flight (throttling is retried adaptively by botocore).
    :param min_judges: Judges that must answer (score at least half of their answers) for the panel to count;
        when fewer were asked, all of them. Fewer answering marks the result ``partial`` (``check_complete``
        fails the run): a panel that silently shrinks to one model is not the panel that was configured.
    :param max_context_chars: Retrieved context shown to the judge is cut to this many characters (prompt cost).
    :param warehouse_conn_id: Airflow connection of the results warehouse (SQLite, Postgres or Redshift);
        ``None`` skips the warehouse write.
    :param warehouse_schema: Optional schema of the warehouse tables (validated identifier).
    :param versions: dataset/prompt/generator versions recorded on each ``eval_run`` row. (templated)
    :param aws_conn_id: The Airflow connection used for AWS credentials.
    """

    template_fields: Sequence[str] = ("answers_uri", "output_uri", "judge_model_ids", "run_id", "versions")
    ui_color = "#e8d8f8"

    def __init__(
        self,
        *,
        answers_uri: str,
        output_uri: str,
        judge_model_ids: list[str] | str,
        run_id: str = "{{ run_id }}",
        criteria: Sequence[str] | None = None,
        concurrency: int = 8,
        min_judges: int = 2,
        max_context_chars: int = 6000,
        warehouse_conn_id: str | None = None,
        warehouse_schema: str | None = None,
        versions: dict[str, Any] | None = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.answers_uri = answers_uri
        self.output_uri = output_uri
        self.judge_model_ids = judge_model_ids
        self.run_id = run_id
        self.criteria = tuple(criteria) if criteria else None
        self.concurrency = concurrency
        self.min_judges = min_judges
        self.max_context_chars = max_context_chars
        self.warehouse_conn_id = warehouse_conn_id
        self.warehouse_schema = warehouse_schema
        self.versions = versions or {}
        self.aws_conn_id = aws_conn_id

    def _judges(self) -> list[str]:
        ids = self.judge_model_ids
        ids = [i.strip() for i in ids.split(",")] if isinstance(ids, str) else list(ids)
        if not ids or not all(ids):
            raise ValueError(f"judge_model_ids must name at least one model, got {self.judge_model_ids!r}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"judge_model_ids lists a model twice ({ids}); each judge is called and billed once")
        return ids

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.bedrock import BedrockRuntimeHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from tailor.metrics.judge import DEFAULT_CRITERIA, agreement, aggregate, judge_many
        from tailor.model_access import judges_answered, required_judges
        from tailor.objects import read_jsonl, split_s3_uri, to_jsonl
        from tailor_airflow.clients import retrying_config

        judges, criteria = self._judges(), self.criteria or DEFAULT_CRITERIA
        # Both URIs checked before any judge call is paid for.
        (bucket, key), (out_bucket, out_key) = split_s3_uri(self.answers_uri), split_s3_uri(self.output_uri)
        s3 = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        records = read_jsonl(s3, bucket, key)
        config = retrying_config(max(10, self.concurrency))
        client = BedrockRuntimeHook(aws_conn_id=self.aws_conn_id, config=config).conn
        items = [{"sample_id": r["sample_id"], "approach": r["approach"], "question": r["question"],
                  "reference": r["reference"], "answer": r["answer"] if not r.get("error") else None,
                  "context": "\n\n".join(c["text"] for c in r.get("retrieved") or [])[: self.max_context_chars]
                  or None} for r in records]
        self.log.info("judging %d answers with %d judge(s) %s on %s", len(items), len(judges), judges, criteria)
        judged = judge_many(client, judges, items, criteria, concurrency=self.concurrency, log=self.log)
        by_key: dict[str, list[Any]] = {}
        for item_key, judgement in judged:
            by_key.setdefault(item_key, []).append(judgement)
        for record in records:
            judgements = by_key.get(f"{record['approach']}/{record['sample_id']}", [])
            record["judge_score"], record["judge_criteria"] = aggregate(judgements)
            record["judgements"] = [{"judge_model": j.judge_model, "scores": j.scores, "rationale": j.rationale,
                                     "error": j.error} for j in judgements]
        spread = agreement({k: v for k, v in by_key.items()})
        errors = sum(1 for _, j in judged if j.error)
        self.log.info("judge agreement: %s; %d of %d judge calls ended in an error (stored as NULL)",
                      spread, errors, len(judged))
        given: dict[str, list[bool]] = {judge: [] for judge in judges}
        for (_, judgement), item in zip(judged, (i for i in items for _ in judges), strict=True):
            if item["answer"] is not None:  # an answer that was never produced is nobody's failure to judge
                given[judgement.judge_model].append(judgement.error is not None)
        answered, required = judges_answered(given), required_judges(self.min_judges, len(judges))
        partial = any(given.values()) and len(answered) < required
        if partial:
            silent = {judge: next((j.error for _, j in judged if j.judge_model == judge and j.error), None)
                      for judge in judges if judge not in answered}
            self.log.error("judge panel partial: %d of %d judges answered (%d required); silent: %s",
                           len(answered), len(judges), required, silent)
        s3.put_object(Bucket=out_bucket, Key=out_key, Body=to_jsonl(records))
        if self.warehouse_conn_id:
            self._write_warehouse(records, judges, context)
        return {"uri": self.output_uri, "agreement": spread, "judge_calls": len(judged), "judge_errors": errors,
                "judges": judges, "judges_answered": answered, "judges_required": required, "partial": partial}

    def _write_warehouse(self, records: list[dict[str, Any]], judges: list[str], context: Any) -> None:
        from airflow.sdk import BaseHook

        from tailor.config import settings
        from tailor.cost import load_prices
        from tailor.summary import score_rows, summarize
        from tailor.warehouse import Warehouse

        connection = BaseHook.get_connection(self.warehouse_conn_id)
        dialect = {"sqlite": "sqlite", "postgres": "postgres", "redshift": "redshift"}.get(connection.conn_type)
        if dialect is None:
            raise ValueError(f"warehouse connection {self.warehouse_conn_id!r} has type {connection.conn_type!r}; "
                             "use a sqlite, postgres or redshift connection")
        warehouse = Warehouse(connection.get_hook(), dialect, schema=self.warehouse_schema)
        warehouse.ensure_schema()
        prices, usage = load_prices()
        summaries = summarize(records, prices=prices, usage=usage,
                              endpoint_instance_type=settings().finetune.endpoint_instance_type)
        rows = score_rows(records, run_id=self.run_id)
        for record in records:  # one row per judge x criterion, with the rationale
            for judgement in record["judgements"]:
                for criterion, score in judgement["scores"].items():
                    rows.append({"run_id": self.run_id, "approach": record["approach"],
                                 "sample_id": record["sample_id"], "metric": "judge", "criterion": criterion,
                                 "judge_model": judgement["judge_model"], "score": score,
                                 "rationale": judgement["rationale"], "error": judgement["error"]})
        # run_after, not start_date: clearing an old run resets its start_date, and it must not become "latest".
        dag_run = context["dag_run"]
        started = getattr(dag_run, "run_after", None) or dag_run.start_date or datetime.now(timezone.utc)
        versions = {**self.versions, "judge_models": ",".join(judges)}
        for summary in summaries:
            written = warehouse.write_run(summary.to_warehouse_row(self.run_id, started, versions),
                                          [r for r in rows if r["approach"] == summary.approach])
            self.log.info("warehouse: %s/%s written (%s score rows)", self.run_id, summary.approach, written)

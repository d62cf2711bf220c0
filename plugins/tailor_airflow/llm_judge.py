"""``LLMJudgeOperator``: blinded, per-answer LLM-as-judge scoring of an evaluation run, checkpointed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class LLMJudgeOperator(BaseOperator):
    """Judge every answer of an evaluation run with several LLM judges; checkpointed, so no judgement is paid twice.

    Each answer is judged on its own with the approach hidden (no position or anchoring bias), through Bedrock
    Converse with a ``record_scores`` tool whose schema holds one score in [0, 1] per criterion and a
    rationale; a reply that cannot be parsed after retries is stored as NULL with its error, never as a
    sentinel, and so is a call that failed (a ``ClientError`` or a network error after botocore's retries): one
    failed call never aborts the others. A sample's judge score is the mean over judges of the mean over
    criteria; the spread between judges is reported.

    Every judgement the model replied to is checkpointed under ``checkpoint_uri`` as it completes (see
    :class:`tailor.metrics.judge.JudgementCheckpoint`); a retry of this task re-uses each judgement whose request
    (judge id, prompt wording, answer, context, criteria) is unchanged and pays only for the rest. Judging is all
    this operator does: summaries, the warehouse and the report are downstream tasks, so their retries never
    call a model.

    :param answers_uri: S3 URI of the run's scored per-sample JSONL. (templated)
    :param output_uri: S3 URI where the judged JSONL is written. (templated)
    :param judge_model_ids: Bedrock model ids of the judges. (templated)
    :param checkpoint_uri: S3 prefix (ending in ``/``) of the judgement checkpoint; ``None``: no checkpoint
        (a retry pays again). (templated)
    :param criteria: Criteria names, each scored in [0, 1] (default: correctness, completeness,
        faithfulness, no_hallucination).
    :param concurrency: Judge calls in flight (throttling is retried adaptively by botocore).
    :param min_judges: Judges that must answer (score at least half of their answers) for the panel to count;
        when fewer were asked, all of them. Fewer answering marks the result ``partial`` (``check_complete``
        fails the run): a panel that silently shrinks to one model is not the panel that was configured.
    :param max_context_chars: Retrieved context shown to the judge is cut to this many characters (prompt cost).
    :param aws_conn_id: The Airflow connection used for AWS credentials.
    """

    template_fields: Sequence[str] = ("answers_uri", "output_uri", "judge_model_ids", "checkpoint_uri")
    ui_color = "#e8d8f8"

    def __init__(
        self,
        *,
        answers_uri: str,
        output_uri: str,
        judge_model_ids: list[str] | str,
        checkpoint_uri: str | None = None,
        criteria: Sequence[str] | None = None,
        concurrency: int = 8,
        min_judges: int = 2,
        max_context_chars: int = 6000,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.answers_uri = answers_uri
        self.output_uri = output_uri
        self.judge_model_ids = judge_model_ids
        self.checkpoint_uri = checkpoint_uri
        self.criteria = tuple(criteria) if criteria else None
        self.concurrency = concurrency
        self.min_judges = min_judges
        self.max_context_chars = max_context_chars
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
        from contextlib import nullcontext

        from airflow.providers.amazon.aws.hooks.bedrock import BedrockRuntimeHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from tailor.metrics.judge import DEFAULT_CRITERIA, JudgementCheckpoint, judge_many, panel_result
        from tailor.objects import split_s3_uri
        from tailor.records import dump_records, load_records
        from tailor_airflow.clients import retrying_config

        judges, criteria = self._judges(), self.criteria or DEFAULT_CRITERIA
        # Every URI checked before any judge call is paid for.
        (bucket, key), (out_bucket, out_key) = split_s3_uri(self.answers_uri), split_s3_uri(self.output_uri)
        checkpoint_at = split_s3_uri(self.checkpoint_uri) if self.checkpoint_uri else None
        s3 = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        records = load_records(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        checkpoint = JudgementCheckpoint(s3, *checkpoint_at) if checkpoint_at else None
        done = checkpoint.load() if checkpoint else {}
        config = retrying_config(max(10, self.concurrency))
        client = BedrockRuntimeHook(aws_conn_id=self.aws_conn_id, config=config).conn
        items = [{"sample_id": r.sample_id, "approach": r.approach.value, "question": r.question,
                  "reference": r.reference, "answer": r.answer if r.error is None else None,
                  "context": r.context(self.max_context_chars)} for r in records]
        self.log.info("judging %d answers with %d judge(s) %s on %s (%d judgement(s) checkpointed already)",
                      len(items), len(judges), judges, criteria, len(done))
        with checkpoint or nullcontext():
            judged = judge_many(client, judges, items, criteria, concurrency=self.concurrency, log=self.log,
                                done=done, on_judged=checkpoint.add if checkpoint else None)
        panel = panel_result(records, judged, judges, self.min_judges)
        self.log.info("judge agreement: %s; %d of %d judge calls ended in an error (stored as NULL)",
                      panel["agreement"], panel["judge_errors"], panel["judge_calls"])
        if panel["partial"]:
            self.log.error("judge panel partial: %d of %d judges answered (%d required); silent: %s",
                           len(panel["judges_answered"]), len(judges), panel["judges_required"], panel["silent"])
        s3.put_object(Bucket=out_bucket, Key=out_key, Body=dump_records(records))
        return {"uri": self.output_uri, **panel}

"""The weekly evaluation's vocabulary: the approaches under test, a run's S3 layout and the per-sample record.

One place names each of them; every task and module uses these instead of bare strings, ``split("answers/")``
or ad-hoc dicts:

* :class:`Approach` - ``rag``, ``finetune``, ``hybrid`` with what each one needs (retrieval, the endpoint);
* :class:`RunLayout` - every key under a run's prefix (``eval/<run_id>/``);
* :class:`SampleRecord` (with :class:`Retrieved`) - one answer of one approach to one question, from
  generation through scoring and judging, with ONE JSON form (:meth:`SampleRecord.to_json` /
  :meth:`SampleRecord.from_json`, :func:`dump_records` / :func:`load_records`).

Plain Python (no boto3, no Airflow): importable at DAG parse time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from tailor.metrics.judge import Judgement
from tailor.objects import from_jsonl, to_jsonl


class Approach(StrEnum):
    """An approach under test. A ``StrEnum``: equal to its value, so JSON and SQL keep the plain strings."""

    RAG = "rag"
    FINETUNE = "finetune"
    HYBRID = "hybrid"

    @property
    def retrieves(self) -> bool:
        """Asks the Knowledge Base for context (``Retrieve``) before answering."""
        return self in (Approach.RAG, Approach.HYBRID)

    @property
    def uses_endpoint(self) -> bool:
        """Answers with the fine-tuned champion endpoint (``InvokeEndpoint``), not a Bedrock model."""
        return self in (Approach.FINETUNE, Approach.HYBRID)

    @property
    def display_name(self) -> str:
        return _DISPLAY_NAMES[self]

    @classmethod
    def values(cls) -> list[str]:
        """The plain values in report order (rag, finetune, hybrid): a Param's enum, a CSV's order."""
        return [a.value for a in cls]

    @classmethod
    def parse(cls, value: str) -> Approach:
        """``value`` as an Approach; a ValueError naming the accepted values otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown approach {value!r}: expected one of {', '.join(cls.values())}") from None


_DISPLAY_NAMES = {Approach.RAG: "RAG", Approach.FINETUNE: "Fine-tuning", Approach.HYBRID: "Hybrid"}


@dataclass(frozen=True)
class RunLayout:
    """Every object of one evaluation run, under ``s3://<bucket>/<prefix>`` (``prefix`` ends with ``/``)."""

    bucket: str
    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            raise ValueError(f"a run prefix ends with '/', got {self.prefix!r}")

    @classmethod
    def for_run(cls, bucket: str, output_prefix: str, run_id: str) -> RunLayout:
        """The run's own prefix: ``run_id`` made key-safe, so no run shares (or overwrites) another's objects."""
        return cls(bucket, f"{output_prefix}{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}/")

    @property
    def dataset(self) -> str:
        """The QA items snapshotted for this run (what every batch answers)."""
        return f"{self.prefix}dataset.json"

    def answers(self, approach: str, index: int) -> str:
        """One generation batch's records, persisted before any scoring."""
        return f"{self.prefix}answers/{Approach.parse(approach)}/batch-{index:04d}.jsonl"

    @property
    def scored(self) -> str:
        return f"{self.prefix}scored.jsonl"

    @property
    def judgements(self) -> str:
        """The judge's checkpoint: one part file per flush of paid-for judgements (see ``tailor.metrics.judge``)."""
        return f"{self.prefix}judgements/"

    @property
    def judged(self) -> str:
        return f"{self.prefix}judged.jsonl"

    @property
    def summary(self) -> str:
        """Per-approach summaries computed once (``summarize_results``) for the warehouse and the report."""
        return f"{self.prefix}summary.json"

    @property
    def summary_csv(self) -> str:
        return f"{self.prefix}summary_results.csv"

    @property
    def paired_csv(self) -> str:
        """Every pair of approaches on every metric, question by question (:mod:`tailor.metrics.paired`)."""
        return f"{self.prefix}paired_comparisons.csv"

    @property
    def calibration(self) -> str:
        """The judges' agreement with the golden set's human scores (:func:`tailor.golden.calibration`)."""
        return f"{self.prefix}calibration.json"

    @property
    def calibration_judgements(self) -> str:
        """The calibration judge calls' checkpoint (as :attr:`judgements`)."""
        return f"{self.prefix}calibration-judgements/"

    @property
    def findings(self) -> str:
        """What the run alerts on (:mod:`tailor.alerts`)."""
        return f"{self.prefix}findings.json"

    @property
    def alerted(self) -> str:
        """Written once the run's alert was sent: a retry never notifies twice."""
        return f"{self.prefix}alert-sent.json"

    @property
    def report(self) -> str:
        return f"{self.prefix}report.html"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def calibration_pointer(output_prefix: str) -> str:
    """The last run's judge calibration (and the one before it), across runs: what judge drift is measured against."""
    return f"{output_prefix}judge-calibration/latest.json"


@dataclass(frozen=True)
class Retrieved:
    """One retrieved chunk shown to an approach that retrieves."""

    text: str
    product_name: str | None = None
    score: float | None = None
    uri: str | None = None


@dataclass
class SampleRecord:
    """One approach's answer to one question, filled stage by stage.

    generate: ``answer`` or ``error`` (never both), latencies, tokens, ``retrieved``, ``stop_reason``/``truncated``;
    score: ``bertscore_f1``, ``bertscore_windowed``, ``key_fact_match``; for an approach that retrieves,
    ``retrieval_hit``, ``reciprocal_rank`` and ``ndcg`` (:mod:`tailor.metrics.retrieval`);
    judge: ``judge_score``, ``judge_criteria`` and ``judgements`` (one :class:`tailor.metrics.judge.Judgement` per
    judge). A value not measured is None, never a sentinel.
    """

    sample_id: str
    approach: Approach
    product_name: str
    question: str
    reference: str
    answer: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    retrieval_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    retrieved: list[Retrieved] = field(default_factory=list)
    stop_reason: str | None = None
    truncated: bool | None = None
    bertscore_f1: float | None = None
    bertscore_windowed: bool | None = None
    key_fact_match: float | None = None
    retrieval_hit: bool | None = None
    reciprocal_rank: float | None = None
    ndcg: float | None = None
    judge_score: float | None = None
    judge_criteria: dict[str, float | None] | None = None
    judgements: list[Judgement] | None = None

    @property
    def key(self) -> str:
        """``approach/sample_id``: unique within a run."""
        return f"{self.approach}/{self.sample_id}"

    @property
    def answered(self) -> bool:
        return self.error is None and self.answer is not None

    def context(self, max_chars: int) -> str | None:
        """The retrieved text the approach was shown, cut to ``max_chars`` (None when nothing was retrieved)."""
        return "\n\n".join(chunk.text for chunk in self.retrieved)[:max_chars] or None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["approach"] = self.approach.value
        if self.judgements is None:  # not judged yet: the keys appear once the judge ran
            for name in ("judge_score", "judge_criteria", "judgements"):
                del data[name]
        else:
            data["judgements"] = [j.to_json() for j in self.judgements]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleRecord:
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise ValueError(f"sample {data.get('sample_id')!r}: unknown record fields {unknown}")
        values = dict(data)
        values["approach"] = Approach.parse(values["approach"])
        values["retrieved"] = [Retrieved(**chunk) for chunk in values.get("retrieved") or []]
        if values.get("judgements") is not None:
            values["judgements"] = [Judgement.from_json(j) for j in values["judgements"]]
        return cls(**values)


_FIELDS = {f.name for f in fields(SampleRecord)}


def dump_records(records: Iterable[SampleRecord]) -> bytes:
    """JSON Lines of the records (:func:`tailor.objects.to_jsonl`: safe for any text a model returns)."""
    return to_jsonl([r.to_json() for r in records])


def load_records(body: bytes | str) -> list[SampleRecord]:
    """The records of a JSON Lines body written by :func:`dump_records`."""
    return [SampleRecord.from_json(data) for data in from_jsonl(body)]

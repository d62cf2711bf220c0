"""Per-approach summaries of the bake-off's per-sample records: the CSV, the console table and the warehouse rows.

Input: one record (a dict) per approach x sample with the keys ``sample_id, approach, product_name, question,
reference, answer, error, latency_ms, retrieval_ms, input_tokens, output_tokens, retrieved, bertscore_f1,
key_fact_match, retrieval_hit`` and, once the judge exists, ``judge_score``; optionally ``stop_reason``,
``truncated`` (the answer hit the generation budget; None when the service reported no stop reason) and
``bertscore_windowed`` (the answer or reference was longer than BERTScore's window, see
:mod:`tailor.metrics.bertscore`).

Rules (the same in :func:`summarize` and :func:`score_rows`, so ``eval_run`` means equal ``AVG(eval_score.score)``):

* a record *errored* when its ``error`` is a non-empty string; its metric values are not used (its scores
  are written as NULL with the error text);
* a missing score is ``None``: it is counted and left out of means, never replaced by a sentinel;
* latency percentiles and the mean are over the records that did not error (and have a latency);
* ``retrieval_hit_rate`` is None for ``finetune`` (no retrieval);
* ``n_truncated`` counts the answers cut at the token budget among the ``n_truncation_known`` answers whose stop
  reason is known (errored records excluded); a cut answer is still scored, as the incomplete answer it is.

Costs come from :mod:`tailor.cost`: ``monthly_cost_usd`` is the modelled month of the price table's usage
assumptions; ``run_cost_usd`` is the measured marginal cost of this evaluation run (see :func:`summarize`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tailor.cost import APPROACHES, Prices, Usage, measured_run_cost, monthly_costs
from tailor.metrics.stats import Summary, mean_ci, percentile
from tailor.records import Approach
from tailor.warehouse import RUN_COLUMNS

RETRIEVAL_APPROACHES = tuple(a.value for a in Approach if a.retrieves)
ENDPOINT_APPROACHES = tuple(a.value for a in Approach if a.uses_endpoint)
SCORE_METRICS = ("bertscore_f1", "key_fact_match", "retrieval_hit", "reciprocal_rank", "ndcg", "judge_score")
RETRIEVAL_METRICS = ("retrieval_hit", "reciprocal_rank", "ndcg")
DISPLAY_NAMES = {a.value: a.display_name for a in Approach}
VERSION_KEYS = ("dataset_version", "prompt_version", "generator_model", "judge_models")

SEED_COLUMNS = ("method", "avg_bert_score", "avg_llm_evaluator_score", "avg_inference_time")
# New columns go at the end: readers of earlier CSVs index the columns they know.
SUMMARY_COLUMNS = SEED_COLUMNS + (
    "n", "n_errors", "bert_std", "bert_ci95_low", "bert_ci95_high", "judge_std", "judge_ci95_low", "judge_ci95_high",
    "key_fact_match", "retrieval_hit_rate", "latency_p50_s", "latency_p95_s", "monthly_cost_usd", "run_cost_usd",
    "status", "n_truncated", "n_truncation_known", "n_bertscore_windowed", "mrr", "ndcg",
)  # fmt: skip
COST_COLUMNS = ("monthly_cost_usd", "run_cost_usd")
COUNT_COLUMNS = ("n", "n_errors", "n_truncated", "n_truncation_known", "n_bertscore_windowed")


@dataclass(frozen=True)
class ApproachSummary:
    """One approach's numbers. Score summaries are :class:`tailor.metrics.stats.Summary` (mean, std, 95% CI)."""

    approach: str
    n: int  # samples (records)
    n_errors: int  # records with an error
    n_scored: int  # records with a BERTScore
    bertscore_f1: Summary
    judge_score: Summary
    key_fact_match: Summary
    retrieval_hit_rate: float | None  # None for finetune (no retrieval) or when no record has a hit flag
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_mean_ms: float | None
    monthly_cost_usd: float
    run_cost_usd: float
    status: str  # 'complete' | 'partial' | 'failed'
    first_error: str | None
    n_truncated: int = 0  # answers cut at the generation budget (stop reason max_tokens / length)
    n_truncation_known: int = 0  # answers whose stop reason the service reported
    n_bertscore_windowed: int = 0  # answers scored over BERTScore windows (answer or reference too long)
    mrr: float | None = None  # mean reciprocal rank of the question's product in the retrieved chunks
    ndcg: float | None = None  # mean nDCG@top_k (binary relevance: a chunk of the question's product)

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES.get(self.approach, self.approach)

    def csv_values(self) -> dict[str, Any]:
        """The row of :data:`SUMMARY_COLUMNS` with raw (unrounded) values; latencies in seconds."""
        bert, judge = self.bertscore_f1, self.judge_score
        return {
            "method": self.approach,
            "avg_bert_score": bert.mean,
            "avg_llm_evaluator_score": judge.mean,
            "avg_inference_time": _seconds(self.latency_mean_ms),
            "n": self.n,
            "n_errors": self.n_errors,
            "bert_std": bert.std,
            "bert_ci95_low": bert.ci_low,
            "bert_ci95_high": bert.ci_high,
            "judge_std": judge.std,
            "judge_ci95_low": judge.ci_low,
            "judge_ci95_high": judge.ci_high,
            "key_fact_match": self.key_fact_match.mean,
            "retrieval_hit_rate": self.retrieval_hit_rate,
            "latency_p50_s": _seconds(self.latency_p50_ms),
            "latency_p95_s": _seconds(self.latency_p95_ms),
            "monthly_cost_usd": self.monthly_cost_usd,
            "run_cost_usd": self.run_cost_usd,
            "status": self.status,
            "n_truncated": self.n_truncated if self.n_truncation_known else None,
            "n_truncation_known": self.n_truncation_known,
            "n_bertscore_windowed": self.n_bertscore_windowed,
            "mrr": self.mrr,
            "ndcg": self.ndcg,
        }

    def to_csv_row(self) -> dict[str, str]:
        """The CSV row as strings: '' for None, scores/seconds to 4 decimals, USD to 2."""
        return {column: _cell(column, value) for column, value in self.csv_values().items()}

    def to_warehouse_row(self, run_id: str, started_at: datetime | str, versions: Mapping[str, Any]) -> dict[str, Any]:
        """An ``eval_run`` row (keys exactly :data:`tailor.warehouse.RUN_COLUMNS`).

        ``versions`` may hold ``dataset_version``, ``prompt_version``, ``generator_model`` and ``judge_models``;
        a value may be a mapping approach -> value (e.g. the generator differs per approach), and
        ``judge_models`` may be a list (stored comma-separated). Unknown keys are a ValueError (a typo would
        otherwise silently store NULL).
        """
        unknown = sorted(set(versions) - set(VERSION_KEYS))
        if unknown:
            raise ValueError(f"unknown version keys {', '.join(unknown)}: expected some of {', '.join(VERSION_KEYS)}")
        picked = {key: _version(versions.get(key), self.approach) for key in VERSION_KEYS}
        bert, judge = self.bertscore_f1, self.judge_score
        row = {
            "run_id": run_id,
            "approach": self.approach,
            "dag_run_started_at": started_at,
            "n_samples": self.n,
            "n_scored": self.n_scored,
            "n_errors": self.n_errors,
            "bertscore_f1_mean": bert.mean,
            "bertscore_f1_std": bert.std,
            "bertscore_f1_ci95_low": bert.ci_low,
            "bertscore_f1_ci95_high": bert.ci_high,
            "judge_score_mean": judge.mean,
            "judge_score_std": judge.std,
            "judge_score_ci95_low": judge.ci_low,
            "judge_score_ci95_high": judge.ci_high,
            "key_fact_match": self.key_fact_match.mean,
            "retrieval_hit_rate": self.retrieval_hit_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "monthly_cost_usd": self.monthly_cost_usd,
            "run_cost_usd": self.run_cost_usd,
            **picked,
            "status": self.status,
            "written_at": datetime.now(UTC),
        }
        return {column: row[column] for column in RUN_COLUMNS}


# --- record helpers --------------------------------------------------------------------------------------------


def errored(record: Mapping[str, Any]) -> bool:
    """True when the record carries an error (a non-empty ``error``)."""
    return bool(record.get("error"))


def metric_value(record: Mapping[str, Any], metric: str) -> float | None:
    """The record's score for ``metric`` as a float (``retrieval_hit`` as 1.0/0.0); None if errored or missing."""
    if errored(record):
        return None
    value = record.get(metric)
    if value is None:
        return None
    if metric == "retrieval_hit":
        if not isinstance(value, bool):
            raise TypeError(f"retrieval_hit must be a bool or None, got {value!r} (sample {record.get('sample_id')!r})")
        return 1.0 if value else 0.0
    return value


def _group(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records by approach in the order rag, finetune, hybrid; unknown approaches and duplicates are ValueErrors."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for record in records:
        approach, sample_id = record.get("approach"), record.get("sample_id")
        if approach not in APPROACHES:
            raise ValueError(f"sample {sample_id!r}: unknown approach {approach!r}, expected one of {APPROACHES}")
        key = (approach, str(sample_id))
        if key in seen:
            raise ValueError(f"duplicate record for approach {approach!r} sample {sample_id!r}")
        seen.add(key)
        groups.setdefault(approach, []).append(record)
    return {approach: groups[approach] for approach in APPROACHES if approach in groups}


def _sum(values: Iterable[float | int | None]) -> float:
    return math.fsum(v for v in values if v is not None)


# --- summarize -------------------------------------------------------------------------------------------------


def summarize(
    records: Iterable[Mapping[str, Any]],
    *,
    prices: Prices,
    usage: Usage,
    endpoint_instance_type: str,
    generator_tokens_priced: bool = True,
) -> list[ApproachSummary]:
    """One :class:`ApproachSummary` per approach present, in the order rag, finetune, hybrid.

    ``run_cost_usd`` (via :func:`tailor.cost.measured_run_cost`) is the marginal cost of this run's generations:

    * rag: the Bedrock tokens, sum of ``input_tokens``/``output_tokens`` over its records (errored ones too:
      a billed call is billed). ``generator_tokens_priced=False`` prices them at 0, for a generator that is not
      billed per token (the local stand-in model, provisioned throughput);
    * finetune and hybrid: endpoint time, ``sum(latency_ms) / 1000`` seconds of ``endpoint_instance_type``.
      This is an UPPER BOUND of the endpoint's busy time: a latency also holds network and client time (and,
      for hybrid, possibly retrieval), and concurrent requests overlap. A real-time endpoint bills every hour it
      is up whether busy or not; that is what ``monthly_cost_usd`` models.

    Not counted in the run cost: Knowledge Base retrieval (query embeddings, OpenSearch OCU-hours), the judge.
    """
    monthly = monthly_costs(prices, usage)
    summaries = []
    for approach, group in _group(records).items():
        ok = [r for r in group if not errored(r)]
        errors = [str(r["error"]) for r in group if errored(r)]
        latencies = [r.get("latency_ms") for r in ok]
        hit_rate = mrr = ndcg = None
        if approach in RETRIEVAL_APPROACHES:
            hit_rate = mean_ci(metric_value(r, "retrieval_hit") for r in group).mean
            mrr = mean_ci(metric_value(r, "reciprocal_rank") for r in group).mean
            ndcg = mean_ci(metric_value(r, "ndcg") for r in group).mean
        bert = mean_ci(metric_value(r, "bertscore_f1") for r in group)
        if not Approach(approach).uses_endpoint:  # a Bedrock generator, billed per token
            tokens_in = int(_sum(r.get("input_tokens") for r in group)) if generator_tokens_priced else 0
            tokens_out = int(_sum(r.get("output_tokens") for r in group)) if generator_tokens_priced else 0
        else:
            tokens_in = tokens_out = 0
        endpoint_seconds = _sum(r.get("latency_ms") for r in group) / 1000 if approach in ENDPOINT_APPROACHES else 0.0
        run_cost = measured_run_cost(
            prices, bedrock_input_tokens=tokens_in, bedrock_output_tokens=tokens_out,
            endpoint_seconds=endpoint_seconds, instance_type=endpoint_instance_type,
        )  # fmt: skip
        known = [r for r in ok if isinstance(r.get("truncated"), bool)]
        if len(errors) == len(group):
            status = "failed"
        elif errors:
            status = "partial"
        else:
            status = "complete"
        summaries.append(ApproachSummary(
            approach=approach,
            n=len(group),
            n_errors=len(errors),
            n_scored=bert.n,
            bertscore_f1=bert,
            judge_score=mean_ci(metric_value(r, "judge_score") for r in group),
            key_fact_match=mean_ci(metric_value(r, "key_fact_match") for r in group),
            retrieval_hit_rate=hit_rate,
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
            latency_mean_ms=mean_ci(latencies).mean,
            monthly_cost_usd=monthly[approach].total,
            run_cost_usd=run_cost,
            status=status,
            first_error=errors[0] if errors else None,
            n_truncated=sum(r["truncated"] for r in known),
            n_truncation_known=len(known),
            n_bertscore_windowed=sum(r.get("bertscore_windowed") is True for r in ok),
            mrr=mrr,
            ndcg=ndcg,
        ))  # fmt: skip
    return summaries


def score_rows(records: Iterable[Mapping[str, Any]], *, run_id: str | None = None) -> list[dict[str, Any]]:
    """``eval_score`` rows: one per record x metric (bertscore_f1, key_fact_match, retrieval_hit for rag/hybrid,
    judge_score when the record has that key). An errored record's scores are None with its error text.

    Rows carry ``approach`` (write them per approach with :meth:`tailor.warehouse.Warehouse.write_run`, which fills
    ``run_id``) and ``run_id`` only when given. ``judge_model``/``criterion`` are '' (one overall judge score).
    """
    rows = []
    for approach, group in _group(records).items():
        for record in group:
            error = str(record["error"]) if errored(record) else None
            for metric in SCORE_METRICS:
                if metric in RETRIEVAL_METRICS and approach not in RETRIEVAL_APPROACHES:
                    continue
                if metric in ("reciprocal_rank", "ndcg") and metric not in record:
                    continue  # records scored before these metrics existed
                if metric == "judge_score" and "judge_score" not in record:
                    continue
                row = {"approach": approach, "sample_id": str(record.get("sample_id")), "metric": metric,
                       "judge_model": "", "criterion": "", "score": metric_value(record, metric),
                       "rationale": None, "error": error}  # fmt: skip
                rows.append({"run_id": run_id, **row} if run_id is not None else row)
    return rows


def judge_rows(records: Iterable[Mapping[str, Any]], *, run_id: str) -> list[dict[str, Any]]:
    """``eval_score`` rows of the judges: one per record x judge x criterion, with the rationale and the error."""
    return [{"run_id": run_id, "approach": record["approach"], "sample_id": str(record["sample_id"]),
             "metric": "judge", "criterion": criterion, "judge_model": judgement["judge_model"], "score": score,
             "rationale": judgement["rationale"], "error": judgement["error"]}
            for record in records for judgement in record.get("judgements") or []
            for criterion, score in judgement["scores"].items()]


def warehouse_writes(summaries: Sequence[ApproachSummary], records: Sequence[Mapping[str, Any]], *, run_id: str,
                     started_at: datetime | str, versions: Mapping[str, Any],
                     ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per approach, the ``eval_run`` row and its ``eval_score`` rows (every metric, every judge x criterion):
    each pair is one :meth:`tailor.warehouse.Warehouse.write_run` (one transaction, re-runnable)."""
    rows = score_rows(records, run_id=run_id) + judge_rows(records, run_id=run_id)
    return [(summary.to_warehouse_row(run_id, started_at, versions),
             [row for row in rows if row["approach"] == summary.approach]) for summary in summaries]


def summaries_to_json(summaries: Sequence[ApproachSummary]) -> list[dict[str, Any]]:
    """The summaries as JSON-ready dicts; :func:`summaries_from_json` reads them back equal."""
    return [asdict(summary) for summary in summaries]


def summaries_from_json(data: Iterable[Mapping[str, Any]]) -> list[ApproachSummary]:
    metrics = ("bertscore_f1", "judge_score", "key_fact_match")
    return [ApproachSummary(**{**item, **{name: Summary(**item[name]) for name in metrics}}) for item in data]


# --- CSV and console table -------------------------------------------------------------------------------------


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _version(value: Any, approach: str) -> str | None:
    if isinstance(value, Mapping):
        value = value.get(approach)
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value))
    return str(value)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in COUNT_COLUMNS or isinstance(value, str):
        return str(value)
    return f"{value:.2f}" if column in COST_COLUMNS else f"{value:.4f}"


def write_summary_csv(summaries: Sequence[ApproachSummary]) -> str:
    """The summary CSV (header :data:`SUMMARY_COLUMNS`, the seed's four columns first) as a string."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for summary in summaries:
        writer.writerow(summary.to_csv_row())
    return buffer.getvalue()


def fmt(value: float | None, digits: int = 3, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def fmt_ci(summary: Summary, digits: int = 3, missing: str = "n/a") -> str:
    """'mean ±half-width' of a t interval; just the mean when there is no interval (n < 2)."""
    if summary.mean is None:
        return missing
    if summary.ci_low is None or summary.ci_high is None:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ±{(summary.ci_high - summary.ci_low) / 2:.{digits}f}"


def fmt_usd(value: float | None, missing: str = "n/a") -> str:
    if value is None:
        return missing
    if 0 < value < 0.005:
        return "<$0.01"
    return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"


def fmt_latency(summary: ApproachSummary, missing: str = "n/a") -> str:
    if summary.latency_p50_ms is None:
        return missing
    p95 = summary.latency_p95_ms if summary.latency_p95_ms is not None else summary.latency_p50_ms
    return f"{summary.latency_p50_ms / 1000:.2f} / {p95 / 1000:.2f}"


TABLE_HEADER = ("method", "BERTScore ±95% CI", "judge", "key-fact", "hit rate", "p50/p95 s", "$/month", "truncated",
                "status")


def fmt_truncated(summary: ApproachSummary, missing: str = "n/a") -> str:
    """'cut/known' answers, e.g. '3/15'; n/a when no answer reported a stop reason."""
    if not summary.n_truncation_known:
        return missing
    return f"{summary.n_truncated}/{summary.n_truncation_known}"



def table_cells(summary: ApproachSummary) -> tuple[str, ...]:
    """The console/HTML table cells of one approach, in :data:`TABLE_HEADER` order."""
    return (
        summary.display_name,
        fmt_ci(summary.bertscore_f1),
        fmt_ci(summary.judge_score),
        fmt(summary.key_fact_match.mean),
        fmt(summary.retrieval_hit_rate, 2),
        fmt_latency(summary),
        fmt_usd(summary.monthly_cost_usd),
        fmt_truncated(summary),
        f"{summary.status} ({summary.n_errors}/{summary.n} err)" if summary.n_errors else summary.status,
    )


def format_table(summaries: Sequence[ApproachSummary]) -> str:
    """A fixed-width text table for the console (text left-aligned, numbers right-aligned)."""
    rows = [TABLE_HEADER] + [table_cells(s) for s in summaries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    left = {0, len(TABLE_HEADER) - 1}

    def line(row: Sequence[str]) -> str:
        cells = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in cells)

    out = [line(rows[0]), "  ".join("-" * w for w in widths)] + [line(row) for row in rows[1:]]
    return "\n".join(text.rstrip() for text in out) + "\n"

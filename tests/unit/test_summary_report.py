"""Unit tests of tailor.summary (per-approach numbers, CSV, warehouse rows) and tailor.report (the HTML page)."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from tailor.config import load_settings
from tailor.cost import Prices, Usage, measured_run_cost, monthly_costs
from tailor.metrics.stats import mean_ci, percentile
from tailor.report import render_report
from tailor.summary import SUMMARY_COLUMNS, ApproachSummary, format_table, score_rows, summarize, write_summary_csv
from tailor.warehouse import RUN_COLUMNS, SCORE_COLUMNS, STATUSES

INSTANCE = "ml.g5.12xlarge"
STARTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def record(sample_id: str, approach: str, *, bert: float | None = 0.8, kfm: float | None = 0.5,
           hit: bool | None = True, latency: float | None = 1000.0, tokens: tuple[int, int | None] | None = (100, 50),
           error: str | None = None, **extra: object) -> dict:
    row: dict[str, object] = {
        "sample_id": sample_id, "approach": approach, "product_name": "Pump X", "question": "q?", "reference": "r",
        "answer": None if error else "a", "error": error, "latency_ms": latency, "retrieval_ms": 20.0,
        "input_tokens": tokens[0] if tokens else None, "output_tokens": tokens[1] if tokens else None,
        "retrieved": [] if approach == "finetune" else [{"product_name": "Pump X", "score": 0.9, "text": "t",
                                                          "uri": "s3://b/kb-data/pump-x.txt"}],
        "bertscore_f1": bert, "key_fact_match": kfm, "retrieval_hit": None if approach == "finetune" else hit,
    }  # fmt: skip
    row.update(extra)
    return row


def build_records() -> list[dict]:
    """rag: partial (1 error of 4, one unscored); finetune: complete with judge scores; hybrid: failed."""
    return [
        # hybrid listed first on purpose: the output order is still rag, finetune, hybrid
        record("s1", "hybrid", bert=None, kfm=None, hit=None, latency=500.0, error="endpoint timeout"),
        record("s2", "hybrid", bert=None, kfm=None, hit=None, latency=None, error="ModelError: boom"),
        record("s1", "rag", bert=0.80, kfm=1.0, hit=True, latency=1000.0, tokens=(1000, 200)),
        record("s2", "rag", bert=0.90, kfm=0.5, hit=False, latency=2000.0, tokens=(1500, 300)),
        record("s3", "rag", bert=None, kfm=0.0, hit=True, latency=3000.0, tokens=(500, None)),
        record("s4", "rag", bert=None, kfm=None, hit=None, latency=9000.0, tokens=(700, 0), error="throttled"),
        record("s1", "finetune", bert=0.70, kfm=0.5, latency=400.0, judge_score=0.6),
        record("s2", "finetune", bert=0.60, kfm=None, latency=600.0, judge_score=None),
        record("s3", "finetune", bert=0.65, kfm=1.0, latency=800.0, judge_score=0.8),
    ]


@pytest.fixture(scope="module")
def table() -> tuple[Prices, Usage]:
    cfg = load_settings(env={})
    return cfg.prices, cfg.usage


@pytest.fixture(scope="module")
def summaries(table: tuple[Prices, Usage]) -> list[ApproachSummary]:
    prices, usage = table
    return summarize(build_records(), prices=prices, usage=usage, endpoint_instance_type=INSTANCE)


def by_approach(summaries: list[ApproachSummary]) -> dict[str, ApproachSummary]:
    return {s.approach: s for s in summaries}


# --- summarize -------------------------------------------------------------------------------------------------


def test_one_summary_per_approach_in_fixed_order(summaries: list[ApproachSummary]) -> None:
    assert [s.approach for s in summaries] == ["rag", "finetune", "hybrid"]


def test_counts_and_statuses(summaries: list[ApproachSummary]) -> None:
    s = by_approach(summaries)
    assert (s["rag"].n, s["rag"].n_errors, s["rag"].n_scored, s["rag"].status) == (4, 1, 2, "partial")
    assert (s["finetune"].n, s["finetune"].n_errors, s["finetune"].n_scored, s["finetune"].status) == (
        3, 0, 3, "complete")  # fmt: skip
    assert (s["hybrid"].n, s["hybrid"].n_errors, s["hybrid"].n_scored, s["hybrid"].status) == (2, 2, 0, "failed")
    assert s["rag"].first_error == "throttled"
    assert s["hybrid"].first_error == "endpoint timeout"
    assert s["finetune"].first_error is None
    assert {x.status for x in summaries} <= set(STATUSES)


def test_means_ignore_none_and_errors(summaries: list[ApproachSummary]) -> None:
    rag, finetune = by_approach(summaries)["rag"], by_approach(summaries)["finetune"]
    assert rag.bertscore_f1.mean == pytest.approx(0.85)
    assert (rag.bertscore_f1.n, rag.bertscore_f1.n_missing) == (2, 2)
    assert rag.key_fact_match.mean == pytest.approx(0.5)  # (1.0 + 0.5 + 0.0) / 3, the errored record left out
    assert finetune.bertscore_f1.mean == pytest.approx(0.65)
    assert finetune.key_fact_match.mean == pytest.approx(0.75)
    assert finetune.judge_score.mean == pytest.approx(0.7)
    assert rag.judge_score.mean is None and rag.judge_score.n == 0  # no judge key at all: absent, not 0 or -1


def test_ci_present_and_matches_stats(summaries: list[ApproachSummary]) -> None:
    finetune = by_approach(summaries)["finetune"]
    expected = mean_ci([0.70, 0.60, 0.65])
    assert finetune.bertscore_f1 == expected
    assert finetune.bertscore_f1.ci_low is not None and finetune.bertscore_f1.ci_high is not None
    assert finetune.bertscore_f1.ci_low < 0.65 < finetune.bertscore_f1.ci_high
    assert finetune.bertscore_f1.std == pytest.approx(0.05)
    hybrid = by_approach(summaries)["hybrid"]
    assert hybrid.bertscore_f1.mean is None and hybrid.bertscore_f1.ci_low is None


def test_latency_over_successful_records_only(summaries: list[ApproachSummary]) -> None:
    rag, hybrid = by_approach(summaries)["rag"], by_approach(summaries)["hybrid"]
    assert rag.latency_p50_ms == 2000.0  # the errored 9000 ms record is left out
    assert rag.latency_p95_ms == pytest.approx(percentile([1000.0, 2000.0, 3000.0], 95))
    assert rag.latency_mean_ms == pytest.approx(2000.0)
    assert hybrid.latency_p50_ms is None and hybrid.latency_mean_ms is None


def test_retrieval_hit_rate_none_for_finetune(summaries: list[ApproachSummary]) -> None:
    s = by_approach(summaries)
    assert s["rag"].retrieval_hit_rate == pytest.approx(2 / 3)
    assert s["finetune"].retrieval_hit_rate is None
    assert s["hybrid"].retrieval_hit_rate is None  # every record errored: nothing to rate


def test_costs_from_the_default_price_table(summaries: list[ApproachSummary], table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    monthly = monthly_costs(prices, usage)
    s = by_approach(summaries)
    for approach in ("rag", "finetune", "hybrid"):
        assert s[approach].monthly_cost_usd == monthly[approach].total
    assert s["rag"].monthly_cost_usd == pytest.approx(2 * 0.24 * 24 * 30 + 300_000 * (2 * 0.00022 + 0.00022))
    # rag: Bedrock tokens of every record (the errored call was billed too); no endpoint time
    assert s["rag"].run_cost_usd == pytest.approx((3700 * 0.00022 + 500 * 0.00022) / 1000)
    # finetune / hybrid: summed latency as endpoint seconds on the endpoint's instance type
    assert s["finetune"].run_cost_usd == pytest.approx(1.8 / 3600 * 7.09)
    assert s["hybrid"].run_cost_usd == pytest.approx(
        measured_run_cost(prices, bedrock_input_tokens=0, bedrock_output_tokens=0, endpoint_seconds=0.5,
                          instance_type=INSTANCE))  # fmt: skip


def test_unpriced_generator_tokens(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    rag = summarize([record("s1", "rag", tokens=(1000, 1000))], prices=prices, usage=usage,
                    endpoint_instance_type="ml.g4dn.xlarge", generator_tokens_priced=False)[0]  # fmt: skip
    assert rag.run_cost_usd == 0.0
    assert rag.status == "complete"


def test_unknown_approach_and_duplicates_are_rejected(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    with pytest.raises(ValueError, match="unknown approach"):
        summarize([record("s1", "rerank")], prices=prices, usage=usage, endpoint_instance_type=INSTANCE)
    with pytest.raises(ValueError, match="duplicate"):
        score_rows([record("s1", "rag"), record("s1", "rag")])


def test_warehouse_row_matches_eval_run_columns(summaries: list[ApproachSummary]) -> None:
    versions = {"dataset_version": "qa-abc", "prompt_version": "p1",
                "generator_model": {"rag": "meta.llama3-1-8b", "finetune": "endpoint-ft", "hybrid": "endpoint-ft"},
                "judge_models": ["judge-a", "judge-b"]}  # fmt: skip
    row = summaries[0].to_warehouse_row("manual__1", STARTED, versions)
    assert list(row) == list(RUN_COLUMNS)
    assert row["run_id"] == "manual__1" and row["approach"] == "rag" and row["dag_run_started_at"] == STARTED
    assert (row["n_samples"], row["n_scored"], row["n_errors"]) == (4, 2, 1)
    assert row["bertscore_f1_mean"] == pytest.approx(0.85)
    assert row["judge_score_mean"] is None
    assert row["generator_model"] == "meta.llama3-1-8b" and row["judge_models"] == "judge-a,judge-b"
    assert row["status"] == "partial" and row["written_at"] is not None
    with pytest.raises(ValueError, match="unknown version keys"):
        summaries[0].to_warehouse_row("manual__1", STARTED, {"dataset": "x"})


# --- score rows ------------------------------------------------------------------------------------------------


def test_score_rows_count_and_null_with_error() -> None:
    rows = score_rows(build_records())
    # rag 4 x (bert, kfm, hit) + finetune 3 x (bert, kfm, judge) + hybrid 2 x (bert, kfm, hit)
    assert len(rows) == 4 * 3 + 3 * 3 + 2 * 3
    assert all(set(row) <= set(SCORE_COLUMNS) for row in rows)
    assert all(row["judge_model"] == "" and row["criterion"] == "" for row in rows)
    assert not any(row["metric"] == "latency_ms" for row in rows)
    assert not any(row["metric"] == "retrieval_hit" and row["approach"] == "finetune" for row in rows)
    errored = [row for row in rows if row["approach"] == "rag" and row["sample_id"] == "s4"]
    assert len(errored) == 3
    assert all(row["score"] is None and row["error"] == "throttled" for row in errored)
    rag = [row for row in rows if row["approach"] == "rag"]
    hits = {row["sample_id"]: row["score"] for row in rag if row["metric"] == "retrieval_hit"}
    assert hits == {"s1": 1.0, "s2": 0.0, "s3": 1.0, "s4": None}
    judge = {row["sample_id"]: row["score"] for row in rows if row["metric"] == "judge_score"}
    assert judge == {"s1": 0.6, "s2": None, "s3": 0.8}
    unscored = next(r for r in rag if r["sample_id"] == "s3" and r["metric"] == "bertscore_f1")
    assert unscored["score"] is None and unscored["error"] is None
    assert all(row["run_id"] == "r1" for row in score_rows(build_records(), run_id="r1"))


def test_score_row_means_equal_the_summary(summaries: list[ApproachSummary]) -> None:
    rows = score_rows(build_records())
    for s in summaries:
        values = [r["score"] for r in rows if r["approach"] == s.approach and r["metric"] == "key_fact_match"]
        assert mean_ci(values).mean == s.key_fact_match.mean


# --- CSV and console table -------------------------------------------------------------------------------------


def test_csv_header_and_cells(summaries: list[ApproachSummary]) -> None:
    text = write_summary_csv(summaries)
    parsed = list(csv.reader(io.StringIO(text)))
    assert tuple(parsed[0]) == SUMMARY_COLUMNS
    assert parsed[0][:4] == ["method", "avg_bert_score", "avg_llm_evaluator_score", "avg_inference_time"]
    rows = {row[0]: dict(zip(parsed[0], row, strict=True)) for row in parsed[1:]}
    assert list(rows) == ["rag", "finetune", "hybrid"]
    assert rows["rag"]["avg_bert_score"] == "0.8500"
    assert rows["rag"]["avg_llm_evaluator_score"] == ""  # None is an empty cell, not a sentinel
    assert rows["rag"]["avg_inference_time"] == "2.0000"  # seconds
    assert rows["rag"]["n"] == "4" and rows["rag"]["n_errors"] == "1"
    assert rows["finetune"]["retrieval_hit_rate"] == ""
    assert rows["finetune"]["monthly_cost_usd"] == f"{summaries[1].monthly_cost_usd:.2f}"
    assert rows["hybrid"]["status"] == "failed" and rows["hybrid"]["latency_p50_s"] == ""
    assert all(not math.isnan(float(v)) for row in rows.values() for k, v in row.items()
               if v and k not in ("method", "status"))  # fmt: skip


def test_format_table(summaries: list[ApproachSummary]) -> None:
    text = format_table(summaries)
    lines = text.splitlines()
    assert lines[0].startswith("method") and "BERTScore" in lines[0] and "$/month" in lines[0]
    assert len(lines) == 2 + 3
    assert "RAG" in lines[2] and "0.850 ±" in lines[2] and "partial" in lines[2]
    assert "Hybrid" in lines[4] and "failed" in lines[4] and "n/a" in lines[4]


# --- HTML report -----------------------------------------------------------------------------------------------


VOID = {"meta", "br", "hr", "img", "input", "link"}


class StrictParser(HTMLParser):
    """Collects tags; records any unbalanced or mismatched close tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: set[str] = set()
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.scripts += tag == "script"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.problems == []
    assert parser.stack == []
    return parser


def test_report_contains_every_approach_and_escapes(summaries: list[ApproachSummary]) -> None:
    notes = ["Local scores test the pipeline, not the models.", "<script>alert('x')</script> & more"]
    page = render_report(summaries, run_id="manual__2026-11-20", dataset_version="qa-abc", generated_at=STARTED,
                         notes=notes)  # fmt: skip
    assert page.startswith("<!DOCTYPE html>")
    for name in ("RAG", "Fine-tuning", "Hybrid"):
        assert name in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no external assets
    parser = parse(page)
    assert parser.scripts == 0
    assert {"svg", "circle", "table"} <= parser.tags
    text = " ".join(parser.text)
    assert "RAG has the best answer quality by BERTScore" in text
    assert "RAG is the cheapest" not in text and "also the cheapest" in text
    assert "<script>alert('x')</script>" in text  # shown to the reader as text
    assert "endpoint timeout" in text  # failed approach's first error is listed



def test_hostile_text_in_errors_notes_and_run_id_is_escaped_by_the_template(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    attack = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
    records = [record("s1", "rag", error=f"ModelError: {attack}"), record("s2", "rag", answer=attack),
               record("s1", "hybrid", error=attack)]
    hostile = summarize(records, prices=prices, usage=usage, endpoint_instance_type=INSTANCE)
    page = render_report(hostile, run_id=f"manual__{attack}", dataset_version=attack, generated_at=attack,
                         notes=[f"catalog note {attack}"])  # fmt: skip
    assert "<script" not in page and "<img" not in page
    escaped = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert page.count(escaped) == 7  # title, run, dataset, generated, two first errors, the note
    parser = parse(page)
    assert parser.scripts == 0 and "img" not in parser.tags
    text = " ".join(parser.text)
    assert f"ModelError: {attack}" in text and f"catalog note {attack}" in text

def test_report_without_judge_and_with_missing_approaches(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    records = [record(f"s{i}", "hybrid", bert=0.7 + i / 100, latency=300.0 + i) for i in range(3)]
    only = summarize(records, prices=prices, usage=usage, endpoint_instance_type=INSTANCE)
    page = render_report(only, run_id="r<1>", dataset_version=None, generated_at="2026-11-20T10:00:00Z", notes=[])
    parser = parse(page)
    text = " ".join(parser.text)
    assert "Hybrid" in text and "r<1>" in text and "r<1>" not in page
    assert "Not evaluated in this run: RAG, Fine-tuning." in text
    assert "No LLM-judge scores in this run." in text
    assert 'aria-label="LLM-judge score"' not in page  # no empty judge chart
    assert "<svg" in page


def test_report_renders_with_nothing_scored(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    failed = summarize([record("s1", "finetune", bert=None, kfm=None, error="boom")], prices=prices, usage=usage,
                       endpoint_instance_type=INSTANCE)  # fmt: skip
    for summaries in (failed, []):
        page = render_report(summaries, run_id="r", dataset_version="d", generated_at=STARTED, notes=["n"])
        parse(page)
    text = " ".join(parse(render_report(failed, run_id="r", dataset_version="d", generated_at=STARTED,
                                        notes=[])).text)  # fmt: skip
    assert "No approach produced a BERTScore" in text and "Failed completely: Fine-tuning." in text


def test_rows_load_into_the_sqlite_warehouse(summaries: list[ApproachSummary], tmp_path) -> None:
    import sqlite3

    from tailor.warehouse import Warehouse

    class Hook:  # the one method Warehouse needs from a DbApiHook
        def get_conn(self) -> sqlite3.Connection:
            return sqlite3.connect(tmp_path / "wh.db")

    warehouse = Warehouse(Hook(), "sqlite")
    warehouse.ensure_schema()
    rows = score_rows(build_records())
    for s in summaries:
        run = s.to_warehouse_row("manual__1", STARTED, {"dataset_version": "qa-abc"})
        assert warehouse.write_run(run, [r for r in rows if r["approach"] == s.approach]) > 0
    with sqlite3.connect(tmp_path / "wh.db") as conn:
        stored = dict(conn.execute("SELECT approach, status FROM eval_run").fetchall())
        avg = conn.execute("SELECT AVG(score) FROM eval_score WHERE approach = 'rag' AND metric = 'bertscore_f1'")
        assert avg.fetchone()[0] == pytest.approx(0.85)
    assert stored == {"rag": "partial", "finetune": "complete", "hybrid": "failed"}


# --- answers cut at the generation budget and BERTScore windows -------------------------------------------------


def truncation_records() -> list[dict]:
    """rag: 2 of 3 known cut (one answer without a stop reason); finetune: none known; hybrid: 0 of 2 cut."""
    return [
        record("s1", "rag", stop_reason="max_tokens", truncated=True, bertscore_windowed=True),
        record("s2", "rag", stop_reason="max_tokens", truncated=True),
        record("s3", "rag", stop_reason="end_turn", truncated=False, bertscore_windowed=False),
        record("s4", "rag", stop_reason=None, truncated=None, bertscore_windowed=True),
        record("s5", "rag", error="throttled", stop_reason=None, truncated=True, bertscore_windowed=True),
        record("s1", "finetune"),  # a record written before stop reasons were recorded
        record("s1", "hybrid", stop_reason="eos_token", truncated=False),
        record("s2", "hybrid", stop_reason="stop_sequence", truncated=False),
    ]


@pytest.fixture(scope="module")
def cut(table: tuple[Prices, Usage]) -> dict[str, ApproachSummary]:
    prices, usage = table
    return by_approach(summarize(truncation_records(), prices=prices, usage=usage, endpoint_instance_type=INSTANCE))


def test_truncated_answers_are_counted_per_approach(cut: dict[str, ApproachSummary]) -> None:
    counts = {a: (s.n_truncated, s.n_truncation_known, s.n_bertscore_windowed) for a, s in cut.items()}
    # errored records count for nothing; unknown stop reasons are neither cut nor complete
    assert counts == {"rag": (2, 3, 2), "finetune": (0, 0, 0), "hybrid": (0, 2, 0)}


def test_truncation_columns_end_the_csv_after_the_existing_ones(cut: dict[str, ApproachSummary]) -> None:
    parsed = list(csv.reader(io.StringIO(write_summary_csv(list(cut.values())))))
    header = parsed[0]
    assert header[:19] == list(SUMMARY_COLUMNS[:19]) and header[18] == "status"  # existing columns unchanged
    assert header[19:22] == ["n_truncated", "n_truncation_known", "n_bertscore_windowed"]  # then mrr, ndcg
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in parsed[1:]}
    assert [rows[a]["n_truncated"] for a in ("rag", "finetune", "hybrid")] == ["2", "", "0"]  # '' = unknown
    assert [rows[a]["n_truncation_known"] for a in ("rag", "finetune", "hybrid")] == ["3", "0", "2"]
    assert rows["rag"]["n_bertscore_windowed"] == "2"
    assert "n_truncated" not in RUN_COLUMNS  # the warehouse schema is unchanged


def test_truncation_in_the_console_table(cut: dict[str, ApproachSummary]) -> None:
    lines = format_table(list(cut.values())).splitlines()
    header = lines[0].split()
    assert header.index("truncated") < header.index("status")
    assert "2/3" in lines[2] and "n/a" in lines[3] and "0/2" in lines[4]


def test_truncation_and_windows_in_the_report(cut: dict[str, ApproachSummary]) -> None:
    page = render_report(list(cut.values()), run_id="r", dataset_version="d", generated_at=STARTED, notes=[])
    text = " ".join(parse(page).text)
    assert "<th>truncated</th>" in page and "<td>2/3</td>" in page and "<td>0/2</td>" in page
    assert "Answers cut at the token budget: RAG 2 of 3." in text
    assert "never truncated): RAG 2 of 4." in text  # 2 of the 4 scored answers
    assert "answers cut at the generation budget (evaluation.max_tokens)" in text  # the glossary


def test_a_run_without_cut_answers_or_windows_says_nothing_of_them(summaries: list[ApproachSummary]) -> None:
    text = " ".join(parse(render_report(summaries, run_id="r", dataset_version="d", generated_at=STARTED,
                                        notes=[])).text)  # fmt: skip
    assert "cut at the token budget" not in text and "sentence windows" not in text

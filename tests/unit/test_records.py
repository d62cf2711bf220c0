"""The weekly evaluation's vocabulary: approaches, a run's S3 layout, the per-sample record and its one JSON form."""

from __future__ import annotations

import json

import pytest

from tailor.records import Approach, Retrieved, RunLayout, SampleRecord, dump_records, load_records


def test_approaches_say_what_they_need() -> None:
    assert Approach.values() == ["rag", "finetune", "hybrid"]
    assert [a for a in Approach if a.retrieves] == [Approach.RAG, Approach.HYBRID]
    assert [a for a in Approach if a.uses_endpoint] == [Approach.FINETUNE, Approach.HYBRID]
    assert [a.display_name for a in Approach] == ["RAG", "Fine-tuning", "Hybrid"]
    assert Approach.parse("hybrid") is Approach.HYBRID and Approach.RAG == "rag"
    assert json.dumps({"approach": Approach.FINETUNE}) == '{"approach": "finetune"}'
    with pytest.raises(ValueError, match="unknown approach 'RAG': expected one of rag, finetune, hybrid"):
        Approach.parse("RAG")


def test_a_run_layout_names_every_key_under_its_own_prefix() -> None:
    layout = RunLayout.for_run("bucket", "eval/", "manual__2026-11-28T10:00:00+00:00 ../../etc")
    assert layout.prefix == "eval/manual__2026-11-28T10_00_00_00_00_.._.._etc/"
    keys = [layout.dataset, layout.answers("hybrid", 7), layout.scored, layout.judgements, layout.judged,
            layout.summary, layout.summary_csv, layout.report]
    assert all(k.startswith(layout.prefix) and "/../" not in k for k in keys)
    assert len(set(keys)) == len(keys)
    assert layout.answers("hybrid", 7) == f"{layout.prefix}answers/hybrid/batch-0007.jsonl"
    assert layout.uri(layout.report) == f"s3://bucket/{layout.prefix}report.html"
    with pytest.raises(ValueError, match="unknown approach"):
        layout.answers("../rag", 0)
    with pytest.raises(ValueError, match="ends with '/'"):
        RunLayout("bucket", "eval/run")


def record(**overrides: object) -> SampleRecord:
    values = {"sample_id": "q-1", "approach": Approach.HYBRID, "product_name": "P-200", "question": "Max pressure?",
              "reference": "16 bar.", "answer": "16 bar\u2028(line separator), lone \ud800 surrogate, ümlaut, 圧力",
              "latency_ms": 812.5, "retrieved": [Retrieved("P-200: 16 bar", "P-200", 0.8, "s3://b/k.txt")]}
    return SampleRecord(**{**values, **overrides})  # type: ignore[arg-type]


def test_a_record_round_trips_through_its_one_json_form_with_any_text() -> None:
    records = [record(), record(sample_id="q-2", approach=Approach.RAG, answer=None, error="ThrottlingException: x")]
    body = dump_records(records)
    assert body.count(b"\n") == 2  # the line separator in the answer does not split a line
    assert load_records(body) == records
    assert "judgements" not in records[0].to_json()  # not judged yet
    judged = record(judge_score=0.5, judge_criteria={"correctness": 0.5}, judgements=[])
    assert load_records(dump_records([judged])) == [judged]


def test_a_record_with_an_unknown_field_or_approach_is_refused() -> None:
    data = record().to_json()
    with pytest.raises(ValueError, match=r"sample 'q-1': unknown record fields \['judge_scor'\]"):
        SampleRecord.from_json({**data, "judge_scor": 1.0})
    with pytest.raises(ValueError, match="unknown approach 'fine-tune'"):
        SampleRecord.from_json({**data, "approach": "fine-tune"})


def test_a_records_context_is_its_retrieved_text_cut_to_the_budget() -> None:
    chunks = [Retrieved("a" * 10), Retrieved("b" * 10)]
    assert record(retrieved=chunks).context(15) == "a" * 10 + "\n\n" + "bbb"
    assert record(retrieved=[]).context(15) is None
    assert record().key == "hybrid/q-1" and record().answered
    assert not record(answer=None, error="x").answered


def test_summaries_round_trip_through_summary_json() -> None:
    from tailor.config import load_settings
    from tailor.summary import summaries_from_json, summaries_to_json, summarize

    records = [record(sample_id=f"q-{i}", approach=a, bertscore_f1=0.5 + i / 10, judge_score=0.25 * i,
                      key_fact_match=1.0, retrieval_hit=a.retrieves or None, input_tokens=10, output_tokens=5)
               for i in range(3) for a in Approach]
    cfg = load_settings()
    summaries = summarize([r.to_json() for r in records], prices=cfg.prices, usage=cfg.usage,
                          endpoint_instance_type=cfg.finetune.endpoint_instance_type)
    assert len(summaries) == 3
    assert summaries_from_json(json.loads(json.dumps(summaries_to_json(summaries)))) == summaries

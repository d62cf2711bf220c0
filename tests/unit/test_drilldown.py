"""The report's question-by-question drill-down: answers side by side, facts found and missing, judges, flags."""

from __future__ import annotations

from tailor.metrics.facts import fact_coverage, key_fact_match
from tailor.metrics.judge import Judgement
from tailor.report import DISAGREEMENT, drilldown, render_report

REFERENCE = "The VM-200 bowl holds 160 litres and the agitator runs at 20 to 180 rpm."


def record(approach: str, answer: str | None, scores: tuple[float, float] = (0.9, 0.8), **extra: object) -> dict:
    judgements = [Judgement(m, {"correctness": s, "completeness": s}, f"{m} says {s}", None, True).to_json()
                  for m, s in zip(("judge-a", "judge-b"), scores, strict=True)]
    return {"sample_id": "q-1", "approach": approach, "question": "Capacity and speed?", "reference": REFERENCE,
            "product_name": "Vortex Mixer VM-200", "answer": answer, "error": None if answer else "ReadTimeoutError",
            "judge_score": sum(scores) / 2 if answer else None, "bertscore_f1": 0.9 if answer else None,
            "judgements": judgements if answer else [], "retrieved": [], **extra}


def test_facts_found_and_missing_follow_the_key_fact_rule() -> None:
    found, missing = fact_coverage("It holds 160 l and spins at 180 rpm.", REFERENCE)
    assert (found, missing) == (["160 l", "180 rpm"], ["20 rpm", "vm-200"])  # a model code is a key fact too
    assert key_fact_match("It holds 160 l and spins at 180 rpm.", REFERENCE) == 2 / 4
    assert fact_coverage("anything", "no numbers here") == ([], [])


def test_one_row_per_question_with_every_approach_and_its_flags() -> None:
    chunk = {"text": "VM-200: bowl 160 l. " * 40, "product_name": "Vortex Mixer VM-200", "score": 0.8, "uri": "s3://x"}
    rows = drilldown([
        record("rag", "The VM-200 holds 160 litres, 20-180 rpm.", retrieved=[chunk]),
        record("finetune", "It holds 200 litres.", scores=(0.9, 0.2), truncated=True),
        record("hybrid", None),
        {**record("rag", "Fine."), "sample_id": "q-2", "question": "Other?"},
    ])
    assert [r["sample_id"] for r in rows] == ["q-1", "q-2"]
    rag, finetune, hybrid = rows[0]["answers"]
    assert [a["approach"] for a in rows[0]["answers"]] == ["RAG", "Fine-tuning", "Hybrid"]
    assert rag["found"] == ["160 l", "180 rpm", "20 rpm", "vm-200"] and rag["missing"] == [] and rag["flags"] == []
    assert len(rag["retrieved"]) == 1 and len(rag["retrieved"][0]["text"]) == 300
    assert finetune["missing"] == ["160 l", "180 rpm", "20 rpm", "vm-200"]
    assert finetune["flags"] == ["truncated", "judges disagree"] and finetune["spread"] > DISAGREEMENT
    assert hybrid["flags"] == ["error"] and hybrid["judges"] == []
    assert rows[0]["lowest"] == 0.55 and rows[0]["flags"] == ["error", "judges disagree", "truncated"]
    assert [j["rationale"] for j in finetune["judges"]] == ["judge-a says 0.9", "judge-b says 0.2"]
    assert len(drilldown([record("rag", "x")] * 1, limit=0)) == 0


def test_the_drilldown_escapes_hostile_answers_and_sorts_without_a_server() -> None:
    hostile = record("rag", '<script>alert("x")</script><img src=x onerror=alert(1)>')
    html = render_report([], run_id="r", dataset_version="v", generated_at="now", notes=[], records=[hostile])
    assert "Question by question" in html and 'id="dd-sort"' in html
    assert "<script>alert(" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html

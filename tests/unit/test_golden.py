"""The golden set (issue 14): the packaged file, its validation, calibration against human scores, and drift."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tailor.golden import (
    CRITERIA,
    GOLDEN_PATH,
    KINDS,
    GoldenItem,
    GoldenSetError,
    calibration,
    drift,
    judge_items,
    judgements_by_judge,
    load_golden,
    parse_golden,
    prompt_version,
)
from tailor.metrics.agreement import krippendorff_interval
from tailor.metrics.judge import RUBRICS, TOOL_NAME, Judgement, build_prompt, judge_many

REPO = Path(__file__).resolve().parents[2]
QA_PATH = REPO / "include" / "data" / "qa" / "test.json"
CATALOG_PATH = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"


@pytest.fixture(scope="module")
def items() -> list[GoldenItem]:
    return load_golden()


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def by_kind(items: list[GoldenItem], kind: str, criterion: str) -> list[float]:
    return [item.human[criterion] for item in items if item.kind == kind]


# --- the packaged set -----------------------------------------------------------------------------------------------

def test_the_packaged_set_meets_the_counts(items: list[GoldenItem]) -> None:
    assert GOLDEN_PATH == REPO / "include" / "data" / "golden" / "golden_set.json"
    assert len(items) >= 60
    kinds = Counter(item.kind for item in items)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 10
    assert len({item.question for item in items}) >= 25
    without_context = sum(item.context is None for item in items) / len(items)
    assert 0.25 <= without_context <= 0.42
    assert [item.id for item in items] == [f"golden-{n:03d}" for n in range(1, len(items) + 1)]


def test_the_criteria_are_the_judges_criteria() -> None:
    assert tuple(RUBRICS) == CRITERIA


def test_every_item_answers_a_sample_question_with_its_reference(items: list[GoldenItem]) -> None:
    qa = {(entry["product_name"], entry["question"]): entry["answer"]
          for entry in json.loads(QA_PATH.read_text(encoding="utf-8"))}
    for item in items:
        assert (item.product_name, item.question) in qa, item.id
        assert item.reference == qa[(item.product_name, item.question)], item.id


def test_every_context_is_catalog_text_of_the_asked_product(items: list[GoldenItem]) -> None:
    catalog = CATALOG_PATH.read_text(encoding="utf-8")
    for item in items:
        if item.context is None:
            continue
        for block in item.context.split("\n\n"):
            header, _, text = block.partition(":\n")
            assert header.startswith(f"{item.product_name} - "), item.id
            assert text and text in catalog, item.id


def test_human_scores_are_ordered_by_kind_as_the_rubric_says(items: list[GoldenItem]) -> None:
    correctness = {kind: mean(by_kind(items, kind, "correctness")) for kind in KINDS}
    assert correctness["good"] > correctness["partly_right"] > correctness["wrong_number"]
    assert correctness["over_long"] == correctness["good"] == 1.0  # length is no criterion: padding costs nothing
    assert max(by_kind(items, "hallucinated", "no_hallucination")) <= 0.25
    assert max(by_kind(items, "off_topic", "completeness")) <= 0.25
    assert max(by_kind(items, "off_topic", "correctness")) == 0.0
    assert min(by_kind(items, "off_topic", "no_hallucination")) == 1.0  # true statements about the wrong thing
    assert set(by_kind(items, "wrong_number", "completeness")) == {1.0}  # the point is addressed, with a wrong value
    assert max(by_kind(items, "wrong_number", "no_hallucination")) <= 0.5  # an altered value is an invented value
    assert mean(by_kind(items, "partly_right", "completeness")) < mean(by_kind(items, "good", "completeness"))
    assert all(set(item.human.values()) == {1.0} for item in items if item.kind == "good")
    answer_length = {kind: mean([len(i.answer) for i in items if i.kind == kind]) for kind in KINDS}
    assert answer_length["over_long"] > 3 * answer_length["good"]


def test_every_item_goes_into_the_judge_prompt_as_is(items: list[GoldenItem]) -> None:
    for item in items:
        system, user = build_prompt(item.question, item.reference, item.answer, item.context)
        assert item.answer in user and item.reference in user, item.id
        assert ("no context is given" in system) is (item.context is None), item.id


# --- validation: one test per rule ------------------------------------------------------------------------------

def raw_item(**changes: Any) -> dict[str, Any]:
    item = {"id": "golden-001", "kind": "good", "product_name": "Vortex Mixer VM-200",
            "question": "What is the agitator speed range of the Vortex Mixer VM-200?",
            "reference": "The Vortex Mixer VM-200 has a variable agitator speed of 20 to 180 rpm.",
            "context": None, "answer": "20 to 180 rpm.",
            "human": {"correctness": 1, "completeness": 1, "faithfulness": 1, "no_hallucination": 1},
            "note": "Right range."}
    item.update(changes)
    return item


def rejected(entries: list[Any]) -> str:
    with pytest.raises(GoldenSetError) as caught:
        parse_golden(json.dumps(entries), "golden.json")
    return str(caught.value)


def test_a_valid_item_parses_with_float_scores() -> None:
    [item] = parse_golden(json.dumps([raw_item(context="Vortex Mixer VM-200 - Description:\nIt mixes.")]))
    assert item.human == {c: 1.0 for c in CRITERIA} and all(type(v) is float for v in item.human.values())
    assert item.context == "Vortex Mixer VM-200 - Description:\nIt mixes." and item.kind == "good"


def test_ids_must_be_unique() -> None:
    message = rejected([raw_item(), raw_item(kind="off_topic")])
    assert "item 2 ('golden-001')" in message and "'id' repeats item 1" in message


def test_the_kind_must_be_known() -> None:
    message = rejected([raw_item(kind="excellent")])
    assert "'golden-001'" in message and "'kind' is 'excellent'" in message and "partly_right" in message


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_must_be_scored(criterion: str) -> None:
    human = {c: 1 for c in CRITERIA if c != criterion}
    assert f"field 'human.{criterion}' is missing" in rejected([raw_item(human=human)])


@pytest.mark.parametrize("value", [0.6, 2, -0.25, "1", None, True])
def test_scores_must_be_one_of_the_allowed_values(value: Any) -> None:
    human = {**dict.fromkeys(CRITERIA, 1), "faithfulness": value}
    message = rejected([raw_item(human=human)])
    assert "'human.faithfulness'" in message and "allowed scores: 0, 0.25, 0.5, 0.75, 1" in message


def test_unknown_criteria_are_rejected() -> None:
    human = {**dict.fromkeys(CRITERIA, 1), "fluency": 1}
    assert "unknown criteria ['fluency']" in rejected([raw_item(human=human)])


@pytest.mark.parametrize("field", ["id", "kind", "product_name", "question", "reference", "answer", "note"])
@pytest.mark.parametrize("value", ["", "   ", None, 3])
def test_text_fields_must_be_non_empty_text(field: str, value: Any) -> None:
    message = rejected([raw_item(), raw_item(**{"id": "golden-002", field: value})])
    assert "item 2" in message and f"field {field!r} must be a non-empty text" in message


def test_the_context_is_null_or_text_and_always_present() -> None:
    assert "field 'context' must be null or a non-empty text" in rejected([raw_item(context=" ")])
    without = raw_item()
    del without["context"]
    assert "field 'context' is missing" in rejected([without])


def test_unknown_fields_and_non_objects_are_rejected() -> None:
    assert "unknown field(s) ['score']" in rejected([raw_item(score=1)])
    assert "item 1 is a list" in rejected([["golden-001"]])


def test_the_file_must_be_a_non_empty_json_list(tmp_path: Path) -> None:
    with pytest.raises(GoldenSetError, match="not valid JSON"):
        parse_golden("[", "golden.json")
    with pytest.raises(GoldenSetError, match="non-empty JSON list"):
        parse_golden("{}", "golden.json")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([raw_item(kind="nonsense")]), encoding="utf-8")
    with pytest.raises(GoldenSetError, match=r"mine\.json: item 1 \('golden-001'\)"):
        load_golden(path)


def test_the_packaged_file_breaks_when_one_item_is_broken(tmp_path: Path) -> None:
    entries = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))
    entries[40]["human"]["correctness"] = 0.3
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(GoldenSetError, match=r"item 41 \('golden-041'\): field 'human.correctness' is 0.3"):
        load_golden(path)


# --- calibration ------------------------------------------------------------------------------------------------

def copying_judge(items: list[GoldenItem]) -> dict[str, Judgement]:
    return {item.id: Judgement("copy", dict(item.human), "same as people", None, True) for item in items}


def noisy_judge(items: list[GoldenItem]) -> dict[str, dict[str, float]]:
    """Every third item's scores moved by a quarter (towards the middle): close to people, not equal."""
    scores = {}
    for number, item in enumerate(items):
        moved = {c: (v - 0.25 if v > 0.5 else v + 0.25) if number % 3 == 0 else v for c, v in item.human.items()}
        scores[item.id] = moved
    return scores


def test_a_judge_that_copies_the_humans_agrees_perfectly(items: list[GoldenItem]) -> None:
    result = calibration(items, {"copy": copying_judge(items)}, prompt="p1")
    judge = result["judges"]["copy"]
    assert judge["overall"] == {"alpha": 1.0, "mae": 0.0, "n": len(items)}
    assert all(judge["criteria"][c] == {"alpha": 1.0, "mae": 0.0, "n": len(items)} for c in CRITERIA)
    assert result["golden_items"] == len(items) and result["prompt_version"] == judge["prompt_version"] == "p1"


def test_a_constant_judge_agrees_no_better_than_chance(items: list[GoldenItem]) -> None:
    constant = {item.id: dict.fromkeys(CRITERIA, 1.0) for item in items}
    judge = calibration(items, {"yes-man": constant}, prompt="p1")["judges"]["yes-man"]
    assert judge["overall"]["alpha"] <= 0
    assert all(judge["criteria"][c]["alpha"] is None or judge["criteria"][c]["alpha"] <= 0 for c in CRITERIA)
    expected_mae = mean([1.0 - item.human["correctness"] for item in items])
    assert judge["criteria"]["correctness"]["mae"] == pytest.approx(expected_mae)


def test_a_noisy_judge_lands_between(items: list[GoldenItem]) -> None:
    judge = calibration(items, {"noisy": noisy_judge(items)}, prompt="p1")["judges"]["noisy"]
    assert 0.6 < judge["overall"]["alpha"] < 1.0
    for criterion in CRITERIA:
        assert 0 < judge["criteria"][criterion]["alpha"] < 1.0
        assert judge["criteria"][criterion]["mae"] == pytest.approx(0.25 * 22 / 66)  # a quarter on every third item
    units = [(item.human["completeness"], noisy_judge(items)[item.id]["completeness"]) for item in items]
    assert judge["criteria"]["completeness"]["alpha"] == pytest.approx(krippendorff_interval(units))


def test_missing_scores_are_missing_not_zero(items: list[GoldenItem]) -> None:
    judged: dict[str, Any] = {item.id: dict(item.human) for item in items[:40]}  # items 41+ never judged
    judged[items[0].id] = {**items[0].human, "faithfulness": None}
    judged[items[1].id] = Judgement("j", dict.fromkeys(CRITERIA), None, "throttled", False).to_json()
    judge = calibration(items, {"j": judged}, prompt="p1")["judges"]["j"]
    assert judge["criteria"]["correctness"] == {"alpha": 1.0, "mae": 0.0, "n": 39}
    assert judge["criteria"]["faithfulness"]["n"] == 38
    assert judge["overall"] == {"alpha": 1.0, "mae": 0.0, "n": 39}  # item 1: mean of the 3 scored criteria, both sides


def test_a_judge_with_no_usable_score_is_not_measurable(items: list[GoldenItem]) -> None:
    judge = calibration(items, {"silent": {}}, prompt="p1")["judges"]["silent"]
    assert judge["overall"] == {"alpha": None, "mae": None, "n": 0}


def test_judgements_of_unknown_items_are_an_error(items: list[GoldenItem]) -> None:
    with pytest.raises(GoldenSetError, match=r"judge 'j' scored item\(s\) not in the golden set: \['golden-999'\]"):
        calibration(items, {"j": {"golden-999": dict.fromkeys(CRITERIA, 1.0)}}, prompt="p1")


def test_the_default_prompt_version_follows_the_judge_prompt(items: list[GoldenItem]) -> None:
    assert calibration(items[:2], {}, prompt=None)["prompt_version"] == prompt_version()
    assert prompt_version() != prompt_version(CRITERIA[:2])


class HumanLikeJudge:
    """A Converse client that answers each judge request with the human scores of the golden answer it is shown
    (with ``lenient``: 1 for every criterion), through the record_scores tool."""

    def __init__(self, items: list[GoldenItem], lenient: bool = False) -> None:
        self.by_answer = {item.answer: item.human for item in items}
        self.lenient, self.calls = lenient, 0

    def converse(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        user = request["messages"][0]["content"][0]["text"]
        answer = user.split("<answer>\n", 1)[1].split("\n</answer>", 1)[0]
        scores = dict.fromkeys(CRITERIA, 1.0) if self.lenient else dict(self.by_answer[answer])
        tool_use = {"toolUse": {"toolUseId": "t1", "name": TOOL_NAME, "input": {**scores, "rationale": "ok"}}}
        return {"output": {"message": {"role": "assistant", "content": [tool_use]}}}


def test_the_set_goes_through_judge_many_into_calibration(items: list[GoldenItem]) -> None:
    models = ["anthropic.claude-x", "meta.llama-x"]
    fair, lenient = HumanLikeJudge(items), HumanLikeJudge(items, lenient=True)
    judged = (judge_many(fair, models[:1], judge_items(items), concurrency=2)
              + judge_many(lenient, models[1:], judge_items(items), concurrency=2)
              + [("rag/q-1", Judgement(models[0], dict.fromkeys(CRITERIA, 0.0), None, None, True))])
    assert fair.calls == lenient.calls == len(items)
    by_judge = judgements_by_judge(judged)
    assert set(by_judge) == set(models) and all(len(found) == len(items) for found in by_judge.values())
    result = calibration(items, by_judge, prompt="p1")
    assert result["judges"][models[0]]["overall"] == {"alpha": 1.0, "mae": 0.0, "n": len(items)}
    assert result["judges"][models[1]]["overall"]["alpha"] < 0
    assert [f.split(":")[0] for f in drift(result, None)] == [f"judge {models[1]}"]


# --- drift ------------------------------------------------------------------------------------------------------

def result(**alphas: float | None) -> dict[str, Any]:
    return {"prompt_version": "p1", "judges": {judge: {"prompt_version": "p1", "overall": {"alpha": a, "mae": 0.1,
                                                                                         "n": 66}}
                                             for judge, a in alphas.items()}}


def test_drift_fires_on_a_drop_and_on_a_low_alpha() -> None:
    findings = drift(result(a=0.70, b=0.55, c=0.84), result(a=0.85, b=0.56, c=0.86))
    assert len(findings) == 2
    assert findings[0].startswith("judge a:") and "dropped from alpha 0.850 to 0.700" in findings[0]
    assert findings[1].startswith("judge b:") and "alpha 0.550, below the minimum 0.6" in findings[1]


def test_a_stable_judge_gives_no_finding() -> None:
    assert drift(result(a=0.80), result(a=0.85)) == []
    assert drift(result(a=0.80), None) == []
    assert drift(result(a=0.80), result(b=0.95)) == []  # a judge new this week has no baseline


def test_a_changed_prompt_is_a_new_baseline_not_drift() -> None:
    previous = result(a=0.95)
    previous["judges"]["a"]["prompt_version"] = "p0"
    assert drift(result(a=0.70), previous) == []
    assert drift(result(a=0.70), result(a=0.95)) != []


def test_thresholds_and_an_unmeasurable_judge() -> None:
    assert drift(result(a=0.70), result(a=0.85), max_drop=0.2) == []
    assert len(drift(result(a=0.70), None, min_alpha=0.75)) == 1
    [finding] = drift(result(a=None), result(a=0.9))
    assert "not measurable" in finding


def test_drift_over_real_calibrations(items: list[GoldenItem]) -> None:
    good = calibration(items, {"j": copying_judge(items)}, prompt="p1")
    worse = calibration(items, {"j": noisy_judge(items)}, prompt="p1")
    worst = copy.deepcopy(worse)
    worst["judges"]["j"]["overall"]["alpha"] = 0.5
    assert drift(good, good) == []
    assert drift(worse, good, max_drop=1 - worse["judges"]["j"]["overall"]["alpha"] - 0.01) != []
    assert len(drift(worst, good)) == 2


def test_a_smaller_calibration_keeps_every_kind() -> None:
    from tailor.golden import KINDS, balanced, load_golden

    items = load_golden()
    twelve = balanced(items, 12)
    assert len(twelve) == 12 and {i.kind for i in twelve} == set(KINDS)
    assert [i.id for i in twelve] == sorted(i.id for i in twelve)  # file order kept
    assert balanced(items, 0) == items and balanced(items, 1000) == items
    with pytest.raises(GoldenSetError, match="golden_limit must be >= 0"):
        balanced(items, -1)


def test_calibration_rows_are_one_per_judge_and_criterion_plus_overall() -> None:
    from tailor.golden import calibration, calibration_rows, load_golden

    items = load_golden()[:12]
    result = calibration(items, {"judge-a": {i.id: i.human for i in items}})
    rows = calibration_rows(result)
    assert [r["criterion"] for r in rows] == ["overall", *sorted(CRITERIA)]
    assert all(r["judge_model"] == "judge-a" and r["n"] == 12 for r in rows) and rows[0]["alpha"] == 1.0
    assert all(r["alpha"] in (1.0, None) for r in rows)  # None: no variation in that criterion among these 12
    assert {r["golden_digest"] for r in rows} == {result["golden_digest"]}

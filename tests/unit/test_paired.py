"""Paired comparisons on constructed data: a true difference is detected, a null one is not (at the nominal rate),
the minimum detectable effect means what it says, and Holm matches a hand computation."""

from __future__ import annotations

import random

import pytest

from tailor.metrics.paired import COLUMNS, compare, compare_pair, holm, minimum_detectable_effect


def records(a: list[float], b: list[float], metric: str = "judge_score") -> list[dict]:
    rows = [{"approach": "rag", "sample_id": f"q{i}", "error": None, metric: v} for i, v in enumerate(a)]
    return rows + [{"approach": "finetune", "sample_id": f"q{i}", "error": None, metric: v} for i, v in enumerate(b)]


def normal_pairs(rng: random.Random, n: int, effect: float, sd: float = 0.2) -> tuple[list[float], list[float]]:
    """Question difficulty shared by both approaches (what pairing removes), plus each answer's own noise."""
    difficulty = [rng.gauss(0.6, 0.15) for _ in range(n)]
    return ([d + effect + rng.gauss(0, sd / 2**0.5) for d in difficulty],
            [d + rng.gauss(0, sd / 2**0.5) for d in difficulty])


def test_holm_matches_a_hand_computation() -> None:
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to the running max 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def test_the_minimum_detectable_effect_formula() -> None:
    # 0.2 * (z(0.975) + z(0.8)) / sqrt(64) = 0.2 * (1.959964 + 0.841621) / 8
    assert minimum_detectable_effect(0.2, 64) == pytest.approx(0.0700396, abs=1e-6)
    assert minimum_detectable_effect(0.2, 1) is None


def test_a_true_difference_is_detected_with_its_size_and_direction() -> None:
    a, b = normal_pairs(random.Random(7), 60, effect=0.15)  # about twice the minimum detectable effect
    result = compare_pair(records(a, b), "judge_score", "rag", "finetune", seed=1)
    assert result.p_value is not None and result.ci95_low is not None and result.ci95_high is not None
    assert result.n == 60 and result.p_value < 0.001
    assert result.ci95_low < 0.15 < result.ci95_high and result.ci95_low > 0
    (judge,) = [c for c in compare(records(a, b), ["rag", "finetune"], ["judge_score"]) if c.metric == "judge_score"]
    assert judge.significant and judge.winner == "rag" and judge.verdict.startswith("rag better than finetune")


def test_a_null_difference_is_flagged_at_about_the_nominal_rate() -> None:
    rng, trials = random.Random(11), 400
    p_values = []
    for seed in range(trials):
        a, b = normal_pairs(rng, 40, effect=0.0)
        p_value = compare_pair(records(a, b), "judge_score", "rag", "finetune", seed=seed, resamples=200).p_value
        assert p_value is not None
        p_values.append(p_value)
    rate = sum(p < 0.05 for p in p_values) / trials
    assert 0.02 <= rate <= 0.085, rate  # nominal 5 %: binomial sd at 400 trials is 1.1 points


def test_an_effect_of_the_minimum_detectable_size_is_found_about_80_percent_of_the_time() -> None:
    rng, trials, n, sd = random.Random(5), 300, 50, 0.2
    effect = minimum_detectable_effect(sd, n)
    assert effect is not None
    found = 0
    for seed in range(trials):
        a, b = normal_pairs(rng, n, effect=effect, sd=sd)
        p_value = compare_pair(records(a, b), "judge_score", "rag", "finetune", seed=seed, resamples=200).p_value
        assert p_value is not None
        found += p_value < 0.05
    assert 0.65 <= found / trials <= 0.92, found / trials  # Wilcoxon's efficiency vs the t-test is 0.955


def test_no_difference_says_so_with_n_and_the_detectable_effect() -> None:
    a = [0.5 + 0.01 * (i % 7) for i in range(30)]
    same = compare(records(a, list(a)), ["rag", "finetune"], ["judge_score"])[0]
    assert not same.significant and same.winner is None and same.p_value == 1.0
    assert same.ci95_low == same.ci95_high == 0.0
    assert same.verdict.startswith("no significant difference on judge_score at n = 30")
    assert "minimum detectable effect 0.000" in same.verdict


def test_only_questions_both_approaches_scored_are_paired() -> None:
    rows = records([0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.5, 0.5])
    rows[1]["error"] = "ThrottlingException"  # rag q1: no score
    rows[6]["judge_score"] = None  # finetune q2: not scored
    rows.append({"approach": "hybrid", "sample_id": "q0", "error": None, "judge_score": 0.1})
    result = compare_pair(rows, "judge_score", "rag", "finetune")
    assert result.n == 2 and result.mean_diff == pytest.approx(((0.9 - 0.5) + (0.6 - 0.5)) / 2)
    empty = compare_pair(rows, "judge_score", "rag", "nothing")
    assert empty.n == 0 and empty.verdict == "no question scored by both" and not empty.significant


def test_three_approaches_three_metrics_nine_rows_with_every_column() -> None:
    rng = random.Random(3)
    rows = []
    for approach, effect in (("rag", 0.1), ("finetune", 0.0), ("hybrid", 0.12)):
        for i in range(40):
            rows.append({"approach": approach, "sample_id": f"q{i}", "error": None,
                         **{m: 0.5 + effect + rng.gauss(0, 0.05) for m in ("judge_score", "bertscore_f1")},
                         "key_fact_match": float(rng.random() < 0.5 + effect)})
    result = compare(rows, ["rag", "finetune", "hybrid"])
    assert len(result) == 9 and all(tuple(c.to_row()) == COLUMNS for c in result)
    judge = {(c.approach_a, c.approach_b): c for c in result if c.metric == "judge_score"}
    assert judge[("rag", "finetune")].winner == "rag" and judge[("finetune", "hybrid")].winner == "hybrid"
    assert all(c.p_holm is not None and c.p_value is not None and c.p_holm >= c.p_value for c in result)


def test_non_inferiority_promotes_an_equal_challenger_and_refuses_a_worse_one() -> None:
    from tailor.metrics.paired import non_inferiority

    rng = random.Random(2)
    champion = [0.6 + rng.gauss(0, 0.1) for _ in range(40)]
    equal = [c + rng.gauss(0, 0.02) for c in champion]
    worse = [c - 0.08 + rng.gauss(0, 0.02) for c in champion]
    ok = non_inferiority(equal, champion, 0.02)
    assert ok.lower_bound is not None and ok.mean_diff is not None
    assert ok.non_inferior and ok.tested and -0.02 < ok.lower_bound < ok.mean_diff
    bad = non_inferiority(worse, champion, 0.02)
    assert bad.lower_bound is not None
    assert not bad.non_inferior and bad.lower_bound < -0.02
    assert "possibly worse than the champion by more than 0.02 on n = 40" in bad.describe()
    one = non_inferiority([0.5], [0.51], 0.02)
    assert one.non_inferior and not one.tested and "one question, no test" in one.describe()
    assert not non_inferiority([], [], 0.02).non_inferior
    with pytest.raises(ValueError, match="differ in length"):
        non_inferiority([0.5], [], 0.02)


def test_non_inferiority_holds_its_error_rate_at_the_margin() -> None:
    """A challenger exactly `margin` worse is (wrongly) called non-inferior in about alpha = 5 % of runs."""
    from tailor.metrics.paired import non_inferiority

    rng, trials, passed = random.Random(9), 300, 0
    for seed in range(trials):
        champion, challenger = normal_pairs(rng, 40, effect=0.0, sd=0.1)
        challenger = [c - 0.05 for c in challenger]
        passed += non_inferiority(challenger, champion, 0.05, seed=seed, resamples=400).non_inferior
    assert passed / trials <= 0.10, passed / trials

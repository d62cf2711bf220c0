"""Krippendorff's alpha (interval) against the published reference and hand computations."""

from __future__ import annotations

import pytest

from tailor.metrics.agreement import judge_alpha, krippendorff_interval, reading
from tailor.metrics.judge import Judgement

N = None
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units example with
# missing values: interval alpha = 0.849 (nominal 0.743, ordinal 0.815, ratio 0.797).
CODERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]


def test_the_published_reference_value() -> None:
    units = list(zip(*CODERS, strict=True))
    assert krippendorff_interval(units) == pytest.approx(0.849, abs=0.0005)


def test_perfect_agreement_chance_and_nothing_to_compare() -> None:
    assert krippendorff_interval([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)]) == 1.0
    # two units, swapped values: D_o = (2 + 2) / 4 = 1, D_e = 8 ordered 0-1 pairs / (4 x 3) = 2/3 -> alpha = -0.5
    assert krippendorff_interval([(0.0, 1.0), (1.0, 0.0)]) == pytest.approx(-0.5)
    assert krippendorff_interval([(0.5, 0.5), (0.5, 0.5)]) is None  # no variation
    assert krippendorff_interval([(0.5, None), (0.7,)]) is None  # nothing pairable


def test_judge_alpha_per_criterion_and_overall_from_judged_records() -> None:
    def judged(*scores: tuple[float | None, float | None]) -> dict:
        return {"judgements": [Judgement(m, {"correctness": c, "completeness": k}, None, None, True)
                               for m, (c, k) in zip(("a", "b"), scores, strict=True)]}

    records = [judged((1.0, 0.5), (1.0, 0.5)), judged((0.0, 0.5), (0.0, 0.5)), judged((0.5, None), (0.5, 1.0)),
               {"judgements": []}]
    alpha = judge_alpha(records, ["correctness", "completeness"])
    assert alpha["correctness"] == 1.0
    assert alpha["completeness"] is None  # the only pairable values are all 0.5
    assert alpha["overall"] == pytest.approx(krippendorff_interval([(0.75, 0.75), (0.25, 0.25), (0.5, 0.75)]))


def test_the_reading_follows_krippendorffs_thresholds() -> None:
    assert reading(0.85).startswith("the judges agree") and reading(0.7).startswith("the judges roughly agree")
    assert "often disagree" in reading(0.3) and "no better than chance" in reading(-0.1)
    assert reading(None).startswith("not measurable")

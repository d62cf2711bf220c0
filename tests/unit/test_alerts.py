"""Regression findings versus the last complete run, on constructed runs."""

from __future__ import annotations

import random

from tailor.alerts import Finding, alert_message, regressions


def run(approach: str, scores: list[float], metric: str = "judge_score") -> list[dict]:
    return [{"approach": approach, "sample_id": f"q{i}", "error": None, metric: s} for i, s in enumerate(scores)]


def test_a_significant_drop_is_one_regression_and_noise_is_none() -> None:
    rng = random.Random(4)
    before_rag = [0.7 + rng.gauss(0, 0.1) for _ in range(50)]
    before_ft = [0.6 + rng.gauss(0, 0.1) for _ in range(50)]
    now_rag = [s - 0.1 + rng.gauss(0, 0.03) for s in before_rag]  # a real drop
    now_ft = [s + rng.gauss(0, 0.03) for s in before_ft]  # noise only
    found = regressions(run("rag", now_rag) + run("finetune", now_ft), run("rag", before_rag) +
                        run("finetune", before_ft), ["rag", "finetune"], ["judge_score"], previous_run="last")
    assert [(f.kind, f.approach, f.metric) for f in found] == [("regression", "rag", "judge_score")]
    assert found[0].delta is not None and found[0].ci95_high is not None
    assert -0.12 < found[0].delta < -0.08 and found[0].ci95_high < 0
    assert found[0].message.startswith("rag regressed on judge_score versus run last: -0.")


def test_an_improvement_or_no_previous_questions_is_no_regression() -> None:
    better = [0.9] * 10 + [0.8] * 10
    assert regressions(run("rag", better), run("rag", [0.5] * 20), ["rag"], ["judge_score"], previous_run="x") == []
    assert regressions(run("rag", better), [], ["rag"], ["judge_score"], previous_run="x") == []


def test_one_message_holds_every_finding_and_the_report() -> None:
    text = alert_message([Finding("regression", "rag regressed"), Finding("partial_run", "judge panel partial")],
                         run_id="scheduled__1", report_uri="s3://b/eval/r/report.html")
    assert text.splitlines() == ["weekly_evaluation scheduled__1: 2 finding(s)", "- [regression] rag regressed",
                                 "- [partial_run] judge panel partial", "report: s3://b/eval/r/report.html"]

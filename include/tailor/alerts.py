"""What the weekly run alerts on: a significant regression of an approach versus the last complete run, judge drift,
and a partial run. Plain findings with their message; Airflow's notifiers (SMTP, Slack) deliver them.

A regression is decided question by question, like the verdict between approaches: for each approach and metric,
the questions both runs scored are paired, and a regression is a mean drop whose Holm-adjusted Wilcoxon p-value
(across the approaches of that metric) is below ``alpha`` (:mod:`tailor.metrics.paired`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tailor.metrics.paired import ALPHA, METRICS, compare_pair, holm


@dataclass(frozen=True)
class Finding:
    kind: str  # regression | judge_drift | partial_run
    message: str
    approach: str | None = None
    metric: str | None = None
    delta: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None


def _relabel(records: Iterable[Mapping[str, Any]], approach: str, label: str) -> list[dict[str, Any]]:
    return [{**r, "approach": label} for r in records if str(r["approach"]) == approach]


def regressions(current: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]],
                approaches: Sequence[str], metrics: Sequence[str] = METRICS, *, previous_run: str,
                alpha: float = ALPHA, seed: int = 0) -> list[Finding]:
    """Significant drops of each approach versus ``previous`` (the last complete run's per-sample records)."""
    findings = []
    for metric in metrics:
        pairs = [compare_pair(_relabel(current, a, "now") + _relabel(previous, a, "before"), metric, "now",
                              "before", seed=seed) for a in approaches]
        for approach, pair, p_holm in zip(approaches, pairs, holm([c.p_value for c in pairs]), strict=True):
            if p_holm is None or pair.mean_diff is None or pair.mean_diff >= 0 or p_holm >= alpha:
                continue
            findings.append(Finding(
                "regression", f"{approach} regressed on {metric} versus run {previous_run}: "
                f"{pair.mean_diff:+.3f} (95% CI [{pair.ci95_low:+.3f}, {pair.ci95_high:+.3f}], Holm p = "
                f"{p_holm:.3g}, n = {pair.n} questions)", approach, metric, pair.mean_diff, pair.ci95_low,
                pair.ci95_high))
    return findings


def alert_message(findings: Sequence[Finding], *, run_id: str, report_uri: str) -> str:
    """One message for all findings of a run (one notification per run, not per finding)."""
    lines = [f"weekly_evaluation {run_id}: {len(findings)} finding(s)"]
    lines += [f"- [{f.kind}] {f.message}" for f in findings]
    lines.append(f"report: {report_uri}")
    return "\n".join(lines)


def partial_run_findings(summarized: Mapping[str, Any]) -> list[Finding]:
    """A failed approach or a shrunk judge panel (``summarize_results``' XCom): the run is partial."""
    found = [Finding("partial_run", f"{approach} failed: {summarized.get('errors', {}).get(approach)}", approach)
             for approach, status in summarized.get("statuses", {}).items() if status == "failed"]
    if summarized.get("judge_panel"):
        found.append(Finding("partial_run", str(summarized["judge_panel"])))
    return found


def finding_rows(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """``eval_finding`` rows, numbered in order."""
    return [{"seq": seq, "kind": f.kind, "approach": f.approach, "metric": f.metric, "delta": f.delta,
             "ci95_low": f.ci95_low, "ci95_high": f.ci95_high, "message": f.message}
            for seq, f in enumerate(findings, start=1)]

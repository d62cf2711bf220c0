"""Paired comparisons of the approaches: every approach answers the same questions, so compare them question by
question.

For a pair (a, b) and a metric, the per-question differences ``a - b`` over the questions both approaches have a
score for give:

* the mean difference with a seeded **paired bootstrap** 95 % interval (``scipy.stats.bootstrap`` over the
  differences, BCa; percentile when BCa is undefined);
* a **Wilcoxon signed-rank** test (``scipy.stats.wilcoxon``, two-sided; zero differences handled by Pratt's
  method), then **Holm**'s step-down correction across the pairs of one metric;
* the **minimum detectable effect**: the smallest true mean difference the test would detect with 80 % power at
  this n and this spread (normal approximation, ``sd(diff) * (z(1 - alpha/2) + z(power)) / sqrt(n)``) -- what
  "no significant difference" can and cannot rule out.

The verdict names a winner only when the Holm-adjusted p-value is below ``alpha``. scipy is imported inside the
functions (parse time).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

ALPHA = 0.05
POWER = 0.8
METRICS = ("judge_score", "bertscore_f1", "key_fact_match")
COLUMNS = ("metric", "approach_a", "approach_b", "n", "mean_a", "mean_b", "mean_diff", "ci95_low", "ci95_high",
           "p_value", "p_holm", "significant", "winner", "mde", "verdict")


@dataclass(frozen=True)
class PairedComparison:
    metric: str
    approach_a: str
    approach_b: str
    n: int  # questions both approaches have a score for
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None  # mean of (a - b)
    ci95_low: float | None
    ci95_high: float | None
    p_value: float | None  # Wilcoxon signed-rank, two-sided; None when n < 2
    p_holm: float | None  # Holm-adjusted across the pairs of this metric
    significant: bool
    winner: str | None
    mde: float | None  # minimum detectable effect (80 % power, alpha)
    verdict: str

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def paired_scores(records: Iterable[Mapping[str, Any]], metric: str, a: str,
                  b: str) -> tuple[list[str], list[float], list[float]]:
    """(sample ids, a's scores, b's scores) of the questions both approaches have a ``metric`` value for (an
    errored record has none), in sample-id order."""
    by: dict[str, dict[str, float]] = {a: {}, b: {}}
    for record in records:
        approach = str(record["approach"])
        if approach in by and not record.get("error") and record.get(metric) is not None:
            value = record[metric]
            by[approach][str(record["sample_id"])] = float(value) if not isinstance(value, bool) else float(value)
    ids = sorted(set(by[a]) & set(by[b]))
    return ids, [by[a][i] for i in ids], [by[b][i] for i in ids]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): controls the family-wise error rate."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def minimum_detectable_effect(sd_diff: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true mean difference a two-sided paired test detects with ``power`` at this n and spread."""
    from scipy.stats import norm

    if n < 2:
        return None
    return float(sd_diff * (norm.ppf(1 - alpha / 2) + norm.ppf(power)) / math.sqrt(n))


def _interval(diffs: Sequence[float], seed: int, resamples: int, confidence: float = 0.95) -> tuple[float, float]:
    import numpy as np
    from scipy.stats import bootstrap

    data = np.asarray(diffs, dtype=float)
    if np.ptp(data) == 0:  # every difference equal: nothing to resample
        return float(data[0]), float(data[0])
    for method in ("BCa", "percentile"):
        result = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples, method=method,
                           rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high
    return float(np.mean(data)), float(np.mean(data))


def _p_value(diffs: Sequence[float]) -> float:
    from scipy.stats import wilcoxon

    if all(d == 0 for d in diffs):
        return 1.0
    return float(wilcoxon(diffs, zero_method="pratt", alternative="two-sided").pvalue)


def compare_pair(records: Sequence[Mapping[str, Any]], metric: str, a: str, b: str, *, seed: int = 0,
                 resamples: int = 2000) -> PairedComparison:
    """One pair on one metric, before the Holm correction (``p_holm`` = ``p_value``)."""
    _, xs, ys = paired_scores(records, metric, a, b)
    n = len(xs)
    if n == 0:
        return PairedComparison(metric, a, b, 0, None, None, None, None, None, None, None, False, None, None,
                                "no question scored by both")
    diffs = [x - y for x, y in zip(xs, ys, strict=True)]
    mean = math.fsum(diffs) / n
    if n < 2:
        return PairedComparison(metric, a, b, n, xs[0], ys[0], mean, None, None, None, None, False, None, None,
                                "one question scored by both: no test")
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    low, high = _interval(diffs, seed, resamples)
    p = _p_value(diffs)
    return PairedComparison(metric, a, b, n, math.fsum(xs) / n, math.fsum(ys) / n, mean, low, high, p, p, False,
                            None, minimum_detectable_effect(sd, n), "")


def _verdict(c: PairedComparison, alpha: float) -> PairedComparison:
    if c.p_holm is None or c.mean_diff is None:
        return c
    significant = c.p_holm < alpha and c.mean_diff != 0
    if significant:
        winner, loser = (c.approach_a, c.approach_b) if c.mean_diff > 0 else (c.approach_b, c.approach_a)
        verdict = (f"{winner} better than {loser} on {c.metric} by {abs(c.mean_diff):.3f} "
                   f"(95% CI of {c.approach_a} - {c.approach_b}: [{c.ci95_low:.3f}, {c.ci95_high:.3f}], "
                   f"Holm p = {c.p_holm:.3g}, n = {c.n})")
        return PairedComparison(**{**asdict(c), "significant": True, "winner": winner, "verdict": verdict})
    mde = f"{c.mde:.3f}" if c.mde is not None else "n/a"
    verdict = (f"no significant difference on {c.metric} at n = {c.n} (mean {c.approach_a} - {c.approach_b} = "
               f"{c.mean_diff:.3f}, Holm p = {c.p_holm:.3g}); minimum detectable effect {mde}")
    return PairedComparison(**{**asdict(c), "verdict": verdict})


def compare(records: Sequence[Mapping[str, Any]], approaches: Sequence[str], metrics: Sequence[str] = METRICS, *,
            seed: int = 0, resamples: int = 2000, alpha: float = ALPHA) -> list[PairedComparison]:
    """Every pair of ``approaches`` (in their order) on every metric, Holm-corrected across the pairs of a metric."""
    out = []
    for metric in metrics:
        pairs = [compare_pair(records, metric, a, b, seed=seed, resamples=resamples)
                 for a, b in itertools.combinations(approaches, 2)]
        adjusted = holm([c.p_value for c in pairs])
        out += [_verdict(PairedComparison(**{**asdict(c), "p_holm": p}), alpha)
                for c, p in zip(pairs, adjusted, strict=True)]
    return out


@dataclass(frozen=True)
class NonInferiority:
    """Is the challenger not worse than the champion by more than ``margin``, question by question?

    ``lower_bound`` is the one-sided 95 % lower confidence bound of mean(challenger - champion) (the lower end of a
    seeded paired bootstrap 90 % interval); the challenger is non-inferior when it is above ``-margin``. With one
    question there is no interval: the bound is the difference itself (``tested`` False)."""

    n: int
    mean_diff: float | None
    lower_bound: float | None
    margin: float
    non_inferior: bool
    tested: bool

    def describe(self) -> str:
        if self.n == 0 or self.mean_diff is None or self.lower_bound is None:
            return "no question answered by both"
        relation = "not worse than" if self.non_inferior else "possibly worse than"
        bound = f"one-sided 95% lower bound {self.lower_bound:+.4f}" if self.tested else "one question, no test"
        return (f"challenger {relation} the champion by more than {self.margin} on n = {self.n} paired questions "
                f"(mean difference {self.mean_diff:+.4f}, {bound})")


def non_inferiority(challenger: Sequence[float], champion: Sequence[float], margin: float, *, seed: int = 0,
                    resamples: int = 2000, alpha: float = ALPHA) -> NonInferiority:
    """The paired non-inferiority test of a challenger's per-question scores against the champion's (same
    questions, same order)."""
    if len(challenger) != len(champion):
        raise ValueError(f"paired scores differ in length: {len(challenger)} challenger, {len(champion)} champion")
    n = len(challenger)
    if n == 0:
        return NonInferiority(0, None, None, margin, False, False)
    diffs = [float(a) - float(b) for a, b in zip(challenger, champion, strict=True)]
    mean = math.fsum(diffs) / n
    if n < 2:
        return NonInferiority(n, mean, mean, margin, mean > -margin, False)
    low, _ = _interval(diffs, seed, resamples, confidence=1 - 2 * alpha)
    return NonInferiority(n, mean, low, margin, low > -margin, True)


def paired_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """``paired_comparisons.csv``: :data:`COLUMNS`, one row per metric x pair; '' for a value not computed."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return buffer.getvalue()

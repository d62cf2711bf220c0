"""How far the judges agree: Krippendorff's alpha with the interval metric, per criterion and overall.

alpha = 1 - D_o / D_e over the *pairable* values (units -- answers -- with at least two judges' scores):

* D_o = 1/n * sum over units u of 1/(m_u - 1) * sum over ordered pairs i != j in u of (v_i - v_j)^2
* D_e = 1/(n (n - 1)) * sum over ordered pairs i != j of all n pairable values of (v_i - v_j)^2

(Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011; the interval difference function is the squared
difference.) 1 is perfect agreement, 0 is agreement at chance level, below 0 systematic disagreement. None when
there is nothing to compare (fewer than two pairable values, or no variation at all). Plain Python: the sums are
over pairs of a few judges per answer and one O(n) expression for D_e.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def krippendorff_interval(units: Iterable[Sequence[float | None]]) -> float | None:
    """Alpha of ``units`` (each: the values the coders gave one unit; None: that coder gave none)."""
    pairable = [[float(v) for v in unit if v is not None] for unit in units]
    pairable = [values for values in pairable if len(values) >= 2]
    n = sum(len(values) for values in pairable)
    if n < 2:
        return None
    observed = math.fsum(
        math.fsum((a - b) ** 2 for i, a in enumerate(values) for j, b in enumerate(values) if i != j)
        / (len(values) - 1) for values in pairable) / n
    flat = [v for values in pairable for v in values]
    mean = math.fsum(flat) / n
    # sum over ordered pairs of (v_i - v_j)^2 = 2 n sum (v - mean)^2
    expected = 2 * n * math.fsum((v - mean) ** 2 for v in flat) / (n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


def judge_alpha(records: Iterable[Mapping[str, Any]], criteria: Sequence[str]) -> dict[str, float | None]:
    """Alpha across the judges of a run, per criterion and ``overall`` (each judge's mean over the criteria), over
    the answers the judges scored (a judge's missing score is missing, never a 0)."""
    per_criterion: dict[str, list[list[float | None]]] = {c: [] for c in criteria}
    overall: list[list[float | None]] = []
    for record in records:
        judgements = record.get("judgements") or []
        if not judgements:
            continue
        for criterion in criteria:
            per_criterion[criterion].append([_score(j).get(criterion) for j in judgements])
        means = []
        for judgement in judgements:
            present = [v for v in _score(judgement).values() if v is not None]
            means.append(math.fsum(present) / len(present) if present else None)
        overall.append(means)
    result = {criterion: krippendorff_interval(units) for criterion, units in per_criterion.items()}
    result["overall"] = krippendorff_interval(overall)
    return result


def _score(judgement: Any) -> Mapping[str, float | None]:
    return judgement["scores"] if isinstance(judgement, Mapping) else judgement.scores


def reading(alpha: float | None) -> str:
    """A plain-language reading of alpha (Krippendorff's own guidance: rely on >= 0.8, tentative from 0.667)."""
    if alpha is None:
        return "not measurable (fewer than two judges scored the same answers, or no variation)"
    if alpha >= 0.8:
        return "the judges agree: their scores can be relied on"
    if alpha >= 0.667:
        return "the judges roughly agree: draw only tentative conclusions"
    if alpha > 0:
        return "the judges often disagree: a judge score says little on its own; read the rationales"
    return "the judges agree no better than chance: the judge score is not a measurement"

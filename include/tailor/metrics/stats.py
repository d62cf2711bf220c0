"""Summaries of per-sample scores: mean with a Student-t confidence interval (``scipy.stats.t``), and percentiles
(``numpy.percentile``). scipy and numpy are imported inside the functions: this module is imported at DAG parse
time.

Missing scores (``None``: the sample could not be scored) are counted and left out, never replaced by a
sentinel. NaN is rejected: it is a bug upstream, not a missing value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """``n`` scored values (``n_missing`` None left out); ``std`` is the sample standard deviation (ddof=1).

    ``mean`` is None when ``n == 0``; ``std`` and the interval are None when ``n < 2``.
    """

    n: int
    n_missing: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


def _present(values: Iterable[float | None]) -> tuple[list[float], int]:
    present: list[float] = []
    missing = 0
    for value in values:
        if value is None:
            missing += 1
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"expected a number or None, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise ValueError("NaN in the values: use None for a missing score")
        present.append(value)
    return present, missing


def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> Summary:
    """Mean of the non-None values with a two-sided Student-t ``confidence`` interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    present, missing = _present(values)
    n = len(present)
    if n == 0:
        return Summary(0, missing, None, None, None, None)
    mean = math.fsum(present) / n
    if n == 1:
        return Summary(1, missing, mean, None, None, None)
    from scipy.stats import t

    std = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1))
    half = float(t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Summary(n, missing, mean, std, mean - half, mean + half)


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of the non-None values: ``numpy.percentile``'s default (``method="linear"``);
    None when there are no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    present, _ = _present(values)
    if not present:
        return None
    import numpy as np

    return float(np.percentile(present, q))

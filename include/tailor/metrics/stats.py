"""Summaries of per-sample scores: mean with a Student-t confidence interval, and percentiles. No numpy/scipy.

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
    present, missing = [], 0
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
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1))
    half = t_ppf((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(n, missing, mean, std, mean - half, mean + half)


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of the non-None values, interpolated like ``numpy.percentile``'s default
    (``method="linear"``); None when there are no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    present, _ = _present(values)
    if not present:
        return None
    ordered = sorted(present)
    position = (q / 100.0) * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    a, b = ordered[low], ordered[high]
    diff = b - a
    # numpy's _lerp: interpolate from the nearer end (exact at the ends, monotone)
    return b - diff * (1.0 - fraction) if fraction >= 0.5 else a + diff * fraction


# --- Student's t quantile -------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (inverse of :func:`t_cdf`, |error| < 1e-9).

    E.g. ``t_ppf(0.975, 10)`` = 2.228, ``t_ppf(0.975, 44)`` = 2.015. Bisection on the exact CDF, so any ``df``
    (also non-integer) works; at ``df=inf`` it is the normal quantile.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isinf(df):
        from statistics import NormalDist

        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
        if high > 1e300:  # pragma: no cover - p this close to 1 is not a confidence level
            return math.inf
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0

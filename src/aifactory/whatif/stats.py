"""Means and 95% confidence intervals over a sweep's seeds (Student t).

With ``n`` runs of a variation, the interval is ``mean +- t(0.975, n-1) * s / sqrt(n)``, ``s``
the sample standard deviation: the usual interval for a mean of independent runs whose
metric is roughly normal across seeds. A difference from the base is taken per seed index
when the scenario is paired (common random numbers: the interval is that of the mean
paired difference) and as a Welch interval of two independent means otherwise.

The t quantiles for 1-30 degrees of freedom are the standard table values (any statistics
text, e.g. NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.2); above 30 the
Cornish-Fisher expansion in 1/df around the normal quantile, within 1e-4 of the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t975(df: float) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (``df`` >= 1)."""
    if df < 1:
        msg = f"df: must be >= 1 (got {df})"
        raise ValueError(msg)
    if df <= 30 and float(df).is_integer():
        return _T975[int(df) - 1]
    if df < 30:  # Welch's fractional df: interpolate the table
        lo = math.floor(df)
        return _T975[lo - 1] + (df - lo) * (_T975[lo] - _T975[lo - 1])
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean and the half-width of its 95% interval (NaN with fewer than two values)."""

    mean: float
    half: float
    n: int

    def text(self, fmt: str = "{:,.3g}") -> str:
        """``mean ± half`` (``mean`` alone when there is no interval)."""
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.half):
            return fmt.format(self.mean)
        return f"{fmt.format(self.mean)} ± {fmt.format(self.half)}"


def _clean(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def mean_ci(values: Sequence[float]) -> Estimate:
    """Mean and 95% half-width of ``values`` (NaNs left out)."""
    xs = _clean(values)
    n = len(xs)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n < 2:
        return Estimate(mean, math.nan, n)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Estimate(mean, t975(n - 1) * math.sqrt(var / n), n)


def paired_diff(variation: Sequence[float], base: Sequence[float]) -> Estimate:
    """Mean difference ``variation - base`` over pairs (same seed index) and its 95% CI."""
    diffs = [
        v - b for v, b in zip(variation, base, strict=True) if not (math.isnan(v) or math.isnan(b))
    ]
    return mean_ci(diffs)


def welch_diff(variation: Sequence[float], base: Sequence[float]) -> Estimate:
    """Difference of two independent means and its 95% Welch interval."""
    a, b = _clean(variation), _clean(base)
    if not a or not b:
        return Estimate(math.nan, math.nan, 0)
    ea, eb = mean_ci(a), mean_ci(b)
    diff = ea.mean - eb.mean
    if len(a) < 2 or len(b) < 2:
        return Estimate(diff, math.nan, min(len(a), len(b)))
    va = math.fsum((x - ea.mean) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = math.fsum((x - eb.mean) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(diff, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Estimate(diff, t975(max(df, 1.0)) * se, min(len(a), len(b)))

r"""Energy drift statistics (spec §6).

* drift of one run: ``median_{t ∈ [0.8 T, T]} |ΔH_t|`` (:func:`tail_median_abs`), used alike for
  ΔH^int, ΔH^traj and the resampling term δ;
* scaling: ordinary least squares of ``log10 drift`` on ``log10 step``; slope, intercept, R², n,
  and the 95 % confidence interval of the slope from Student's t with ``n − 2`` degrees of
  freedom (:func:`fit_loglog_slope`). The caller decides whether points are one per (step, seed)
  or per-step means, and says so.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SlopeFit", "fit_loglog_slope", "tail_median_abs"]


def tail_median_abs(series: Sequence[float | None], *, tail_fraction: float = 0.2) -> float:
    """``median |x_t|`` over the last ``tail_fraction`` of the series (``t ≥ ⌊(1−f) T⌋``).

    None and non-finite entries are ignored; NaN when nothing is left.
    """
    if not 0.0 < tail_fraction <= 1.0:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction!r}")
    n = len(series)
    start = int(math.floor((1.0 - tail_fraction) * n))
    tail = [abs(float(v)) for v in series[start:] if v is not None and math.isfinite(float(v))]
    return float(np.median(tail)) if tail else float("nan")


@dataclass(frozen=True)
class SlopeFit:
    """OLS fit ``log10 y = intercept + slope · log10 x`` with a t-interval for the slope."""

    slope: float
    intercept: float
    r2: float
    n: int
    ci_low: float
    ci_high: float
    stderr: float
    confidence: float = 0.95


@functools.lru_cache(maxsize=256)
def _t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (scipy's ``ppf`` costs ~0.4 ms a call; the analysis fits thousands of
    slopes with a handful of distinct degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def fit_loglog_slope(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> SlopeFit:
    """Fit ``log10 y`` on ``log10 x`` by OLS.

    Points with non-positive or non-finite x or y are dropped. Needs at least 3 points with two
    distinct x for an interval (with 2 points the interval is NaN; with fewer a ValueError).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    pts = [
        (math.log10(a), math.log10(b))
        for a, b in zip(x, y)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0
    ]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        raise ValueError(f"need at least 2 points with distinct positive step sizes, got {len(pts)}")
    lx = np.array([p[0] for p in pts])
    ly = np.array([p[1] for p in pts])
    n = len(pts)
    xm, ym = lx.mean(), ly.mean()
    sxx = float(((lx - xm) ** 2).sum())
    slope = float(((lx - xm) * (ly - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    resid = ly - (intercept + slope * lx)
    ss_res = float((resid**2).sum())
    ss_tot = float(((ly - ym) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    if n > 2:
        stderr = math.sqrt(ss_res / (n - 2) / sxx)
        t = _t_quantile(0.5 + confidence / 2, n - 2)
        lo, hi = slope - t * stderr, slope + t * stderr
    else:
        stderr, lo, hi = float("nan"), float("nan"), float("nan")
    return SlopeFit(slope, intercept, r2, n, lo, hi, stderr, confidence)

r"""Energy-cap engagement statistics (spec §4, §6).

The engagement rate of a run is ``engaged steps / steps``. Across seeds at one step size the lab
reports the mean rate with a 95 % Student-t interval ``mean ± t_{0.975, n−1} · s / √n``
(:func:`mean_ci`); with one seed the interval is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MeanCI", "engagement_rate", "mean_ci"]


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with a two-sided t confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95


def engagement_rate(flags: Sequence[bool | None]) -> float:
    """Fraction of steps with the cap engaged (None entries, steps that cannot know, are skipped)."""
    known = [bool(f) for f in flags if f is not None]
    return sum(known) / len(known) if known else float("nan")


def mean_ci(values: Sequence[float], *, confidence: float = 0.95) -> MeanCI:
    """Mean and t-interval of the finite ``values``."""
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0, confidence)
    mean = sum(xs) / n
    if n < 2:
        return MeanCI(mean, float("nan"), float("nan"), n, confidence)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n, confidence)

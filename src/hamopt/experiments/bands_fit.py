r"""Local drift slopes over a step-size grid, their regimes, the refinement and the band map.

Pure functions over one optimiser's grid (no runs, no files), so each rule is testable on
synthetic tables:

* **local fit** (:func:`local_fits`): for every run of ``window`` consecutive grid step sizes at
  which no seed diverged, OLS of ``log10 drift`` on ``log10 step size`` with one point per
  (step size, seed) and the 95 % t-interval of the slope
  (:func:`hamopt.diagnostics.fit_loglog_slope`), placed at the window's middle step size.
  The slope is ``d log drift / d log step size`` on the optimiser's own axis (``dt`` for
  Leapfrog, ``lr`` for SGD and AdamW), as in the lab's Table 1.
* **regime** (:func:`classify`): ``positive`` (CI above 0), ``negative`` (CI below 0),
  ``flat`` (CI contains 0 and lies within ``[−tol, +tol]``), ``unresolved`` (CI contains 0 but
  is wider, or no interval); a grid step size at which any seed diverged is ``unstable``.
* **refinement** (:func:`propose_fractions`): between two neighbouring local fits whose slopes
  have opposite signs, the log-midpoint ``√(f_a f_b)`` of their centres; with ``refine_edge``,
  the log-midpoint of the largest stable and the smallest unstable step size when they are
  neighbours. Gaps narrower than ``min_ratio`` are never split.
* **band map** (:func:`band_map`): consecutive local fits of one regime merge into one band
  (its fraction range runs over their centres), and the unstable step sizes form the last band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..diagnostics import fit_loglog_slope

__all__ = [
    "REGIMES",
    "Band",
    "GridPoint",
    "LocalFit",
    "band_map",
    "classify",
    "fit_points",
    "local_fits",
    "propose_fractions",
]

REGIMES = {
    "positive": "slope > 0",
    "flat": "slope ≈ 0",
    "negative": "slope < 0",
    "unresolved": "unresolved",
    "unstable": "unstable (diverged)",
}

Points = list[tuple[float, float]]
PointsOf = Callable[[Sequence["GridPoint"]], Points]


@dataclass(frozen=True)
class GridPoint:
    """One step size of the grid: its fraction of the limit, its value, and its runs' fate."""

    fraction: float
    step_size: float
    runs: int
    diverged: int

    @property
    def stable(self) -> bool:
        return self.runs > 0 and self.diverged == 0


@dataclass(frozen=True)
class LocalFit:
    """The slope of one window of neighbouring step sizes, placed at its middle one."""

    center: float
    step_size: float
    low: float
    high: float
    n: int
    slope: float
    ci_low: float
    ci_high: float
    regime: str


@dataclass(frozen=True)
class Band:
    """A stretch of the grid in one regime; ``slope``/CI from one fit over all its points."""

    regime: str
    fraction_low: float
    fraction_high: float
    step_low: float
    step_high: float
    local_fits: int
    n: int
    slope: float
    ci_low: float
    ci_high: float
    members: tuple[float, ...] = ()
    diverged: int = 0


def classify(slope: float, ci_low: float, ci_high: float, *, tolerance: float) -> str:
    """The regime of a slope and its 95 % CI (module docstring)."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    if not all(math.isfinite(v) for v in (slope, ci_low, ci_high)):
        return "unresolved"
    if ci_low > 0:
        return "positive"
    if ci_high < 0:
        return "negative"
    if -tolerance <= ci_low and ci_high <= tolerance:
        return "flat"
    return "unresolved"


def fit_points(points: Points) -> tuple[int, float, float, float]:
    """``(n, slope, ci_low, ci_high)`` of the usable (positive, finite) points; NaNs when fewer
    than two distinct step sizes remain."""
    usable = [(x, y) for x, y in points if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
    if len(usable) < 2 or len({x for x, _ in usable}) < 2:
        return len(usable), float("nan"), float("nan"), float("nan")
    f = fit_loglog_slope([x for x, _ in usable], [y for _, y in usable])
    return f.n, f.slope, f.ci_low, f.ci_high


def local_fits(grid: Sequence[GridPoint], points_of: PointsOf, *, window: int,
               tolerance: float) -> list[LocalFit]:
    """One :class:`LocalFit` per window of ``window`` consecutive stable grid points."""
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 3, got {window!r}")
    grid = sorted(grid, key=lambda g: g.fraction)
    out = []
    for i in range(len(grid) - window + 1):
        members = grid[i : i + window]
        if not all(g.stable for g in members):
            continue
        mid = members[window // 2]
        n, slope, lo, hi = fit_points(points_of(members))
        out.append(LocalFit(mid.fraction, mid.step_size, members[0].fraction, members[-1].fraction,
                            n, slope, lo, hi, classify(slope, lo, hi, tolerance=tolerance)))
    return out


def _adjacent(grid: Sequence[GridPoint], a: float, b: float) -> bool:
    fractions = sorted(g.fraction for g in grid)
    return fractions.index(b) == fractions.index(a) + 1


def _midpoint(a: float, b: float, min_ratio: float) -> float | None:
    if b / a < min_ratio:
        return None
    return float(f"{math.sqrt(a * b):.4g}")


def propose_fractions(grid: Sequence[GridPoint], fits: Sequence[Sequence[LocalFit]], *,
                      min_ratio: float, refine_edge: bool) -> list[float]:
    """New fractions, in order of priority: sign changes of each fit series (by fraction), then
    the edge of instability. ``fits`` holds one series of local fits per drift kind."""
    have = {g.fraction for g in grid}
    out: list[float] = []

    def add(f: float | None) -> None:
        if f is not None and f not in have and f not in out:
            out.append(f)

    changes: list[tuple[float, float]] = []
    for series in fits:
        series = sorted(series, key=lambda f: f.center)
        for a, b in zip(series, series[1:]):
            if not (math.isfinite(a.slope) and math.isfinite(b.slope)) or a.slope * b.slope >= 0:
                continue
            if _adjacent(grid, a.center, b.center):
                changes.append((a.center, b.center))
    for a, b in sorted(set(changes)):
        add(_midpoint(a, b, min_ratio))
    if refine_edge:
        ordered = sorted(grid, key=lambda g: g.fraction)
        for a, b in zip(ordered, ordered[1:]):
            if a.stable and not b.stable and b.runs > 0:
                add(_midpoint(a.fraction, b.fraction, min_ratio))
                break
    return out


def band_map(grid: Sequence[GridPoint], fits: Sequence[LocalFit], points_of: PointsOf) -> list[Band]:
    """Merge consecutive local fits of one regime into bands; the unstable step sizes last."""
    grid = sorted(grid, key=lambda g: g.fraction)
    by_fraction = {g.fraction: g for g in grid}
    runs: list[list[LocalFit]] = []
    for fit in sorted(fits, key=lambda f: f.center):
        if runs and runs[-1][-1].regime == fit.regime:
            runs[-1].append(fit)
        else:
            runs.append([fit])
    bands = []
    for group in runs:
        lo, hi = group[0].low, group[-1].high
        members = [g for g in grid if lo <= g.fraction <= hi]
        n, slope, c_lo, c_hi = fit_points(points_of(members))
        first, last = by_fraction[group[0].center], by_fraction[group[-1].center]
        bands.append(Band(group[0].regime, first.fraction, last.fraction, first.step_size,
                          last.step_size, len(group), n, slope, c_lo, c_hi,
                          tuple(g.fraction for g in members)))
    unstable = [g for g in grid if g.runs > 0 and not g.stable]
    if unstable:
        nan = float("nan")
        bands.append(Band("unstable", unstable[0].fraction, unstable[-1].fraction,
                          unstable[0].step_size, unstable[-1].step_size, 0,
                          sum(g.runs for g in unstable), nan, nan, nan,
                          tuple(g.fraction for g in unstable), sum(g.diverged for g in unstable)))
    return bands

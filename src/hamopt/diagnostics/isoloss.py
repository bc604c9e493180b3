r"""Drift at matched training progress: the iso-loss and per-loss-decrease readings.

A larger step size trains further in the same number of steps, so at a fixed step (the tail
``t ∈ [0.8T, T]``) its loss, gradient noise and resampling term are smaller: the fixed-step
drift confounds step size with training progress. These readings compare runs where their
training loss lies in the same range instead.

For a group of runs (one optimiser, one seed, several step sizes), with ``L̄_r(t)`` run ``r``'s
training loss smoothed by a centred moving mean over :func:`smoothing_window` steps (centred, so
a fast-falling loss is not read late):

* **common loss range** ``[lo, hi]`` (:func:`common_loss_range`): ``lo = max_r min_t L̄_r(t)``
  (the lowest loss every run reaches) and ``hi = min_r max_t L̄_r(t)`` (the highest every run
  starts from); empty (None) when ``lo ≥ hi``.
* **iso-loss drift** (:func:`iso_loss_drift`): ``median |x_t|`` over the steps whose ``L̄_r(t)``
  lies in the lowest ``fraction`` of the common range, ``[lo, lo + fraction·(hi − lo)]`` (the
  iso-loss counterpart of the tail median); NaN with fewer than :data:`MIN_WINDOW_STEPS` steps.
* **drift per unit of loss decrease** (:func:`per_loss_drift`): ``Σ |x_t|`` over the steps whose
  ``L̄_r(t)`` lies anywhere in ``[lo, hi]``, divided by ``hi − lo``: the energy error spent per
  nat of training progress over the stretch every run covers.

``x_t`` is any per-step drift series (ΔH^int, ΔH^traj, the resampling term); None and
non-finite entries are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "MIN_WINDOW_STEPS",
    "LossRange",
    "add_readings",
    "common_loss_range",
    "group_readings",
    "iso_loss_drift",
    "per_loss_drift",
    "smoothed_loss",
    "smoothing_window",
]

MIN_WINDOW_STEPS = 3
K = TypeVar("K")


@dataclass(frozen=True)
class LossRange:
    """The common loss range ``[lo, hi]`` of a group of runs and its iso-loss window."""

    lo: float
    hi: float
    fraction: float

    @property
    def window(self) -> tuple[float, float]:
        """The iso-loss window: the lowest ``fraction`` of the range."""
        return self.lo, self.lo + self.fraction * (self.hi - self.lo)


def smoothing_window(steps: int) -> int:
    """Steps in the moving mean: 5 % of the run, odd, at least 1."""
    w = max(1, round(0.05 * steps))
    return w if w % 2 else w + 1


def smoothed_loss(loss: Sequence[float | None], window: int | None = None) -> np.ndarray:
    """Centred moving mean of the loss over ``window`` steps (``t − ⌊w/2⌋ … t + ⌊(w−1)/2⌋``,
    fewer at the ends); None and non-finite entries are skipped (NaN where none is left)."""
    x = np.array([np.nan if v is None else float(v) for v in loss], dtype=float)
    x[~np.isfinite(x)] = np.nan
    w = smoothing_window(len(x)) if window is None else int(window)
    if w < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        seg = x[max(0, t - w // 2) : t + (w - 1) // 2 + 1]
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out[t] = seg.mean()
    return out


def common_loss_range(smoothed: Sequence[np.ndarray], *, fraction: float = 0.2) -> LossRange | None:
    """The loss range every run of the group covers (module docstring), or None when empty."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    finite = [s[np.isfinite(s)] for s in smoothed]
    if not finite or any(f.size == 0 for f in finite):
        return None
    lo = max(float(f.min()) for f in finite)
    hi = min(float(f.max()) for f in finite)
    return LossRange(lo, hi, fraction) if lo < hi else None


def _abs_in(series: Sequence[float | None], smoothed: np.ndarray, lo: float, hi: float) -> list[float]:
    out = []
    for v, level in zip(series, smoothed):
        if v is None or not math.isfinite(float(v)) or not np.isfinite(level):
            continue
        if lo <= level <= hi:
            out.append(abs(float(v)))
    return out


def iso_loss_drift(series: Sequence[float | None], smoothed: np.ndarray, rng: LossRange) -> float:
    """``median |x_t|`` over the steps in the iso-loss window of ``rng`` (NaN when too few)."""
    lo, hi = rng.window
    values = _abs_in(series, smoothed, lo, hi)
    return float(np.median(values)) if len(values) >= MIN_WINDOW_STEPS else float("nan")


def per_loss_drift(series: Sequence[float | None], smoothed: np.ndarray, rng: LossRange) -> float:
    """``Σ |x_t|`` over the steps inside the common range, per unit of the range (NaN when too few)."""
    values = _abs_in(series, smoothed, rng.lo, rng.hi)
    return float(sum(values) / (rng.hi - rng.lo)) if len(values) >= MIN_WINDOW_STEPS else float("nan")


def group_readings(
    runs: Mapping[K, tuple[Sequence[float | None], Mapping[str, Sequence[float | None]]]],
    *,
    fraction: float = 0.2,
) -> dict[K, dict[str, Any]]:
    """Both readings for every run of one group (one optimiser and seed, several step sizes).

    ``runs`` maps a key to ``(loss series, {kind: drift series})``; the result maps the key to
    ``{"isoloss_<kind>": ..., "per_loss_<kind>": ..., "isoloss_low": lo, "isoloss_high":
    window top}``; every value is NaN when the group has no common range.
    """
    smooth = {k: smoothed_loss(loss) for k, (loss, _) in runs.items()}
    rng = common_loss_range(list(smooth.values()), fraction=fraction)
    out: dict[K, dict[str, Any]] = {}
    for k, (_, series) in runs.items():
        row: dict[str, Any] = {
            "isoloss_low": float("nan") if rng is None else rng.window[0],
            "isoloss_high": float("nan") if rng is None else rng.window[1],
        }
        for kind, x in series.items():
            row[f"isoloss_{kind}"] = float("nan") if rng is None else iso_loss_drift(x, smooth[k], rng)
            row[f"per_loss_{kind}"] = float("nan") if rng is None else per_loss_drift(x, smooth[k], rng)
        out[k] = row
    return out


def add_readings(
    rows: Sequence[dict[str, Any]],
    series_of: Any,
    *,
    group_of: Any,
    kinds: Sequence[str],
    fraction: float = 0.2,
) -> None:
    """Fill both readings into each row in place, grouping the rows by ``group_of(row)`` (None
    leaves a row out: NaN readings); ``series_of(row)`` gives ``(loss, {kind: series})``."""
    groups: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        key = group_of(row)
        if key is not None:
            groups.setdefault(key, []).append(i)
    blank = {f"{r}_{k}": float("nan") for r in ("isoloss", "per_loss") for k in kinds}
    blank.update(isoloss_low=float("nan"), isoloss_high=float("nan"))
    for row in rows:
        row.update(blank)
    for members in groups.values():
        readings = group_readings({i: series_of(rows[i]) for i in members}, fraction=fraction)
        for i, values in readings.items():
            rows[i].update(values)

r"""The step-size schedule of a symmetry-breaking preset (``schedule:`` in its YAML).

Every optimiser of a preset runs its tuned step size ``η`` times one shared factor
``m(t)``, ``t = 0 … T−1`` (``T`` the preset's ``steps``, ``W = round(warmup · T)``):

* warm-up, ``t < W``: ``m(t) = (t + 1) / W`` (linear from ``1/W`` to 1);
* decay, ``t ≥ W``, with ``s = (t − W) / max(T − W − 1, 1)`` running from 0 to 1:
  ``shape: cosine``: ``m = final + (1 − final) · ½ (1 + cos π s)``;
  ``shape: linear``: ``m = final + (1 − final) · (1 − s)``;
  ``shape: constant``: ``m = 1``.

The factor multiplies ``lr`` (the step size of every family: Leapfrog's ``dt``, ECD's ``Δt·√η``),
through :class:`torch.optim.lr_scheduler.LambdaLR`, so the schedule is the same shape for every
optimiser and a comparison at the end of the decay is a comparison at a fixed budget, each
optimiser at its own tuned peak step size. ``schedule: null`` (the default) is a constant step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .spec import SpecError

__all__ = ["SHAPES", "check_schedule", "lr_factor"]

SHAPES = ("cosine", "linear", "constant")
_KEYS = ("warmup", "shape", "final")


def check_schedule(schedule: Any, steps: int) -> None:
    """Refuse a malformed ``schedule`` (:class:`SpecError` naming the field and its range)."""
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise SpecError(f"schedule: must be a mapping with keys {', '.join(_KEYS)} or null; "
                        f"got {schedule!r}")
    unknown = sorted(set(schedule) - set(_KEYS))
    if unknown:
        raise SpecError(f"schedule: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                        f"{', '.join(_KEYS)}")
    warmup = schedule.get("warmup", 0.0)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0.0 <= warmup < 1.0:
        raise SpecError(f"schedule.warmup: a fraction of the steps in [0, 1); got {warmup!r}")
    shape = schedule.get("shape", "cosine")
    if shape not in SHAPES:
        raise SpecError(f"schedule.shape: one of {', '.join(map(repr, SHAPES))}; got {shape!r}")
    final = schedule.get("final", 0.0)
    if isinstance(final, bool) or not isinstance(final, (int, float)) or not 0.0 <= final <= 1.0:
        raise SpecError(f"schedule.final: the last step's factor, in [0, 1]; got {final!r}")
    if round(warmup * steps) >= steps:
        raise SpecError(f"schedule.warmup: {warmup} of {steps} steps leaves no step after the "
                        "warm-up; lower it")


def lr_factor(schedule: dict[str, Any] | None, steps: int) -> Callable[[int], float]:
    """``m(t)`` of the module docstring (checked by :func:`check_schedule` first)."""
    check_schedule(schedule, steps)
    if schedule is None:
        return lambda t: 1.0
    warm = round(float(schedule.get("warmup", 0.0)) * steps)
    shape = schedule.get("shape", "cosine")
    final = float(schedule.get("final", 0.0))
    span = max(steps - warm - 1, 1)

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        s = min(max((t - warm) / span, 0.0), 1.0)
        if shape == "cosine":
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * s))
        if shape == "linear":
            return final + (1.0 - final) * (1.0 - s)
        return 1.0

    return factor

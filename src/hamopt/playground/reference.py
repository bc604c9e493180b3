r"""The playground's reference run: autograd closures and :class:`hamopt.energy.EnergyTracker`.

:func:`tracked_steps` is the straightforward way to run a playground configuration — the tracker
builds the closure (zero_grad, ``landscape.loss(batch)``, ``backward()``) and keeps the energy
records. :func:`hamopt.playground.run_trajectory` takes a faster route to the same numbers
(:mod:`hamopt.playground.stepping`); this one stays as the yardstick it is tested and timed
against (``run_trajectory(config, reference=True)``), and it runs any optimiser whose energy the
fast route does not read (a Hamiltonian integrator in streaming mode).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..energy import EnergyTracker, StepRecord
from ..errors import NonFiniteError
from ..landscapes import Landscape
from .config import ENERGY_LIMIT, ESCAPE_RADIUS, PlaygroundConfig

__all__ = ["StepLog", "escape_reason", "tracked_steps"]

# θ_0 … θ_T, the records of steps 0 … T−1, the divergence step and message (None, None if none)
StepLog = tuple[list[tuple[float, float]], list[StepRecord], int | None, str | None]


def _point(landscape: Landscape) -> tuple[float, float]:
    x, y = landscape.theta.detach().tolist()
    return float(x), float(y)


def escape_reason(t: int, point: tuple[float, float], h: float | None) -> str | None:
    """Why the run stops after step ``t`` at ``point`` with energy ``h`` (None: it goes on)."""
    if not all(math.isfinite(v) for v in point) or math.hypot(*point) > ESCAPE_RADIUS:
        return f"θ left the landscape at step {t} (‖θ‖ > {ESCAPE_RADIUS:g})"
    if h is None or not math.isfinite(h) or abs(h) > ENERGY_LIMIT:
        return f"energy blew up at step {t} (|H| = {h!r} > {ENERGY_LIMIT:g})"
    return None


def tracked_steps(config: PlaygroundConfig, landscape: Landscape, opt: torch.optim.Optimizer) -> StepLog:
    """Run ``config.steps`` steps of ``opt`` on ``landscape`` through an :class:`EnergyTracker`."""
    tracker = EnergyTracker(opt)
    theta = [_point(landscape)]
    diverged_at: int | None = None
    divergence: str | None = None
    for t in range(config.steps):
        batch = landscape.sample_batch()
        try:
            record = tracker.step(lambda b=batch: landscape.loss(b))
        except NonFiniteError as exc:
            diverged_at, divergence = t, str(exc)
            break
        point = _point(landscape)
        reason = escape_reason(t, point, record.hamiltonian)
        if reason is not None:
            diverged_at, divergence = t, reason
            tracker.records.pop()
            break
        theta.append(point)
    records = tracker.records
    if records and diverged_at is None:
        # the last step's δ and ΔH^traj need L_{B_T}(θ_T): one forward pass on the next batch
        final_batch = landscape.sample_batch()
        if final_batch is not None:
            last = records[-1]
            with torch.no_grad():
                delta = float(landscape.loss(final_batch)) - float(last.loss_after)
            records[-1] = replace(last, resampling=delta, delta_h_traj=last.delta_h_int + delta)
    return theta, records, diverged_at, divergence

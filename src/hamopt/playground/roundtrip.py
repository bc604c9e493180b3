r"""Playground reversibility: the momentum-flip round trips of Leapfrog and Euler."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..diagnostics import RoundTrip, round_trip
from ..errors import NonFiniteError
from ..optim import Euler, Leapfrog
from .config import PlaygroundConfig, PlaygroundInputError
from .trajectory import _point

__all__ = ["ReversibilityPath", "ReversibilityResult", "reversibility"]


def _inverse_mass(config: PlaygroundConfig) -> Callable[[torch.Tensor], float]:
    m = 1.0 / config.mass
    return lambda _tensor: m


# ---------------------------------------------------------------------- reversibility
@dataclass(frozen=True)
class ReversibilityPath:
    """One integrator's round trip: the forward path θ_0 … θ_N, the return path after the
    momentum flip, and :class:`~hamopt.diagnostics.RoundTrip` (None if the trip diverged)."""

    integrator: str
    forward: tuple[tuple[float, float], ...]
    backward: tuple[tuple[float, float], ...]
    result: RoundTrip | None
    divergence: str | None = None


@dataclass(frozen=True)
class ReversibilityResult:
    """Leapfrog and Euler round trips from the same start, step size, mass and batch."""

    config: PlaygroundConfig
    leapfrog: ReversibilityPath
    euler: ReversibilityPath

    @property
    def paths(self) -> tuple[ReversibilityPath, ReversibilityPath]:
        return self.leapfrog, self.euler


def _round_trip_path(cls: type, config: PlaygroundConfig) -> ReversibilityPath:
    landscape = config.landscape_module()
    batch = landscape.sample_batch()  # one fixed mini-batch for the whole trip (spec §6)
    visited: list[tuple[float, float]] = []

    def loss_fn() -> torch.Tensor:
        visited.append(_point(landscape))
        return landscape.loss(batch)

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return cls(
            params,
            lr=config.step_size,
            gamma=0.0,
            mass=_inverse_mass(config),
            cap=None,
            mode="exact",
        )

    n = config.steps
    result: RoundTrip | None = None
    divergence = None
    try:
        result = round_trip(make, [landscape.theta], loss_fn, steps=n)
        if not (math.isfinite(result.theta_error) and math.isfinite(result.momentum_error)):
            divergence = "the round-trip error is not finite"
    except NonFiniteError as exc:
        divergence = str(exc)
    # exact mode evaluates the loss twice per step, at θ_t then at θ_{t+1}
    forward = [visited[0]] + visited[1 : 2 * n : 2] if visited else []
    back = visited[2 * n :]
    backward = ([back[0]] + back[1::2]) if back else []
    finite = lambda pts: [p for p in pts if all(math.isfinite(c) for c in p)]  # noqa: E731
    return ReversibilityPath(
        cls.__name__, tuple(finite(forward)), tuple(finite(backward)), result, divergence
    )


def reversibility(config: PlaygroundConfig) -> ReversibilityResult:
    """Leapfrog and Euler round trips of ``config.steps`` steps (γ = 0, no cap, fixed batch)."""
    if config.start is not None and math.hypot(*config.start) == 0.0:
        raise PlaygroundInputError(
            "start", "must not be the origin: the round-trip error is relative to ‖θ_0‖"
        )
    return ReversibilityResult(
        config, _round_trip_path(Leapfrog, config), _round_trip_path(Euler, config)
    )

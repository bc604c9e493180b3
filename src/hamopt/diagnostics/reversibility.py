r"""Reversibility round trips (spec §6).

From (θ_0, p_0) run N steps with γ = 0 on a fixed batch, negate p, run N steps, negate p, and
measure ``‖θ_back − θ_0‖ / ‖θ_0‖`` and ``‖p_back − p_0‖ / max(‖p_0‖, ‖p_N‖)`` (p_0 is often 0, so
the momentum error is normalised by the largest momentum norm of the trip). The leapfrog map is
its own inverse under momentum flip, so its error is rounding only; the explicit Euler map is
not, so its error is O(dt) per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RoundTrip", "round_trip"]


@dataclass(frozen=True)
class RoundTrip:
    """Result of a forward–flip–backward–flip trip."""

    integrator: str
    steps: int
    dt: float
    dtype: str
    theta_error: float
    momentum_error: float


def _flat(ts: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in ts])


def round_trip(
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
    params: list[Tensor],
    loss_fn: Callable[[], Tensor],
    *,
    steps: int,
) -> RoundTrip:
    """Run the round trip in place on ``params`` with the optimiser ``make_optimizer(params)``.

    ``make_optimizer`` must build a :class:`~hamopt.optim.HamiltonianOptimizer` with ``gamma=0``
    and ``cap=None`` (the cap is not time-reversible); ``loss_fn`` evaluates the fixed batch.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = make_optimizer(params)
    for g in opt.param_groups:
        if g.get("gamma", 0.0) != 0.0 or g.get("cap") is not None:
            raise ValueError("round_trip needs gamma=0 and cap=None (damping and the cap are not reversible)")

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    theta0 = _flat(params)
    for p in params:
        opt.state[p].setdefault("momentum", torch.zeros_like(p))
    moms = lambda: [opt.state[p]["momentum"] for p in params]  # noqa: E731
    p0 = _flat(moms())
    for _ in range(steps):
        opt.step(closure)
    pn = _flat(moms())
    with torch.no_grad():
        for m in moms():
            m.neg_()
    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        for m in moms():
            m.neg_()
    theta_err = float(torch.linalg.vector_norm(_flat(params) - theta0) / torch.linalg.vector_norm(theta0))
    scale = max(float(torch.linalg.vector_norm(p0)), float(torch.linalg.vector_norm(pn)), 1e-300)
    mom_err = float(torch.linalg.vector_norm(_flat(moms()) - p0)) / scale
    return RoundTrip(
        integrator=type(opt).__name__,
        steps=steps,
        dt=float(opt.param_groups[0]["lr"]),
        dtype=str(params[0].dtype).replace("torch.", ""),
        theta_error=theta_err,
        momentum_error=mom_err if math.isfinite(mom_err) else float("inf"),
    )

r"""Optimiser-aware sharpness thresholds: the largest ``λ_max(P⁻¹H)`` at which a step stays stable.

Each formula is the linear stability limit of the optimiser's update on a quadratic
``L(θ) = ½ θᵀHθ`` with the preconditioner ``P`` frozen: on an eigenvector of ``P⁻¹H`` with
eigenvalue λ the update is a linear recurrence, and the run is stable iff every root of its
characteristic polynomial lies inside the unit circle (Jury's conditions for ``z² − T z + D``:
``|D| < 1`` and ``|T| < 1 + D``). Derivations (``docs/stability.md``):

* **SGD, heavy ball** (torch semantics ``b ← μ b + (1−d) g``, ``θ ← θ − η b``; μ = 0 is gradient
  descent): with ``a = η(1−d)λ`` the position obeys ``x⁺ = (1+μ−a) x − μ x⁻``, stable iff
  ``0 < a < 2 + 2μ``. Coupled weight decay adds ``wd`` to every curvature the update sees, so on
  the loss Hessian: ``λ < (2+2μ)/((1−d)η) − wd`` (``2/η`` for plain GD).
* **Adam/AdamW**: ``m ← β1 m + (1−β1) g`` and ``θ ← θ − η m̂/(√v̂+ε)``; with ``P = diag(√v̂+ε)``
  frozen and the bias correction of ``m`` at 1 (late in training) this is heavy ball on
  ``P⁻¹H`` with ``μ = d = β1``: ``λ(P⁻¹H) < (2+2β1)/((1−β1)η)`` (38/η at β1 = 0.9). AdamW's
  decoupled decay multiplies θ by ``1 − η·wd`` each step, a contraction: it can only help, and at
  ``η·wd ≲ 1e-4`` it moves the limit by less than that; it is left out.
* **Leapfrog** (kick–drift–kick, ``a = e^{−γ dt/2}`` per half-kick): on an eigenvalue λ of
  ``M⁻¹H`` the one-step matrix has ``D = a²`` and ``T = 1 + a² − (1+a)·dt²λ/2``, so it is stable
  iff ``dt²λ < 4(1+a²)/(1+a)``. Undamped (a = 1) this is ``dt·√λ < 2``; damping *lowers* the
  limit by the factor ``(1+a²)/(1+a) ≈ 1 − γ dt/4``.
* **Euler** (hamopt's explicit Euler: ``θ⁺ = θ + dt M⁻¹p``, ``p⁺ = e^{−γ dt} p − dt ∇L(θ)``):
  ``T = 1 + e^{−γ dt}``, ``D = e^{−γ dt} + dt²λ``, stable iff ``dt²λ < 1 − e^{−γ dt}`` (≈ γ/dt).
  Without damping the threshold is 0: every positive curvature grows by ``√(1+dt²λ)`` per step.

The functions take the step size and a mapping of the optimiser's hyper-parameters, named as in a
param group (``momentum``, ``dampening``, ``weight_decay``, ``betas``, ``gamma``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer

__all__ = [
    "Threshold",
    "adam_threshold",
    "euler_threshold",
    "heavy_ball_threshold",
    "leapfrog_threshold",
    "step_size_at",
    "threshold_for",
]


def _positive(step_size: float) -> float:
    step_size = float(step_size)
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step size must be finite and > 0, got {step_size!r}")
    return step_size


def heavy_ball_threshold(step_size: float, hyper: Mapping[str, Any]) -> float:
    """``(2+2μ)/((1−d)η) − wd``: heavy-ball SGD (``μ = 0``: gradient descent, ``2/η − wd``)."""
    eta = _positive(step_size)
    mu = float(hyper.get("momentum", 0.0))
    d = float(hyper.get("dampening", 0.0)) if mu else 0.0  # torch ignores dampening without momentum
    if d >= 1.0:
        raise ValueError(f"dampening must be < 1 for a stability threshold, got {d!r}")
    return (2.0 + 2.0 * mu) / ((1.0 - d) * eta) - float(hyper.get("weight_decay", 0.0))


def adam_threshold(step_size: float, hyper: Mapping[str, Any]) -> float:
    """``(2+2β1)/((1−β1)η)`` on ``λ(P⁻¹H)``, ``P = diag(√v̂+ε)``: Adam and AdamW."""
    eta = _positive(step_size)
    beta1 = float(tuple(hyper.get("betas", (0.9, 0.999)))[0])
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * eta)


def leapfrog_threshold(step_size: float, hyper: Mapping[str, Any]) -> float:
    """``4(1+a²)/((1+a)dt²)`` with ``a = e^{−γ dt/2}`` on ``λ(M⁻¹H)`` (``4/dt²`` undamped)."""
    dt = _positive(step_size)
    a = math.exp(-float(hyper.get("gamma", 0.0)) * dt / 2.0)
    return 4.0 * (1.0 + a * a) / ((1.0 + a) * dt * dt)


def euler_threshold(step_size: float, hyper: Mapping[str, Any]) -> float:
    """``(1 − e^{−γ dt})/dt²`` on ``λ(M⁻¹H)``: explicit Euler (0 without damping)."""
    dt = _positive(step_size)
    return -math.expm1(-float(hyper.get("gamma", 0.0)) * dt) / (dt * dt)


def step_size_at(
    threshold: Callable[[float, Mapping[str, Any]], float],
    eigenvalue: float,
    hyper: Mapping[str, Any],
    *,
    rtol: float = 1e-13,
) -> float:
    """The step size ``s`` at which ``threshold(s, hyper) == eigenvalue`` (the stability limit).

    Every threshold above decreases in ``s``; bisection on ``log s`` finds the crossing.
    """
    if not (math.isfinite(eigenvalue) and eigenvalue > 0):
        raise ValueError(f"eigenvalue must be finite and > 0, got {eigenvalue!r}")
    hi = 1.0
    while threshold(hi, hyper) > eigenvalue:
        hi *= 2.0
        if hi > 1e100:
            raise ValueError(f"the threshold stays above {eigenvalue!r} at every step size")
    lo = hi
    while threshold(lo, hyper) <= eigenvalue:
        lo /= 2.0
        if lo < 1e-100:
            raise ValueError(f"the threshold is below {eigenvalue!r} at every step size (no stable step)")
    while hi - lo > rtol * hi:
        mid = math.sqrt(lo * hi)
        if threshold(mid, hyper) > eigenvalue:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Threshold:
    """An optimiser's sharpness threshold at its current step size.

    Attributes:
        value: the largest stable ``λ_max(P⁻¹H)``, or None when the family has no threshold.
        family: the optimiser family's name (``None`` for an unregistered optimiser).
        description: the rule as a formula, or why there is none.
        eigenvalue: ``"hessian"`` (``P = I``) or ``"preconditioned"`` (``λ(P⁻¹H)``).
    """

    value: float | None
    family: str | None
    description: str
    eigenvalue: str = "hessian"


def threshold_for(
    optimizer_or_family: Optimizer | str,
    *,
    step_size: float | None = None,
    hyper: Mapping[str, Any] | None = None,
) -> Threshold:
    """The sharpness threshold of an optimiser (its first param group), or of a family (by spec
    type, e.g. ``"sgd"``) at ``step_size`` with ``hyper`` (the family's defaults fill the rest).

    >>> round(threshold_for("sgd", step_size=0.1, hyper={"momentum": 0.9}).value, 9)
    38.0
    """
    from .. import families

    if isinstance(optimizer_or_family, Optimizer):
        if step_size is not None or hyper is not None:
            raise ValueError("threshold_for(optimizer) reads the step size and hyper from the optimiser; "
                             "give step_size and hyper only with a family name")
        try:
            family = families.for_optimizer(optimizer_or_family)
        except Exception:
            return Threshold(None, None, f"no threshold: {type(optimizer_or_family).__name__} is not a "
                             "registered optimiser family")
        group = optimizer_or_family.param_groups[0]
        return family.sharpness_threshold(group["lr"], group)
    family = families.get(optimizer_or_family)
    if step_size is None:
        raise ValueError(f"threshold_for({optimizer_or_family!r}) needs step_size (the {family.step_axis})")
    values = {**family.defaults(), **dict(hyper or {})}
    return family.sharpness_threshold(step_size, values)

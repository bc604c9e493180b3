r"""Pure (out-of-place) one-step maps of the integrators, for analysis with ``torch.func``.

These are the same formulas the optimiser classes apply in place (``kernels.py``), written on
single tensors so that Jacobians, vmaps and gradients through a step are possible:

* :func:`leapfrog_step`: ``p½ = a p − (dt/2) ∇L(θ)``, ``θ' = θ + dt m p½``,
  ``p' = a p½ − (dt/2) ∇L(θ')`` with ``a = e^{-γ dt/2}``;
* :func:`euler_step`: ``θ' = θ + dt m p``, ``p' = e^{-γ dt} p − dt ∇L(θ)``.

``grad_fn`` maps θ to ∇L(θ) (e.g. ``torch.func.grad(loss)``). The γ = 0 leapfrog map has
Jacobian determinant exactly 1 (a composition of shears); the damped one ``e^{-γ dt n}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

__all__ = ["euler_step", "leapfrog_step"]


def leapfrog_step(
    theta: Tensor, p: Tensor, grad_fn: Callable[[Tensor], Tensor], *, dt: float, gamma: float = 0.0,
    inv_mass: float | Tensor = 1.0,
) -> tuple[Tensor, Tensor]:
    """One kick–drift–kick step; returns ``(θ', p')``."""
    a = math.exp(-gamma * dt / 2)
    p_half = a * p - (dt / 2) * grad_fn(theta)
    theta_new = theta + dt * inv_mass * p_half
    p_new = a * p_half - (dt / 2) * grad_fn(theta_new)
    return theta_new, p_new


def euler_step(
    theta: Tensor, p: Tensor, grad_fn: Callable[[Tensor], Tensor], *, dt: float, gamma: float = 0.0,
    inv_mass: float | Tensor = 1.0,
) -> tuple[Tensor, Tensor]:
    """One explicit Euler step; returns ``(θ', p')``."""
    theta_new = theta + dt * inv_mass * p
    p_new = math.exp(-gamma * dt) * p - dt * grad_fn(theta)
    return theta_new, p_new

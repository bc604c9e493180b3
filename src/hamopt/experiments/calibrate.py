r"""Linear stability limits of the integrators on a given problem, from the top Hessian eigenvalue.

Linearised about θ with Hessian ``H`` of the loss:

* Leapfrog with inverse mass ``M⁻¹`` (γ = 0) is stable iff ``dt² λ < 4`` for every eigenvalue λ
  of ``M⁻¹H``, so ``dt_c = 2 / √λ_max(M⁻¹H)``. The eigenvalues of ``M⁻¹H`` are those of the
  symmetric ``M^{-½} H M^{-½}``, which power iteration handles.
* Heavy-ball SGD with momentum β and dampening d (torch semantics) is stable iff
  ``lr (1 − d) λ_max(H) < 2(1 + β)``, so ``lr_c = 2(1 + β) / ((1 − d) λ_max(H))``.

The spec's ``stability_fractions`` are fractions ``f`` of the limit in units of the Hamiltonian
time step (``h = dt`` for Leapfrog, ``h = √(lr(1−d))`` for SGD), so ``dt = f·dt_c`` and ``lr = f²·lr_c``
put both optimisers at the same point of their own stability range.

The eigenvalue comes from power iteration on Hessian–vector products (double back-propagation)
at the initial parameters, on one fixed batch; λ usually grows during training (progressive
sharpening), so these are limits at initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..optim.mass import inverse_mass

__all__ = ["StabilityLimits", "top_eigenvalue", "stability_limits"]


@dataclass(frozen=True)
class StabilityLimits:
    """Top eigenvalues at initialisation and the implied step-size limits."""

    lambda_hessian: float
    lambda_preconditioned: float
    dt_limit: float
    iterations: int

    def sgd_lr_limit(self, momentum: float) -> float:
        return 2.0 * (1.0 + momentum) / self.lambda_hessian


def top_eigenvalue(
    params: Sequence[Tensor],
    loss_fn: Callable[[], Tensor],
    *,
    scale: Sequence[float | Tensor] | None = None,
    iterations: int = 30,
    seed: int = 0,
) -> float:
    """Largest-magnitude eigenvalue of ``S H S`` (``S = diag(√scale_i)``, ``scale_i`` a scalar or a
    tensor shaped like parameter ``i``; identity if None).

    Power iteration with a seeded Gaussian start; returns the final Rayleigh quotient.
    """
    params = [p for p in params if p.requires_grad]
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    roots = [1.0] * len(params) if scale is None else [
        s.sqrt() if isinstance(s, Tensor) else math.sqrt(s) for s in scale]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) for p in params]
    lam = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v))
        v = [t / norm for t in v]
        sv = [r * t for r, t in zip(roots, v)]
        hv = torch.autograd.grad(grads, params, grad_outputs=sv, retain_graph=True)
        w = [r * t.detach() for r, t in zip(roots, hv)]
        lam = float(sum((a.double() * b.double()).sum() for a, b in zip(v, w)))
        if not math.isfinite(lam):
            raise FloatingPointError("Hessian-vector product is not finite during power iteration")
        v = w
    return abs(lam)


def stability_limits(
    model: torch.nn.Module,
    loss_fn: Callable[[], Tensor],
    *,
    mass: str = "fan_in",
    mass_clip: tuple[float, float] = (0.125, 8.0),
    iterations: int = 30,
    seed: int = 0,
) -> StabilityLimits:
    """``λ_max(H)``, ``λ_max(M⁻¹H)`` and ``dt_c`` of ``model`` on the batch ``loss_fn`` evaluates."""
    params = [p for p in model.parameters() if p.requires_grad]
    lam_h = top_eigenvalue(params, loss_fn, iterations=iterations, seed=seed)
    masses = [inverse_mass(p, mass, mass_clip) for p in params]
    lam_p = top_eigenvalue(params, loss_fn, scale=masses, iterations=iterations, seed=seed)
    if lam_p <= 0 or lam_h <= 0:
        raise FloatingPointError(
            "the top Hessian eigenvalue is zero; the stability limit is undefined"
        )
    return StabilityLimits(lam_h, lam_p, 2.0 / math.sqrt(lam_p), iterations)

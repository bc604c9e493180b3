r"""Reads of optimiser state: the only place in hamopt that looks inside an optimiser's state.

Optimiser-wide scalars (the ECD step and bounce counters and seed, the Hamiltonian optimisers'
``H0`` and cap count) are read from the public accessor ``optimizer.global_state`` of
:class:`hamopt.optim.HamoptOptimizer`.

Momentum readers give ``param -> P`` for the Noether monitor, in the units of the family's energy
convention (``K = ½ Σ m_i ‖P_i‖²`` with unit mass for the baselines):

* Leapfrog/Euler: the stored momentum ``state[p]["momentum"]``;
* SGD with momentum μ and dampening d: ``P = −√(lr/(1−d)) · b``, the momentum of the SGD energy
  convention (:func:`hamopt.energy.conventions.sgd_momentum_coefficient`; ``√lr`` for d = 0), with
  each group's lr of now (a scheduler changes it).

Preconditioner readers give ``param -> P⁻¹`` for the sharpness ``λ_max(P⁻¹H)``
(:mod:`hamopt.diagnostics.stability`):

* Leapfrog/Euler: the inverse mass ``M⁻¹`` of the parameter's group (a number per tensor);
* Adam/AdamW: ``1/(√v̂ + ε)`` element-wise, ``v̂ = v/(1 − β2^t)`` from ``exp_avg_sq`` (or
  ``max_exp_avg_sq`` with amsgrad) and the parameter's step count, exactly the denominator of
  torch's update; it exists only once the parameter has taken a step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "adam_inverse_preconditioner",
    "global_scalars",
    "group_step_size",
    "hamiltonian_inverse_mass",
    "hamiltonian_momentum",
    "sgd_momentum",
]

MomentumOf = Callable[[Tensor], Tensor]


def global_scalars(optimizer: Optimizer) -> Mapping[str, Any] | None:
    """The optimiser-wide scalars (``optimizer.global_state``), or None for an optimiser without them."""
    public = getattr(optimizer, "global_state", None)
    return public if isinstance(public, Mapping) else None


def group_step_size(group: Mapping[str, Any], key: str = "lr") -> float:
    """A param group's step size as a float (torch allows a tensor lr)."""
    value = group[key]
    return float(value.item() if isinstance(value, Tensor) else value)


def hamiltonian_momentum(optimizer: Optimizer) -> MomentumOf:
    """Leapfrog/Euler: the stored momentum of each parameter (zero before the first step)."""

    def read(p: Tensor) -> Tensor:
        st = optimizer.state.get(p)
        if st and "momentum" in st:
            return st["momentum"]
        return torch.zeros_like(p)

    return read


def sgd_momentum(optimizer: Optimizer) -> MomentumOf | None:
    """SGD with momentum: ``P = −√(lr/(1−d)) · b`` per parameter; None when a group has no
    momentum. Nesterov SGD has no convention: the coefficient refuses it with a ``ValueError``."""
    from ..energy.conventions import sgd_momentum_coefficient

    if not all(g.get("momentum", 0.0) for g in optimizer.param_groups):
        return None
    index_of = {p: i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    for i, group in enumerate(optimizer.param_groups):
        sgd_momentum_coefficient(group, i)  # refuse Nesterov and full dampening up front

    def read(p: Tensor) -> Tensor:
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is None:
            return torch.zeros_like(p)
        i = index_of[p]
        return buf * -sgd_momentum_coefficient(optimizer.param_groups[i], i)

    return read


def hamiltonian_inverse_mass(optimizer: Optimizer) -> Callable[[Tensor], float]:
    """Leapfrog/Euler: ``param -> M⁻¹`` of its group's mass rule (a number per tensor)."""
    from ..optim.mass import inverse_mass

    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}

    def read(p: Tensor) -> float:
        group = group_of[p]
        return inverse_mass(p, group["mass"], tuple(group["mass_clip"]))

    return read


def adam_inverse_preconditioner(optimizer: Optimizer) -> Callable[[Tensor], Tensor]:
    """Adam/AdamW: ``param -> 1/(√v̂ + ε)`` from the optimiser's state (float64, the parameter's
    shape). A parameter without state (no step yet) raises a :class:`ValueError`."""
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}

    def read(p: Tensor) -> Tensor:
        group = group_of[p]
        st = optimizer.state.get(p)
        key = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"
        if not st or key not in st:
            raise ValueError(
                f"{type(optimizer).__name__}'s preconditioner diag(√v̂+ε) is read from its state, which a "
                f"parameter of shape {tuple(p.shape)} does not have yet: take a step first"
            )
        step = st["step"]
        t = float(step.item() if isinstance(step, Tensor) else step)
        beta2 = float(group["betas"][1])
        v_hat = st[key].double() / (1.0 - beta2**t)
        return 1.0 / (v_hat.sqrt() + float(group["eps"]))

    return read

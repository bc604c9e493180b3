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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "global_scalars",
    "group_step_size",
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

r"""The explicit (first-order) Euler integrator of the same Hamiltonian as :class:`Leapfrog`.

One step of size ``dt`` with damping ``γ``::

    θ_{t+1} = θ_t + dt · M⁻¹ p_t
    p_{t+1} = e^{-γ dt} p_t − dt ∇L(θ_t)

It is neither symplectic nor reversible: its energy drifts secularly (O(dt) per unit time) and a
momentum-flip round trip does not return to θ_0. It exists as the reference the leapfrog's
reversibility and drift are compared against. Same options, modes, stats and cap as Leapfrog;
in exact mode the second closure call only measures ``L(θ_{t+1})`` on the same batch.
"""

from __future__ import annotations

import math

from torch import Tensor

from . import kernels
from .base import ParamSet
from .hamiltonian import HamiltonianOptimizer

__all__ = ["Euler"]


class Euler(HamiltonianOptimizer):
    """Explicit Euler integrator of ``H = ½ Σ m_i ‖p_i‖² + L(θ)``; arguments as :class:`Leapfrog`."""

    _name = "Euler"
    _integrator = "euler"

    def _euler_update(self, sets: list[ParamSet]) -> None:
        fe = self._foreach()
        for s in sets:
            kernels.drift(s.params, s.moms, s.inv_masses, h=s.lr, foreach=fe)
            kernels.kick(s.moms, s.grads, decay=math.exp(-s.option("gamma") * s.lr), coeff=s.lr, foreach=fe)

    def _exact_first_half(self, sets: list[ParamSet]) -> None:
        self._euler_update(sets)

    def _exact_second_half(self, sets: list[ParamSet]) -> None:
        """Nothing: the gradient at θ_{t+1} is not used by an explicit Euler step."""

    def _streaming_kinetic(self, sets: list[ParamSet], grad_sq: list[Tensor | None]) -> Tensor:
        """The stored momentum is already the full-step p_t: ``½ Σ m ‖p‖²``."""
        return self._kinetic(sets)

    def _streaming_advance(self, sets: list[ParamSet], *, cap_factor: float) -> None:
        kernels.scale([m for s in sets for m in s.moms], cap_factor, foreach=self._foreach())
        self._euler_update(sets)

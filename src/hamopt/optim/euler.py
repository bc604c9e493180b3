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
from .hamiltonian import HamiltonianOptimizer, _Group

__all__ = ["Euler"]


class Euler(HamiltonianOptimizer):
    """Explicit Euler integrator of ``H = ½ Σ m_i ‖p_i‖² + L(θ)``; arguments as :class:`Leapfrog`."""

    _name = "Euler"

    def _euler_update(self, groups: list[_Group]) -> None:
        fe = self._foreach()
        for g in groups:
            kernels.drift(g.params, g.moms, g.inv_masses, h=g.dt, foreach=fe)
            kernels.kick(g.moms, g.grads, decay=math.exp(-g.gamma * g.dt), coeff=g.dt, foreach=fe)

    def _exact_first_half(self, groups: list[_Group]) -> None:
        self._euler_update(groups)

    def _exact_second_half(self, groups: list[_Group]) -> None:
        """Nothing: the gradient at θ_{t+1} is not used by an explicit Euler step."""

    def _streaming_kinetic(self, groups: list[_Group], grad_sq: list[Tensor | None]) -> Tensor:
        """The stored momentum is already the full-step p_t: ``½ Σ m ‖p‖²``."""
        return self._kinetic(groups)

    def _streaming_advance(self, groups: list[_Group], *, cap_factor: float) -> None:
        kernels.scale([m for g in groups for m in g.moms], cap_factor, foreach=self._foreach())
        self._euler_update(groups)

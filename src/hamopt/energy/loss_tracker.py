r"""A tracker that records the loss and the gradient norm of each step and no energies.

:class:`LossTracker` has :class:`~hamopt.energy.EnergyTracker`'s interface and its safety (a
non-finite loss or gradient raises :class:`~hamopt.errors.NonFiniteError` before the optimiser
moves), but skips the energy bookkeeping: no ``L_{B_t}(θ_{t+1})`` forward pass after the step
and no kinetic energies, which for a baseline optimiser costs one extra forward pass and two
passes over the optimiser state per step. Its records carry ``None`` for every energy field.
Use it where a study reads losses only (e.g. the symmetry-breaking claims); the energy
convention of the optimiser is still checked at construction.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import conventions as C
from .tracker import EnergyTracker, StepRecord

__all__ = ["LossTracker"]


class LossTracker(EnergyTracker):
    """Loss and gradient norm per step, no energies (see the module docstring)."""

    def step(self, batch_loss: Callable[[], Tensor]) -> StepRecord:
        """Run one optimiser step on the batch that ``batch_loss`` evaluates; return its record
        (``loss`` is ``L_{B_t}(θ_t)``, ``grad_norm`` is ``‖∇L_{B_t}(θ_t)‖``)."""
        opt = self.optimizer
        measured: dict[str, float] = {}
        opt.step(self._closure(batch_loss, measured))
        stats = getattr(opt, "stats", None) or {}
        record = StepRecord(
            step=len(self.records), optimizer=C.label(opt), mode="loss-only",
            step_size=self.convention.step_size(opt), loss=measured["loss"], loss_after=None,
            kinetic_before=None, kinetic=None, hamiltonian_before=None, hamiltonian=None,
            delta_h_int=None, cap_engaged=bool(stats.get("cap_engaged", False)),
            cap_engagements=int(stats.get("cap_engagements", 0)), grad_norm=measured["grad_norm"],
        )
        self.records.append(record)
        return record

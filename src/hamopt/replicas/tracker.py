r"""Per-replica energy records: :class:`hamopt.energy.EnergyTracker` for a replica optimiser.

:class:`ReplicaTracker` runs one step of every active replica and returns, per replica, the
:class:`~hamopt.energy.StepRecord` the unbatched tracker would have returned for that replica
alone (None for a frozen replica):

* Leapfrog/Euler: everything from the replica's ``stats`` (exact mode: L, K, H at both ends of
  the step on the same batch; streaming: the state at (θ_t, p_t) and the trajectory change of
  the previous step);
* SGD-momentum, AdamW: K of each replica's state before and after the step, its loss at θ_t and
  gradient norm from the closure, and the loss after the step from one extra forward pass on the
  same batches; ``ΔH^int = K_{t+1} + L_{B_t}(θ_{t+1}) − K_t − L_{B_t}(θ_t)``;
* ECDSep, BBI (the displacement form): the same, with ``K_{t+1} = ½ ‖θ_{t+1} − θ_t‖² / lr_r`` measured
  from a copy of θ_t and ``K_t`` the previous step's value (0 at the start).

As in the unbatched tracker, a record gains ``resampling`` (δ) and ``delta_h_traj`` when the next
step evaluates its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import Tensor, no_grad

from ..energy import StepRecord

__all__ = ["ReplicaTracker"]

_LABELS = {"ReplicaLeapfrog": "leapfrog", "ReplicaEuler": "euler", "ReplicaSGD": "sgd-momentum",
           "ReplicaAdamW": "adamw", "ReplicaECDSep": "ecdsep", "ReplicaBBI": "bbi"}


class ReplicaTracker:
    """Energy accounting around a replica optimiser; ``records[r]`` is replica r's record list.

    Args:
        optimizer: a :class:`~hamopt.replicas.ReplicaLeapfrog`, ``ReplicaEuler``, ``ReplicaSGD``
            or ``ReplicaAdamW`` over the parameters of a :class:`~hamopt.replicas.ReplicaStack`.
        zero_grad: clears the stacked gradients (e.g. ``stack.zero_grad``).
    """

    def __init__(self, optimizer: Any, zero_grad: Callable[[], None]) -> None:
        if optimizer.name not in _LABELS:
            raise TypeError(f"optimizer: a replica optimiser ({', '.join(_LABELS)}) is needed; got {optimizer.name}")
        self.optimizer = optimizer
        self.label = _LABELS[optimizer.name]
        self._zero_grad = zero_grad
        self.records: list[list[StepRecord]] = [[] for _ in range(optimizer.size)]
        self._streaming_delta: list[float | None] = [None] * optimizer.size
        self._kinetic_prev = [0.0] * optimizer.size

    def _closure(self, batch_losses: Callable[[], Tensor]) -> Callable[[], Tensor]:
        def closure() -> Tensor:
            self._zero_grad()
            losses = batch_losses()
            losses.sum().backward()
            return losses
        return closure

    def step(self, batch_losses: Callable[[], Tensor]) -> list[StepRecord | None]:
        """One step of every active replica on the batches ``batch_losses`` evaluates (it returns
        the ``[R]`` losses at the current parameters); returns each replica's record."""
        opt = self.optimizer
        if opt.self_reported:
            opt.step(self._closure(batch_losses))
            out = [None if s is None else self._hamiltonian_record(r, s) for r, s in enumerate(opt.stats)]
        else:
            out = self._baseline_step(batch_losses)
        for r, record in enumerate(out):
            if record is not None:
                self._close_previous(r, record)
                self.records[r].append(record)
        return out

    def _close_previous(self, r: int, record: StepRecord) -> None:
        if not self.records[r]:
            return
        prev = self.records[r][-1]
        resampling = None if prev.loss_after is None else record.loss - prev.loss_after
        traj = None
        if prev.delta_h_int is not None and resampling is not None:
            traj = prev.delta_h_int + resampling
        elif record.mode == "streaming":
            traj = self._streaming_delta[r]
        self.records[r][-1] = replace(prev, resampling=resampling, delta_h_traj=traj)

    def _hamiltonian_record(self, r: int, s: dict[str, Any]) -> StepRecord:
        dt = self.optimizer.lr[r]
        if s["mode"] == "exact":
            return StepRecord(
                step=s["step"], optimizer=self.label, mode="exact", step_size=dt, loss=s["loss"],
                loss_after=s["loss_after"], kinetic_before=s["kinetic_before"], kinetic=s["kinetic"],
                hamiltonian_before=s["loss"] + s["kinetic_before"], hamiltonian=s["hamiltonian"],
                delta_h_int=s["delta_h"], cap_engaged=bool(s["cap_engaged"]),
                cap_engagements=int(s["cap_engagements"]), grad_norm=float(s["grad_norm"]),
            )
        self._streaming_delta[r] = s["delta_h"]
        return StepRecord(
            step=s["step"], optimizer=self.label, mode="streaming", step_size=dt, loss=s["loss"], loss_after=None,
            kinetic_before=s["kinetic"], kinetic=s["kinetic"], hamiltonian_before=s["hamiltonian"],
            hamiltonian=s["hamiltonian"], delta_h_int=None, cap_engaged=bool(s["cap_engaged"]),
            cap_engagements=int(s["cap_engagements"]), grad_norm=float(s["grad_norm"]),
        )

    def _baseline_step(self, batch_losses: Callable[[], Tensor]) -> list[StepRecord | None]:
        opt = self.optimizer
        displacement = getattr(opt, "displacement_form", False)
        if displacement:
            k_before = list(self._kinetic_prev)
            before = [p.detach().clone() for p in opt.params]
        else:
            k_before = opt.kinetic_energy()
        opt.step(self._closure(batch_losses))
        if not any(opt.stepped):
            return [None] * opt.size
        with no_grad():
            after = batch_losses().detach().double().tolist()
        if displacement:
            moved = sum((p.detach().reshape(opt.size, -1).double() - b.reshape(opt.size, -1).double()).square().sum(1)
                        for p, b in zip(opt.params, before))
            k_after = [0.5 * m / lr for m, lr in zip(moved.tolist(), opt.lr)]
            self._kinetic_prev = [k if s else old for k, s, old in zip(k_after, opt.stepped, self._kinetic_prev)]
        else:
            k_after = opt.kinetic_energy()
        out: list[StepRecord | None] = []
        for r in range(opt.size):
            if not opt.stepped[r]:
                out.append(None)
                continue
            loss = opt.last_loss[r]
            out.append(StepRecord(
                step=len(self.records[r]), optimizer=self.label, mode="baseline", step_size=opt.lr[r], loss=loss,
                loss_after=after[r], kinetic_before=k_before[r], kinetic=k_after[r],
                hamiltonian_before=k_before[r] + loss, hamiltonian=k_after[r] + after[r],
                delta_h_int=(k_after[r] + after[r]) - (k_before[r] + loss), cap_engaged=False,
                cap_engagements=0, grad_norm=opt.last_grad_norm[r],
            ))
        return out

r"""Per-step energy records for any registered optimiser (spec §6).

:class:`EnergyTracker` runs one training step on one batch and returns a :class:`StepRecord`:
``L_t``, ``K_t``, ``H_t``, the loss after the step on the same batch, ``K_{t+1}``, ``H_{t+1}``,
the integrator change ``ΔH^int_t = H_{B_t}(θ_{t+1}, p_{t+1}) − H_{B_t}(θ_t, p_t)``, cap engagement
and the gradient norm at θ_t. When the next step runs, the previous record gains the resampling
term ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` and the trajectory change
``ΔH^traj_t = ΔH^int_t + δ_t`` (see :attr:`EnergyTracker.records`).

How each quantity is obtained:

* Leapfrog/Euler, exact mode: everything from the optimiser's own ``stats`` (its two closure calls
  already evaluate L on the same batch at θ_t and θ_{t+1}).
* Leapfrog/Euler, streaming mode: the optimiser knows the full-step momentum p_t only at the
  start of a call, so ``kinetic``/``hamiltonian`` describe (θ_t, p_t), ``delta_h_int`` is None
  (it would need the closing half-kick's gradient on B_t: use exact mode), and the trajectory
  change of the previous step comes from the optimiser's ``stats["delta_h"]``.
* Baselines: K from the registered convention before and after ``step``; the loss after the step
  by one extra forward pass on the same batch (no backward); the displacement form measures
  ``θ_{t+1} − θ_t`` from a copy of θ_t (``Σ_groups ½ ‖Δθ‖²/lr`` with each group's lr).

A configuration the convention cannot describe (Nesterov SGD) is refused when the tracker is
built, with the convention's ``ValueError``.

A non-finite loss or gradient raises :class:`~hamopt.errors.NonFiniteError` from inside the
closure, before the optimiser updates anything.

Distributed training (``torch.distributed`` initialised, more than one rank in the process
group): ``batch_loss`` returns each rank's local mean loss on an equal-sized local batch, and
every record holds global values — the losses are averaged over the ranks, and the gradient norm
and the displacement are summed over the shards of sharded (FSDP2) parameters (replicated DDP
parameters already hold the global values). The tracker reduces through the optimisers' helper
(:mod:`hamopt.optim._distributed`): one ``all_reduce`` for the loss and gradient norm at θ_t,
one for a baseline's loss after the step and its displacement; none in one process. So every
rank records the same numbers and raises on the same non-finite values. A hamopt optimiser
reports global values itself; a baseline's K from its state (SGD/Adam momentum) is computed by
its energy convention on the parameters as the optimiser holds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..errors import NonFiniteError, UnregisteredOptimizerError
from ..optim import _distributed as D
from . import conventions as C

__all__ = ["EnergyTracker", "StepRecord"]


@dataclass(frozen=True)
class StepRecord:
    """One optimiser step's energy bookkeeping (floats; None where unavailable)."""

    step: int
    optimizer: str
    mode: str
    step_size: float
    loss: float
    loss_after: float | None
    kinetic_before: float | None
    kinetic: float | None
    hamiltonian_before: float | None
    hamiltonian: float | None
    delta_h_int: float | None
    cap_engaged: bool
    cap_engagements: int
    grad_norm: float
    resampling: float | None = None
    delta_h_traj: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grad_sq(params: list[Tensor]) -> Tensor:
    """``Σ ‖g_i‖²`` of the gradient elements this process holds, as a 0-d float64 tensor."""
    grads = [D.local(p.grad.detach()) for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack([torch.linalg.vector_norm(g).double() for g in grads]).square().sum()


def _sqrt_or_inf(sq: float) -> float:
    return math.sqrt(sq) if math.isfinite(sq) else float("inf")


def _params(optimizer: Optimizer) -> list[Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"]]


def _step_size_key(optimizer: Optimizer) -> str:
    """The param-group key of the optimiser's step size: its family's ``step_size_name`` (``lr``
    when only a convention is registered for it)."""
    from ..families import for_optimizer

    try:
        return for_optimizer(optimizer).step_size_name
    except UnregisteredOptimizerError:
        return "lr"


def _displacement_sq(optimizer: Optimizer, before: list[list[Tensor]]) -> Tensor | None:
    """Per parameter, ``‖θ_{t+1} − θ_t‖²`` of the elements this process holds (float64 vector,
    group after group; None without parameters)."""
    terms = [(D.local(p.detach()).double() - b.double()).square().sum()
             for group, olds in zip(optimizer.param_groups, before, strict=True)
             for p, b in zip(group["params"], olds)]
    return torch.stack(terms) if terms else None


def _displacement_kinetic(optimizer: Optimizer, param_sq: list[float], key: str) -> float:
    """``Σ_groups ½ ‖θ_{t+1} − θ_t‖² / lr_group``, each group's step size read as ``group[key]``."""
    total, start = 0.0, 0
    for group in optimizer.param_groups:
        n = len(group["params"])
        total += 0.5 * sum(param_sq[start:start + n]) / C._lr(group, key)
        start += n
    return total


class EnergyTracker:
    """Energy accounting around any registered optimiser.

    Args:
        optimizer: a registered optimiser (see :func:`hamopt.energy.register`).

    Use::

        tracker = EnergyTracker(opt)
        for x, y in loader:
            record = tracker.step(lambda: loss_fn(model(x), y))

    ``batch_loss`` computes the loss on the current batch at the current parameters (forward
    only); the tracker builds the closure (zero_grad, forward, backward) itself.
    """

    def __init__(self, optimizer: Optimizer, *, process_group: Any = None) -> None:
        self.optimizer = optimizer
        # the group the losses and norms are reduced over: the optimiser's own (hamopt optimisers
        # have one), else the default group
        self.process_group = process_group if process_group is not None else getattr(optimizer, "process_group", None)
        self._sharded = any(D.is_sharded(p) for p in _params(optimizer))
        self.convention = C.convention_for(optimizer)
        # the convention refuses what it cannot describe (e.g. Nesterov SGD) before any compute
        self.convention.time_step(optimizer)
        self._step_size_key = _step_size_key(optimizer)
        self.records: list[StepRecord] = []
        self._kinetic_prev: float | None = None
        # streaming Leapfrog/Euler: the optimiser's own ΔH^traj of the previous step
        self._streaming_delta: float | None = None

    def _closure(self, batch_loss: Callable[[], Tensor], measured: dict[str, float]) -> Callable[[], Tensor]:
        opt = self.optimizer
        params = _params(opt)

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            loss = batch_loss()
            loss.backward()
            if "grad_norm" not in measured:
                value, gsq = self._global_values([_grad_sq(params)], [loss.detach().reshape(())])
                gnorm = _sqrt_or_inf(gsq)
                step = len(self.records)
                if not math.isfinite(value):
                    raise NonFiniteError("loss", step, value)
                if not math.isfinite(gnorm):
                    raise NonFiniteError("gradient", step, gnorm)
                measured["grad_norm"] = gnorm
                measured["loss"] = value
            return loss

        return closure

    def _global_values(self, sums: list[Tensor], means: list[Tensor]) -> list[float]:
        """``means`` (per-rank losses) averaged and ``sums`` (over this process's elements) summed
        over the ranks, in one all-reduce, as floats ``[*means, *sums]``; in one process the
        values themselves."""
        if D.is_distributed(self.process_group):
            sums, means = D.all_reduce_sums(sums, means, self.process_group, sum_over_ranks=self._sharded)
        out: list[float] = []
        for v in [*means, *sums]:
            flat = v.detach().double().reshape(-1).tolist()
            out += flat
        return out

    def step(self, batch_loss: Callable[[], Tensor]) -> StepRecord:
        """Run one optimiser step on the batch that ``batch_loss`` evaluates; return its record."""
        opt = self.optimizer
        measured: dict[str, float] = {}
        closure = self._closure(batch_loss, measured)
        if self.convention.self_reported:
            record = self._step_hamiltonian(closure, measured)
        else:
            record = self._step_baseline(closure, batch_loss, measured)
        self._close_previous(record)
        self.records.append(record)
        return record

    def _close_previous(self, record: StepRecord) -> None:
        """Fill δ and ΔH^traj of the previous record now that L_{B_{t+1}}(θ_{t+1}) is known."""
        if not self.records:
            return
        prev = self.records[-1]
        resampling = None if prev.loss_after is None else record.loss - prev.loss_after
        traj = None
        if prev.delta_h_int is not None and resampling is not None:
            traj = prev.delta_h_int + resampling
        elif record.mode == "streaming":
            traj = self._streaming_delta
        self.records[-1] = replace(prev, resampling=resampling, delta_h_traj=traj)

    def _step_hamiltonian(self, closure: Callable[[], Tensor], measured: dict[str, float]) -> StepRecord:
        opt: Any = self.optimizer
        opt.step(closure)
        s = opt.stats
        step_size = self.convention.step_size(opt)
        if opt.mode == "exact":
            h_before = s["loss"] + s["kinetic_before"]
            return StepRecord(
                step=s["step"], optimizer=self.convention.name, mode="exact", step_size=step_size,
                loss=s["loss"], loss_after=s["loss_after"], kinetic_before=s["kinetic_before"],
                kinetic=s["kinetic"], hamiltonian_before=h_before, hamiltonian=s["hamiltonian"],
                delta_h_int=s["delta_h"], cap_engaged=bool(s["cap_engaged"]),
                cap_engagements=int(s["cap_engagements"]), grad_norm=float(s["grad_norm"]),
            )
        self._streaming_delta = s["delta_h"]
        return StepRecord(
            step=s["step"], optimizer=self.convention.name, mode="streaming", step_size=step_size,
            loss=s["loss"], loss_after=None, kinetic_before=s["kinetic"], kinetic=s["kinetic"],
            hamiltonian_before=s["hamiltonian"], hamiltonian=s["hamiltonian"], delta_h_int=None,
            cap_engaged=bool(s["cap_engaged"]), cap_engagements=int(s["cap_engagements"]),
            grad_norm=float(s["grad_norm"]),
        )

    def _step_baseline(
        self, closure: Callable[[], Tensor], batch_loss: Callable[[], Tensor], measured: dict[str, float]
    ) -> StepRecord:
        opt = self.optimizer
        displacement = C.is_displacement_form(opt)
        step_size = self.convention.step_size(opt)
        if displacement:
            k_before = self._kinetic_prev if self._kinetic_prev is not None else 0.0
            before = [[D.local(p.detach()).clone() for p in g["params"]] for g in opt.param_groups]
        else:
            k_before = self.convention.kinetic(opt)
        opt.step(closure)
        with torch.no_grad():
            after = batch_loss().detach().reshape(())
        moved = _displacement_sq(opt, before) if displacement else None
        loss_after, *param_sq = self._global_values([] if moved is None else [moved], [after])
        k_after = (_displacement_kinetic(opt, param_sq, self._step_size_key) if displacement
                   else self.convention.kinetic(opt))
        self._kinetic_prev = k_after
        loss = measured["loss"]
        label = C.label(opt)
        return StepRecord(
            step=len(self.records), optimizer=label, mode="baseline", step_size=step_size, loss=loss,
            loss_after=loss_after, kinetic_before=k_before, kinetic=k_after,
            hamiltonian_before=k_before + loss, hamiltonian=k_after + loss_after,
            delta_h_int=(k_after + loss_after) - (k_before + loss), cap_engaged=False, cap_engagements=0,
            grad_norm=measured["grad_norm"],
        )

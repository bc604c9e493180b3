r"""The playground's fast run: the real optimiser, fed analytic gradients, with lean bookkeeping.

A playground problem has two parameters, so a run's cost is per-call overhead, not arithmetic.
This route cuts what lies around the optimiser and leaves the optimiser itself untouched:

* the closure sets ``θ.grad = ∇L_B(θ)`` from the landscape's analytic gradient
  (:meth:`hamopt.landscapes.Landscape.value_and_gradient`, float64, no autograd graph) and returns
  ``L_B(θ)``; on its first call of a step it refuses a non-finite loss or gradient with the
  :class:`~hamopt.errors.NonFiniteError` :class:`~hamopt.energy.EnergyTracker` raises;
* Leapfrog and Euler in exact mode measure L, K, H and ΔH^int themselves: their ``stats`` are
  read as the tracker reads them;
* for every other optimiser, the tracker's baseline bookkeeping: ``K`` from the family's energy
  convention before and after the step (or ``½ ‖θ_{t+1} − θ_t‖² / lr`` in displacement form),
  ``L_{B_t}(θ_{t+1})`` from the analytic loss;
* the resampling term ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` and
  ``ΔH^traj_t = ΔH^int_t + δ_t`` are filled in one pass after the run.

The result equals :func:`hamopt.playground.reference.tracked_steps` to float64 rounding (the
analytic and autograd gradients may differ in the last bit); a test checks this for every
optimiser and landscape the playground offers.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from .. import families
from ..energy import StepRecord
from ..energy import conventions as C
from ..errors import NonFiniteError, UnregisteredOptimizerError
from ..landscapes import Landscape
from .config import PlaygroundConfig
from .reference import StepLog, escape_reason

__all__ = ["AnalyticClosure", "fast_steps", "reads_stats"]


class AnalyticClosure:
    """``opt.step``'s closure on one batch: ``θ.grad = ∇L_B(θ)`` (analytic), returns ``L_B(θ)``.

    Call :meth:`next_batch` before each step; the first call after it checks the loss and the
    gradient norm for finiteness (step index ``step``) and keeps the loss in :attr:`loss`.

    With ``reuse_buffers=True`` the gradient and the returned loss are written into two
    preallocated pairs of tensors, used alternately call by call (through NumPy views of their
    memory, no tensor is built per call): a value stays intact until the call after next, which
    covers an exact-mode step (its two calls use the two pairs; a failed step restores the first
    call's gradient) but not an optimiser that keeps ``.grad`` or the loss from an earlier step
    without copying it. Without it every call returns new tensors.
    """

    def __init__(self, landscape: Landscape, *, reuse_buffers: bool = False) -> None:
        self.landscape = landscape
        self.theta = landscape.theta
        self._theta_view = landscape.theta.detach().numpy()  # θ's memory: the optimiser moves it in place
        self.shift = (0.0, 0.0)
        self.step = 0
        self.loss: float | None = None
        self._calls = 0
        self._buffers = None
        if reuse_buffers:
            pairs = [(torch.zeros(2, dtype=torch.float64), torch.zeros((), dtype=torch.float64)) for _ in range(2)]
            self._buffers = [(g, g.numpy(), loss, loss.numpy()) for g, loss in pairs]

    def next_batch(self, batch: torch.Tensor | None, step: int) -> None:
        self.shift = self.landscape.batch_shift(batch)
        self.step = step
        self.loss = None

    def point(self) -> tuple[float, float]:
        """θ as two Python floats."""
        x, y = self._theta_view.tolist()
        return x, y

    def loss_at(self, point: tuple[float, float]) -> float:
        """``L_B`` at ``point`` on the current batch."""
        return self.landscape.value_and_gradient(point[0] - self.shift[0], point[1] - self.shift[1])[0]

    def __call__(self) -> torch.Tensor:
        x, y = self._theta_view.tolist()
        loss, gx, gy = self.landscape.value_and_gradient(x - self.shift[0], y - self.shift[1])
        if self.loss is None:
            if not math.isfinite(loss):
                raise NonFiniteError("loss", self.step, loss)
            if not (math.isfinite(gx) and math.isfinite(gy)):
                raise NonFiniteError("gradient", self.step, float("inf"))
            self.loss = loss
        if self._buffers is None:
            self.theta.grad = torch.tensor((gx, gy), dtype=torch.float64)
            return torch.tensor(loss, dtype=torch.float64)
        grad, grad_view, value, value_view = self._buffers[self._calls & 1]
        self._calls += 1
        grad_view[0], grad_view[1] = gx, gy
        value_view[()] = loss
        self.theta.grad = grad
        return value


def reads_stats(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` reports L, K, H and ΔH^int of each step itself (Leapfrog/Euler, exact)."""
    return C.convention_for(opt).self_reported and getattr(opt, "mode", None) == "exact"


def _step_size_key(opt: torch.optim.Optimizer) -> str:
    try:
        return families.for_optimizer(opt).step_size_name
    except UnregisteredOptimizerError:
        return "lr"


def _stats_record(opt: Any, step_size: float) -> StepRecord:
    s = opt.stats
    return StepRecord(
        step=s["step"], optimizer="", mode="exact", step_size=step_size, loss=s["loss"],
        loss_after=s["loss_after"], kinetic_before=s["kinetic_before"], kinetic=s["kinetic"],
        hamiltonian_before=s["loss"] + s["kinetic_before"], hamiltonian=s["hamiltonian"],
        delta_h_int=s["delta_h"], cap_engaged=bool(s["cap_engaged"]),
        cap_engagements=int(s["cap_engagements"]), grad_norm=float(s["grad_norm"]),
    )


class _BaselineBook:
    """The tracker's baseline bookkeeping around one ``opt.step`` (K before and after, L after)."""

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt
        self.convention = C.convention_for(opt)
        self.key = _step_size_key(opt)
        self.kinetic_prev: float | None = None

    def step(self, t: int, closure: AnalyticClosure, before: tuple[float, float]) -> tuple[StepRecord, tuple]:
        opt = self.opt
        displacement = C.is_displacement_form(opt)
        k_before = (self.kinetic_prev or 0.0) if displacement else self.convention.kinetic(opt)
        opt.step(closure)
        after = closure.point()
        loss_after = closure.loss_at(after)
        if displacement:
            dx, dy = after[0] - before[0], after[1] - before[1]
            k_after = 0.5 * (dx * dx + dy * dy) / C._lr(opt.param_groups[0], self.key)
        else:
            k_after = self.convention.kinetic(opt)
        self.kinetic_prev = k_after
        loss = closure.loss
        assert loss is not None
        record = StepRecord(
            step=t, optimizer="", mode="baseline", step_size=0.0, loss=loss, loss_after=loss_after,
            kinetic_before=k_before, kinetic=k_after, hamiltonian_before=k_before + loss,
            hamiltonian=k_after + loss_after, delta_h_int=(k_after + loss_after) - (k_before + loss),
            cap_engaged=False, cap_engagements=0, grad_norm=0.0,
        )
        return record, after


def _close(records: list[StepRecord], next_losses: list[float | None]) -> list[StepRecord]:
    """Each record with ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` and ΔH^traj (None where
    the next loss is unknown)."""
    out = []
    for rec, nxt in zip(records, next_losses, strict=True):
        if nxt is None or rec.loss_after is None:
            out.append(rec)
            continue
        delta = nxt - rec.loss_after
        traj = None if rec.delta_h_int is None else rec.delta_h_int + delta
        out.append(replace(rec, resampling=delta, delta_h_traj=traj))
    return out


def fast_steps(config: PlaygroundConfig, landscape: Landscape, opt: torch.optim.Optimizer) -> StepLog:
    """Run ``config.steps`` steps of ``opt`` on ``landscape`` (see the module docstring)."""
    self_reported = reads_stats(opt)
    # exact-mode Leapfrog/Euler keep no gradient or loss past a step: the closure's buffers fit
    closure = AnalyticClosure(landscape, reuse_buffers=self_reported)
    book = None if self_reported else _BaselineBook(opt)
    theta = [closure.point()]
    records: list[StepRecord] = []
    diverged_at: int | None = None
    divergence: str | None = None
    escaped = False
    for t in range(config.steps):
        closure.next_batch(landscape.sample_batch(), t)
        try:
            if book is None:
                opt.step(closure)
                record = _stats_record(opt, config.step_size)
                point = closure.point()
            else:
                record, point = book.step(t, closure, theta[-1])
        except NonFiniteError as exc:
            diverged_at, divergence = t, str(exc)
            break
        records.append(record)
        reason = escape_reason(t, point, record.hamiltonian)
        if reason is not None:
            diverged_at, divergence, escaped = t, reason, True
            break
        theta.append(point)
    # δ_t needs the loss at θ_{t+1} on the next batch: the next record's own loss, or after a
    # full run one evaluation on a fresh batch (an interrupted run's last step stays open). One
    # fixed loss has δ = 0 and ΔH^traj = ΔH^int, which run_trajectory fills in without records.
    if landscape.noisy:
        next_losses: list[float | None] = [r.loss for r in records[1:]]
        if records and diverged_at is None:
            final_batch = landscape.sample_batch()
            closure.next_batch(final_batch, config.steps)
            next_losses.append(closure.loss_at(theta[-1]) if final_batch is not None else None)
        elif records:
            next_losses.append(None)
        records = _close(records, next_losses)
    if escaped:
        records.pop()
    return theta, records, diverged_at, divergence

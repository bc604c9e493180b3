r"""One run of the drift study: train step by step and turn the energy records into rows.

Every step of every run yields one spec-§6 record (see :mod:`hamopt.experiments.store` for the
columns), built from :class:`hamopt.energy.EnergyTracker`:

* Leapfrog/Euler in exact mode and the baselines: ``ΔH^int_t`` comes from the tracker (the
  integrator's two same-batch evaluations, or the baseline's extra forward pass on ``B_t``);
  ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` and ``ΔH^traj_t = ΔH^int_t + δ_t`` are filled
  when step t+1 evaluates its batch. For the last step one extra forward pass on ``B_T`` closes δ
  and ``ΔH^traj``.
* Leapfrog/Euler in streaming mode (one gradient per step): the optimiser measures the
  trajectory change ``ΔH^traj_t = H_{B_{t+1}}(θ_{t+1}, p_{t+1}) − H_{B_t}(θ_t, p_t)`` itself (its
  p_{t+1} is completed with the next batch's gradient); the run adds one forward pass on
  ``B_t`` after each step for ``L_{B_t}(θ_{t+1})``, hence δ_t, and **derives**
  ``ΔH^int_t = ΔH^traj_t − δ_t``. That p_{t+1} carries the half-kick of ``B_{t+1}``, not of
  ``B_t``, so streaming ``ΔH^int`` is the same-batch change of the state the streaming integrator
  actually visits, not the exact mode's. The last step has no ``ΔH^traj``/``ΔH^int`` (they would
  need one more gradient); its δ is measured.
* The Energy Conserving Descent optimisers (types ``ecdsep``, ``bbi``, ``ecdq1``) run like the
  baselines (mode ``baseline``): one closure call per step, the loss after the step by one extra
  forward pass on ``B_t``, and the displacement-form ``K = ½‖θ_{t+1} − θ_t‖²/lr`` of their
  registered energy convention. A step the optimiser skips (``F ≤ eps2``) leaves θ unchanged, so
  its record has ``loss_after = loss`` and ``K = 0``. Each optimiser's generator is seeded with
  ``derive_seed(run seed, OPTIMIZER_STREAM)`` (:func:`~.drift_setup.optimizer_seed`).

With the spec's ``stability`` monitor on, a :class:`~hamopt.diagnostics.stability_monitor.SharpnessMonitor`
measures ``lambda_max``, ``threshold`` and ``sharpness_ratio`` before every k-th step on the run's
fixed :func:`~.drift_setup.stability_batch` (null in the other rows); it leaves the run unchanged.

Under torchrun (:mod:`.ddp`) the model is wrapped in DDP, each rank evaluates its slice of the
global batch ``B_t``, and every loss the run evaluates (the closure's, the loss after a step, the
closing pass) is the mean over the ranks, i.e. the global ``L_{B_t}``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..diagnostics.ablations import make_ablation
from ..energy import EnergyTracker, StepRecord
from . import ddp
from .drift_setup import DTYPES, RunConfig, build, stability_batch
from .engine import StudyRun
from .store import STEP_COLUMNS

__all__ = ["DriftRun", "records_to_rows"]


def _finite_or_none(v: float | None) -> float | None:
    return v if v is None or math.isfinite(v) else None


def records_to_rows(
    records: list[StepRecord], after: list[float], final_loss: float | None, *, streaming: bool
) -> dict[str, list[Any]]:
    """Turn tracker records into the steps table (see the module docstring for each mode)."""
    rows: dict[str, list[Any]] = {c: [] for c in STEP_COLUMNS if c != "run_id"}
    n = len(records)
    for t, r in enumerate(records):
        nxt = records[t + 1] if t + 1 < n else None
        next_loss = nxt.loss if nxt is not None else final_loss
        if not streaming:
            res, traj = r.resampling, r.delta_h_traj
            if nxt is None and next_loss is not None and r.loss_after is not None:
                res = next_loss - r.loss_after
                traj = None if r.delta_h_int is None else r.delta_h_int + res
            row = dict(
                loss_after=r.loss_after,
                kinetic_before=r.kinetic_before,
                kinetic=r.kinetic,
                hamiltonian_before=r.hamiltonian_before,
                hamiltonian=r.hamiltonian,
                delta_h_int=r.delta_h_int,
                delta_h_traj=traj,
                resampling=res,
                cap_engaged=bool(r.cap_engaged),
            )
        else:
            la = after[t] if t < len(after) else None
            res = None if (la is None or next_loss is None) else next_loss - la
            traj = r.delta_h_traj if nxt is not None else None
            dint = None if traj is None or res is None else traj - res
            k_next = None if nxt is None else nxt.kinetic  # K(p_{t+1}) after the cap
            h_after = None if k_next is None or la is None else k_next + la  # H_{B_t}(θ_{t+1}, p_{t+1})
            row = dict(
                loss_after=la,
                kinetic_before=r.kinetic,
                kinetic=k_next,
                hamiltonian_before=r.hamiltonian,
                hamiltonian=h_after,
                delta_h_int=dint,
                delta_h_traj=traj,
                resampling=res,
                cap_engaged=None if nxt is None else bool(nxt.cap_engaged),
            )
        rows["step"].append(t)
        rows["loss"].append(r.loss)
        rows["grad_norm"].append(r.grad_norm)
        for k, v in row.items():
            rows[k].append(v)
    return rows


class DriftRun(StudyRun):
    """A drift-study run in flight: model, batch stream, optimiser, tracker and ablation."""

    def __init__(self, study: Any, cfg: RunConfig) -> None:
        from ..data import BatchStream

        spec = study.spec
        self.cfg = cfg
        self.dtype = DTYPES[spec.dtype]
        self.steps = spec.steps
        self.streaming = cfg.mode == "streaming"
        self.ablation = make_ablation(cfg.ablation, spec.device)
        self.model = build(spec, study.dataset, cfg.seed)
        self.job = ddp.current()
        # what the losses go through: the model itself, or its DDP wrapper (gradients averaged)
        self.net = self.model if self.job is None else self.job.wrap(self.model, spec.device)
        self.stream = BatchStream(study.dataset, batch_size=spec.batch_size, seed=cfg.seed,
                                  augment=spec.dataset.augment, device=spec.device)
        self.optimizer = study.build_optimizer(cfg, self.model.parameters())
        self.tracker = EnergyTracker(self.optimizer)
        self.after: list[float] = []
        self.final_loss: float | None = None
        self.monitor = None if spec.stability is None else self._monitor(spec, study.dataset, cfg.seed)

    def _monitor(self, spec: Any, dataset: Any, seed: int) -> Any:
        from ..diagnostics.stability_monitor import SharpnessMonitor

        x, y = stability_batch(spec, dataset, seed)
        model, st = self.model, spec.stability
        return SharpnessMonitor(model, self.optimizer, lambda: F.cross_entropy(model(x), y),
                                every=st.every, iters=st.iters, tol=st.tol, seed=st.seed)

    def _batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.stream.batch(t)
        if self.job is not None:
            x, y = self.job.local_slice(x, y)
        return x.to(self.dtype), y

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch loss (under torchrun: the mean over the ranks of their slices' losses)."""
        return ddp.global_mean(F.cross_entropy(self.net(x), y))

    def step(self, t: int) -> float:
        x, y = self._batch(t)
        if self.monitor is not None:
            self.monitor.before_step(t)
        record = self.tracker.step(self.ablation.wrap(lambda: self._loss(x, y)))
        if self.streaming:
            with torch.no_grad():
                self.after.append(float(self._loss(x, y)))
        self.ablation.after_step(self.optimizer)
        return record.loss

    def finish(self) -> None:
        x, y = self._batch(self.steps)
        with torch.no_grad():
            self.final_loss = _finite_or_none(float(self._loss(x, y)))

    def rows(self) -> dict[str, list[Any]]:
        rows = records_to_rows(list(self.tracker.records), self.after, self.final_loss,
                               streaming=self.streaming)
        if self.monitor is not None:
            rows.update(self.monitor.columns(len(rows["step"])))
        return rows

r"""Batched replicas in the lab: drift-study runs trained R at a time, each stored as if run alone.

``hamopt sweep/reproduce --replicas auto|R`` (or the spec's ``replicas``) groups the runs still to
do into batches of *compatible* runs (:func:`replica_batches`): same optimiser type, mode and
hyper-parameters, default ablation (model, data and dtype are the spec's, so always shared). The
step size and the seed may differ: each replica is built from its own seed, reads its own batch
stream (``BatchStream(seed)``, exactly the unbatched run's batches) and steps at its own step
size. Runs that cannot batch run alone as before: ECD q=1, BBI with ``momentum_init:
per_tensor``, the memory ablations and the ``default`` run they are compared with bit for bit,
and every run of a spec with the stability monitor.

Each replica yields the rows :func:`~hamopt.experiments.drift_run.records_to_rows` makes of the
records the unbatched run would have (:class:`~hamopt.replicas.ReplicaTracker`), the same
divergence rules (a non-finite loss or gradient: ``diverged`` at that step, its rows kept; a
loss above ``divergence_factor · |L_0|``: ``diverged`` at that step, rows up to it kept) and the
manifest of the unbatched run, plus ``replica_batch`` (batch size, position, the batch's wall
time). ``wall_time_s`` is the replica's share: the batch's elapsed time until the replica ended,
divided by the batch size. A replica is committed as soon as it ends (a diverged one at once), so
a sweep stopped mid-batch resumes with the runs not committed.

``auto`` batches every compatible group whole, split into near-equal batches of at most
:data:`AUTO_MAX_REPLICAS`; an integer ``R`` splits each group into batches of at most R.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from ..energy import StepRecord
from .families import BATCHED_TYPES, build_replica_optimizer
from .stack import ReplicaStack
from .tracker import ReplicaTracker

__all__ = ["AUTO_MAX_REPLICAS", "ReplicaBatch", "batch_size_for", "replica_batches", "run_replica_batch"]

AUTO_MAX_REPLICAS = 24


def _key(cfg: Any) -> str | None:
    if cfg.type not in BATCHED_TYPES or cfg.ablation != "default":
        return None
    if cfg.type == "bbi" and cfg.hyper.get("momentum_init", "global") != "global":
        return None
    return json.dumps([cfg.type, cfg.mode, cfg.hyper], sort_keys=True, default=str)


def batch_size_for(replicas: str | int | None, group: int) -> int:
    """The largest batch a group of ``group`` compatible runs is split into."""
    if replicas is None:
        return 1
    if replicas == "auto":
        count = math.ceil(group / AUTO_MAX_REPLICAS)
        return math.ceil(group / count) if group else 1
    return int(replicas)


def _ablation_partners(plan: list[Any]) -> set[tuple[Any, ...]]:
    """The runs the memory ablations are compared with, bit for bit: the ``default`` run at each
    ablation run's optimiser, band, step size and seed. They run alone, as the ablation runs do."""
    return {(c.optimizer, c.band, c.step_size, c.seed) for c in plan if c.ablation != "default"}


def replica_batches(spec: Any, todo: list[Any], plan: list[Any] | None = None) -> list[list[Any]]:
    """``todo`` in batches (see the module docstring); the order of the runs within and across
    batches follows ``todo`` (batches are placed where their first run was). ``plan`` (default:
    ``todo``) names the ablation runs whose ``default`` partner must run alone."""
    if spec.replicas is None or spec.replicas == 1 or spec.stability is not None:
        return [[c] for c in todo]
    partners = _ablation_partners(todo if plan is None else plan)
    groups: dict[str, list[Any]] = {}
    order: list[Any] = []
    for cfg in todo:
        key = None if (cfg.optimizer, cfg.band, cfg.step_size, cfg.seed) in partners else _key(cfg)
        if key is None:
            order.append([cfg])
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(cfg)
    out: list[list[Any]] = []
    for item in order:
        if isinstance(item, list):
            out.append(item)
            continue
        group = groups[item]
        size = batch_size_for(spec.replicas, len(group))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


class ReplicaBatch:
    """The replicas of one batch in flight: stacked models, per-seed streams, optimiser, tracker."""

    def __init__(self, study: Any, cfgs: list[Any]) -> None:
        from .. import families
        from ..data import BatchStream
        from ..experiments.drift_setup import DTYPES, build, optimizer_seed

        spec = study.spec
        self.cfgs = cfgs
        self.size = len(cfgs)
        self.dtype = DTYPES[spec.dtype]
        self.streaming = cfgs[0].mode == "streaming"
        flat = spec.model_copy(update={"model": spec.model.model_copy(update={"channels_last": False})})
        self.stack = ReplicaStack([build(flat, study.dataset, c.seed) for c in cfgs])
        seeds = sorted({c.seed for c in cfgs})
        self.streams = {s: BatchStream(study.dataset, batch_size=spec.batch_size, seed=s,
                                       augment=spec.dataset.augment, device=spec.device) for s in seeds}
        self._slot = [seeds.index(c.seed) for c in cfgs]
        family = families.get(cfgs[0].type)
        self.optimizer = build_replica_optimizer(cfgs[0].type, self.stack.parameters(),
                                                 [c.step_size for c in cfgs], cfgs[0].hyper,
                                                 mode=cfgs[0].mode if family.modes else None,
                                                 seeds=[optimizer_seed(c.seed) for c in cfgs])
        self.tracker = ReplicaTracker(self.optimizer, self.stack.zero_grad)
        self.after: list[list[float]] = [[] for _ in cfgs]
        self.final_loss: list[float | None] = [None] * self.size

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every replica's batch ``t`` of its own stream, stacked ``[R, B, ...]``."""
        parts = [self.streams[s].batch(t) for s in self.streams]
        index = torch.tensor(self._slot, device=parts[0][0].device)
        x = torch.stack([p[0] for p in parts]).index_select(0, index)
        y = torch.stack([p[1] for p in parts]).index_select(0, index)
        return x.to(self.dtype), y

    def step(self, t: int) -> list[StepRecord | None]:
        x, y = self.batch(t)
        records = self.tracker.step(lambda: self.stack.losses(x, y))
        if self.streaming:
            with torch.no_grad():
                after = self.stack.losses(x, y).double().tolist()
            for r, rec in enumerate(records):
                if rec is not None:
                    self.after[r].append(after[r])
        return records

    def finish(self, replicas: list[int], steps: int) -> None:
        """The closing forward pass on batch ``steps`` of the replicas that completed."""
        if not replicas:
            return
        x, y = self.batch(steps)
        with torch.no_grad():
            losses = self.stack.losses(x, y).double().tolist()
        for r in replicas:
            self.final_loss[r] = losses[r] if math.isfinite(losses[r]) else None

    def rows(self, r: int) -> dict[str, list[Any]]:
        from ..experiments.drift_run import records_to_rows

        return records_to_rows(list(self.tracker.records[r]), self.after[r], self.final_loss[r],
                               streaming=self.streaming)


class _ReplicaView:
    """One replica of a batch as the study's manifest sees a run (its rows; no torch optimiser)."""

    def __init__(self, batch: ReplicaBatch, r: int) -> None:
        self._batch, self._r = batch, r
        self.optimizer = None

    def rows(self) -> dict[str, list[Any]]:
        return self._batch.rows(self._r)


def _family_manifest(cfg: Any, opt: Any, r: int) -> dict[str, Any]:
    """What the family writes about the optimiser, for replica r (as the unbatched run's)."""
    from .. import families

    family = families.get(cfg.type)
    out = family.manifest(None)
    displacement = bool(getattr(opt, "displacement_form", False))
    out["energy_convention"] = {"name": family.energy.name, "label": family.label(dict(cfg.hyper)),
                                "displacement_form": displacement, "description": family.energy.description}
    if displacement:
        out["optimizer_seed"] = int(opt.seeds[r])
        out["ecd"] = {"steps": int(opt.steps[r]), "skipped_steps": int(opt.skipped_steps[r]),
                      "bounces": int(opt.bounces[r])}
    if cfg.type in ("leapfrog", "euler"):
        h0 = opt.H0[r]
        out["hamiltonian"] = {"mode": opt.mode, "H0": None if h0 is None else float(h0),
                              "cap_engagements": int(opt.cap_engagements[r])}
    return out


def run_replica_batch(study: Any, cfgs: list[Any], store: Any, on_step: Callable[[int], None] | None,
                      finished: Callable[[Any, Any], None]) -> None:
    """Train ``cfgs`` as one batch and commit each replica as it ends (see the module docstring)."""
    from ..experiments.engine import explosion, outcome_of, run_manifest

    started, t0 = time.time(), time.perf_counter()
    for cfg in cfgs:
        store.begin(cfg.run_id)
    ended: dict[int, tuple[str, int | None, str | None, str | None, float]] = {}
    batch: ReplicaBatch | None = None

    def commit(r: int) -> None:
        status, at, error, reason, wall = ended[r]
        view = None if batch is None else _ReplicaView(batch, r)
        rows = {"step": []} if view is None else view.rows()
        manifest = run_manifest(study, cfgs[r], view, status=status, diverged_at=at, error=error, reason=reason,
                                wall_time_s=wall / len(cfgs), started=started)
        if batch is not None:
            manifest.update(_family_manifest(cfgs[r], batch.optimizer, r))
        manifest["replica_batch"] = {"size": len(cfgs), "index": r, "batch_wall_time_s": wall}
        store.commit(cfgs[r].run_id, rows, manifest)
        finished(outcome_of(cfgs[r], rows, manifest), cfgs[r])

    try:
        batch = ReplicaBatch(study, cfgs)
        opt = batch.optimizer
        initial: list[float | None] = [None] * len(cfgs)
        for t in range(study.steps):
            records = batch.step(t)
            if on_step is not None:
                on_step(sum(rec is not None for rec in records))
            for r, rec in enumerate(records):
                if r in ended:
                    continue
                if rec is None:  # frozen by a non-finite loss or gradient at step t
                    at, message = opt.diverged[r]
                    ended[r] = ("diverged", at, message, message, time.perf_counter() - t0)
                    commit(r)
                    continue
                initial[r] = rec.loss if initial[r] is None else initial[r]
                reason = (f"non-finite loss {rec.loss!r}" if not math.isfinite(rec.loss)
                          else explosion(rec.loss, initial[r], study.divergence_factor))
                if reason is not None:
                    opt.freeze(r, reason)
                    ended[r] = ("diverged", t, None, reason, time.perf_counter() - t0)
                    commit(r)
            if len(ended) == len(cfgs):
                break
        alive = [r for r in range(len(cfgs)) if r not in ended]
        batch.finish(alive, study.steps)
        for r in alive:
            ended[r] = ("completed", None, None, None, time.perf_counter() - t0)
            commit(r)
    except Exception as exc:  # the replicas still running fail together; the sweep goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        for r in range(len(cfgs)):
            if r not in ended:
                ended[r] = ("failed", None, error, None, time.perf_counter() - t0)
                commit(r)

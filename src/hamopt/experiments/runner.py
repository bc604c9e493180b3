r"""The drift study on the run engine: one training run per optimiser × step size × seed × ablation.

:class:`DriftStudy` supplies what is specific to the study — the spec's identity, the data set,
the calibrated step sizes and plan (:mod:`.drift_setup`), the per-run training loop and its rows
(:mod:`.drift_run`), the manifest fields and, after the runs, the reversibility table
(:mod:`.reversibility`); :func:`hamopt.experiments.engine.run_study` does the rest (resume,
divergence, failed-run retry, workers, progress). :func:`run_sweep` is the entry point of
``hamopt sweep`` and ``hamopt reproduce``.

A run is ``diverged`` (kept out of the fits) when its loss or gradient goes non-finite or its
training loss exceeds :data:`~hamopt.experiments.engine.DIVERGENCE_FACTOR` × its initial loss;
completed and diverged runs are skipped when the sweep is run again on the same directory, failed
ones are retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import families
from .drift_run import DriftRun, records_to_rows
from .drift_setup import (
    RunConfig,
    build,
    calibrate,
    has_batch_norm,
    load_data,
    needs_calibration,
    optimizer_seed,
    plan_runs,
    resolve_step_sizes,
    run_schema,
)
from .engine import RunOutcome, Study, StudyRun, SweepSummary, execute, run_study
from .reversibility import run_reversibility
from .spec import ExperimentSpec, SpecError, spec_hash, spec_to_yaml
from .store import RunStore, write_csv

__all__ = [
    "DriftStudy",
    "RunConfig",
    "RunOutcome",
    "SweepSummary",
    "build",
    "calibrate",
    "execute_run",
    "load_data",
    "optimizer_seed",
    "plan_runs",
    "records_to_rows",
    "resolve_step_sizes",
    "run_reversibility",
    "run_sweep",
]

_MODE_COST = {"exact": 1.0, "streaming": 0.8, "baseline": 0.6}  # a lone run's relative wall time
_THRASH_COST = 14.0

_DELTA_H_INT_SOURCE = {
    "exact": "optimizer (same batch, two gradients)",
    "streaming": "derived: delta_h_traj - resampling",
    "baseline": "extra forward pass on the same batch",
}


class DriftStudy(Study):
    """The energy-drift study of an :class:`~hamopt.experiments.spec.ExperimentSpec`."""

    def __init__(self, spec: ExperimentSpec, dataset: Any = None) -> None:
        self.spec = spec
        self.steps = spec.steps
        self.threads = spec.threads
        self.workers = spec.workers
        self.device = spec.device
        self._loaded_dataset = dataset
        self.calibration: dict[str, Any] | None = None

    @property
    def dataset(self) -> Any:
        if self._loaded_dataset is None:
            self.load()
        return self._loaded_dataset

    def identity(self) -> tuple[str, str]:
        return spec_hash(self.spec), spec_to_yaml(self.spec)

    def schema(self) -> Any:
        return run_schema(self.spec)

    def load(self) -> None:
        if self._loaded_dataset is None:
            self._loaded_dataset = load_data(self.spec)

    def step_sizes(self, store: RunStore, say: Callable[[str], None]) -> dict[str, list[float]]:
        """The literal step sizes, calibrating once (kept in ``calibration.json``)."""
        spec = self.spec
        if needs_calibration(spec):
            text = store.read_text("calibration.json")
            if text is not None:
                self.calibration = json.loads(text)
            else:
                self.calibration = calibrate(spec, self.dataset)
                store.write_text("calibration.json", json.dumps(self.calibration, indent=2))
                c = self.calibration
                say(f"calibration: lambda_max(M^-1 H) = {c['lambda_preconditioned']:.4g}, "
                    f"dt_c = {c['dt_limit']:.4g}, lambda_max(H) = {c['lambda_hessian']:.4g}")
        return resolve_step_sizes(spec, self.calibration)

    def plan(self, store: RunStore, log: Callable[[str], None]) -> list[RunConfig]:
        import yaml

        steps = self.step_sizes(store, log)
        resolved: dict[str, Any] = {"resolved_step_sizes": steps, "spec_hash": spec_hash(self.spec)}
        if self.calibration is not None:
            resolved["stability_calibration"] = self.calibration
        store.write_text("spec.yaml", spec_to_yaml(self.spec) + yaml.safe_dump(resolved,
                                                                                sort_keys=False))
        self._plan = plan_runs(self.spec, steps)
        return self._plan

    def check_world(self, world_size: int) -> None:
        """A DDP job needs equal slices of the global batch, and SyncBatchNorm (GPUs only) for a
        model with batch normalisation."""
        spec = self.spec
        if spec.batch_size % world_size:
            raise SpecError(f"batch_size: the global batch size {spec.batch_size} must divide by "
                            f"the world size {world_size} (one equal slice per rank)")
        if not spec.device.startswith("cuda") and has_batch_norm(spec, self.dataset):
            raise SpecError(f"model: {spec.model.name!r} has batch normalisation, which a DDP job "
                            "keeps global only through SyncBatchNorm, and torch runs that on GPUs "
                            "only; use device 'cuda' or run in one process")

    def build_optimizer(self, cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
        """The run's optimiser, built by its family (:mod:`hamopt.families`); a seeded family's
        generator gets :func:`optimizer_seed` of the run's seed."""
        family = families.get(cfg.type)
        return family.build(params, cfg.step_size, cfg.hyper, seed=optimizer_seed(cfg.seed),
                            mode=cfg.mode if family.modes else None, device=self.spec.device)

    def replica_batches(self, todo: list[RunConfig]) -> list[list[RunConfig]]:
        """Compatible runs batched as replicas when the spec asks for it (:mod:`hamopt.replicas.lab`)."""
        from ..replicas.lab import replica_batches

        return replica_batches(self.spec, todo, getattr(self, "_plan", None))

    def run_batch(self, cfgs: list[RunConfig], store: RunStore, on_step: Callable[[int], None] | None,
                  finished: Callable[[RunOutcome, Any], None]) -> None:
        from ..replicas.lab import run_replica_batch

        run_replica_batch(self, cfgs, store, on_step, finished)

    def start(self, cfg: RunConfig) -> DriftRun:
        return DriftRun(self, cfg)

    def run_manifest(self, cfg: RunConfig, run: StudyRun | None) -> dict[str, Any]:
        spec = self.spec
        rows = run.rows() if run is not None else {"cap_engaged": []}
        cap_flags = [c for c in rows["cap_engaged"] if c is not None]
        manifest = {
            "optimizer": cfg.optimizer,
            "type": cfg.type,
            "mode": cfg.mode,
            "band": cfg.band,
            "step_size": cfg.step_size,
            "seed": cfg.seed,
            "ablation": cfg.ablation,
            "dtype": spec.dtype,
            "device": spec.device,
            "batch_size": spec.batch_size,
            "dataset": {
                **spec.dataset.model_dump(mode="json"),
                "source": getattr(self._loaded_dataset, "source", None),
            },
            "model": spec.model.model_dump(mode="json"),
            "cap_engagements": int(sum(cap_flags)),
            "delta_h_int_source": _DELTA_H_INT_SOURCE[cfg.mode],
        }
        manifest.update(families.get(cfg.type).manifest(getattr(run, "optimizer", None)))
        return manifest

    after_runs_independent = True  # the reversibility table does not read the runs

    def unit_cost(self, cfgs: list[RunConfig]) -> float:
        """Estimated wall time of a batch (or a run alone) in units of one exact-mode Leapfrog run
        alone (measured on the quick preset, one thread: a lone exact run 0.5 s, a batch of 23
        exact-mode replicas 3.4 s, of 24 streaming ones 2.7 s, of 12 SGD ones 1.2 s; the thrash
        ablation's cache flushes make its run 14 times as long as the default's)."""
        per_run = _MODE_COST.get(cfgs[0].mode, 1.0)
        if len(cfgs) > 1:
            return per_run * (1.0 + len(cfgs) / 4.0)
        return per_run * (_THRASH_COST if cfgs[0].ablation == "thrash" else 1.0)

    @property
    def after_runs_cost(self) -> float:  # type: ignore[override]
        """The reversibility table's estimated cost (units of :meth:`unit_cost`): its exact-mode
        steps (N there and N back, Leapfrog and Euler, per dtype) over a run's steps, × 0.8
        (a round trip evaluates one fixed batch; measured 5.5 s on the quick preset)."""
        rev = self.spec.reversibility
        if rev is None:
            return 0.0
        return 0.8 * 4 * len(rev.dtypes) * sum(rev.steps) / max(1, self.steps)

    def after_runs(self, store: RunStore, log: Callable[[str], None]) -> None:
        """The reversibility table, once per directory."""
        rev = self.spec.reversibility
        if rev is None or store.path("reversibility.csv").exists():
            return
        dt = rev.dt if rev.dt is not None else rev.stability_fraction * self.calibration["dt_limit"]
        log(f"reversibility: Leapfrog vs Euler, dt={dt:.4g}, N in {rev.steps}, {rev.dtypes}")
        write_csv(store.path("reversibility.csv"), run_reversibility(self.spec, self.dataset, dt))


def execute_run(
    cfg: RunConfig, spec: ExperimentSpec, dataset: Any
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Train one run of ``spec`` outside a sweep; return ``(rows, manifest)``."""
    return execute(DriftStudy(spec, dataset), cfg)


def run_sweep(
    spec: ExperimentSpec,
    out: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    dataset: Any = None,
    backend: Any = None,
) -> SweepSummary:
    """Run every planned run not yet done in ``out``; write manifests, steps, reversibility.
    ``backend``: None (local) or a :class:`~hamopt.experiments.ray_backend.RayOptions`."""
    return run_study(DriftStudy(spec, dataset), out, progress=progress, log=log, backend=backend)

r"""The symmetry-breaking study on the run engine: optimisers × attention variants × seeds on a
GPT, with the validation loss, the energy record and the Noether charges of every step.

Presets (:data:`PRESETS`, :mod:`.symbreak_preset`):

* ``symbreak-tiny`` (CPU): the ``tiny`` GPT (4 layers, 4 heads, width 128, context 128, bytes)
  on the offline standard-library corpus (:mod:`hamopt.data.text`), AdamW, SGD-momentum, ECDq1
  and Leapfrog × {``symmetric``, ``bq+bv``} × 3 seeds, a short fixed budget of steps;
* ``symbreak-cpu`` (CPU): a 2-layer GPT (width 64) on the same corpus, AdamW, SOAP,
  SGD-momentum, ECDq1 and Leapfrog × {``symmetric``, ``bq+bv``}, each optimiser tuned per variant
  on a small grid (on a tuning seed, by validation loss: :mod:`.symbreak_tuning`), then 3 seeds
  compared on held-out test windows (:mod:`.symbreak_gaps`), with downstream scores and the
  optimiser-state bytes (:mod:`.symbreak_metrics`) and the final models kept for the head
  analysis (``hamopt heads DIR``: :mod:`.heads_report`);
* ``symbreak-124m`` (GPU): the ``124m`` GPT on uint16 token shards (``--data-root DIR`` with
  ``train*.bin`` and ``val*.bin``; see :mod:`hamopt.data.text` for the format), same grid.

Each run trains from seed-determined weights; batch ``t`` and the attention-bias draw of step
``t`` are pure functions of ``(seed, t)`` (the same draw serves both gradient evaluations of an
exact Leapfrog step and the tracker's loss-after pass). Every step records the
:class:`~hamopt.energy.StepRecord` (loss, K, H, ΔH^int, grad norm, cap) and, from
:class:`~hamopt.diagnostics.noether.NoetherMonitor`, the total charge norms
``‖J_QK‖ = sqrt(Σ_heads ‖J_QK,h‖_F²)`` (likewise ``‖J_VO‖``), their charge fractions
``‖J‖ / (2‖X‖‖P‖)`` and the momentum source; every ``eval_every`` steps the validation loss
(eval mode: biases at their means; nats per token) on fixed windows.

:class:`SymbreakStudy` supplies the plan, per-run setup, per-step row and schema
(:data:`COLUMNS`); the run engine (:mod:`hamopt.experiments.engine`) does the rest exactly as for
the drift study: spec-hash guard, resume, failed-run retry, divergence, workers, threads and
progress, through :class:`~hamopt.experiments.store.RunStore`. The analysis (table, figures,
report) is :mod:`hamopt.experiments.symbreak_report`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import families
from . import ddp
from .engine import Study, StudyRun, execute
from .spec import SpecError
from .spec_load import available_devices
from .symbreak_data import check_data_dir, load_study_data, validation_loss
from .symbreak_preset import (
    PRESET_NAMES,
    PRESETS,
    SymbreakPreset,
    load_preset,
    preset_dict,
    preset_text,
    preset_yaml,
)
from .symbreak_report import analyse, format_table
from .symbreak_schedule import check_schedule, lr_factor

__all__ = [
    "COLUMNS",
    "PRESETS",
    "PRESET_NAMES",
    "RunConfig",
    "SymbreakPreset",
    "SymbreakStudy",
    "analyse",
    "execute_run",
    "format_table",
    "load_preset",
    "plan_runs",
    "preset_text",
    "preset_yaml",
    "resolve_preset",
    "run_preset",
]

COLUMNS = (
    "step", "step_size", "loss", "loss_after", "kinetic", "hamiltonian", "delta_h_int", "grad_norm",
    "cap_engaged", "val_loss", "j_qk_norm", "j_vo_norm", "j_qk_rel", "j_vo_rel", "rescale_norm",
    "wall_s",
)
BIAS_STREAM = 3



@dataclass(frozen=True)
class RunConfig:
    """One run of a preset's grid."""

    run_id: str
    preset: str
    optimizer: str
    variant: str
    seed: int
    hyper: dict[str, Any] = field(default_factory=dict)
    grid_point: dict[str, Any] = field(default_factory=dict)


def plan_runs(
    preset: SymbreakPreset, *, stage: str = "eval", chosen: dict[str, dict[str, Any]] | None = None
) -> list[RunConfig]:
    """The runs in a fixed order: optimiser, variant, (grid point,) seed; a tuned evaluation
    (``chosen`` given) runs seed after seed (each seed: optimiser, variant).

    ``stage="eval"`` (default): every seed of :attr:`SymbreakPreset.seeds`, each optimiser with its
    ``hyper`` updated by ``chosen["<optimizer>/<variant>"]`` (the tuned values; a pair missing
    from a non-empty ``chosen`` is left out: none of its grid points trained). ``stage="tune"``:
    every point of each optimiser's ``grid`` (the Cartesian product of its keys) on the
    ``tune_seed`` alone (see :mod:`hamopt.experiments.symbreak_tuning`).
    """
    if stage not in ("eval", "tune"):
        raise SpecError(f"stage must be 'eval' or 'tune'; got {stage!r}")
    runs = []
    for opt in preset.optimizers:
        if opt not in preset.types or opt not in preset.hyper:
            raise SpecError(f"optimizers: unknown optimiser {opt!r}; known: {', '.join(preset.types)}")
        for variant in preset.variants:
            tag = f"{opt}__{variant.replace('+', '-')}"
            if stage == "tune":
                for point in grid_points(preset.grid.get(opt, {})):
                    rid = f"{tag}__{point_tag(point)}__s{preset.tune_seed}"
                    runs.append(RunConfig(rid, preset.name, opt, variant, int(preset.tune_seed),
                                          {**preset.hyper[opt], **point}, point))
                continue
            if chosen and f"{opt}/{variant}" not in chosen:
                continue
            hyper = {**preset.hyper[opt], **(chosen or {}).get(f"{opt}/{variant}", {})}
            point = (chosen or {}).get(f"{opt}/{variant}", {})
            for seed in preset.seeds:
                runs.append(RunConfig(f"{tag}__s{seed}", preset.name, opt, variant, seed, hyper,
                                      dict(point)))
    if stage == "eval" and chosen:  # seed after seed: a partial sweep compares on whole seeds
        runs.sort(key=lambda c: preset.seeds.index(c.seed))
    return runs


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of a grid's values, keys in the grid's order (``[{}]`` when empty)."""
    import itertools

    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def point_tag(point: dict[str, Any]) -> str:
    """A grid point as a run-id fragment: ``lr0.003`` (``-`` between keys)."""
    return "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in point.items())


class SymbreakStudy(Study):
    """The symmetry-breaking study of one preset (data read from ``data_dir`` for shard presets)."""

    def __init__(
        self,
        preset: SymbreakPreset,
        data_dir: str | Path | None = None,
        *,
        stage: str = "eval",
        chosen: dict[str, dict[str, Any]] | None = None,
        out: str | Path | None = None,
    ) -> None:
        self.preset = preset
        self.data_dir = None if data_dir is None else str(data_dir)
        self.stage = stage
        self.chosen = dict(chosen or {})
        self.out = None if out is None else str(out)  # where a run saves its final model
        self.steps = preset.steps
        self.threads = preset.threads
        self.workers = preset.workers
        self.device = preset.device

    def identity(self) -> tuple[str, str]:
        """SHA-256 of the preset (less ``threads`` and ``workers``) and the data directory."""
        import yaml

        data = preset_dict(self.preset)
        data.pop("threads")
        data.pop("workers")
        for key, default in (("schedule", None), ("track_energy", True)):
            if data[key] == default:  # presets that do not use them keep their hashes
                data.pop(key)
        data["data_dir"] = self.data_dir
        if self.stage != "eval" or self.chosen:
            data["stage"], data["chosen"] = self.stage, self.chosen
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()
        return digest, yaml.safe_dump(data, sort_keys=False)

    def schema(self) -> Any:
        import pyarrow as pa

        types = {"step": pa.int64(), "cap_engaged": pa.bool_()}
        return pa.schema([(c, types.get(c, pa.float64())) for c in COLUMNS])

    def load(self) -> None:
        check_data_dir(self.preset, self.data_dir)

    def plan(self, store: Any, log: Callable[[str], None]) -> list[RunConfig]:
        return plan_runs(self.preset, stage=self.stage, chosen=self.chosen)

    def check_world(self, world_size: int) -> None:
        """Under torchrun each rank trains on an equal slice of the global batch (see
        :mod:`hamopt.experiments.ddp`); the GPT has no batch statistics and no dropout here."""
        p = self.preset
        if p.batch_size % world_size:
            raise SpecError(f"batch_size: the global batch size {p.batch_size} must divide by "
                            f"the world size {world_size} (one equal slice per rank)")
        if p.model_overrides.get("dropout", 0.0):
            raise SpecError("model_overrides: dropout draws differ between ranks; a DDP job "
                            "needs dropout 0")

    def build_optimizer(self, cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
        """The run's optimiser, built by its family (:mod:`hamopt.families`) from the preset's
        keywords (``lr`` is the step size, ``mode`` the family's mode); a seeded family gets the
        run's seed."""
        hyper = dict(cfg.hyper)
        lr = hyper.pop("lr")
        mode = hyper.pop("mode", None)
        return families.get(self.preset.types[cfg.optimizer]).build(
            list(params), lr, hyper, seed=cfg.seed, mode=mode, device=self.preset.device)

    def start(self, cfg: RunConfig) -> SymbreakRun:
        return SymbreakRun(self, cfg)

    def run_manifest(self, cfg: RunConfig, run: StudyRun | None) -> dict[str, Any]:
        p = self.preset
        return {
            "preset": cfg.preset,
            "optimizer": cfg.optimizer,
            "variant": cfg.variant,
            "seed": cfg.seed,
            "hyper": cfg.hyper,
            "grid_point": cfg.grid_point,
            "steps_done": 0 if run is None else len(run.rows()["step"]),
            "batch_size": p.batch_size,
            "context": p.context,
            "eval_every": p.eval_every,
            "val_windows": p.val_windows,
            "model": p.model,
            "model_overrides": p.model_overrides,
            "parameters": getattr(run, "parameters", None),
            "data": getattr(run, "data_manifest", {}),
            "device": p.device,
            "dtype": "float32",
            "final_val_loss": getattr(run, "final_val", None),
            "stage": self.stage,
            **getattr(run, "final_metrics", {}),
            "loss_unit": "nats per token",
            "noether_source": getattr(run, "source", None),
            **families.get(self.preset.types[cfg.optimizer]).manifest(getattr(run, "optimizer", None)),
        }


class SymbreakRun(StudyRun):
    """One run in flight: GPT, batches, optimiser, energy tracker and Noether monitor."""

    def __init__(self, study: SymbreakStudy, cfg: RunConfig) -> None:
        from ..diagnostics.noether import NoetherMonitor
        from ..energy import EnergyTracker, LossTracker
        from ..models.gpt import build_gpt

        self.t0 = time.perf_counter()
        p = self.preset = study.preset
        self.cfg = cfg
        self.data = load_study_data(p, cfg.seed, study.data_dir)
        self.data_manifest = self.data.manifest
        overrides = dict(p.model_overrides, attention=cfg.variant, vocab_size=self.data.vocab_size)
        self.model = build_gpt(p.model, seed=cfg.seed, **overrides).to(p.device)
        self.parameters = self.model.num_parameters()
        self.job = ddp.current()  # under torchrun: DDP over the ranks, each on its batch slice
        self.net = self.model if self.job is None else self.job.wrap(self.model, p.device)
        self.optimizer = study.build_optimizer(cfg, self.model.parameters())
        self.tracker = (EnergyTracker if p.track_energy else LossTracker)(self.optimizer)
        self.scheduler = (None if p.schedule is None else torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(p.schedule, p.steps)))
        self.monitor = NoetherMonitor(self.model, self.optimizer)
        self.source = self.monitor.source
        self.final_val: float | None = None
        self.final_metrics: dict[str, Any] = {}
        self.study = study
        self._rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def step(self, t: int) -> float:
        from ..data.stream import derive_seed

        p, model = self.preset, self.model
        val = validation_loss(model, self.data.validation, p.device) if t % p.eval_every == 0 else None
        x, y = (z.to(p.device) for z in self.data.batch(t))
        if self.job is not None:
            x, y = self.job.local_slice(x, y)
        biases = model.draw_biases(torch.Generator().manual_seed(derive_seed(self.cfg.seed,
                                                                             BIAS_STREAM, t)))
        net = self.net
        record, charges = self.monitor.step(
            self.tracker, lambda: ddp.global_mean(net(x, y, biases=biases)[1]))
        if self.scheduler is not None:
            self.scheduler.step()
        s = charges.summary()
        row = dict(
            step=t, step_size=record.step_size, loss=record.loss, loss_after=record.loss_after,
            kinetic=record.kinetic, hamiltonian=record.hamiltonian, delta_h_int=record.delta_h_int,
            grad_norm=record.grad_norm, cap_engaged=bool(record.cap_engaged), val_loss=val,
            j_qk_norm=s["j_qk_norm"], j_vo_norm=s["j_vo_norm"], j_qk_rel=s["j_qk_rel"],
            j_vo_rel=s["j_vo_rel"], rescale_norm=s["rescale_norm"],
            wall_s=time.perf_counter() - self.t0,
        )
        for k, v in row.items():
            self._rows[k].append(v)
        return record.loss

    def finish(self) -> None:
        """The final validation loss; the optimiser's state bytes; with test windows, the test
        loss and the downstream scores; the final model when the study keeps models."""
        from .symbreak_metrics import downstream_scores, optimizer_state_bytes

        p, model = self.preset, self.model
        self.final_val = validation_loss(model, self.data.validation, p.device)
        state = optimizer_state_bytes(self.optimizer)
        metrics: dict[str, Any] = {"optimizer_state_bytes": state,
                                   "state_bytes_per_parameter": state / self.parameters}
        if self.data.test:
            metrics["test_loss"] = validation_loss(model, self.data.test, p.device)
            metrics["downstream"] = downstream_scores(model, self.data.test, p.device)
        self.final_metrics = metrics
        if p.save_models and self.study.out is not None and self.study.stage == "eval":
            from .store import RunStore
            from .symbreak_tuning import MODEL_FILE, save_model

            save_model(model, RunStore(self.study.out).run_dir(self.cfg.run_id) / MODEL_FILE)

    def rows(self) -> dict[str, list[Any]]:
        return self._rows


def execute_run(
    cfg: RunConfig, preset: SymbreakPreset, *, data_dir: str | Path | None = None
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Train one run outside a sweep; return ``(rows, manifest)``."""
    return execute(SymbreakStudy(preset, data_dir), cfg)


def resolve_preset(
    name: str | SymbreakPreset,
    *,
    steps: int | None = None,
    seeds: Sequence[int] | None = None,
    optimizers: Sequence[str] | None = None,
    device: str | None = None,
    threads: int | None = None,
    workers: int | None = None,
) -> SymbreakPreset:
    """Preset ``name`` with the given overrides, checked (:class:`SpecError` names the field)."""
    preset = name if isinstance(name, SymbreakPreset) else load_preset(name)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise SpecError(f"steps must be an integer >= 1; got {steps!r}")
        preset = replace(preset, steps=steps)
    if seeds is not None:
        preset = replace(preset, seeds=tuple(int(s) for s in seeds))
    if optimizers is not None:
        preset = replace(preset, optimizers=tuple(optimizers))
    if device is not None:
        preset = replace(preset, device=device)
    if threads is not None:
        if not 1 <= threads <= 1024:
            raise SpecError(f"threads must be in 1..1024, got {threads}")
        preset = replace(preset, threads=threads)
    if workers is not None:
        if not 1 <= workers <= 64:
            raise SpecError(f"workers must be in 1..64, got {workers}")
        preset = replace(preset, workers=workers)
    if preset.device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(
            f"device: preset {preset.name} runs on {preset.device!r}, but CUDA is not available "
            "here; pass device='cpu' (--device cpu) to force the CPU"
        )
    devices = available_devices()
    if ("cuda:0" if preset.device == "cuda" else preset.device) not in devices:
        raise SpecError(
            f"device: {preset.device!r} is not available on this machine; available here: "
            f"{', '.join(map(repr, devices))}"
        )
    check_schedule(preset.schedule, preset.steps)
    plan_runs(preset)  # unknown optimisers are refused before anything runs
    from .symbreak_tuning import check_tuning

    check_tuning(preset)
    return preset


@dataclass(frozen=True)
class SymbreakSummary:
    out: Path
    runs: int
    ran: int
    skipped: int
    failed: int
    diverged: int
    wall_time_s: float
    table: list[dict[str, Any]]


def run_preset(
    name: str | SymbreakPreset,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> SymbreakSummary:
    """Run (or resume) preset ``name`` (a name of :data:`PRESETS` or a :class:`SymbreakPreset`,
    with the overrides of :func:`resolve_preset`) into ``out``; then analyse and write the
    report. Returns the summary with the table rows."""
    from .symbreak_tuning import run_stages

    preset = resolve_preset(name, **overrides)
    check_data_dir(preset, data_dir)
    say = log or (lambda s: None)
    summaries = run_stages(preset, out, data_dir=data_dir, progress=progress, log=say)
    job = ddp.current()
    table = analyse(out, preset_name=preset.name) if job is None or job.is_writer else []
    ran = sum(s.completed + s.diverged + s.failed for s in summaries)
    return SymbreakSummary(Path(out), sum(s.planned for s in summaries), ran,
                           sum(s.skipped for s in summaries), sum(s.failed for s in summaries),
                           sum(s.diverged for s in summaries),
                           sum(s.wall_time_s for s in summaries), table)

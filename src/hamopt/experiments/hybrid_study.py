r"""The hybrid-schedule study on the run engine: Hybrid schedules against AdamW, SGD-momentum and
Leapfrog alone, at equal gradient evaluations, each tuned on the same grid.

A preset (``hybrid-quick``: digits, MLP, CPU; ``hybrid-cpu``: the CIFAR-10 subset, ResNet-20,
CPU) lists **methods**; each is a list of phases (:class:`hamopt.optim.Phase` fields), one phase
for a single optimiser. Every method runs as a :class:`hamopt.Hybrid` (a single optimiser is a
one-phase Hybrid, the same code path), so every run has the same tracker, rows and accounting.

* **Budget.** Every run gets ``budget`` gradient evaluations, counted as closure calls (an
  exact-mode Leapfrog step costs 2, every other step 1). A phase's ``budget`` entry is the
  fraction of the evaluations it gets (rounded to whole rounds); the last phase gets the rest.
  The engine's step is a **round** of :data:`EVALS_PER_ROUND` = 2 evaluations: one exact
  Leapfrog step or two steps of any other optimiser; ``steps`` = ``budget / 2`` rounds.
* **Tuning.** Every method runs at each factor of the preset's ``grid`` (the Hybrid's schedule
  factor: all its phase step sizes times the factor), for every seed: the same grid for every
  method. The analysis picks each method's factor by the mean final loss on a validation split
  held out of the training set (``validation`` rows, a fixed seeded choice), and reports the
  test loss and accuracy of that factor (:mod:`hamopt.experiments.hybrid_report`).
* **Rows** (one per optimiser step): the step, the cumulative gradient evaluations, the phase
  and whether the step ended it, the training loss and the energy record of the step under its
  phase's convention (:class:`hamopt.energy.EnergyTracker` on the Hybrid), and after the first
  round and every ``eval_every`` rounds the test loss and accuracy (on the round's last row).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .engine import Study, StudyRun, run_study
from .spec import SpecError

__all__ = [
    "COLUMNS",
    "EVALS_PER_ROUND",
    "HybridPreset",
    "HybridStudy",
    "PRESET_NAMES",
    "RunConfig",
    "load_preset",
    "plan_runs",
    "preset_text",
    "resolve_preset",
    "run_preset",
]

PRESET_NAMES = ("hybrid-quick", "hybrid-cpu")
EVALS_PER_ROUND = 2
COLUMNS = ("step", "evals", "phase", "switched", "step_size", "loss", "loss_after", "kinetic", "hamiltonian",
           "delta_h_int", "grad_norm", "test_loss", "test_acc", "wall_s")
_INTEGER = {"step", "evals", "phase"}


@dataclass(frozen=True)
class HybridPreset:
    """A study: data, model, budget, grid, seeds and methods (name → list of phase mappings,
    each with an optional ``budget`` fraction of the gradient evaluations)."""

    name: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    batch_size: int
    budget: int
    grid: tuple[float, ...]
    seeds: tuple[int, ...]
    methods: dict[str, list[dict[str, Any]]]
    validation: int
    eval_every: int
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1

    @property
    def steps(self) -> int:
        """Engine steps (rounds of :data:`EVALS_PER_ROUND` gradient evaluations)."""
        return self.budget // EVALS_PER_ROUND


def preset_text(name: str) -> str:
    """The YAML text of hybrid preset ``name``."""
    from importlib import resources

    if name not in PRESET_NAMES:
        raise SpecError(f"preset must be one of {', '.join(map(repr, PRESET_NAMES))}; got {name!r}")
    return resources.files("hamopt.experiments").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")


def load_preset(name: str) -> HybridPreset:
    import yaml

    data = yaml.safe_load(preset_text(name))
    return HybridPreset(**{k: tuple(v) if k in ("grid", "seeds") else v for k, v in data.items()})


# ---------------------------------------------------------------------- phases and plan
def evals_per_step(phase: dict[str, Any]) -> int:
    """Gradient evaluations of one step of ``phase``: 2 for an exact-mode integrator, else 1."""
    from .. import families

    family = families.get(phase["family"])
    mode = family.check_mode(phase.get("mode"))
    return 2 if family.integrator and mode == "exact" else 1


def method_phases(preset: HybridPreset, method: str) -> list[dict[str, Any]]:
    """The method's phases as :class:`~hamopt.optim.Phase` mappings, each phase's ``budget``
    fraction turned into ``steps`` (whole rounds of :data:`EVALS_PER_ROUND` evaluations)."""
    phases = [dict(p) for p in preset.methods[method]]
    rounds_left = preset.steps
    out = []
    for i, p in enumerate(phases):
        frac = p.pop("budget", None)
        if i == len(phases) - 1:
            if frac is not None:
                raise SpecError(f"methods.{method}[{i}].budget: the last phase gets the rest; remove budget")
            out.append(p)
            continue
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise SpecError(f"methods.{method}[{i}].budget: a phase before the last needs a fraction in (0, 1) "
                            f"of the gradient evaluations; got {frac!r}")
        rounds = max(1, round(frac * preset.steps))
        rounds_left -= rounds
        if rounds_left < 1:
            raise SpecError(f"methods.{method}[{i}].budget: the phases before the last use the whole budget")
        out.append({**p, "steps": rounds * EVALS_PER_ROUND // evals_per_step(p)})
    return out


@dataclass(frozen=True)
class RunConfig:
    """One run: a method at one grid factor and seed."""

    run_id: str
    method: str
    factor: float
    seed: int
    phases: list[dict[str, Any]] = field(default_factory=list)


def plan_runs(preset: HybridPreset) -> list[RunConfig]:
    """Seed-major: every method and factor gets seed 0 before any gets seed 1."""
    runs = []
    for seed in preset.seeds:
        for method in preset.methods:
            phases = method_phases(preset, method)
            for factor in preset.grid:
                rid = f"{method.replace('>', '-')}__x{factor:g}__s{seed}"
                runs.append(RunConfig(rid, method, float(factor), int(seed), phases))
    return runs


def preset_dict(preset: HybridPreset) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(preset)))


class HybridStudy(Study):
    """The hybrid-schedule study of one preset."""

    def __init__(self, preset: HybridPreset) -> None:
        self.preset = preset
        self.steps = preset.steps
        self.threads = preset.threads
        self.workers = preset.workers
        self._loaded_data: Any = None

    def identity(self) -> tuple[str, str]:
        """SHA-256 of the preset (less ``threads`` and ``workers``) and its YAML."""
        import yaml

        data = preset_dict(self.preset)
        data.pop("threads")
        data.pop("workers")
        data["study"] = "hybrid"
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()
        return digest, yaml.safe_dump(data, sort_keys=False)

    def schema(self) -> Any:
        import pyarrow as pa

        types = {c: pa.int64() for c in _INTEGER}
        types["switched"] = pa.bool_()
        return pa.schema([(c, types.get(c, pa.float64())) for c in COLUMNS])

    def load(self) -> None:
        if self._loaded_data is None:
            self._loaded_data = load_split(self.preset)

    @property
    def data(self) -> tuple[Any, Any, Any]:
        self.load()
        return self._loaded_data

    def plan(self, store: Any, log: Callable[[str], None]) -> list[RunConfig]:
        return plan_runs(self.preset)

    def start(self, cfg: RunConfig) -> HybridRun:
        return HybridRun(self, cfg)

    def run_manifest(self, cfg: RunConfig, run: StudyRun | None) -> dict[str, Any]:
        from .. import families

        opt = getattr(run, "optimizer", None)
        return {
            "study": "hybrid",
            "preset": self.preset.name,
            "method": cfg.method,
            "factor": cfg.factor,
            "seed": cfg.seed,
            "phases": cfg.phases,
            "budget": self.preset.budget,
            "evals_done": getattr(run, "evals", 0),
            "steps_done": 0 if run is None else len(run.rows()["step"]),
            "final": getattr(run, "final", None),
            "switch_steps": None if opt is None else list(opt.switch_steps),
            "dataset": {**self.preset.dataset,
                        "source": None if self._loaded_data is None else self._loaded_data[0].source},
            "model": self.preset.model,
            "batch_size": self.preset.batch_size,
            "device": self.preset.device,
            **families.get("hybrid").manifest(opt),
        }


def load_split(preset: HybridPreset) -> tuple[Any, Any, Any]:
    """``(train data set without the validation rows, validation x, validation y)``; the
    validation rows are a fixed seeded choice (seed 0) of the training set."""
    from ..data import load_dataset

    d = dict(preset.dataset)
    augment = d.pop("augment", None)
    try:
        data = load_dataset(d.pop("name"), **d)
    except ValueError as exc:
        raise SpecError(f"dataset: {exc}") from None
    n = data.train_size
    if not 0 < preset.validation < n:
        raise SpecError(f"validation: must be in 1..{n - 1} (rows held out of the training set); "
                        f"got {preset.validation}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    val, train = order[: preset.validation], order[preset.validation:].sort().values
    x_val, y_val = data.x_train[val], data.y_train[val]
    data = replace(data, x_train=data.x_train[train], y_train=data.y_train[train],
                   augment=data.augment if augment is None else bool(augment))
    return data, x_val, y_val


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` in eval mode."""
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            xb, yb = x[i:i + 1000].to(device), y[i:i + 1000].to(device)
            out = model(xb)
            total += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    model.train(was)
    return total / len(y), correct / len(y)


class HybridRun(StudyRun):
    """One run in flight: model, batches, the method as a Hybrid, its energy tracker."""

    def __init__(self, study: HybridStudy, cfg: RunConfig) -> None:
        from ..data import BatchStream
        from ..energy import EnergyTracker
        from ..models import build_model
        from ..optim import Hybrid

        self.t0 = time.perf_counter()
        p = self.preset = study.preset
        data, self.x_val, self.y_val = study.data
        self.data = data
        m = p.model
        self.model = build_model(m["name"], num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                                 width=m.get("width"), depth=m.get("depth"), seed=cfg.seed).to(p.device)
        self.model.train()
        self.stream = BatchStream(data, batch_size=p.batch_size, seed=cfg.seed, device=p.device)
        from .drift_setup import optimizer_seed

        self.optimizer = Hybrid(self.model.parameters(), cfg.phases, lr=cfg.factor, seed=optimizer_seed(cfg.seed))
        self.tracker = EnergyTracker(self.optimizer)
        self.evals = 0
        self.final: dict[str, float] | None = None
        self._rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def _one_step(self, t: int) -> float:
        x, y = self.stream.batch(len(self._rows["step"]))
        model = self.model

        def batch_loss() -> torch.Tensor:
            if torch.is_grad_enabled():  # a closure call (with backward); the tracker's
                self.evals += 1          # loss-after pass runs without grad and is not counted
            return F.cross_entropy(model(x), y)

        record = self.tracker.step(batch_loss)
        s = self.optimizer.stats
        row = dict(step=len(self._rows["step"]), evals=self.evals, phase=s["phase"], switched=s["switched"],
                   step_size=record.step_size, loss=record.loss, loss_after=record.loss_after,
                   kinetic=record.kinetic, hamiltonian=record.hamiltonian, delta_h_int=record.delta_h_int,
                   grad_norm=record.grad_norm, test_loss=None, test_acc=None,
                   wall_s=time.perf_counter() - self.t0)
        for k, v in row.items():
            self._rows[k].append(v)
        return record.loss

    def step(self, t: int) -> float:
        """Round ``t``: optimiser steps until ``2(t+1)`` gradient evaluations are spent."""
        loss = float("nan")
        target = (t + 1) * EVALS_PER_ROUND
        while self.evals < target:
            loss = self._one_step(t)
        if (t + 1) % self.preset.eval_every == 0 or t == 0:
            tl, ta = evaluate(self.model, self.data.x_test, self.data.y_test, self.preset.device)
            self._rows["test_loss"][-1], self._rows["test_acc"][-1] = tl, ta
        return loss

    def finish(self) -> None:
        dev = self.preset.device
        tl, ta = evaluate(self.model, self.data.x_test, self.data.y_test, dev)
        vl, va = evaluate(self.model, self.x_val, self.y_val, dev)
        self.final = {"test_loss": tl, "test_acc": ta, "val_loss": vl, "val_acc": va, "evals": self.evals}

    def rows(self) -> dict[str, list[Any]]:
        return self._rows


def resolve_preset(name: str | HybridPreset, *, budget: int | None = None, seeds: Sequence[int] | None = None,
                   grid: Sequence[float] | None = None, methods: Sequence[str] | None = None,
                   device: str | None = None, threads: int | None = None, workers: int | None = None,
                   **dataset: Any) -> HybridPreset:
    """Preset ``name`` with overrides (``dataset`` keys replace the data set's, e.g.
    ``train_size``), checked before anything runs: every method's phases build as a Hybrid."""
    preset = name if isinstance(name, HybridPreset) else load_preset(name)
    if budget is not None:
        preset = replace(preset, budget=budget)
    if seeds is not None:
        preset = replace(preset, seeds=tuple(int(s) for s in seeds))
    if grid is not None:
        preset = replace(preset, grid=tuple(float(g) for g in grid))
    if methods is not None:
        unknown = [m for m in methods if m not in preset.methods]
        if unknown:
            raise SpecError(f"methods: unknown method {unknown[0]!r}; known: {', '.join(preset.methods)}")
        preset = replace(preset, methods={m: preset.methods[m] for m in methods})
    if dataset:
        preset = replace(preset, dataset={**preset.dataset, **dataset})
    for key, value, low, high in (("threads", threads, 1, 1024), ("workers", workers, 1, 64)):
        if value is not None and not low <= value <= high:
            raise SpecError(f"{key} must be in {low}..{high}, got {value}")
    preset = replace(preset, device=device or preset.device, threads=threads or preset.threads,
                     workers=workers or preset.workers)
    from .spec_load import available_devices

    devices = available_devices()
    if ("cuda:0" if preset.device == "cuda" else preset.device) not in devices:
        raise SpecError(f"device: {preset.device!r} is not available on this machine; available here: "
                        f"{', '.join(map(repr, devices))}")
    check_preset(preset)
    return preset


def check_preset(preset: HybridPreset) -> None:
    """Refuse a bad preset with a :class:`SpecError` naming the field, before any compute."""
    from ..optim import Hybrid

    if isinstance(preset.budget, bool) or not isinstance(preset.budget, int) or preset.budget < 2 * EVALS_PER_ROUND:
        raise SpecError(f"budget: must be an integer >= {2 * EVALS_PER_ROUND} (gradient evaluations); "
                        f"got {preset.budget!r}")
    if not preset.grid or any(isinstance(g, bool) or not (isinstance(g, (int, float)) and g > 0) for g in preset.grid):
        raise SpecError(f"grid: must be a non-empty list of factors > 0; got {list(preset.grid)}")
    if not preset.seeds:
        raise SpecError("seeds: must list at least one seed")
    if not preset.eval_every >= 1:
        raise SpecError(f"eval_every: must be >= 1 (rounds); got {preset.eval_every}")
    dummy = [torch.zeros(2, 2, requires_grad=True)]
    for method in preset.methods:
        try:
            Hybrid(dummy, method_phases(preset, method))
        except ValueError as exc:
            raise SpecError(f"methods.{method}: {exc}") from None


@dataclass(frozen=True)
class HybridSummary:
    out: Path
    runs: int
    ran: int
    skipped: int
    failed: int
    diverged: int
    wall_time_s: float
    analysis: Any


def run_preset(name: str | HybridPreset, out: str | Path, *, progress: bool = False,
               log: Callable[[str], None] | None = None, **overrides: Any) -> HybridSummary:
    """Run (or resume) a hybrid preset into ``out``, then analyse it and write its report."""
    from .hybrid_report import analyse

    preset = resolve_preset(name, **overrides)
    summary = run_study(HybridStudy(preset), out, progress=progress, log=log or (lambda s: None))
    analysis = analyse(out)
    ran = summary.completed + summary.diverged + summary.failed
    return HybridSummary(Path(out), summary.planned, ran, summary.skipped, summary.failed, summary.diverged,
                         summary.wall_time_s, analysis)

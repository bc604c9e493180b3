r"""The drift study's setup: its run configs, data, models, step-size calibration and plan.

A run is one optimiser × step size × seed × ablation (:class:`RunConfig`). Step sizes given as
fractions of the stability limit are turned into step sizes by one calibration at initialisation
(:func:`calibrate`, :func:`resolve_step_sizes`); :func:`plan_runs` lays the grid out seed by seed.
With the stability monitor on, :func:`run_schema` adds its columns (:data:`STABILITY_COLUMNS`) and
each run measures on its own fixed :func:`stability_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .spec import ExperimentSpec, OptimizerSpec, SpecError

__all__ = [
    "DTYPES",
    "OPTIMIZER_STREAM",
    "STABILITY_COLUMNS",
    "RunConfig",
    "build",
    "calibrate",
    "has_batch_norm",
    "load_data",
    "needs_calibration",
    "optimizer_seed",
    "plan_runs",
    "resolve_step_sizes",
    "run_id_for",
    "run_schema",
    "stability_batch",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZER_STREAM = 4  # derive_seed word of an optimiser's own generator (data streams use 0-2)
DEFAULT_MASS = {"mass": "fan_in", "mass_clip": (0.125, 8.0)}
# the stability monitor's step columns (null where not measured)
STABILITY_COLUMNS = ("lambda_max", "threshold", "sharpness_ratio")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (the manifest's ``config``)."""

    run_id: str
    optimizer: str
    type: str
    mode: str
    band: str
    step_size: float
    seed: int
    ablation: str
    hyper: dict[str, Any] = field(default_factory=dict)


def run_id_for(name: str, band: str, step_size: float, seed: int, ablation: str) -> str:
    return f"{name}_{band}_{step_size:.6g}_seed{seed}_{ablation}"


def load_data(spec: ExperimentSpec) -> Any:
    from ..data import load_dataset

    d = spec.dataset
    try:
        return load_dataset(d.name, root=d.root, download=d.download, train_size=d.train_size,
                            test_size=d.test_size)
    except ValueError as exc:
        raise SpecError(f"dataset: {exc}") from None


def build(
    spec: ExperimentSpec, dataset: Any, seed: int, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The spec's model, initialised from ``seed``, on the spec's device, in training mode."""
    from ..models import build_model

    m = spec.model
    model = build_model(
        m.name,
        num_classes=dataset.num_classes,
        input_shape=tuple(dataset.input_shape),
        width=m.width,
        depth=m.depth,
        seed=seed,
        channels_last=m.channels_last,
    )
    model = model.to(device=spec.device, dtype=dtype or DTYPES[spec.dtype])
    model.train()
    return model


def has_batch_norm(spec: ExperimentSpec, dataset: Any) -> bool:
    """True when the spec's model has batch-normalisation layers (built once, on the meta device
    where its initialisation allows, without touching the global RNG)."""
    from ..models import build_model

    m = spec.model

    def make() -> torch.nn.Module:
        return build_model(m.name, num_classes=dataset.num_classes,
                           input_shape=tuple(dataset.input_shape), width=m.width, depth=m.depth,
                           seed=0, channels_last=m.channels_last)

    try:
        with torch.device("meta"):
            model = make()
    except (RuntimeError, NotImplementedError):
        model = make()
    return any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in model.modules())


def optimizer_seed(run_seed: int) -> int:
    """The seed of an optimiser's own generator (the ECD bounces) in the run with ``run_seed``:
    ``derive_seed(run_seed, OPTIMIZER_STREAM)``, a stream apart from the model's initialisation
    and the batches, so a run is reproducible bit for bit from its seed alone."""
    from ..data import derive_seed

    return derive_seed(run_seed, OPTIMIZER_STREAM)


def hamiltonian_hyper(spec: ExperimentSpec) -> dict[str, Any]:
    """The mass settings of the spec's first Hamiltonian optimiser (the default mass without one)."""
    from .. import families

    ham = [o for o in spec.optimizers if families.get(o.type).integrator]
    return ham[0].hyper if ham else DEFAULT_MASS


# ---------------------------------------------------------------------- step sizes and plan
def calibration_batch(
    spec: ExperimentSpec, dataset: Any, batch_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import BatchStream

    stream = BatchStream(
        dataset,
        batch_size=min(batch_size or spec.batch_size, len(dataset.y_train)),
        seed=spec.seeds[0],
        augment=False,
        device=spec.device,
    )
    x, y = stream.batch(0)
    return x.to(DTYPES[spec.dtype]), y


def stability_batch(spec: ExperimentSpec, dataset: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch a run's stability monitor measures on: the first batch (no augmentation)
    of a stream seeded by the run's seed, ``stability.batch_size`` rows (the spec's batch size
    when absent)."""
    from ..data import BatchStream

    size = (spec.stability and spec.stability.batch_size) or spec.batch_size
    stream = BatchStream(dataset, batch_size=min(size, len(dataset.y_train)), seed=seed, augment=False,
                         device=spec.device)
    x, y = stream.batch(0)
    return x.to(DTYPES[spec.dtype]), y


def run_schema(spec: ExperimentSpec) -> Any:
    """The Parquet schema of the spec's runs: the drift study's steps, plus
    :data:`STABILITY_COLUMNS` (float64) when the stability monitor is on."""
    import pyarrow as pa

    from .store import steps_schema

    schema = steps_schema()
    if spec.stability is not None:
        for name in STABILITY_COLUMNS:
            schema = schema.append(pa.field(name, pa.float64()))
    return schema


def needs_calibration(spec: ExperimentSpec) -> bool:
    rev = spec.reversibility
    return any(o.stability_fractions is not None for o in spec.optimizers) or (
        rev is not None and rev.stability_fraction is not None
    )


def calibrate(spec: ExperimentSpec, dataset: Any) -> dict[str, Any]:
    """Stability limits at initialisation (seed = first seed, first batch), as plain data."""
    from .calibrate import stability_limits

    hyper = hamiltonian_hyper(spec)
    model = build(spec, dataset, spec.seeds[0])
    x, y = calibration_batch(spec, dataset, spec.calibration.batch_size)
    limits = stability_limits(
        model,
        lambda: F.cross_entropy(model(x), y),
        mass=hyper["mass"],
        mass_clip=tuple(hyper["mass_clip"]),
        iterations=spec.calibration.iterations,
        seed=spec.seeds[0],
    )
    return {
        "lambda_hessian": limits.lambda_hessian,
        "lambda_preconditioned": limits.lambda_preconditioned,
        "dt_limit": limits.dt_limit,
        "iterations": limits.iterations,
        "batch_size": int(x.shape[0]),
        "seed": spec.seeds[0],
        "rule": "dt = f * 2/sqrt(lambda_max(M^-1 H)); lr_sgd = f^2 * 2(1+momentum)/lambda_max(H)",
    }


def resolve_step_sizes(
    spec: ExperimentSpec, calibration: dict[str, Any] | None
) -> dict[str, list[float]]:
    """Literal step sizes per ``name/band``: a stability fraction ``f`` becomes its family's
    ``f^power · limit(λ_max, hyper)`` (:class:`hamopt.families.StabilityRule`), rounded to four
    significant digits."""
    from .. import families

    out: dict[str, list[float]] = {}
    for o in spec.optimizers:
        key = f"{o.name}/{o.band}"
        if o.step_sizes is not None:
            out[key] = list(o.step_sizes)
            continue
        assert calibration is not None
        rule = families.get(o.type).stability
        if rule is None:
            raise SpecError(f"optimizers: type {o.type!r} has no stability rule; give step_sizes")
        lam = calibration[rule.eigenvalue]
        out[key] = [float(f"{rule.step_size(f, lam, o.hyper):.4g}") for f in o.stability_fractions]
    return out


def plan_runs(spec: ExperimentSpec, steps: dict[str, list[float]]) -> list[RunConfig]:
    """Main grid (ablation ``default``, seed by seed), then the extra ablation runs."""

    def cfg(o: OptimizerSpec, s: float, seed: int, ablation: str) -> RunConfig:
        return RunConfig(run_id_for(o.name, o.band, s, seed, ablation), o.name, o.type,
                         o.run_mode, o.band, s, seed, ablation, dict(o.hyper))

    plan: list[RunConfig] = []
    # seed-major order: every optimiser and step size gets its first seed before any gets its
    # second, so a stopped sweep leaves balanced partial results and the optimisers' runs are
    # spread over the same stretch of time (fairer wall-time comparisons on a shared machine)
    for seed in spec.seeds:
        for o in spec.optimizers:
            for s in steps[f"{o.name}/{o.band}"]:
                plan.append(cfg(o, s, seed, "default"))
    a = spec.ablations
    if a is not None:
        o = next(o for o in spec.optimizers if o.name == a.optimizer and o.band == a.band)
        s = steps[f"{o.name}/{o.band}"][a.step_index]
        have = {c.run_id for c in plan}
        for seed in a.seeds:
            for name in a.names:
                c = cfg(o, s, seed, name)
                if c.run_id not in have:
                    plan.append(c)
                    have.add(c.run_id)
    return plan

r"""The sweep runner: one training run per optimiser × step size × seed × ablation.

Every step of every run yields one spec-§6 record (see :mod:`hamopt.experiments.store` for the
columns), built from :class:`hamopt.energy.EnergyTracker`:

* Leapfrog/Euler in exact mode and the baselines: ``ΔH^int_t`` comes from the tracker (the
  integrator's two same-batch evaluations, or the baseline's extra forward pass on ``B_t``);
  ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` and ``ΔH^traj_t = ΔH^int_t + δ_t`` are filled
  when step t+1 evaluates its batch. For the last step one extra forward pass on ``B_T`` closes δ
  and ``ΔH^traj``.
* Leapfrog/Euler in streaming mode (one gradient per step): the optimiser measures the
  trajectory change ``ΔH^traj_t = H_{B_{t+1}}(θ_{t+1}, p_{t+1}) − H_{B_t}(θ_t, p_t)`` itself (its
  p_{t+1} is completed with the next batch's gradient); the runner adds one forward pass on
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
  ``derive_seed(run seed, OPTIMIZER_STREAM)`` (:func:`optimizer_seed`).

A non-finite loss or gradient (:class:`hamopt.NonFiniteError`) ends a run as ``diverged`` at that
step, keeping the rows before it; any other exception ends it as ``failed`` with the error text.
The sweep then goes on with the next run. Completed and diverged runs are skipped when the sweep
is run again on the same directory.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..diagnostics.ablations import Ablation, make_ablation
from ..energy import EnergyTracker, StepRecord
from ..errors import NonFiniteError
from .spec import (
    ECD_TYPES,
    ExperimentSpec,
    OptimizerSpec,
    SpecError,
    ecd_class,
    spec_hash,
    spec_to_yaml,
)
from .store import STEP_COLUMNS, RunStore, atomic_write_text, write_csv

__all__ = [
    "RunConfig",
    "SweepSummary",
    "execute_run",
    "make_optimizer",
    "optimizer_seed",
    "plan_runs",
    "resolve_step_sizes",
    "run_reversibility",
    "run_sweep",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZER_STREAM = 4  # derive_seed word of an optimiser's own generator (data streams use 0-2)


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


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str
    diverged_at_step: int | None
    error: str | None
    rows: int
    wall_time_s: float


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: counts by outcome and the wall time."""

    out: str
    planned: int
    skipped: int
    completed: int
    diverged: int
    failed: int
    wall_time_s: float
    outcomes: tuple[RunOutcome, ...] = ()


def run_id_for(name: str, band: str, step_size: float, seed: int, ablation: str) -> str:
    return f"{name}_{band}_{step_size:.6g}_seed{seed}_{ablation}"


# ---------------------------------------------------------------------- data, model, optimiser
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
    model = model.to(device=spec.device, dtype=dtype or _DTYPES[spec.dtype])
    model.train()
    return model


def optimizer_seed(run_seed: int) -> int:
    """The seed of an optimiser's own generator (the ECD bounces) in the run with ``run_seed``:
    ``derive_seed(run_seed, OPTIMIZER_STREAM)``, a stream apart from the model's initialisation
    and the batches, so a run is reproducible bit for bit from its seed alone."""
    from ..data import derive_seed

    return derive_seed(run_seed, OPTIMIZER_STREAM)


def make_optimizer(cfg: RunConfig, params: Any, device: str = "cpu") -> torch.optim.Optimizer:
    """The optimiser of a run config (baselines use torch's fused kernels where available; the
    ECD optimisers get :func:`optimizer_seed` of the run's seed)."""
    from ..optim import Euler, Leapfrog

    h = cfg.hyper
    lr = cfg.step_size
    if cfg.type in ECD_TYPES:
        return ecd_class(cfg.type)(params, lr=lr, seed=optimizer_seed(cfg.seed), **h)
    if cfg.type in ("leapfrog", "euler"):
        cls = Leapfrog if cfg.type == "leapfrog" else Euler
        return cls(
            params,
            lr=lr,
            mode=cfg.mode,
            gamma=h["gamma"],
            cap=h["cap"],
            mass=h["mass"],
            mass_clip=tuple(h["mass_clip"]),
        )
    fused = device.startswith(("cpu", "cuda"))
    if cfg.type == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=h["momentum"],
            dampening=h["dampening"],
            weight_decay=h["weight_decay"],
            nesterov=h["nesterov"],
            fused=fused,
        )
    cls = torch.optim.AdamW if cfg.type == "adamw" else torch.optim.Adam
    return cls(
        params,
        lr=lr,
        betas=tuple(h["betas"]),
        eps=h["eps"],
        weight_decay=h["weight_decay"],
        amsgrad=h["amsgrad"],
        fused=fused,
    )


# ---------------------------------------------------------------------- step sizes and plan
def _calibration_batch(
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
    return x.to(_DTYPES[spec.dtype]), y


def needs_calibration(spec: ExperimentSpec) -> bool:
    rev = spec.reversibility
    return any(o.stability_fractions is not None for o in spec.optimizers) or (
        rev is not None and rev.stability_fraction is not None
    )


def calibrate(spec: ExperimentSpec, dataset: Any) -> dict[str, Any]:
    """Stability limits at initialisation (seed = first seed, first batch), as plain data."""
    from .calibrate import stability_limits

    ham = [o for o in spec.optimizers if o.type in ("leapfrog", "euler")]
    hyper = ham[0].hyper if ham else {"mass": "fan_in", "mass_clip": (0.125, 8.0)}
    model = build(spec, dataset, spec.seeds[0])
    x, y = _calibration_batch(spec, dataset, spec.calibration.batch_size)
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
    """Literal step sizes per ``name/band`` (fractions turned into step sizes via the calibration)."""
    out: dict[str, list[float]] = {}
    for o in spec.optimizers:
        key = f"{o.name}/{o.band}"
        if o.step_sizes is not None:
            out[key] = list(o.step_sizes)
            continue
        assert calibration is not None
        if o.type in ("leapfrog", "euler"):
            out[key] = [float(f"{f * calibration['dt_limit']:.4g}") for f in o.stability_fractions]
        else:
            lr_c = 2.0 * (1.0 + o.hyper["momentum"]) / calibration["lambda_hessian"]
            out[key] = [float(f"{f * f * lr_c:.4g}") for f in o.stability_fractions]
    return out


def plan_runs(spec: ExperimentSpec, steps: dict[str, list[float]]) -> list[RunConfig]:
    """Main grid (ablation ``default``, seed by seed), then the extra ablation runs."""

    def cfg(o: OptimizerSpec, s: float, seed: int, ablation: str) -> RunConfig:
        return RunConfig(
            run_id_for(o.name, o.band, s, seed, ablation),
            o.name,
            o.type,
            o.run_mode,
            o.band,
            s,
            seed,
            ablation,
            dict(o.hyper),
        )

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


# ---------------------------------------------------------------------- one run
def _versions() -> dict[str, str]:
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    for mod in ("numpy", "pyarrow", "duckdb", "pydantic", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    try:
        from importlib.metadata import version

        out["hamopt"] = version("hamopt")
    except Exception:  # pragma: no cover
        out["hamopt"] = "unknown"
    return out


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
            k_next = (
                None if nxt is None else nxt.kinetic
            )  # K(p_{t+1}) after the cap, as in exact mode
            h_after = (
                None if k_next is None or la is None else k_next + la
            )  # H_{B_t}(θ_{t+1}, p_{t+1})
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


def execute_run(
    cfg: RunConfig,
    spec: ExperimentSpec,
    dataset: Any,
    *,
    on_step: Callable[[int], None] | None = None,
    ablation: Ablation | None = None,
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Train one run; return ``(rows, manifest)``. Never raises for a diverged or failed run."""
    from ..data import BatchStream

    dtype = _DTYPES[spec.dtype]
    ablation = ablation or make_ablation(cfg.ablation, spec.device)
    started = time.time()
    t0 = time.perf_counter()
    records: list[StepRecord] = []
    after: list[float] = []
    final_loss: float | None = None
    status, diverged_at, error = "completed", None, None
    streaming = cfg.mode == "streaming"
    opt: torch.optim.Optimizer | None = None
    try:
        model = build(spec, dataset, cfg.seed)
        stream = BatchStream(
            dataset,
            batch_size=spec.batch_size,
            seed=cfg.seed,
            augment=spec.dataset.augment,
            device=spec.device,
        )
        opt = make_optimizer(cfg, model.parameters(), spec.device)
        tracker = EnergyTracker(opt)
        records = tracker.records

        def batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = stream.batch(t)
            return x.to(dtype), y

        for t in range(spec.steps):
            x, y = batch(t)
            tracker.step(ablation.wrap(lambda x=x, y=y: F.cross_entropy(model(x), y)))
            if streaming:
                with torch.no_grad():
                    after.append(float(F.cross_entropy(model(x), y)))
            ablation.after_step(opt)
            if on_step is not None:
                on_step(1)
        x, y = batch(spec.steps)
        with torch.no_grad():
            final_loss = _finite_or_none(float(F.cross_entropy(model(x), y)))
    except NonFiniteError as exc:
        status, diverged_at, error = "diverged", len(records), str(exc)
    except Exception as exc:  # a failed run is recorded, and the sweep goes on
        status = "failed"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    rows = records_to_rows(list(records), after, final_loss, streaming=streaming)
    wall = time.perf_counter() - t0
    cap_flags = [c for c in rows["cap_engaged"] if c is not None]
    manifest = {
        "run_id": cfg.run_id,
        "config": asdict(cfg),
        "optimizer": cfg.optimizer,
        "type": cfg.type,
        "mode": cfg.mode,
        "band": cfg.band,
        "step_size": cfg.step_size,
        "seed": cfg.seed,
        "ablation": cfg.ablation,
        "dtype": spec.dtype,
        "device": spec.device,
        "threads": torch.get_num_threads(),
        "steps_requested": spec.steps,
        "batch_size": spec.batch_size,
        "dataset": {
            **spec.dataset.model_dump(mode="json"),
            "source": getattr(dataset, "source", None),
        },
        "model": spec.model.model_dump(mode="json"),
        "spec_hash": spec_hash(spec),
        "status": status,
        "status_text": {
            "completed": "completed",
            "diverged": f"diverged at step {diverged_at}",
            "failed": f"failed: {(error or '').splitlines()[0] if error else ''}",
        }[status],
        "diverged_at_step": diverged_at,
        "error": error,
        "cap_engagements": int(sum(cap_flags)),
        "wall_time_s": wall,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": _versions(),
        "delta_h_int_source": {
            "exact": "optimizer (same batch, two gradients)",
            "streaming": "derived: delta_h_traj - resampling",
            "baseline": "extra forward pass on the same batch",
        }[cfg.mode],
    }
    if cfg.type in ECD_TYPES:
        manifest["optimizer_seed"] = optimizer_seed(cfg.seed)
        manifest["energy_convention"] = _convention(opt)
        glob = None if opt is None else opt.global_state
        manifest["ecd"] = None if glob is None else {
            "steps": int(glob["step"]),
            "skipped_steps": int(glob["skipped_steps"]),
            "bounces": int(glob["bounces"]),
        }
    return rows, manifest


def _convention(opt: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    """The registered energy convention of ``opt`` as plain data (None without an optimiser)."""
    if opt is None:
        return None
    from ..energy import convention_for, is_displacement_form, label

    conv = convention_for(opt)
    return {
        "name": conv.name,
        "label": label(opt),
        "displacement_form": bool(is_displacement_form(opt)),
        "description": conv.description,
    }


# ---------------------------------------------------------------------- reversibility
def run_reversibility(spec: ExperimentSpec, dataset: Any, dt: float) -> list[dict[str, Any]]:
    """Leapfrog vs Euler round trips (γ = 0, no cap, exact mode, one fixed batch) per dtype and N."""
    from ..data import BatchStream
    from ..diagnostics import round_trip
    from ..optim import Euler, Leapfrog

    rev = spec.reversibility
    assert rev is not None
    ham = [o for o in spec.optimizers if o.type in ("leapfrog", "euler")]
    hyper = ham[0].hyper if ham else {"mass": "fan_in", "mass_clip": (0.125, 8.0)}
    stream = BatchStream(
        dataset,
        batch_size=min(rev.batch_size or spec.batch_size, len(dataset.y_train)),
        seed=spec.seeds[0],
        augment=False,
        device=spec.device,
    )
    x0, y = stream.batch(0)
    out = []
    for dname in rev.dtypes:
        dtype = _DTYPES[dname]
        x = x0.to(dtype)
        for cls in (Leapfrog, Euler):
            for n in rev.steps:
                model = build(spec, dataset, spec.seeds[0], dtype=dtype)
                params = [p for p in model.parameters() if p.requires_grad]
                t0 = time.perf_counter()
                rt = round_trip(
                    lambda ps, cls=cls: cls(
                        ps,
                        lr=dt,
                        gamma=0.0,
                        cap=None,
                        mode="exact",
                        mass=hyper["mass"],
                        mass_clip=tuple(hyper["mass_clip"]),
                    ),
                    params,
                    lambda model=model, x=x: F.cross_entropy(model(x), y),
                    steps=n,
                )
                out.append(
                    {
                        "integrator": rt.integrator.lower(),
                        "dtype": rt.dtype,
                        "steps": rt.steps,
                        "dt": rt.dt,
                        "theta_error": rt.theta_error,
                        "momentum_error": rt.momentum_error,
                        "wall_time_s": time.perf_counter() - t0,
                    }
                )
    return out


# ---------------------------------------------------------------------- the sweep
def _run_and_commit(
    cfg: RunConfig, spec: ExperimentSpec, dataset: Any, store: RunStore,
    on_step: Callable[[int], None] | None = None,
) -> RunOutcome:
    store.begin(cfg.run_id)
    rows, manifest = execute_run(cfg, spec, dataset, on_step=on_step)
    store.commit(cfg.run_id, rows, manifest)
    return RunOutcome(cfg.run_id, manifest["status"], manifest["diverged_at_step"], manifest["error"],
                      len(rows["step"]), manifest["wall_time_s"])


_WORKER: dict[str, Any] = {}


def _worker_init(spec_json: str, out: str) -> None:
    spec = ExperimentSpec.model_validate_json(spec_json)
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    _WORKER.update(spec=spec, dataset=load_data(spec), store=RunStore(out))


def _worker_run(cfg: RunConfig) -> RunOutcome:
    return _run_and_commit(cfg, _WORKER["spec"], _WORKER["dataset"], _WORKER["store"])


def _run_parallel(spec: ExperimentSpec, store: RunStore, todo: list[RunConfig], bar: Any,
                  finished: Callable[[RunOutcome, int], None]) -> None:
    """Independent runs in ``spec.workers`` processes (spawned; each loads the data once).

    Every run is self-contained (its own seed, model, batches), so its series do not depend on
    which process ran it; each process uses ``spec.threads`` threads.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(spec.workers, len(todo)), mp_context=ctx,
                             initializer=_worker_init,
                             initargs=(spec.model_dump_json(), str(store.root))) as pool:
        futures = {pool.submit(_worker_run, cfg): i for i, cfg in enumerate(todo)}
        for fut in as_completed(futures):
            outcome = fut.result()
            if bar is not None:
                bar.update(spec.steps)
            finished(outcome, futures[fut])


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the lab extra
        return None
    return tqdm(
        total=total,
        unit="step",
        dynamic_ncols=True,
        smoothing=0.05,
        mininterval=0.5,
        desc="sweep",
        file=sys.stderr,
    )


def run_sweep(
    spec: ExperimentSpec,
    out: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    dataset: Any = None,
) -> SweepSummary:
    """Run every planned run not yet done in ``out``; write manifests, steps, reversibility."""
    import yaml

    say = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    store = RunStore(out)
    h = spec_hash(spec)
    store.check(h)  # refuse a bad --out before loading anything
    if dataset is None:
        dataset = load_data(spec)  # missing data fails here, before anything is written
    store.prepare(h, spec_to_yaml(spec))
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)

    calib = None
    calib_file = store.root / "calibration.json"
    if needs_calibration(spec):
        if calib_file.exists():
            calib = json.loads(calib_file.read_text(encoding="utf-8"))
        else:
            calib = calibrate(spec, dataset)
            atomic_write_text(calib_file, json.dumps(calib, indent=2))
            say(
                f"calibration: lambda_max(M^-1 H) = {calib['lambda_preconditioned']:.4g}, "
                f"dt_c = {calib['dt_limit']:.4g}, lambda_max(H) = {calib['lambda_hessian']:.4g}"
            )
    steps = resolve_step_sizes(spec, calib)
    resolved = {"resolved_step_sizes": steps, "spec_hash": h}
    if calib is not None:
        resolved["stability_calibration"] = calib
    atomic_write_text(
        store.root / "spec.yaml", spec_to_yaml(spec) + yaml.safe_dump(resolved, sort_keys=False)
    )

    plan = plan_runs(spec, steps)
    todo = [c for c in plan if not store.is_done(c.run_id)]
    skipped = len(plan) - len(todo)
    if skipped:
        say(
            f"{skipped} of {len(plan)} runs already done in {store.root}; running the other {len(todo)}"
        )
    bar = _progress(len(todo) * spec.steps, progress)
    done: list[tuple[int, RunOutcome]] = []

    def finished(outcome: RunOutcome, index: int) -> None:
        done.append((index, outcome))
        if bar is not None:
            bar.set_postfix_str(f"run {len(done)}/{len(todo)} {outcome.run_id}", refresh=False)
        if outcome.status == "failed":
            say(f"run {outcome.run_id} failed: {(outcome.error or '').splitlines()[0]}")

    try:
        if spec.workers > 1 and len(todo) > 1:
            _run_parallel(spec, store, todo, bar, finished)
        else:
            for i, cfg in enumerate(todo):
                if bar is not None:
                    bar.set_postfix_str(f"run {i + 1}/{len(todo)} {cfg.run_id}", refresh=False)
                on_step = None if bar is None else bar.update
                outcome = _run_and_commit(cfg, spec, dataset, store, on_step)
                if bar is not None and outcome.rows < spec.steps:
                    bar.update(spec.steps - outcome.rows)
                finished(outcome, i)
    finally:
        if bar is not None:
            bar.close()

    rev_file = store.root / "reversibility.csv"
    if spec.reversibility is not None and not rev_file.exists():
        rev = spec.reversibility
        dt = rev.dt if rev.dt is not None else rev.stability_fraction * calib["dt_limit"]
        say(f"reversibility: Leapfrog vs Euler, dt={dt:.4g}, N in {rev.steps}, {rev.dtypes}")
        write_csv(rev_file, run_reversibility(spec, dataset, dt))
    outcomes = [o for _, o in sorted(done, key=lambda d: d[0])]
    count = {s: sum(o.status == s for o in outcomes) for s in ("completed", "diverged", "failed")}
    return SweepSummary(
        str(store.root),
        len(plan),
        skipped,
        count["completed"],
        count["diverged"],
        count["failed"],
        time.perf_counter() - t_start,
        tuple(outcomes),
    )

r"""The lab's run engine: the one loop that every study (drift, symmetry breaking, ...) runs on.

A study (:class:`Study`) supplies only what is specific to it: its identity (spec hash and YAML),
its shared data, its plan (a list of run configs with a ``run_id``), the per-run setup
(:meth:`Study.start` → a :class:`StudyRun` that trains step ``t`` and returns its loss), its
rows, manifest fields and Parquet schema. The engine (:func:`run_study`) does the rest, the same
way for every study:

* **plan and resume** — the plan is recorded in the store; a run already ``completed`` or
  ``diverged`` with readable steps is skipped, a ``failed`` run and a run killed in flight are
  redone (:meth:`~hamopt.experiments.store.RunStore.is_done`);
* **spec-hash guard** — a directory holding another spec's results is refused before anything
  is loaded or written (:meth:`~hamopt.experiments.store.RunStore.check`);
* **divergence** — a run is ``diverged`` at step ``t`` when its loss or gradient goes non-finite
  (the optimiser or tracker raises :class:`hamopt.NonFiniteError` before recording step ``t``:
  the rows before ``t`` are kept) or when the loss the study reports for step ``t`` is
  non-finite or explodes, ``L_t > divergence_factor · |L_0|`` (default
  :data:`DIVERGENCE_FACTOR` = 10³; the rows up to and including ``t`` are kept and the run stops
  there). Any other exception makes
  the run ``failed`` with the error text; the sweep goes on with the next run;
* **commit** — rows then manifest, atomically, through :class:`~hamopt.experiments.store.RunStore`;
* **workers and threads** — ``study.workers`` spawned processes (each loads the shared data once,
  each run is self-contained so its series do not depend on the process; they die with the
  sweep, :mod:`.local_pool`); a batched sweep on the CPU with one thread instead forks
  ``workers − 1`` helpers beside this process (:mod:`.lanes`); ``study.threads`` torch threads
  per process;
* **backends** — the local one above, or Ray (``backend=RayOptions(...)``, :mod:`.ray_backend`):
  each run a Ray task with declared CPUs/GPUs, committed here through the same store;
* **torchrun** — under ``torchrun --nproc-per-node N`` every run is one DDP job over the N ranks
  (:mod:`.ddp`): the plan is made and written by rank 0 and sent to the others, all ranks train
  each run together, rank 0 alone commits, logs and shows progress;
* **replicas** — a study may group runs into batches trained as one vectorised computation
  (:meth:`Study.replica_batches`, :meth:`Study.run_batch`; the drift study: :mod:`hamopt.replicas.lab`);
* **progress** — one bar over all the steps still to run (``progress=False`` for none).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import NonFiniteError, OptionError, UserError
from . import ddp
from .provenance import versions
from .store import RunStore

__all__ = [
    "DIVERGENCE_FACTOR",
    "RunOutcome",
    "Study",
    "StudyRun",
    "SweepSummary",
    "execute",
    "explosion",
    "run_and_commit",
    "run_manifest",
    "run_study",
    "sweep_backend",
]

DIVERGENCE_FACTOR = 1e3
"""A run whose training loss exceeds this multiple of its initial loss is ``diverged``."""


class StudyRun(ABC):
    """One run in flight: the model, data and optimiser a study set up for a run config."""

    @abstractmethod
    def step(self, t: int) -> float:
        """Train step ``t``; return its training loss ``L_t`` (before the step's update)."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """After the last step of a run that did not diverge (e.g. one closing forward pass)."""

    @abstractmethod
    def rows(self) -> dict[str, list[Any]]:
        """The per-step rows so far, column → list (also called after a divergence)."""


class Study(ABC):
    """What makes a study: identity, data, plan, per-run setup, manifest fields and schema.

    Attributes read by the engine: ``steps`` (steps per run), ``threads`` (torch threads or None),
    ``workers`` (processes), ``divergence_factor``, ``device`` (where a run computes: picks the
    torchrun backend and the GPUs a Ray task asks for by default).
    """

    steps: int
    threads: int | None = None
    workers: int = 1
    divergence_factor: float = DIVERGENCE_FACTOR
    device: str = "cpu"

    @abstractmethod
    def identity(self) -> tuple[str, str]:
        """``(spec_hash, spec_yaml)``: what the spec-hash guard compares and what is stored."""

    @abstractmethod
    def schema(self) -> Any:
        """The pyarrow schema of a run's ``steps.parquet``."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load what every run shares (the data set); called once per process."""

    @abstractmethod
    def plan(self, store: RunStore, log: Callable[[str], None]) -> list[Any]:
        """The run configs in order (each with a ``run_id``); may write study files to ``store``."""

    @abstractmethod
    def start(self, cfg: Any) -> StudyRun:
        """Set up one run (model, data stream, optimiser)."""

    @abstractmethod
    def run_manifest(self, cfg: Any, run: StudyRun | None) -> dict[str, Any]:
        """The study's manifest fields of a run (``run`` is None when its setup failed)."""

    # True when after_runs reads nothing the runs write: batched sweeps may then run it beside them
    after_runs_independent: bool = False
    # after_runs' estimated cost in the units of unit_cost (orders the work of a batched sweep's processes)
    after_runs_cost: float = 1.0

    def unit_cost(self, cfgs: list[Any]) -> float:
        """A rough estimate of the wall time of training ``cfgs`` (one batch of
        :meth:`replica_batches`, or one run alone), relative to other units of the same study:
        a batched sweep's processes take the costliest units first (:mod:`.lanes`). The
        default: the number of runs."""
        return float(len(cfgs))

    def after_runs(self, store: RunStore, log: Callable[[str], None]) -> None:  # noqa: B027
        """After the runs (e.g. the drift study's reversibility table)."""

    def replica_batches(self, todo: list[Any]) -> list[list[Any]]:
        """The runs still to do, grouped into batches trained together as replicas of one
        vectorised computation (:mod:`hamopt.replicas`); the default: every run alone."""
        return [[cfg] for cfg in todo]

    def run_batch(self, cfgs: list[Any], store: RunStore, on_step: Callable[[int], None] | None,
                  finished: Callable[[RunOutcome, Any], None]) -> None:
        """Train ``cfgs`` (one batch of :meth:`replica_batches`) together and commit each run,
        calling ``finished(outcome, cfg)`` as each one ends. Only studies that batch implement it."""
        raise NotImplementedError(f"the {type(self).__name__} does not batch runs")

    def check_world(self, world_size: int) -> None:
        """Refuse (a :class:`~hamopt.errors.UserError`) what cannot run as a DDP job over
        ``world_size`` ranks; called under torchrun before anything is written. A study that
        does not override it cannot run under torchrun."""
        raise OptionError(f"the {type(self).__name__} runs in one process; it cannot run under "
                          "torchrun")

    def __getstate__(self) -> dict[str, Any]:
        """Worker processes get the study without its loaded data (:meth:`load` reloads it)."""
        return {k: None if k.startswith("_loaded") else v for k, v in self.__dict__.items()}


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


def explosion(loss: float, initial: float, factor: float) -> str | None:
    """Why a finite loss ends its run as ``diverged`` (``L_t > factor · |L_0|``), or None."""
    limit = factor * abs(initial)
    return f"loss {loss:.4g} > {factor:g} x initial loss {initial:.4g}" if limit > 0 and loss > limit else None


def execute(
    study: Study, cfg: Any, *, on_step: Callable[[int], None] | None = None
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Train one run; return ``(rows, manifest)``. Never raises for a diverged or failed run."""
    started = time.time()
    t0 = time.perf_counter()
    run: StudyRun | None = None
    status, diverged_at, error, reason = "completed", None, None, None
    try:
        run = study.start(cfg)
        initial = None
        for t in range(study.steps):
            loss = float(run.step(t))
            if on_step is not None:
                on_step(1)
            initial = loss if initial is None else initial
            if not math.isfinite(loss):
                status, diverged_at, reason = "diverged", t, f"non-finite loss {loss!r}"
                break
            reason = explosion(loss, initial, study.divergence_factor)
            if reason is not None:
                status, diverged_at = "diverged", t
                break
        else:
            run.finish()
    except NonFiniteError as exc:
        rows_done = 0 if run is None else len(run.rows().get("step", []))
        status, diverged_at, error, reason = "diverged", rows_done, str(exc), str(exc)
    except Exception as exc:  # a failed run is recorded, and the sweep goes on
        status = "failed"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    rows = {"step": []} if run is None else run.rows()
    manifest = run_manifest(study, cfg, run, status=status, diverged_at=diverged_at, error=error,
                            reason=reason, wall_time_s=time.perf_counter() - t0, started=started)
    return rows, manifest


def run_manifest(study: Study, cfg: Any, run: StudyRun | None, *, status: str, diverged_at: int | None,
                 error: str | None, reason: str | None, wall_time_s: float, started: float) -> dict[str, Any]:
    """The manifest of one run that ended with ``status`` (the engine's fields, then the study's)."""
    text = {
        "completed": "completed",
        "diverged": f"diverged at step {diverged_at}",
        "failed": f"failed: {(error or '').splitlines()[0] if error else ''}",
    }[status]
    spec_hash, _ = study.identity()
    manifest = {
        "run_id": cfg.run_id,
        "config": asdict(cfg) if is_dataclass(cfg) else dict(cfg.__dict__),
        "threads": torch.get_num_threads(),
        "steps_requested": study.steps,
        "spec_hash": spec_hash,
        "status": status,
        "status_text": text,
        "diverged_at_step": diverged_at,
        "divergence_factor": study.divergence_factor,
        "divergence_reason": reason,
        "error": error,
        "wall_time_s": wall_time_s,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": versions(),
    }
    job = ddp.current()
    manifest.update(job.manifest() if job is not None
                    else {"world_size": 1, "distributed_backend": None})
    manifest.update(study.run_manifest(cfg, run))
    return manifest


def run_and_commit(
    study: Study, cfg: Any, store: RunStore, on_step: Callable[[int], None] | None = None
) -> RunOutcome:
    """Train one run and commit it (rows, then the manifest) to ``store``."""
    store.begin(cfg.run_id)
    rows, manifest = execute(study, cfg, on_step=on_step)
    store.commit(cfg.run_id, rows, manifest)
    return outcome_of(cfg, rows, manifest)


def outcome_of(cfg: Any, rows: dict[str, list[Any]], manifest: dict[str, Any]) -> RunOutcome:
    """The :class:`RunOutcome` of a run executed into ``(rows, manifest)``."""
    return RunOutcome(cfg.run_id, manifest["status"], manifest["diverged_at_step"],
                      manifest["error"], len(rows["step"]), manifest["wall_time_s"])


_BACKEND: contextvars.ContextVar[Any] = contextvars.ContextVar("hamopt_sweep_backend",
                                                                default=None)


@contextlib.contextmanager
def sweep_backend(backend: Any) -> Iterator[None]:
    """Within the block, :func:`run_study` calls that name no ``backend`` use ``backend``
    (None: the local one; a :class:`~hamopt.experiments.ray_backend.RayOptions`: Ray). This is
    how a command line reaches the sweep of a study that is started deeper down."""
    token = _BACKEND.set(backend)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the lab extra
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True, smoothing=0.05, mininterval=0.5,
                desc="sweep", file=sys.stderr)


def run_study(
    study: Study,
    out: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    backend: Any = None,
) -> SweepSummary:
    """Run every planned run of ``study`` not yet done in ``out`` (see the module docstring).

    ``backend``: None for the local one (``study.workers`` processes), or a
    :class:`~hamopt.experiments.ray_backend.RayOptions` for Ray; when None, the one set by
    :func:`sweep_backend` applies. Under torchrun the runs are DDP jobs over the ranks (every
    rank returns the same summary; rank 0 alone has written the store).
    """
    say = log or (lambda s: print(s, file=sys.stderr))
    backend = backend if backend is not None else _BACKEND.get()
    t_start = time.perf_counter()
    store = RunStore(out, schema=study.schema())
    job = ddp.setup(study.device)
    if job is not None:
        _check_job(study, job, backend)
        if not job.is_writer:
            say = lambda s: None  # noqa: E731 - rank 0 speaks for the job
            progress = False
    threads_before = torch.get_num_threads()
    if study.threads is not None:
        torch.set_num_threads(study.threads)
    try:
        return _sweep(study, store, say, progress, t_start, backend, job)
    finally:
        torch.set_num_threads(threads_before)


def _check_job(study: Study, job: ddp.DistributedRun, backend: Any) -> None:
    if study.workers > 1:
        raise OptionError(f"workers: {study.workers} worker processes cannot run under torchrun "
                          f"(its {job.world_size} ranks run each run together); use --workers 1")
    if backend is not None:
        raise OptionError("--backend ray cannot run under torchrun; use --backend local")
    study.check_world(job.world_size)


def _prepare(study: Study, store: RunStore, say: Callable[[str], None]) -> tuple[list[Any], list[Any]]:
    """Guard, load, write the spec and the plan; return ``(plan, runs still to do)``."""
    spec_hash, spec_yaml = study.identity()
    store.check(spec_hash)  # refuse a bad --out before loading anything
    study.load()  # missing data fails here, before anything is written
    store.prepare(spec_hash, spec_yaml)
    plan = study.plan(store, say)
    store.write_plan([c.run_id for c in plan])
    return plan, [c for c in plan if not store.is_done(c.run_id)]


def _prepare_job(study: Study, store: RunStore, say: Callable[[str], None],
                 job: ddp.DistributedRun) -> tuple[list[Any], list[Any]]:
    """:func:`_prepare` on rank 0, its result (or its error) sent to every rank."""
    if job.is_writer:
        try:
            result = _prepare(study, store, say)
        except Exception as exc:
            job.broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
        job.broadcast(("plan", result))
        return result
    kind, result = job.broadcast(None)
    if kind == "error":
        raise UserError(f"rank 0 stopped before the runs: {result}")
    study.load()
    return result


def _sweep(study: Study, store: RunStore, say: Callable[[str], None], progress: bool,
           t_start: float, backend: Any, job: ddp.DistributedRun | None) -> SweepSummary:
    plan, todo = _prepare(study, store, say) if job is None else _prepare_job(study, store, say, job)
    skipped = len(plan) - len(todo)
    if skipped:
        say(f"{skipped} of {len(plan)} runs already done in {store.root}; "
            f"running the other {len(todo)}")
    bar = _progress(len(todo) * study.steps, progress)
    done: list[tuple[int, RunOutcome]] = []

    def finished(outcome: RunOutcome, index: int) -> None:
        done.append((index, outcome))
        if bar is not None:
            bar.set_postfix_str(f"run {len(done)}/{len(todo)} {outcome.run_id}", refresh=False)
        if outcome.status == "failed":
            say(f"run {outcome.run_id} failed: {(outcome.error or '').splitlines()[0]}")

    batches = study.replica_batches(todo) if backend is None and job is None else [[c] for c in todo]
    batched = any(len(b) > 1 for b in batches)
    if batched:
        say(f"replicas: {len(todo)} runs in {len(batches)} batches "
            f"({', '.join(str(len(b)) for b in batches)} replicas)")
    try:
        if batched:
            from .lanes import run_batches

            run_batches(study, store, todo, batches, bar, finished, say)
        elif backend is not None and todo:
            from .ray_backend import run_on_ray

            run_on_ray(study, store, todo, bar, finished, backend, say)
        elif study.workers > 1 and len(todo) > 1:
            from .local_pool import run_in_local_pool

            run_in_local_pool(study, store, todo, bar, finished)
        else:
            _run_serial(study, store, todo, bar, finished, job)
    finally:
        if bar is not None:
            bar.close()
    if job is not None:  # the ranks part here; rank 0 finishes alone, in one process
        job.barrier()
        ddp.close()
    if job is None or job.is_writer:
        study.after_runs(store, say)
    outcomes = [o for _, o in sorted(done, key=lambda d: d[0])]
    count = {s: sum(o.status == s for o in outcomes) for s in ("completed", "diverged", "failed")}
    return SweepSummary(str(store.root), len(plan), skipped, count["completed"],
                        count["diverged"], count["failed"], time.perf_counter() - t_start,
                        tuple(outcomes))


def _run_serial(study: Study, store: RunStore, todo: list[Any], bar: Any,
                finished: Callable[[RunOutcome, int], None], job: ddp.DistributedRun | None) -> None:
    """One run after the other in this process (under torchrun: every rank trains each run,
    rank 0 commits it)."""
    for i, cfg in enumerate(todo):
        if bar is not None:
            bar.set_postfix_str(f"run {i + 1}/{len(todo)} {cfg.run_id}", refresh=False)
        on_step = None if bar is None else bar.update
        if job is None:
            outcome = run_and_commit(study, cfg, store, on_step)
        else:
            if job.is_writer:
                store.begin(cfg.run_id)
            rows, manifest = execute(study, cfg, on_step=on_step)
            if job.is_writer:
                store.commit(cfg.run_id, rows, manifest)
            outcome = outcome_of(cfg, rows, manifest)
        if bar is not None and outcome.rows < study.steps:
            bar.update(study.steps - outcome.rows)
        finished(outcome, i)

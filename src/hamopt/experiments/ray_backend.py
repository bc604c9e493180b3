r"""The Ray backend of a sweep: each run a Ray task with declared resources.

``hamopt sweep SPEC --out DIR --backend ray [--address ADDR] [--cpus-per-run C]
[--gpus-per-run G]`` (and the same for ``hamopt reproduce``) runs every run still to do as one
Ray task asking for ``C`` CPUs and ``G`` GPUs. A task trains its run exactly as the serial sweep
does (:func:`~hamopt.experiments.engine.execute`: each run is self-contained, seeded from its
config, with the study's torch threads) and returns its rows and manifest; the driver commits
them through the sweep's :class:`~hamopt.experiments.store.RunStore` as the results come in. So
everything the store guarantees holds unchanged: the spec-hash guard, idempotent commits, resume
(a run is skipped once committed; a run lost with the driver is redone), and the series are bit
for bit those of a serial sweep. Only the driver writes, so the cluster's nodes need no shared
file system — but they need hamopt (with the ``lab`` extra) and the study's data where the spec
says.

* Without ``--address`` a local Ray instance is started for the sweep (all this machine's CPUs
  and GPUs) and shut down after it; its processes end with the driver even when the driver is
  killed (Ray's workers fate-share with the raylet, and :mod:`.orphan_reaper` ends what Ray
  itself leaves behind). A Ray instance the calling program already started is used as it is.
* ``--address ADDR`` joins a running cluster (``auto``, or ``HOST:PORT`` of its head, or a
  ``ray://HOST:10001`` client address), which is left running.

Defaults: ``C`` = the study's ``threads`` (1 when unset; a task uses ``C`` torch threads unless
the study fixes ``threads``), ``G`` = 1 for a study on a CUDA device, else 0.

Ray is the optional extra ``hamopt[ray]``; without it ``--backend ray`` stops with an error that
names the extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionError

if TYPE_CHECKING:
    from .engine import RunOutcome, Study
    from .store import RunStore

__all__ = ["BACKENDS", "RayOptions", "require_ray", "run_on_ray"]

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """Where the Ray tasks run and what each asks for (None: the defaults above)."""

    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None

    def __post_init__(self) -> None:
        for name, value, top in (("--cpus-per-run", self.cpus_per_run, 1024),
                                 ("--gpus-per-run", self.gpus_per_run, 64)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                    value) or not 0 <= value <= top or (name == "--cpus-per-run" and value == 0):
                low = "more than 0" if name == "--cpus-per-run" else "0"
                raise OptionError(f"{name} must be a number from {low} to {top}, got {value!r}")
        if self.address is not None and not self.address.strip():
            raise OptionError("--address must name a Ray cluster (auto, HOST:PORT or "
                              "ray://HOST:PORT), got an empty string")

    def resources(self, study: Study) -> tuple[float, float]:
        """``(CPUs, GPUs)`` each run's task asks for."""
        cpus = self.cpus_per_run if self.cpus_per_run is not None else float(study.threads or 1)
        if self.gpus_per_run is not None:
            gpus = self.gpus_per_run
        else:
            gpus = 1.0 if str(getattr(study, "device", "cpu")).startswith("cuda") else 0.0
        return cpus, gpus


def require_ray() -> Any:
    """The ``ray`` module, or an error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise OptionError("--backend ray needs Ray, which is not installed; install the extra: "
                          "pip install 'hamopt[ray]'") from None
    return ray


# --------------------------------------------------------------------------- in the task
_LOADED: dict[str, Any] = {}


def _execute_task(study: Study, cfg: Any, threads: int) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """One run in a Ray worker. The study's shared data is loaded once per worker process and
    kept for the next task of the same spec."""
    import torch

    from .engine import execute

    key = study.identity()[0]
    cached = _LOADED.get(key)
    if cached is not None:  # the study's loaded data (attributes ``_loaded*``) from a prior task
        for name, value in vars(cached).items():
            if name.startswith("_loaded"):
                setattr(study, name, value)
    study.load()
    _LOADED.clear()
    _LOADED[key] = study
    torch.set_num_threads(threads)
    return execute(study, cfg)


# --------------------------------------------------------------------------- in the driver
def _connect(ray: Any, options: RayOptions, say: Callable[[str], None]) -> Any:
    """Join or start Ray; return the watchdog of a local instance started here (else None),
    or False when Ray was running already (then it is left as it is)."""
    if ray.is_initialized():
        return False
    if options.address is not None:
        try:
            ray.init(address=options.address, log_to_driver=False)
        except ConnectionError as exc:
            raise OptionError(f"--address: no Ray cluster at {options.address!r} ({exc})") from None
        say(f"ray: joined the cluster at {options.address}")
        return None
    from .orphan_reaper import start_reaper

    reaper = start_reaper()
    try:
        ray.init(include_dashboard=False, log_to_driver=False)
    except BaseException:
        from .orphan_reaper import stop_reaper

        stop_reaper(reaper)  # it ends whatever the failed start left behind
        raise
    say(f"ray: started a local instance ({int(ray.cluster_resources().get('CPU', 0))} CPUs)")
    return reaper


def run_on_ray(study: Study, store: RunStore, todo: list[Any], bar: Any,
               finished: Callable[[RunOutcome, int], None], options: RayOptions,
               say: Callable[[str], None]) -> None:
    """Run ``todo`` as Ray tasks; commit each run through ``store`` and call ``finished``."""
    from .engine import RunOutcome, outcome_of

    ray = require_ray()
    reaper = _connect(ray, options, say)
    try:
        cpus, gpus = options.resources(study)
        available = ray.cluster_resources()
        for kind, need in (("CPU", cpus), ("GPU", gpus)):
            if need > available.get(kind, 0):
                raise OptionError(f"--{kind.lower()}s-per-run {need:g}: the Ray cluster has "
                                  f"{available.get(kind, 0):g} {kind}s in all")
        threads = study.threads or max(1, int(cpus))
        task = ray.remote(_execute_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        study_ref = ray.put(study)  # sent once, without its loaded data
        pending = {task.remote(study_ref, cfg, threads): i for i, cfg in enumerate(todo)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            cfg = todo[i]
            try:
                rows, manifest = ray.get(ready[0])
            except Exception as exc:  # the task's process was lost: nothing is committed
                outcome = RunOutcome(cfg.run_id, "failed", None,
                                     f"Ray task lost: {type(exc).__name__}: {exc}", 0, 0.0)
            else:
                store.begin(cfg.run_id)
                store.commit(cfg.run_id, rows, manifest)
                outcome = outcome_of(cfg, rows, manifest)
            if bar is not None:
                bar.update(study.steps)
            finished(outcome, i)
    finally:
        if reaper is not False:
            ray.shutdown()
            if reaper is not None:
                from .orphan_reaper import stop_reaper

                stop_reaper(reaper)

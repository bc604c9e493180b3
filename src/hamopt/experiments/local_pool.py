r"""The local backend's worker processes (``--workers N``), which never outlive the sweep.

``N`` spawned processes each load the study's shared data once and run whole runs, committing
each through their own :class:`~hamopt.experiments.store.RunStore` on the sweep directory
(every run is self-contained, so its series do not depend on the process that ran it).

No orphans: a worker dies with the process that started it, even when that process is killed
with SIGKILL (which it cannot catch). On Linux each worker asks the kernel for SIGKILL when its
parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes); on every platform a daemon
thread also polls the parent's pid every :data:`PARENT_POLL_S` seconds and ends the worker when
the parent is gone (the worker is re-parented, so ``os.getppid()`` changes). A run that was in
flight has no manifest, so the next sweep on the directory redoes it from scratch.

With batched replicas (:func:`run_batches_in_local_pool`) the unit of work is a batch (or a run
that runs alone), largest first; a study whose :meth:`~hamopt.experiments.engine.Study.after_runs`
does not read the runs (``after_runs_independent``, e.g. the drift study's reversibility table)
has it done by a worker beside the batches.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .store import RunStore

if TYPE_CHECKING:
    from .engine import RunOutcome, Study

__all__ = ["PARENT_POLL_S", "die_with_parent", "run_batches_in_local_pool", "run_in_local_pool"]

PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(PARENT_POLL_S)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) dies: the kernel's parent-death signal
    where there is one, and a polling thread everywhere."""
    _parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="hamopt-parent-watch",
                     daemon=True).start()


_WORKER: dict[str, Any] = {}


def _worker_init(study: Study, out: str, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    if study.threads is not None:
        torch.set_num_threads(study.threads)
    study.load()
    _WORKER.update(study=study, store=RunStore(out, schema=study.schema()))


def _worker_run(cfg: Any) -> RunOutcome:
    from .engine import run_and_commit

    return run_and_commit(_WORKER["study"], cfg, _WORKER["store"])


def run_in_local_pool(study: Study, store: RunStore, todo: list[Any], bar: Any,
                      finished: Callable[[RunOutcome, int], None]) -> None:
    """Run ``todo`` in ``study.workers`` spawned processes; call ``finished`` as runs end."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(study.workers, len(todo)), mp_context=ctx,
                             initializer=_worker_init,
                             initargs=(study, str(store.root), os.getpid())) as pool:
        futures = {pool.submit(_worker_run, cfg): i for i, cfg in enumerate(todo)}
        for fut in as_completed(futures):
            outcome = fut.result()
            if bar is not None:
                bar.update(study.steps)
            finished(outcome, futures[fut])


def _worker_units(cfgs: list[Any]) -> list[RunOutcome]:
    """One batch of replicas (or one run alone); the outcomes of its runs."""
    from .engine import run_and_commit

    study, store = _WORKER["study"], _WORKER["store"]
    if len(cfgs) == 1:
        return [run_and_commit(study, cfgs[0], store)]
    outcomes: list[RunOutcome] = []
    study.run_batch(cfgs, store, None, lambda outcome, cfg: outcomes.append(outcome))
    return outcomes


def _worker_after_runs() -> list[str]:
    lines: list[str] = []
    _WORKER["study"].after_runs(_WORKER["store"], lines.append)
    return lines


def run_batches_in_local_pool(study: Study, store: RunStore, batches: list[list[Any]], bar: Any,
                              finished: Callable[[RunOutcome, Any], None],
                              say: Callable[[str], None]) -> None:
    """Run ``batches`` in ``study.workers`` spawned processes, the largest batch first (and the
    study's ``after_runs`` beside them when it is independent of the runs); call ``finished(outcome,
    cfg)`` for each run as its batch ends (after advancing ``bar`` by the run's stored steps)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    by_id = {cfg.run_id: cfg for batch in batches for cfg in batch}
    units = sorted(batches, key=len, reverse=True)
    after = bool(getattr(study, "after_runs_independent", False))
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(study.workers, len(units) + after), mp_context=ctx,
                             initializer=_worker_init,
                             initargs=(study, str(store.root), os.getpid())) as pool:
        futures = [pool.submit(_worker_after_runs)] if after else []
        futures += [pool.submit(_worker_units, batch) for batch in units]
        for fut in as_completed(futures):
            result = fut.result()
            for item in result:
                if isinstance(item, str):
                    say(item)
                else:
                    if bar is not None:
                        bar.update(item.rows)
                    finished(item, by_id[item.run_id])

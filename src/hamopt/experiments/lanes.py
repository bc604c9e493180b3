r"""A batched sweep shared between the sweep's own process and forked helper processes ("lanes").

With ``workers: N`` and batched replicas, the units of work — each batch of replicas, each run
that runs alone and, when it reads nothing the runs write, the study's
:meth:`~hamopt.experiments.engine.Study.after_runs` (the drift study's reversibility table) — are
taken in order of decreasing estimated cost (:meth:`~hamopt.experiments.engine.Study.unit_cost`,
:attr:`~hamopt.experiments.engine.Study.after_runs_cost`) by ``N`` processes: the sweep's own
process and ``N − 1`` helpers forked from it once the plan is made. Whichever process is free
takes the next unit (a shared counter), so the largest units start first and the lanes end close
together (longest-processing-time-first scheduling).

A forked helper inherits the loaded data set, the calibration and the imported modules, so it
starts in milliseconds, where a spawned worker (:mod:`.local_pool`) imports torch and loads the
data again (seconds each). Forking is used only where it is safe: Linux, a CPU study and one
torch thread per process (a process that has run a multi-threaded OpenMP region cannot be forked
safely); otherwise the batches go to the spawned pool. Every unit commits its runs through the
store from the process that ran it; a run's series do not depend on the process (each run is
self-contained and every process runs one torch thread), so lanes change wall time only.

A helper reports each unit it takes and each unit it ends; a helper that dies mid-unit leaves
its runs uncommitted and the sweep's process runs that unit again itself (it dies with the
sweep too: :func:`~hamopt.experiments.local_pool.die_with_parent`). An exception raised by a
unit in a helper is raised again in the sweep's process once every lane has stopped.
"""

from __future__ import annotations

import os
import queue
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .store import RunStore

if TYPE_CHECKING:
    from .engine import RunOutcome, Study

__all__ = ["AFTER_RUNS", "can_fork_lanes", "lane_units", "run_batches", "run_units_in_lanes"]

AFTER_RUNS = "after_runs"
"""The unit that stands for the study's ``after_runs`` in a list of units."""

_POLL_S = 0.2


def can_fork_lanes(study: Study) -> bool:
    """Whether helper lanes may be forked from this process (Linux, CPU, one torch thread)."""
    import multiprocessing as mp

    return (sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()
            and str(study.device) == "cpu" and torch.get_num_threads() == 1)


def lane_units(study: Study, batches: list[list[Any]]) -> list[Any]:
    """The units of work, the most costly first (a stable sort: equal costs keep their order);
    :data:`AFTER_RUNS` among them when the study's ``after_runs`` is independent of the runs."""
    units: list[tuple[float, Any]] = [(study.unit_cost(b), b) for b in batches]
    if getattr(study, "after_runs_independent", False):
        units.append((study.after_runs_cost, AFTER_RUNS))
    return [u for _, u in sorted(units, key=lambda cu: -cu[0])]


def _run_unit(study: Study, store: RunStore, unit: Any,
              on_step: Callable[[int], None] | None) -> list[Any]:
    """Run one unit; its results: the :class:`RunOutcome` of each run, or log lines."""
    from .engine import run_and_commit

    if unit == AFTER_RUNS:
        lines: list[str] = []
        study.after_runs(store, lines.append)
        return lines
    if len(unit) == 1:
        return [run_and_commit(study, unit[0], store, on_step)]
    outcomes: list[Any] = []
    study.run_batch(unit, store, on_step, lambda outcome, cfg: outcomes.append(outcome))
    return outcomes


def _take(counter: Any, total: int) -> int | None:
    with counter.get_lock():
        i = counter.value
        if i >= total:
            return None
        counter.value = i + 1
        return i


def _helper(lane: int, study: Study, root: str, units: list[Any], counter: Any, results: Any,
            parent_pid: int) -> None:
    """A forked lane: take units until none is left, reporting each start and end."""
    from .local_pool import die_with_parent

    die_with_parent(parent_pid)
    if study.threads is not None:
        torch.set_num_threads(study.threads)
    store = RunStore(root, schema=study.schema())
    while (i := _take(counter, len(units))) is not None:
        results.put(("start", lane, i, None))
        try:
            payload = _run_unit(study, store, units[i], None)
        except BaseException:  # noqa: BLE001 - reported to the sweep's process, which raises it
            results.put(("error", lane, i, traceback.format_exc()))
            break
        results.put(("done", lane, i, payload))
    results.put(("exit", lane, None, None))
    results.close()
    results.join_thread()


def run_units_in_lanes(study: Study, store: RunStore, units: list[Any], *, lanes: int, bar: Any,
                       finished: Callable[[RunOutcome, Any], None], say: Callable[[str], None]) -> None:
    """Run ``units`` in this process and ``lanes − 1`` forked helpers (see the module docstring).

    As each unit ends, whichever lane ran it, this process calls ``finished(outcome, cfg)`` for
    each of its runs (``say(line)`` for each line ``after_runs`` logged). ``bar`` advances step
    by step in this process's own units, and by each run's stored steps as a helper's unit ends."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    counter = ctx.Value("i", 0)
    results = ctx.Queue()
    helpers = {lane: ctx.Process(target=_helper, name=f"hamopt-lane-{lane}", daemon=True,
                                 args=(lane, study, str(store.root), units, counter, results, os.getpid()))
               for lane in range(1, max(1, min(lanes, len(units))))}
    by_id = {cfg.run_id: cfg for unit in units if unit != AFTER_RUNS for cfg in unit}
    running: dict[int, int] = {}  # lane -> the unit it runs
    done: set[int] = set()
    errors: list[str] = []
    exited: set[int] = set()

    def report(items: list[Any], *, from_helper: bool) -> None:
        for item in items:
            if isinstance(item, str):
                say(item)
                continue
            if from_helper and bar is not None:
                bar.update(item.rows)
            finished(item, by_id[item.run_id])

    def handle(message: tuple[str, int, int | None, Any]) -> None:
        kind, lane, i, payload = message
        if kind == "start":
            running[lane] = i
            return
        if kind == "exit":
            exited.add(lane)
            return
        running.pop(lane, None)
        done.add(i)
        if kind == "done":
            report(payload, from_helper=True)
        else:
            errors.append(f"unit {i} in helper process {lane}:\n{payload}")

    def drain(block: bool) -> None:
        while True:
            try:
                handle(results.get(timeout=_POLL_S) if block else results.get_nowait())
            except queue.Empty:
                return
            block = False

    def run_here(i: int) -> None:
        items = _run_unit(study, store, units[i], None if bar is None else bar.update)
        done.add(i)
        report(items, from_helper=False)

    for proc in helpers.values():
        proc.start()
    try:
        while (i := _take(counter, len(units))) is not None:
            run_here(i)
            drain(block=False)
        while len(exited) < len(helpers):
            drain(block=True)
            for lane, proc in helpers.items():
                if lane not in exited and proc.exitcode is not None:
                    drain(block=False)  # what it sent before it ended
                    if lane not in exited:  # it died without a word: its unit is redone here
                        exited.add(lane)
                        lost = running.pop(lane, None)
                        if lost is not None and lost not in done:
                            run_here(lost)
    finally:
        with counter.get_lock():  # on an error here, the helpers take no further unit
            counter.value = len(units)
        for proc in helpers.values():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
    if errors:
        raise RuntimeError("a sweep helper process stopped on an error: " + "\n".join(errors))


def run_batches(study: Study, store: RunStore, todo: list[Any], batches: list[list[Any]], bar: Any,
                finished: Callable[[RunOutcome, int], None], say: Callable[[str], None]) -> None:
    """The engine's batched sweep: each batch trained as one computation (a batch of one as a
    plain run), one after the other; with ``workers`` > 1 shared out to lanes (forked helpers
    beside this process) or, where forking is not safe, to spawned workers (:mod:`.local_pool`).
    ``finished(outcome, i)`` gets each run's position ``i`` in ``todo``."""
    from .engine import run_and_commit

    index = {cfg.run_id: i for i, cfg in enumerate(todo)}
    on_step = None if bar is None else bar.update

    def ended(outcome: RunOutcome, cfg: Any) -> None:
        if bar is not None and outcome.rows < study.steps:
            bar.update(study.steps - outcome.rows)
        finished(outcome, index[cfg.run_id])

    if study.workers > 1 and len(batches) > 1:
        if can_fork_lanes(study):
            say(f"replicas: the batches run in {study.workers} worker processes (this one and "
                f"{study.workers - 1} forked), the costliest first")
            return run_units_in_lanes(study, store, lane_units(study, batches), lanes=study.workers,
                                      bar=bar, finished=ended, say=say)
        from .local_pool import run_batches_in_local_pool

        say(f"replicas: the batches run in {study.workers} worker processes (spawned), the largest first")
        return run_batches_in_local_pool(study, store, batches, bar, ended, say)
    for batch in batches:
        if len(batch) == 1:
            ended(run_and_commit(study, batch[0], store, on_step), batch[0])
        else:
            study.run_batch(batch, store, on_step, ended)

r"""The report's independent jobs (figures, the catalogue) shared between processes.

:func:`run_jobs` runs a list of jobs — callables that write files and return nothing — in this
process and ``processes − 1`` children forked from it. Whichever process is free takes the next
job (a shared counter), so with the jobs listed costliest first the processes end close together.
A forked child inherits the analysis, the imported matplotlib and everything else, so it starts in
milliseconds; it only writes files, and a job's file does not depend on the process that drew it
(the figures are byte-identical to the ones drawn one after the other).

Forking is used on Linux only; elsewhere, or with ``processes`` = 1, the jobs run here one after
the other. A job that fails in a child (or a child that dies) is run again in this process, so its
error is raised here as it would be without children.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["default_processes", "run_jobs"]


def default_processes() -> int:
    """Two processes where this process may use two CPUs or more, else one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def _can_fork() -> bool:
    import multiprocessing as mp

    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def _take(counter: object, total: int) -> int | None:
    with counter.get_lock():  # type: ignore[attr-defined]
        i = counter.value  # type: ignore[attr-defined]
        if i >= total:
            return None
        counter.value = i + 1  # type: ignore[attr-defined]
        return i


def _child(jobs: Sequence[Callable[[], None]], counter: object, done: object) -> None:
    while (i := _take(counter, len(jobs))) is not None:
        jobs[i]()  # an exception ends this child; the job, not marked done, is rerun by the parent
        done[i] = 1  # type: ignore[index]


def run_jobs(jobs: Sequence[Callable[[], None]], *, processes: int) -> None:
    """Run every job once, in this process and ``processes − 1`` forked children (see the
    module docstring); ``processes`` must be at least 1."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    children_wanted = min(processes, len(jobs)) - 1
    if children_wanted < 1 or not _can_fork():
        for job in jobs:
            job()
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    counter = ctx.Value("i", 0)
    done = ctx.Array("b", len(jobs))
    children = [ctx.Process(target=_child, args=(jobs, counter, done), daemon=True,
                            name=f"hamopt-report-{k + 1}") for k in range(children_wanted)]
    for child in children:
        child.start()
    try:
        while (i := _take(counter, len(jobs))) is not None:
            jobs[i]()
            done[i] = 1
    finally:
        for child in children:
            child.join()
    for i, job in enumerate(jobs):
        if not done[i]:  # a child failed or died in it: run it here (its error, if any, is raised here)
            job()
            done[i] = 1

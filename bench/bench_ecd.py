"""Benchmarks of the ECD optimisers (ECDSep, BBI, ECDq1).

1. Step time on the ResNet-18-sized parameter set of ``bench/common.py`` (62 tensors, 11.2 M
   parameters, random gradients), relative to ``torch.optim.AdamW(foreach=True)``; interleaved
   rounds, medians. The closure returns a constant loss (the gradients are already in ``.grad``),
   so the time is the optimiser's alone.
2. Best loss reached on 100-D Rosenbrock, Ackley and Zakharov (``hamopt.testfunctions``) by
   ECDSep, BBI, ECDq1, AdamW and SGD with momentum 0.9 at an equal step budget, after a small
   hyperparameter search per optimiser and function (grids in ``GRIDS``): each grid point runs on
   one held-out seed (``SEARCH_SEED``); the point with the lowest best loss is then run on seeds
   0–4 and reported as mean ± std. A seed perturbs the default start point
   (``x0 = default + 0.1 · N(0, I)``) and seeds the ECD optimiser's generator. A run that reaches a
   non-finite loss stops there; its best finite loss counts, and the table says how many diverged.

Run ``python bench/bench_ecd.py`` (full, ≈ 4–6 min on this 2-core machine) or ``--quick`` (≈ 15 s).
Everything runs with one torch thread unless ``--threads`` says otherwise.
Prints both tables as markdown, plus the configuration and versions.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clone_params, resnet18_params  # noqa: E402

import hamopt  # noqa: E402
from hamopt import NonFiniteError  # noqa: E402
from hamopt import testfunctions as tf  # noqa: E402

OPTIMISERS = ("ECDSep", "BBI", "ECDq1", "AdamW", "SGD-momentum")
FUNCTIONS = ("rosenbrock", "ackley", "zakharov")
SEARCH_SEED = 100
EVAL_SEEDS = (0, 1, 2, 3, 4)

# Hyperparameter grids (everything else at its default). ECD: F0 = v0 = 0 is the known minimum
# for ECDSep/BBI; ECDq1 keeps its default F0 = −1.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "ECDSep": [dict(lr=lr, eta=eta) for lr in (1e-2, 1e-1, 1.0, 3.0, 10.0, 30.0) for eta in (1.0, 3.0)],
    "BBI": [dict(lr=lr) for lr in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0)],
    "ECDq1": [dict(lr=lr, eta=eta) for lr in (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0) for eta in (1.0, 10.0)],
    "AdamW": [dict(lr=lr) for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)],
    "SGD-momentum": [dict(lr=10.0**k) for k in range(-11, -2)],
}
QUICK_GRIDS: dict[str, list[dict[str, Any]]] = {
    "ECDSep": [dict(lr=1e-2, eta=1.0), dict(lr=1e-1, eta=1.0)],
    "BBI": [dict(lr=1e-4), dict(lr=1e-2)],
    "ECDq1": [dict(lr=1e-1, eta=1.0), dict(lr=1.0, eta=10.0)],
    "AdamW": [dict(lr=1e-2), dict(lr=1e-1)],
    "SGD-momentum": [dict(lr=1e-7), dict(lr=1e-4)],
}


def build(name: str, params: Any, seed: int, **hp: Any) -> torch.optim.Optimizer:
    """One optimiser with the benchmark's fixed settings plus ``hp``."""
    if name == "ECDSep":
        return hamopt.ECDSep(params, seed=seed, **hp)
    if name == "BBI":
        return hamopt.BBI(params, seed=seed, **hp)
    if name == "ECDq1":
        return hamopt.ECDq1(params, seed=seed, **hp)
    if name == "AdamW":
        return torch.optim.AdamW(params, weight_decay=0.0, foreach=True, **hp)
    if name == "SGD-momentum":
        return torch.optim.SGD(params, momentum=0.9, foreach=True, **hp)
    raise ValueError(f"name must be one of {OPTIMISERS}; got {name!r}")


# ---------------------------------------------------------------------- best loss on test functions
@dataclass(frozen=True)
class Run:
    """One optimisation run: the lowest loss seen and whether it ended on a non-finite loss."""

    best: float
    diverged: bool


def start_point(fname: str, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = tf.FUNCTIONS[fname].default_start(dim, torch.float32)
    return base + 0.1 * torch.randn(dim, generator=g)


def run_once(name: str, fname: str, dim: int, steps: int, seed: int, hp: dict[str, Any]) -> Run:
    f = tf.make(fname, dim, start=start_point(fname, dim, seed))
    opt = build(name, f.parameters(), seed, **hp)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = f()
        loss.backward()
        return loss

    best = math.inf
    for _ in range(steps):
        try:
            loss = float(opt.step(closure).detach())
        except NonFiniteError:
            return Run(best, True)
        if not math.isfinite(loss):
            return Run(best, True)
        best = min(best, loss)
    # the final point counts too
    with torch.no_grad():
        final = float(f())
    if not math.isfinite(final):
        return Run(best, True)
    return Run(min(best, final), False)


@dataclass(frozen=True)
class Cell:
    """Mean ± std of the best loss over the evaluation seeds, for the chosen hyperparameters."""

    optimiser: str
    function: str
    hp: dict[str, Any]
    mean: float
    std: float
    diverged: int
    runs: int


def best_loss_cell(name: str, fname: str, dim: int, steps: int, grid: list[dict[str, Any]],
                   seeds: tuple[int, ...]) -> Cell:
    scored = []
    for hp in grid:
        r = run_once(name, fname, dim, steps, SEARCH_SEED, hp)
        scored.append((r.best if math.isfinite(r.best) else math.inf, r.diverged, hp))
    scored.sort(key=lambda t: (t[0], t[1]))
    hp = scored[0][2]
    runs = [run_once(name, fname, dim, steps, s, hp) for s in seeds]
    bests = [r.best for r in runs]
    std = statistics.stdev(bests) if len(bests) > 1 else 0.0
    return Cell(name, fname, hp, statistics.fmean(bests), std, sum(r.diverged for r in runs), len(runs))


def best_loss_table(*, dim: int = 100, steps: int = 2000, quick: bool = False,
                    seeds: tuple[int, ...] = EVAL_SEEDS, optimisers: tuple[str, ...] = OPTIMISERS,
                    functions: tuple[str, ...] = FUNCTIONS,
                    progress: Callable[[str], None] | None = None) -> list[Cell]:
    grids = QUICK_GRIDS if quick else GRIDS
    cells = []
    for fname in functions:
        for name in optimisers:
            t0 = time.perf_counter()
            cells.append(best_loss_cell(name, fname, dim, steps, grids[name], seeds))
            if progress is not None:
                progress(f"{fname:10s} {name:13s} {time.perf_counter() - t0:6.1f} s")
    return cells


def _hp_text(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in hp.items())


def format_best_loss(cells: list[Cell]) -> str:
    functions = list(dict.fromkeys(c.function for c in cells))
    optimisers = list(dict.fromkeys(c.optimiser for c in cells))
    by = {(c.optimiser, c.function): c for c in cells}
    head = "| optimiser | " + " | ".join(f"{f} (best loss)" for f in functions) + " |"
    lines = [head, "|---|" + "---|" * len(functions)]
    for name in optimisers:
        row = []
        for fname in functions:
            c = by[(name, fname)]
            text = f"{c.mean:.4g} ± {c.std:.2g}"
            if c.diverged:
                text += f" ({c.diverged}/{c.runs} diverged)"
            row.append(text)
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", "Chosen hyperparameters (lowest best loss on the search seed):", "",
              "| optimiser | " + " | ".join(functions) + " |", "|---|" + "---|" * len(functions)]
    for name in optimisers:
        lines.append(f"| {name} | " + " | ".join(_hp_text(by[(name, f)].hp) for f in functions) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- step time on ResNet-18 shapes
TIMING: dict[str, tuple[str, dict[str, Any]]] = {
    # nu = 1e-5 (default): the bounce draws one Gaussian per parameter every step
    "ECDSep": ("ECDSep", dict(lr=1e-3, eta=2.0)),
    "ECDSep, nu=0": ("ECDSep", dict(lr=1e-3, eta=2.0, nu=0.0)),
    # the default thresholds (T0 = 1000) put no bounce inside the timed steps
    "BBI": ("BBI", dict(lr=1e-3)),
    # nu = 0.1 (default): the bounce runs every step
    "ECDq1": ("ECDq1", dict(lr=1e-3, eta=2.0)),
    "ECDq1, nu=0": ("ECDq1", dict(lr=1e-3, eta=2.0, nu=0.0)),
}


@dataclass(frozen=True)
class StepTime:
    """Median wall time and median process CPU time (all threads) of one ``step()``, in seconds."""

    wall: float
    cpu: float


def interleaved_wall_and_cpu(fns: dict[str, Callable[[], object]], *, rounds: int,
                             warmup: int) -> dict[str, StepTime]:
    """Median wall and CPU time of each function over interleaved rounds. CPU time
    (``time.process_time``) counts the work of this process only, so it moves much less than wall
    time when other processes share the cores."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: StepTime(statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def step_times(*, rounds: int = 20, warmup: int = 3) -> dict[str, StepTime]:
    """Median time per ``step()`` of each optimiser on its own copy of the parameter set."""
    base = resnet18_params(seed=0)
    loss = torch.tensor(1.0)
    fns: dict[str, Callable[[], object]] = {}
    ref = torch.optim.AdamW(clone_params(base), lr=1e-3, foreach=True)
    fns["AdamW (foreach)"] = ref.step
    fused = torch.optim.AdamW(clone_params(base), lr=1e-3, fused=True)
    fns["AdamW (fused)"] = fused.step
    for label, (name, hp) in TIMING.items():
        for fe in (True, False):
            if "nu=0" in label and not fe:
                continue
            opt = build(name, clone_params(base), 0, foreach=fe, **hp)
            fns[f"{label} ({'foreach' if fe else 'per-tensor'})"] = (lambda o=opt: o.step(lambda: loss))
    return interleaved_wall_and_cpu(fns, rounds=rounds, warmup=warmup)


def format_step_times(times: dict[str, StepTime]) -> str:
    ref = times["AdamW (foreach)"]
    lines = ["| optimiser | wall ms / step | × AdamW (foreach), wall | CPU ms / step | × AdamW (foreach), CPU |",
             "|---|---|---|---|---|"]
    for name, t in times.items():
        lines.append(f"| {name} | {t.wall * 1e3:.1f} | {t.wall / ref.wall:.2f} | {t.cpu * 1e3:.1f} | "
                     f"{t.cpu / ref.cpu:.2f} |")
    return "\n".join(lines)


def _load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def environment() -> str:
    return (f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
            f"{torch.get_num_threads()} torch thread(s), hamopt {hamopt.__version__}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short budget and grid (≈ 15 s)")
    ap.add_argument("--steps", type=int, default=None, help="step budget per run (default 2000; quick 200)")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 20; quick 5)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: the test functions are tiny, and on a shared "
                         "machine more threads mostly measure the other processes)")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-functions", action="store_true")
    args = ap.parse_args(argv)
    steps = args.steps if args.steps is not None else (200 if args.quick else 2000)
    rounds = args.rounds if args.rounds is not None else (5 if args.quick else 20)
    if steps < 1 or rounds < 1 or args.threads < 1:
        ap.error("--steps, --rounds and --threads must be >= 1")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"# ECD benchmarks ({'quick' if args.quick else 'full'})\n")
    print(f"Environment: {environment()}\n")
    if not args.skip_timing:
        load = _load_average()
        t0 = time.perf_counter()
        times = step_times(rounds=rounds)
        print(f"## Step time, ResNet-18 parameter set (11,173,962 params, 62 tensors), median of {rounds} "
              f"interleaved rounds, {args.threads} thread(s) ({time.perf_counter() - t0:.0f} s; load average before: "
              f"{load})\n")
        print(format_step_times(times) + "\n", flush=True)
    if not args.skip_functions:
        t0 = time.perf_counter()
        cells = best_loss_table(steps=steps, quick=args.quick,
                                progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
        print(f"## Best loss reached, 100-D test functions, {steps} steps, mean ± std over seeds "
              f"{list(EVAL_SEEDS)} ({time.perf_counter() - t0:.0f} s)\n")
        print(format_best_loss(cells))


if __name__ == "__main__":
    main()

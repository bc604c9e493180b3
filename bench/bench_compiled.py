"""Optimiser step cost of hamopt's eager, compiled and fused steps against torch's fused optimisers.

On the ResNet-18 parameter set (62 tensors, 11.17 M parameters, gradients already in ``.grad``,
float32), in one process, each step's median over interleaved rounds (so slow drifts in machine
load hit every contender alike), as a ratio to ``torch.optim.AdamW(fused=True)``:

* ``SGD(fused=True)`` (momentum 0.9) and ``AdamW(fused=True)``: the references;
* Leapfrog and Euler, streaming, "energy" (``track_energy=True, cap=2.0``, ``loss=`` passed) and
  "lean" (``track_energy=False, cap=None, check_finite=False``), each
  - eager: the default step;
  - compiled: ``torch.compile(opt.step)`` (Inductor) with ``capturable=True``: compile time and
    the number of graphs compiled after the first step are printed;
  - fused: ``fused=True`` (hand-written CPU kernels, one read of p and g for the sums and one
    pass for the update);
* ECDSep (ν = 1e-5), BBI and ECDq1 (ν = 0.1), eager and fused (``fused=True``: one read of p
  and g for the sums, one pass for kick, drift and the bounce noise; "ecdsep_nu0" is the fused
  ECDSep without noise, to show what the noise costs); ``--ecd-compiled`` adds their
  ``torch.compile(opt.step)`` (Inductor) with ``capturable=True`` and a tensor ``lr``: the
  tensor step of :mod:`hamopt.optim.ecd._tensor`, compiled once (compile time and the graphs
  compiled after the first steps are printed, as for Leapfrog).

Run: ``python bench/bench_compiled.py [--rounds N] [--threads N] [--only leapfrog,euler,ecd]
[--compiled leapfrog,euler] [--ecd-compiled]``.
The goals (issue 17): Leapfrog energy+cap ≤ 1.0× AdamW fused, lean Leapfrog ≤ 0.8×, ECDSep ≤ 1.0×.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clone_params, interleaved_times, resnet18_params  # noqa: E402

import hamopt  # noqa: E402

ENERGY = dict(track_energy=True, cap=2.0)
LEAN = dict(track_energy=False, cap=None, check_finite=False)


def graphs_compiled() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def contenders(only: set[str], compiled_for: set[str], ecd_compiled: bool
               ) -> tuple[dict[str, Callable[[], Any]], dict[str, tuple[float, int]]]:
    """The step functions to time, and per compiled one (compile time in s, graphs at compile)."""
    base = resnet18_params()
    loss = torch.tensor(2.3)
    fns: dict[str, Callable[[], Any]] = {}
    compiled: dict[str, tuple[float, int]] = {}
    sgd = torch.optim.SGD(clone_params(base), lr=1e-3, momentum=0.9, fused=True)
    adamw = torch.optim.AdamW(clone_params(base), lr=1e-3, fused=True)
    fns["sgd_fused"], fns["adamw_fused"] = sgd.step, adamw.step
    for name, cls in (("leapfrog", hamopt.Leapfrog), ("euler", hamopt.Euler)):
        if name not in only:
            continue
        for kind, options in (("energy", ENERGY), ("lean", LEAN)):
            eager = cls(clone_params(base), lr=1e-3, mode="streaming", **options)
            fused = cls(clone_params(base), lr=1e-3, mode="streaming", fused=True, **options)
            fns[f"{name}_{kind}_eager"] = lambda o=eager: o.step(loss=loss)
            fns[f"{name}_{kind}_fused"] = lambda o=fused: o.step(loss=loss)
            if name in compiled_for:
                captured = cls(clone_params(base), lr=torch.tensor(1e-3), mode="streaming", capturable=True,
                               **options)
                step = torch.compile(captured.step)
                before = graphs_compiled()
                t0 = time.perf_counter()
                step(loss=loss)
                step(loss=loss)
                compiled[f"{name}_{kind}_compiled"] = (time.perf_counter() - t0, graphs_compiled() - before)
                fns[f"{name}_{kind}_compiled"] = lambda s=step: s(loss=loss)
    if "ecd" in only:
        closure = lambda: loss  # noqa: E731  (the gradients stay in .grad)
        ecds = {"ecdsep": hamopt.ECDSep(clone_params(base), lr=1e-3, eta=2.0, nu=1e-5, seed=0),
                "bbi": hamopt.BBI(clone_params(base), lr=1e-3, threshold0=10**9, threshold=10**9, seed=0),
                "ecdq1": hamopt.ECDq1(clone_params(base), lr=1e-3, eta=2.0, seed=0)}
        fused = {"ecdsep": hamopt.ECDSep(clone_params(base), lr=1e-3, eta=2.0, nu=1e-5, seed=0, fused=True),
                 "ecdsep_nu0": hamopt.ECDSep(clone_params(base), lr=1e-3, eta=2.0, nu=0.0, seed=0, fused=True),
                 "bbi": hamopt.BBI(clone_params(base), lr=1e-3, threshold0=10**9, threshold=10**9, seed=0, fused=True),
                 "ecdq1": hamopt.ECDq1(clone_params(base), lr=1e-3, eta=2.0, seed=0, fused=True)}
        for name, opt in fused.items():
            fns[f"{name}_fused"] = lambda o=opt: o.step(closure)
        for name, opt in ecds.items():
            fns[f"{name}_eager"] = lambda o=opt: o.step(closure)
            if ecd_compiled:
                options = {k: v for k, v in opt.defaults.items() if k not in ("differentiable", "lr", "capturable")}
                twin = type(opt)(clone_params(base), lr=torch.tensor(1e-3), capturable=True, seed=0, **options)
                step = torch.compile(twin.step)
                before = graphs_compiled()
                t0 = time.perf_counter()
                step(closure)
                step(closure)
                compiled[f"{name}_compiled"] = (time.perf_counter() - t0, graphs_compiled() - before)
                fns[f"{name}_compiled"] = lambda s=step: s(closure)
    return fns, compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--only", default="leapfrog,euler,ecd")
    parser.add_argument("--compiled", default="leapfrog,euler",
                        help="integrators that also get the compiled variant (Inductor: minutes of compiling each)")
    parser.add_argument("--ecd-compiled", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds, load average {os.getloadavg()}")
    fns, compiled = contenders(set(args.only.split(",")), set(args.compiled.split(",")), args.ecd_compiled)
    graphs = graphs_compiled()
    times = interleaved_times(fns, rounds=args.rounds)
    recompiles = graphs_compiled() - graphs
    ref = times["adamw_fused"]
    print("\n| step | median ms | / AdamW fused | compile s (graphs) |\n|---|---:|---:|---|")
    for name, t in times.items():
        extra = f"{compiled[name][0]:.1f} ({compiled[name][1]})" if name in compiled else ""
        print(f"| {name} | {t * 1e3:.2f} | {t / ref:.2f}× | {extra} |")
    print(f"\ngraphs compiled during the timed rounds (recompiles after the first steps): {recompiles}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

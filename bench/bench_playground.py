"""The playground's 300-step run: the fast route against the reference route, in one process.

``run_trajectory(config)`` (analytic gradients, the optimiser's own energy statistics, lean
bookkeeping) against ``run_trajectory(config, reference=True)`` (autograd closure and
``EnergyTracker``), both on the real optimiser, for every optimiser the playground offers on the
anisotropic quadratic at its suggested step size (the page's default run is Leapfrog, 300 steps).
Also the time to build the page's three figures from one run.

Timings are medians over interleaved rounds, so slow drifts in machine load hit both routes
alike. Run: ``OMP_NUM_THREADS=1 python bench/bench_playground.py [--rounds N] [--steps N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_times, median_time  # noqa: E402

from hamopt.playground import OPTIMIZERS, run_trajectory, suggested_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--landscape", default="quadratic")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.python_version()}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{args.landscape}, {args.steps} steps, median of {args.rounds} interleaved rounds\n")
    print(f"{'optimiser':<14}{'fast (ms)':>11}{'reference (ms)':>16}{'ratio':>8}{'ms/step fast':>14}")
    for key in OPTIMIZERS:
        config = replace(suggested_config(args.landscape, key), steps=args.steps)
        times = interleaved_times(
            {"fast": lambda c=config: run_trajectory(c),
             "reference": lambda c=config: run_trajectory(c, reference=True)},
            rounds=args.rounds, warmup=1,
        )
        fast, ref = times["fast"], times["reference"]
        print(f"{key:<14}{1e3 * fast:>11.1f}{1e3 * ref:>16.1f}{ref / fast:>8.2f}{1e3 * fast / args.steps:>14.3f}")

    from hamopt.web.playground_figures import contour_figure, delta_h_figure, energy_figure

    traj = run_trajectory(suggested_config(args.landscape, "leapfrog"))
    figures = median_time(lambda: (contour_figure(traj), energy_figure(traj), delta_h_figure(traj)),
                          repeats=args.rounds, warmup=1)
    print(f"\nthe page's three figures from one Leapfrog run: {1e3 * figures:.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

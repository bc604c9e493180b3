"""Sweep throughput of batched replicas against runs one after the other, in one process.

For each problem and each replica count R, the same work — R runs of Leapfrog (exact mode, the
lab's default integrator) with the energy bookkeeping of the lab (``EnergyTracker`` /
``ReplicaTracker``), each replica its own seed, step size and batch stream — is done two ways:

* **serial**: R runs one after the other (an unbatched model, ``Leapfrog``, ``EnergyTracker``);
* **batched**: one :class:`hamopt.replicas.ReplicaStack` of R models, ``ReplicaLeapfrog`` and
  ``ReplicaTracker`` (the quick problem's MLP by grouped ``baddbmm`` on the stacked weights, the
  ResNets through ``vmap(functional_call)``).

Throughput is steps per second summed over the replicas (R · steps / time); the two contenders
alternate in interleaved rounds (median per round), so drifts in machine load hit both alike.
Peak memory is the resident-set high-water mark of a fresh process doing one round (``--memory``).

Problems: ``quick`` (the quick preset: digits, 64-64-10 tanh MLP, batch 64, real batch streams)
and ``resnet20`` (the cpu preset: CIFAR ResNet-20 at width 8, batch 32, on CIFAR-shaped random
images, which cost what real ones cost); ``resnet18`` (batch 128) for a GPU (``--device cuda``).

Run: ``python bench/bench_replicas.py [--problems quick resnet20] [--replicas 1 4 12 24]
[--steps N] [--rounds N] [--threads N] [--memory] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

import hamopt
from hamopt.energy import EnergyTracker
from hamopt.models import build_model
from hamopt.replicas import ReplicaLeapfrog, ReplicaStack, ReplicaTracker

PROBLEMS = {
    "quick": {"model": "mlp", "width": 64, "depth": 1, "batch": 64, "input": (64,), "dt": 0.05},
    "resnet20": {"model": "resnet20", "width": 8, "depth": 20, "batch": 32, "input": (3, 32, 32), "dt": 0.02},
    "resnet18": {"model": "resnet18", "width": 64, "depth": 18, "batch": 128, "input": (3, 32, 32), "dt": 0.02},
}


class Data:
    """Per-seed batch ``t`` as the lab draws it (the quick problem's digits stream), or random
    CIFAR-shaped images and labels (drawn once, indexed per step)."""

    def __init__(self, problem: str, seeds: list[int], device: str) -> None:
        p = PROBLEMS[problem]
        self.streams = None
        if problem == "quick":
            from hamopt.data import BatchStream, load_dataset

            dataset = load_dataset("digits")
            self.streams = {s: BatchStream(dataset, batch_size=p["batch"], seed=s, device=device) for s in seeds}
        else:
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(8, p["batch"], *p["input"], generator=g).to(device)
            self.y = torch.randint(0, 10, (8, p["batch"]), generator=g).to(device)

    def batch(self, seed: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.streams is not None:
            return self.streams[seed].batch(t)
        k = (seed + t) % self.x.shape[0]
        return self.x[k], self.y[k]


def model(problem: str, seed: int, device: str) -> torch.nn.Module:
    p = PROBLEMS[problem]
    m = build_model(p["model"], num_classes=10, input_shape=p["input"], width=p["width"], depth=p["depth"],
                    seed=seed, channels_last=False)
    return m.to(device).train()


class Serial:
    """R runs one after the other: each ``steps`` steps of its own model, optimiser and tracker."""

    def __init__(self, problem: str, replicas: int, device: str) -> None:
        self.seeds = list(range(replicas))
        self.data = Data(problem, self.seeds, device)
        dt = PROBLEMS[problem]["dt"]
        self.runs = []
        for s in self.seeds:
            m = model(problem, s, device)
            opt = hamopt.Leapfrog(m.parameters(), lr=dt * (1 + 0.1 * s), mode="exact")
            self.runs.append((m, EnergyTracker(opt)))
        self.t = 0

    def round(self, steps: int) -> None:
        for s, (m, tracker) in zip(self.seeds, self.runs):
            for t in range(self.t, self.t + steps):
                x, y = self.data.batch(s, t)
                tracker.step(lambda m=m, x=x, y=y: F.cross_entropy(m(x), y))
        self.t += steps


class Batched:
    """The same R runs as one stack of replicas."""

    def __init__(self, problem: str, replicas: int, device: str) -> None:
        self.seeds = list(range(replicas))
        self.data = Data(problem, self.seeds, device)
        dt = PROBLEMS[problem]["dt"]
        self.stack = ReplicaStack([model(problem, s, device) for s in self.seeds])
        opt = ReplicaLeapfrog(self.stack.parameters(), lr=[dt * (1 + 0.1 * s) for s in self.seeds], mode="exact")
        self.tracker = ReplicaTracker(opt, self.stack.zero_grad)
        self.t = 0

    def round(self, steps: int) -> None:
        for t in range(self.t, self.t + steps):
            parts = [self.data.batch(s, t) for s in self.seeds]
            x = torch.stack([p[0] for p in parts])
            y = torch.stack([p[1] for p in parts])
            self.tracker.step(lambda x=x, y=y: self.stack.losses(x, y))
        self.t += steps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(problem: str, replicas: int, steps: int, rounds: int, device: str) -> dict[str, float]:
    """Steps per second summed over the replicas, serial and batched, interleaved rounds."""
    contenders = {"serial": Serial(problem, replicas, device), "batched": Batched(problem, replicas, device)}
    for c in contenders.values():
        c.round(1)  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, c in contenders.items():
            _sync(device)
            t0 = time.perf_counter()
            c.round(steps)
            _sync(device)
            samples[name].append(replicas * steps / (time.perf_counter() - t0))
    out = {k: statistics.median(v) for k, v in samples.items()}
    out["speedup"] = out["batched"] / out["serial"]
    return out


def _peak_rss_mb() -> float:
    """This process's resident-set high-water mark (``VmHWM``: per address space, so not inherited
    from the parent the way ``ru_maxrss`` is across ``exec``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def peak_memory_mb(problem: str, replicas: int, steps: int, kind: str, device: str) -> float:
    """Peak resident memory (MB) of a fresh process that builds ``kind`` and runs one round;
    on CUDA the peak allocated device memory."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys, json, torch; sys.path.insert(0, {here!r}); import bench_replicas as b; "
        f"c = {{'serial': b.Serial, 'batched': b.Batched}}[{kind!r}]({problem!r}, {replicas}, {device!r}); "
        f"c.round({steps}); cuda = {device!r}.startswith('cuda'); "
        "print(json.dumps(torch.cuda.max_memory_allocated() / 2**20 if cuda else b._peak_rss_mb()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _rate(steps_per_s: float) -> str:
    return f"{steps_per_s:.0f}" if steps_per_s >= 100 else f"{steps_per_s:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["quick", "resnet20"], choices=sorted(PROBLEMS))
    ap.add_argument("--replicas", nargs="+", type=int, default=[1, 4, 12, 24])
    ap.add_argument("--steps", type=int, default=10, help="steps per replica per round (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (one process per case)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if any(r < 1 for r in args.replicas) or args.steps < 1 or args.rounds < 1 or args.threads < 1:
        ap.error("--replicas, --steps, --rounds and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
          f"device {args.device}, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    header = "| problem | R | serial steps/s | batched steps/s | speed-up |"
    if args.memory:
        header += " peak MB serial | peak MB batched |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    results: list[dict[str, Any]] = []
    for problem in args.problems:
        for r in args.replicas:
            res = throughput(problem, r, args.steps, args.rounds, args.device)
            row = {"problem": problem, "replicas": r, **res}
            line = f"| {problem} | {r} | {_rate(res['serial'])} | {_rate(res['batched'])} | {res['speedup']:.2f}x |"
            if args.memory:
                row["peak_mb_serial"] = peak_memory_mb(problem, r, 2, "serial", args.device)
                row["peak_mb_batched"] = peak_memory_mb(problem, r, 2, "batched", args.device)
                line += f" {row['peak_mb_serial']:.0f} | {row['peak_mb_batched']:.0f} |"
            print(line, flush=True)
            results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

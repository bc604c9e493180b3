"""Cost of distributed-correct hamopt optimisers: all-reduces per step and step time, 1 vs N ranks.

Trains a float64 MLP (``--width`` hidden units, two hidden layers) on a fixed global batch of
``--batch`` rows, with gloo on the CPU:

* one process on the whole batch;
* ``--ranks`` processes under DDP, each on its slice of the batch;
* ``--ranks`` processes under FSDP2 (``fully_shard`` on every Linear and on the root).

For each optimiser it prints the median wall time of a training step (forward, backward and
``opt.step``; two closure calls in exact mode) over ``--steps`` steps after ``--warmup``, and the
number of ``torch.distributed.all_reduce`` calls the optimiser itself made per step (those made
by DDP's or FSDP2's gradient reductions are not counted).

    OMP_NUM_THREADS=1 python bench/bench_distributed.py                 # 2 ranks, default sizes
    OMP_NUM_THREADS=1 python bench/bench_distributed.py --width 512 --ranks 2 --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hamopt

OPTIMIZERS = {
    "leapfrog-exact": lambda ps: hamopt.Leapfrog(ps, lr=0.01),
    "leapfrog-streaming": lambda ps: hamopt.Leapfrog(ps, lr=0.01, mode="streaming"),
    "ecdsep": lambda ps: hamopt.ECDSep(ps, lr=0.01, eta=2.0, nu=1e-3, seed=0),
    "ecdq1": lambda ps: hamopt.ECDq1(ps, lr=0.01, eta=2.0, nu=0.1, seed=0),
}


def make_model(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 10)).to(torch.float64)


def wrap(model: nn.Module, kind: str) -> nn.Module:
    if kind == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(model)
    return model


def measure(kind: str, args: argparse.Namespace, rank: int, world: int) -> dict[str, dict[str, float]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 64, generator=g, dtype=torch.float64)
    y = torch.randn(args.batch, 10, generator=g, dtype=torch.float64)
    n = args.batch // world
    x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
    counter = {"total": 0, "closure": 0}
    inner = dist.all_reduce if dist.is_initialized() else None

    def counting(*a, **k):
        counter["total"] += 1
        return inner(*a, **k)

    if inner is not None:
        dist.all_reduce = counting
    results = {}
    try:
        for name, build in OPTIMIZERS.items():
            model = wrap(make_model(args.width), kind)
            opt = build(list(model.parameters()))

            def closure(model=model, opt=opt):
                start = counter["total"]
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                counter["closure"] += counter["total"] - start
                return loss

            times, counts = [], []
            for step in range(args.warmup + args.steps):
                if dist.is_initialized():
                    dist.barrier()
                total, in_closure = counter["total"], counter["closure"]
                t0 = time.perf_counter()
                opt.step(closure)
                elapsed = time.perf_counter() - t0
                if step >= args.warmup:
                    times.append(elapsed)
                    counts.append((counter["total"] - total) - (counter["closure"] - in_closure))
            results[name] = {"median_step_ms": 1e3 * statistics.median(times),
                             "optimizer_all_reduces_per_step": statistics.median(counts)}
    finally:
        if inner is not None:
            dist.all_reduce = inner
    return results


def _all_reduce_latency(repeats: int = 200) -> float:
    """Median time of one all-reduce of a 4-element float64 vector (what one reduction point
    sends), in microseconds."""
    t = torch.zeros(4, dtype=torch.float64)
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def run_rank(rank: int, world: int, port: int, args: argparse.Namespace, outdir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {kind: measure(kind, args, rank, world) for kind in ("ddp", "fsdp2")}
        out["all_reduce_us"] = _all_reduce_latency()
        if rank == 0:
            with open(os.path.join(outdir, "ranks.json"), "w") as fh:
                json.dump(out, fh)
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    single = measure("single", args, 0, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as outdir:
        mp.spawn(run_rank, args=(args.ranks, port, args, outdir), nprocs=args.ranks, join=True)
        with open(os.path.join(outdir, "ranks.json")) as fh:
            ranks = json.load(fh)
    n_params = sum(p.numel() for p in make_model(args.width).parameters())
    print(f"MLP 64-{args.width}-{args.width}-10 ({n_params} float64 parameters), global batch {args.batch}, "
          f"gloo on the CPU, 1 thread per process; median over {args.steps} steps")
    print(f"{'optimizer':<20}{'1 process ms':>14}{'DDP ms':>10}{'FSDP2 ms':>10}{'all-reduces DDP':>17}"
          f"{'all-reduces FSDP2':>19}")
    for name in OPTIMIZERS:
        d, f = ranks["ddp"][name], ranks["fsdp2"][name]
        print(f"{name:<20}{single[name]['median_step_ms']:>14.2f}{d['median_step_ms']:>10.2f}"
              f"{f['median_step_ms']:>10.2f}{d['optimizer_all_reduces_per_step']:>17.0f}"
              f"{f['optimizer_all_reduces_per_step']:>19.0f}")
    print(f"one all_reduce of 4 float64 values: median {ranks['all_reduce_us']:.0f} µs")


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmark scripts: a ResNet-18-sized parameter set and a timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


# CIFAR ResNet-18 parameter shapes: 62 tensors, 11,173,962 parameters
# (3×3 stem, four stages of two BasicBlocks, 1×1 projection shortcuts, BatchNorm, 10-way head).
def resnet18_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(64, 3, 3, 3), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if s != 1 or cin != cout:
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
            cin = cout
    shapes += [(num_classes, 512), (num_classes,)]
    return shapes


def resnet18_params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Random parameters with ResNet-18's shapes, each with a random ``.grad``."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for shape in resnet18_shapes():
        p = torch.randn(shape, generator=g, dtype=dtype).mul_(0.05).requires_grad_()
        p.grad = torch.randn(shape, generator=g, dtype=dtype).mul_(0.01)
        params.append(p)
    return params


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = p.grad.detach().clone()
        out.append(q)
    return out


def median_time(fn: Callable[[], object], *, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_samples(fns: dict[str, Callable[[], object]], *, rounds: int = 30,
                        warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per round, the functions called in turn in
    every round so that drift in machine load affects all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return samples


def interleaved_times(fns: dict[str, Callable[[], object]], *, rounds: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median time of each function, measured in interleaved rounds (:func:`interleaved_samples`)."""
    samples = interleaved_samples(fns, rounds=rounds, warmup=warmup)
    return {k: statistics.median(v) for k, v in samples.items()}

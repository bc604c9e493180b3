r"""Measure NCHW vs channels-last (NHWC) training-step time on this CPU, per convolutional model.

``python -m hamopt.models.measure_channels_last [--batch 32] [--rounds 10] [--models ...]``

For each model: the same seeded network in both memory formats, one step = forward, cross-entropy,
backward (gradients zeroed), timed in interleaved rounds (both formats alternate, so load drift on
a shared machine affects both alike); prints the median times and the ratio NHWC / NCHW (< 1 means
channels-last is faster). The result table lives in :mod:`hamopt.models.builder`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from .builder import build_model

CONV_MODELS = ("resnet18", "resnet20", "small_cnn")


def step_time(
    models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, rounds: int, warmup: int = 2
) -> dict[str, float]:
    """Interleaved median seconds of a forward + backward step for each model."""
    loss_fn = nn.CrossEntropyLoss()

    def step(m: nn.Module) -> None:
        m.zero_grad(set_to_none=True)
        loss_fn(m(x), y).backward()

    for m in models.values():
        for _ in range(warmup):
            step(m)
    samples: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            t0 = time.perf_counter()
            step(m)
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--models", nargs="+", default=list(CONV_MODELS), choices=CONV_MODELS)
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.rounds} interleaved rounds"
    )
    print(f"{'model':10s} {'NCHW ms':>9s} {'NHWC ms':>9s} {'NHWC/NCHW':>10s}")
    for name in args.models:
        models = {
            fmt: build_model(
                name, num_classes=10, input_shape=(3, 32, 32), seed=0, channels_last=fmt == "nhwc"
            )
            for fmt in ("nchw", "nhwc")
        }
        t = step_time(models, x, y, rounds=args.rounds)
        print(
            f"{name:10s} {1e3 * t['nchw']:9.1f} {1e3 * t['nhwc']:9.1f} "
            f"{t['nhwc'] / t['nchw']:10.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

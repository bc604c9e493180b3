"""Leapfrog step cost as ratios to torch's own optimisers, measured in one process.

Part 1, optimiser step only, on a ResNet-18-sized parameter set (62 tensors, 11.17 M parameters,
gradients already in ``.grad``):

* Leapfrog (streaming, no energy bookkeeping: ``track_energy=False, cap=None``) / SGD-momentum
  (foreach) and / AdamW (foreach), with the non-finite gradient guard (default, one extra read of
  the gradients and a host sync) and without it (``check_finite=False``, ``leapfrog_lean``);
* the same with energy bookkeeping (``track_energy=True``, cap 2.0, loss passed in): the full-step
  momentum is materialised, K reduced and read on the host each step.

Part 2, whole training steps (forward, backward, step) on a small CIFAR ResNet at batch 32:
streaming Leapfrog / AdamW, exact Leapfrog / SGD-momentum.

Timings are medians over interleaved rounds, so slow drifts in machine load hit every
contender alike. Run: ``python bench/bench_leapfrog.py [--rounds N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clone_params, interleaved_times, resnet18_params  # noqa: E402

import hamopt  # noqa: E402


def optimizer_step_ratios(rounds: int) -> dict[str, float]:
    base = resnet18_params()
    loss = torch.tensor(2.3)
    contenders = {
        "sgd_momentum": torch.optim.SGD(clone_params(base), lr=1e-3, momentum=0.9, foreach=True),
        "adamw": torch.optim.AdamW(clone_params(base), lr=1e-3, foreach=True),
        "leapfrog_lean": hamopt.Leapfrog(clone_params(base), lr=1e-3, mode="streaming", track_energy=False,
                                         cap=None, check_finite=False),
        "leapfrog": hamopt.Leapfrog(clone_params(base), lr=1e-3, mode="streaming", track_energy=False, cap=None),
        "leapfrog_energy": hamopt.Leapfrog(clone_params(base), lr=1e-3, mode="streaming", cap=2.0),
    }
    fns = {
        "sgd_momentum": contenders["sgd_momentum"].step,
        "adamw": contenders["adamw"].step,
        "leapfrog_lean": contenders["leapfrog_lean"].step,
        "leapfrog": contenders["leapfrog"].step,
        "leapfrog_energy": lambda: contenders["leapfrog_energy"].step(loss=loss),
    }
    return interleaved_times(fns, rounds=rounds)


def small_resnet() -> nn.Module:
    from hamopt.models import build_model

    return build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0)


def train_step_ratios(rounds: int, batch: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    fns = {}
    for name, make in {
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, foreach=True),
        "leapfrog_streaming": lambda ps: hamopt.Leapfrog(ps, lr=1e-3, mode="streaming"),
        "leapfrog_exact": lambda ps: hamopt.Leapfrog(ps, lr=1e-3, mode="exact"),
    }.items():
        model = small_resnet()
        opt = make(list(model.parameters()))

        def closure(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        fns[name] = lambda opt=opt, closure=closure: opt.step(closure)
    return interleaved_times(fns, rounds=rounds, warmup=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--train-rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    t = optimizer_step_ratios(args.rounds)
    print("\nOptimiser step, ResNet-18-sized parameters (62 tensors, 11,173,962 params)\n")
    print("| step | median ms | / SGD-momentum | / AdamW |")
    print("|---|---|---|---|")
    for k in ("sgd_momentum", "adamw", "leapfrog_lean", "leapfrog", "leapfrog_energy"):
        print(f"| {k} | {1e3 * t[k]:.2f} | {t[k] / t['sgd_momentum']:.3f} | {t[k] / t['adamw']:.3f} |")

    tt = train_step_ratios(args.train_rounds, args.batch)
    print(f"\nTraining step (forward + backward + step), CIFAR ResNet-20, batch {args.batch}\n")
    print("| train step | median ms | ratio | against |")
    print("|---|---|---|---|")
    print(f"| leapfrog streaming | {1e3 * tt['leapfrog_streaming']:.1f} | "
          f"{tt['leapfrog_streaming'] / tt['adamw']:.3f} | AdamW ({1e3 * tt['adamw']:.1f} ms) |")
    print(f"| leapfrog exact | {1e3 * tt['leapfrog_exact']:.1f} | "
          f"{tt['leapfrog_exact'] / tt['sgd_momentum']:.3f} | SGD-momentum ({1e3 * tt['sgd_momentum']:.1f} ms) |")


if __name__ == "__main__":
    main()

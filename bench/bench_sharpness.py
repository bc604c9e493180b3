"""Cost of the stability monitor: Hessian-vector products per estimate and time per estimate
relative to one training step.

Problems:

* ``digits-mlp`` — the quick problem: scikit-learn digits, 64-64-10 tanh MLP, batch 64, float32;
* ``cifar-cnn`` — the CIFAR-10 subset (``--cifar``, default ``/work/shared/data/cifar10_subset.npz``;
  random images of the same shape when absent, said in the output), small CNN (width 32, depth 2,
  60,362 parameters), batch 128, float32.

Each model first trains ``--warm`` AdamW steps (lr 1e-3) so that Adam's preconditioner exists and
the spectrum is not the initial one. Then, on one fixed batch, with the same AdamW optimiser:

* :func:`hamopt.diagnostics.stability.sharpness` at the lab's setting (``iters=50, tol=1e-3``) and at
  the API default (``iters=100, tol=1e-4``): Lanczos steps (= Hessian-vector products), median time,
  and the median over ``--repeats`` rounds of its time divided by the time of one training step
  (forward, backward, AdamW step; median of 10 — 2 for the CNN — steps) measured in the same round,
  so that a load change on a shared machine moves both;
* :func:`~hamopt.diagnostics.stability.hessian_trace` with 10 probes: time per probe, the same way.

Run ``python bench/bench_sharpness.py`` (≈ 1–2 min on this 2-core machine; ``--repeats 3`` is
quicker). One torch thread unless ``--threads``. Prints a markdown table and the versions.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from hamopt.data import load_dataset  # noqa: E402
from hamopt.diagnostics.stability import hessian_trace, sharpness  # noqa: E402
from hamopt.models import build_model  # noqa: E402


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _problem(name: str, cifar: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    if name == "digits-mlp":
        data = load_dataset("digits")
        model = build_model("mlp", num_classes=10, input_shape=tuple(data.input_shape), width=64, depth=1, seed=0)
        x, y, batch, note = data.x_train, data.y_train, 64, "digits"
    else:
        model = build_model("small_cnn", num_classes=10, input_shape=(3, 32, 32), width=32, depth=2, seed=0)
        batch = 128
        if Path(cifar).exists():
            data = load_dataset("cifar10", root=cifar)
            x, y, note = data.x_train, data.y_train, "CIFAR-10 subset"
        else:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(1024, 3, 32, 32, generator=gen)
            y = torch.randint(0, 10, (1024,), generator=gen)
            note = "random images (CIFAR-10 subset not found)"
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(y), generator=gen)[:batch]
    return model.float().train(), x[idx].float(), y[idx], note


def bench(name: str, args: argparse.Namespace) -> dict[str, Any]:
    model, x, y, note = _problem(name, args.cifar)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def train_step() -> None:
        opt.zero_grad()
        loss().backward()
        opt.step()

    for _ in range(args.warm):
        train_step()
    params = [p for p in model.parameters() if p.requires_grad]
    row: dict[str, Any] = {"problem": name, "data": note, "parameters": sum(p.numel() for p in params)}
    steps_per_round = 10 if name == "digits-mlp" else 2
    step_times: list[float] = []

    def one_round_step() -> float:  # a training step's time, measured next to each estimate
        t, _ = _timed(train_step, steps_per_round)
        step_times.append(t)
        return t

    for label, iters, tol in (("lab", 50, 1e-3), ("default", 100, 1e-4)):
        ratios, times = [], []
        for _ in range(args.repeats):
            step = one_round_step()
            t, res = _timed(lambda i=iters, t=tol: sharpness(loss, params, optimizer=opt, iters=i, tol=t), 1)
            times.append(t)
            ratios.append(t / step)
        row[f"{label}: HVPs"] = res.iterations
        row[f"{label}: converged"] = res.converged
        row[f"{label}: time (ms)"] = 1e3 * statistics.median(times)
        row[f"{label}: in train steps"] = statistics.median(ratios)
        row[f"{label}: sharpness ratio"] = res.ratio
    ratios, times = [], []
    for _ in range(max(1, args.repeats // 2)):
        step = one_round_step()
        t, _ = _timed(lambda: hessian_trace(loss, params, optimizer=opt, samples=10), 1)
        times.append(t / 10)
        ratios.append(t / 10 / step)
    row["trace: ms per probe"] = 1e3 * statistics.median(times)
    row["trace: probe in train steps"] = statistics.median(ratios)
    row["train step (ms)"] = 1e3 * statistics.median(step_times)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cifar", default="/work/shared/data/cifar10_subset.npz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(name, args) for name in ("digits-mlp", "cifar-cnn")]
    keys = list(rows[0])
    print("| " + " | ".join(["quantity"] + [r["problem"] for r in rows]) + " |")
    print("|" + "---|" * (len(rows) + 1))
    for k in keys[1:]:
        cells = [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for r in rows]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print(f"\ntorch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"threads {args.threads}, repeats {args.repeats}, warm-up {args.warm} AdamW steps")


if __name__ == "__main__":
    main()

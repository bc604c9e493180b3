"""How much of AdamW's tracked ΔH is the step's loss change, under the energy convention.

Trains the ``quick`` preset's model (64-64-10 tanh MLP, scikit-learn digits, batch 64, float32,
one thread) with the preset's AdamW entries (its step sizes, the spec's default hyperparameters:
betas (0.9, 0.999), eps 1e-8, weight decay 0.01, fused kernel as in the lab) for ``--steps`` steps per run under
:class:`hamopt.energy.EnergyTracker`, and prints per run and pooled over all runs

* ``median_t |ΔH^int_t| / |ΔL_t|`` with ``ΔL_t = L_{B_t}(θ_{t+1}) − L_{B_t}(θ_t)`` under the
  convention ``K = ½ · lr/(1−β1) · Σ m̂²/(√v̂+ε)`` (spec §5);
* the same ratio with the earlier ``K = ½ · lr · Σ m̂²/(√v̂+ε)``, i.e. (1−β1) times the tracked K.

A ratio near 1 means the tracked "ΔH" is just the loss change. Run:
``python bench/measure_adam_energy.py [--steps 200] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from hamopt.data import BatchStream, load_dataset
from hamopt.energy import EnergyTracker
from hamopt.experiments.presets import load_preset
from hamopt.models import build_model


def adamw_runs(spec) -> list[float]:
    """The step sizes of the preset's AdamW entries."""
    return [s for o in spec.optimizers if o.type == "adamw" for s in (o.step_sizes or [])]


def ratios(records, beta1: float) -> tuple[list[float], list[float]]:
    """Per step ``|ΔH^int| / |ΔL|`` under the convention and under the earlier K."""
    new, old = [], []
    for r in records:
        d_loss = r.loss_after - r.loss
        if d_loss == 0.0:
            continue
        new.append(abs(r.delta_h_int) / abs(d_loss))
        d_kin_old = (1.0 - beta1) * (r.kinetic - r.kinetic_before)
        old.append(abs(d_kin_old + d_loss) / abs(d_loss))
    return new, old


def run(spec, dataset, lr: float, seed: int, steps: int) -> tuple[list[float], list[float], float]:
    m = spec.model
    model = build_model(m.name, num_classes=dataset.num_classes, input_shape=tuple(dataset.input_shape),
                        width=m.width, depth=m.depth, seed=seed, channels_last=m.channels_last)
    model = model.to(dtype=getattr(torch, spec.dtype)).train()
    betas = (0.9, 0.999)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, eps=1e-8, weight_decay=1e-2, fused=True)
    tracker = EnergyTracker(opt)
    stream = BatchStream(dataset, batch_size=spec.batch_size, seed=seed, augment=spec.dataset.augment)
    for t in range(steps):
        x, y = stream.batch(t)
        x = x.to(getattr(torch, spec.dtype))
        tracker.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
    new, old = ratios(tracker.records, betas[0])
    return new, old, tracker.records[-1].loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = load_preset("quick")
    d = spec.dataset
    dataset = load_dataset(d.name, root=d.root, download=d.download, train_size=d.train_size,
                           test_size=d.test_size)
    pooled_new: list[float] = []
    pooled_old: list[float] = []
    print(f"quick preset, AdamW, {args.steps} steps per run, seeds {args.seeds}")
    print(f"{'lr':>10} {'seed':>4} {'last loss':>9} {'median |dH|/|dL|':>17} {'earlier K':>10}")
    for lr in adamw_runs(spec):
        for seed in args.seeds:
            new, old, last = run(spec, dataset, lr, seed, args.steps)
            pooled_new += new
            pooled_old += old
            print(f"{lr:>10.4g} {seed:>4} {last:>9.4f} {statistics.median(new):>17.4f} "
                  f"{statistics.median(old):>10.4f}")
    print(f"pooled over all steps: median |dH^int|/|dL| = {statistics.median(pooled_new):.4f} "
          f"(corrected K), {statistics.median(pooled_old):.4f} (earlier K = ½·lr·Σ m̂²/(√v̂+ε))")


if __name__ == "__main__":
    main()

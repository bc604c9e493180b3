r"""A one-minute demonstration: energy bookkeeping of Leapfrog, Euler, SGD-momentum and AdamW
(:data:`DEMO_OPTIMIZERS`, each built by its family in :mod:`hamopt.families`).

Trains the same small tanh MLP (64 → 64 → 10) on scikit-learn's bundled 8×8 digits
(:func:`hamopt.data.load_dataset`, its fixed split), full batch,
with each optimiser under the project's energy convention (spec §5), and summarises per optimiser:
final train loss, test accuracy, tail-median |ΔH^int| (steps in [0.8 T, T]) and cap engagements.
Everything is seeded; the same command prints the same table on the same CPU build.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import families


@dataclass(frozen=True)
class DemoRow:
    optimizer: str
    step_size: float
    final_loss: float
    test_accuracy: float
    tail_median_abs_delta_h: float
    cap_engagements: int
    steps: int


@dataclass(frozen=True)
class DemoOptimizer:
    """One optimiser of the demo: its family, step size, hyper and mode. The row is labelled by
    the family (``sgd-momentum``), with the mode in brackets when ``show_mode``."""

    family: families.Family
    step_size: float
    hyper: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None
    show_mode: bool = False

    @property
    def label(self) -> str:
        name = self.family.label(self.family.validate_hyper(self.hyper, mode=self.mode))
        return f"{name} ({self.mode})" if self.show_mode else name


DEMO_OPTIMIZERS = (
    DemoOptimizer(families.LEAPFROG, 0.3, mode="exact", show_mode=True),
    DemoOptimizer(families.LEAPFROG, 0.3, mode="streaming", show_mode=True),
    DemoOptimizer(families.EULER, 0.3, mode="exact"),
    DemoOptimizer(families.SGD, 0.05, {"momentum": 0.9}),
    DemoOptimizer(families.ADAMW, 3e-3),
)


def run(steps: int = 300, seed: int = 0) -> list[DemoRow]:
    """Train one model per optimiser for ``steps`` full-batch steps; return the summary rows."""
    from ..data import load_dataset
    from ..energy import EnergyTracker
    from ..models import build_model

    data = load_dataset("digits")
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for demo in DEMO_OPTIMIZERS:
        name, step_size = demo.label, demo.step_size
        model = build_model("mlp", num_classes=10, input_shape=data.input_shape, width=64, seed=seed)
        # torch's plain kernels, as the demo's table has always been measured with
        opt = demo.family.build(model.parameters(), step_size, demo.hyper, mode=demo.mode, seed=seed, fused=False)
        tracker = EnergyTracker(opt)
        for _ in range(steps):
            tracker.step(lambda m=model: loss_fn(m(xtr), ytr))
        records = tracker.records
        tail = records[int(0.8 * steps):]
        deltas = [r.delta_h_int if r.delta_h_int is not None else r.delta_h_traj for r in tail]
        deltas = [abs(d) for d in deltas if d is not None]
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
            final = float(loss_fn(model(xtr), ytr))
        rows.append(
            DemoRow(name, step_size, final, acc, statistics.median(deltas) if deltas else float("nan"),
                    records[-1].cap_engagements, steps)
        )
    return rows


def format_table(rows: list[DemoRow]) -> str:
    head = f"{'optimizer':<22}{'step':>8}{'loss':>10}{'test acc':>10}{'tail |dH|':>12}{'cap':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.optimizer:<22}{r.step_size:>8g}{r.final_loss:>10.4f}{r.test_accuracy:>10.3f}"
            f"{r.tail_median_abs_delta_h:>12.3e}{r.cap_engagements:>6d}"
        )
    return "\n".join(lines)

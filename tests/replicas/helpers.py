"""Shared set-up of the replica tests: a tiny MLP problem run replica by replica (the unbatched
optimiser and EnergyTracker) and as one batch (ReplicaStack + replica optimiser + ReplicaTracker)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hamopt import families
from hamopt.energy import EnergyTracker
from hamopt.replicas import ReplicaStack, ReplicaTracker, build_replica_optimizer

FIELDS = ("loss", "loss_after", "kinetic_before", "kinetic", "hamiltonian_before", "hamiltonian", "delta_h_int",
          "grad_norm", "resampling", "delta_h_traj")
SAMPLES, BATCH, FEATURES, CLASSES = 96, 16, 6, 3


def make_model(seed: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 12), nn.Tanh(), nn.Linear(12, CLASSES)).to(dtype)


def data(seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(SAMPLES, FEATURES, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x.to(dtype), y


def batch(x: torch.Tensor, y: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    start = (t * BATCH) % SAMPLES
    return x[start:start + BATCH], y[start:start + BATCH]


def run_alone(type_: str, step_size: float, seed: int, hyper: dict[str, Any], mode: str | None, steps: int,
              dtype: torch.dtype, poison: dict[int, int] | None = None, opt_seed: int | None = None) -> list[Any]:
    """Replica ``seed`` alone: its records until it stops (non-finite: the tracker raises)."""
    model = make_model(seed, dtype)
    x, y = data(seed, dtype)
    family = families.get(type_)
    opt = family.build(model.parameters(), step_size, hyper, mode=mode if family.modes else None,
                       **({} if opt_seed is None else {"seed": opt_seed}))
    tracker = EnergyTracker(opt)
    for t in range(steps):
        xb, yb = batch(x, y, t)
        if poison and poison.get(seed) == t:
            xb = xb * float("nan")
        try:
            tracker.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
        except FloatingPointError:
            break
    return list(tracker.records)


def run_batched(type_: str, step_sizes: list[float], seeds: list[int], hyper: dict[str, Any], mode: str | None,
                steps: int, dtype: torch.dtype, poison: dict[int, int] | None = None,
                stop_after: int | None = None) -> tuple[ReplicaTracker, Any, ReplicaStack]:
    stack = ReplicaStack([make_model(s, dtype) for s in seeds])
    from hamopt.experiments.drift_setup import optimizer_seed

    opt = build_replica_optimizer(type_, stack.parameters(), step_sizes, hyper, mode=mode,
                                  seeds=[optimizer_seed(s) for s in seeds])
    tracker = ReplicaTracker(opt, stack.zero_grad)
    advance(tracker, stack, seeds, 0, steps if stop_after is None else stop_after, dtype, poison)
    return tracker, opt, stack


def advance(tracker: ReplicaTracker, stack: ReplicaStack, seeds: list[int], start: int, stop: int,
            dtype: torch.dtype, poison: dict[int, int] | None = None) -> None:
    sets = [data(s, dtype) for s in seeds]
    for t in range(start, stop):
        parts = [batch(x, y, t) for x, y in sets]
        xb = torch.stack([p[0] for p in parts])
        yb = torch.stack([p[1] for p in parts])
        for r, s in enumerate(seeds):
            if poison and poison.get(s) == t:
                xb[r] = float("nan")
        tracker.step(lambda xb=xb, yb=yb: stack.losses(xb, yb))


def assert_records_close(alone: list[Any], batched: list[Any], rtol: float) -> None:
    """Every series (a field over the steps) within ``rtol`` relative to its own largest magnitude;
    the energy differences (ΔH, δ) relative to the run's energy scale."""
    assert len(alone) == len(batched), (len(alone), len(batched))
    scale = max(abs(v) for r in alone for v in (r.loss, r.hamiltonian or 0.0, r.kinetic or 0.0))
    largest = {name: max([abs(getattr(r, name)) for r in alone if getattr(r, name) is not None], default=0.0)
               for name in FIELDS}
    for a, b in zip(alone, batched):
        assert a.step == b.step and a.mode == b.mode and a.cap_engaged == b.cap_engaged, (a, b)
        assert a.cap_engagements == b.cap_engagements
        for name in FIELDS:
            va, vb = getattr(a, name), getattr(b, name)
            if va is None or vb is None:
                assert va is None and vb is None, (name, a.step, va, vb)
                continue
            ref = scale if name in ("delta_h_int", "resampling", "delta_h_traj") else largest[name]
            assert math.isclose(va, vb, rel_tol=0, abs_tol=rtol * ref), (name, a.step, va, vb, abs(va - vb) / ref)

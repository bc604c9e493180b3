"""Shared pieces of the ECD optimiser tests: small problems, closures and factories."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import hamopt
from hamopt import testfunctions as tf

# Small-problem hyperparameters; nu = 0 (no chaos) unless a test says otherwise.
FACTORIES: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "ECDSep": lambda params, **kw: hamopt.ECDSep(params, **{"lr": 0.01, "eta": 2.0, "nu": 0.0, **kw}),
    "BBI": lambda params, **kw: hamopt.BBI(params, **{"lr": 0.005, **kw}),
    "ECDq1": lambda params, **kw: hamopt.ECDq1(params, **{"lr": 0.01, "eta": 2.0, "nu": 0.0, **kw}),
}
NAMES = list(FACTORIES)
# The keyword that turns the randomness on (BBI's randomness lives in its bounces).
CHAOS = {"ECDSep": {"nu": 1e-2}, "BBI": {"threshold0": 4, "threshold": 6, "n_fixed_bounces": 3},
         "ECDq1": {"nu": 0.1}}


def make(name: str, params: Any, **kw: Any) -> torch.optim.Optimizer:
    return FACTORIES[name](params, **kw)


def closure_for(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


def run(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], steps: int) -> list[dict[str, Any]]:
    """``steps`` steps; the stats of each."""
    out = []
    closure = closure_for(opt, loss_fn)
    for _ in range(steps):
        opt.step(closure)
        out.append(dict(opt.stats))
    return out


def function(name: str = "rosenbrock", dim: int = 10) -> tf.TestFunction:
    return tf.make(name, dim, dtype=torch.float64)


class TwoTensors(nn.Module):
    """A smooth loss of two parameter tensors (a 3×4 matrix and a 5-vector), float64."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
        self.register_buffer("target", torch.randn(3, 4, generator=g, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return ((self.w - self.target).square().sum() + 0.5 * (self.b - 1.0).pow(4).sum()
                + 0.1 * (self.w.sum() * self.b.sum()).square())


def roundtrip(sd: dict[str, Any]) -> dict[str, Any]:
    """``torch.save`` → ``torch.load(weights_only=True)``."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def flat(params: Any) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])

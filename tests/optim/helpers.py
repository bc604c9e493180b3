"""Small problems shared by the optimiser tests."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """``L(x) = ½ Σ k_i x_i²`` on one parameter vector."""

    def __init__(self, stiffness, start, dtype=torch.float64):
        super().__init__()
        self.register_buffer("k", torch.tensor(stiffness, dtype=dtype))
        self.x = nn.Parameter(torch.tensor(start, dtype=dtype))

    def forward(self):
        return 0.5 * (self.k * self.x**2).sum()


def closure_for(opt, loss_fn):
    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


def tanh_mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(64, 5, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=g)
    loss_fn = lambda: nn.functional.cross_entropy(model(x), y)  # noqa: E731
    return model, loss_fn


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])

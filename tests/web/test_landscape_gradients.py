"""The landscapes' analytic ``value_and_gradient`` against autograd of their torch ``value``."""

from __future__ import annotations

import math

import pytest
import torch

from hamopt.landscapes import LANDSCAPES, make_landscape


def _points(name: str, n: int = 60) -> torch.Tensor:
    """``n`` seeded points over the landscape's window and a little beyond, plus the origin."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    g = torch.Generator().manual_seed(7)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    pts = torch.stack([x0 + u[:, 0] * (x1 - x0), y0 + u[:, 1] * (y1 - y0)], dim=-1)
    return torch.cat([pts, torch.zeros(1, 2, dtype=torch.float64)])


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_value_and_gradient_match_autograd(name):
    land = make_landscape(name)
    for point in _points(name):
        x = point.clone().requires_grad_(True)
        value = land.value(x)
        (grad,) = torch.autograd.grad(value, x)
        value = value.detach()
        got = land.value_and_gradient(*point.tolist())
        assert got[0] == pytest.approx(value.item(), rel=1e-13, abs=1e-13)
        assert got[1:] == pytest.approx(grad.tolist(), rel=1e-11, abs=1e-11), (name, point.tolist())


def test_noisy_loss_and_gradient_use_the_batch_shift():
    land = make_landscape("noisy_quadratic", (0.7, -0.4), noise=0.3, seed=3)
    batch = land.sample_batch()
    land.theta.grad = None
    loss = land.loss(batch)
    loss.backward()
    loss = loss.detach()
    got = land.loss_and_gradient(batch)
    assert got[0] == pytest.approx(loss.item(), rel=1e-14)
    assert got[1:] == pytest.approx(land.theta.grad.tolist(), rel=1e-14)
    assert got != land.loss_and_gradient(None)


def test_ackley_gradient_is_zero_at_the_minimiser_and_nan_off_the_reals():
    land = make_landscape("ackley")
    loss, gx, gy = land.value_and_gradient(0.0, 0.0)
    assert abs(loss) < 1e-12 and gx == 0.0 and gy == 0.0
    assert all(math.isnan(v) for v in land.value_and_gradient(math.inf, 0.0))

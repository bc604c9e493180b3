"""LossTracker: losses and gradient norms without energy bookkeeping, with the same safety."""

import math

import pytest
import torch

import hamopt
from hamopt.energy import EnergyTracker, LossTracker
from hamopt.errors import NonFiniteError


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)
    model = torch.nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 4, generator=g))
        model.bias.zero_()
    return model, (lambda: torch.nn.functional.mse_loss(model(x), y))


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-2),
    lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    lambda ps: hamopt.Leapfrog(ps, lr=0.05, mode="streaming"),
    lambda ps: hamopt.ECDq1(ps, lr=0.5, eta=10.0, F0=0.0, nu=0.0),
])
def test_same_trajectory_and_losses_as_energy_tracker(make):
    m1, loss1 = _problem()
    m2, loss2 = _problem()
    t1, t2 = EnergyTracker(make(list(m1.parameters()))), LossTracker(make(list(m2.parameters())))
    for _ in range(5):
        r1, r2 = t1.step(loss1), t2.step(loss2)
        assert r2.loss == r1.loss and r2.grad_norm == r1.grad_norm
        assert r2.kinetic is None and r2.hamiltonian is None and r2.loss_after is None
        assert r2.mode == "loss-only" and r2.step_size == r1.step_size
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_non_finite_loss_raises_before_the_step():
    model, loss = _problem()
    tracker = LossTracker(torch.optim.SGD(model.parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteError):
        tracker.step(lambda: loss() * math.inf)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))

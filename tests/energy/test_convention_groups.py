"""Per-group factors, torch's first SGD step, and the configurations the conventions refuse."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hamopt.energy import EnergyTracker, convention_for, kinetic

from ..optim.helpers import closure_for, tanh_mlp


def two_groups(model: nn.Sequential, first: dict, second: dict) -> list[dict]:
    return [{"params": list(model[0].parameters()), **first}, {"params": list(model[2].parameters()), **second}]


def train(opt, loss_fn, steps):
    for _ in range(steps):
        opt.step(closure_for(opt, loss_fn))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_sums_over_groups_with_each_groups_lr_and_beta1(amsgrad):
    model, loss_fn = tanh_mlp()
    groups = two_groups(model, {"lr": 1e-3, "betas": (0.8, 0.99)}, {"lr": 5e-3, "betas": (0.95, 0.999)})
    opt = torch.optim.AdamW(groups, eps=1e-7, weight_decay=0.01, amsgrad=amsgrad)
    train(opt, loss_fn, 6)
    expected = 0.0
    for group in opt.param_groups:
        lr, (b1, b2) = group["lr"], group["betas"]
        for p in group["params"]:
            st = opt.state[p]
            t = float(st["step"])
            m_hat = st["exp_avg"] / (1 - b1**t)
            v_hat = (st["max_exp_avg_sq"] if amsgrad else st["exp_avg_sq"]) / (1 - b2**t)
            expected += 0.5 * lr / (1 - b1) * (m_hat**2 / (v_hat.sqrt() + 1e-7)).sum().item()
    assert kinetic(opt) == pytest.approx(expected, rel=1e-10)
    assert convention_for(opt).time_step(opt) == pytest.approx(math.sqrt(1e-3 * (1 - 0.8)))


def test_sgd_sums_over_groups_with_each_groups_lr_and_dampening():
    model, loss_fn = tanh_mlp()
    groups = two_groups(model, {"lr": 0.05, "dampening": 0.2}, {"lr": 0.01, "dampening": 0.6})
    opt = torch.optim.SGD(groups, momentum=0.9)
    train(opt, loss_fn, 5)
    expected = sum(
        0.5 * g["lr"] / (1 - g["dampening"]) * opt.state[p]["momentum_buffer"].pow(2).sum().item()
        for g in opt.param_groups
        for p in g["params"]
    )
    assert kinetic(opt) == pytest.approx(expected, rel=1e-12)
    assert convention_for(opt).time_step(opt) == pytest.approx(math.sqrt(0.05 * 0.8))


def test_torch_first_sgd_step_is_read_as_the_buffer_it_leaves():
    """Torch's first step sets b = g_0 (no dampening): K_1 = ½·lr/(1−d)·‖g_0‖²."""
    model, loss_fn = tanh_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.5)
    assert kinetic(opt) == 0.0
    closure_for(opt, loss_fn)()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    g_sq = sum(g.pow(2).sum().item() for g in grads)
    assert kinetic(opt) == pytest.approx(0.5 * 0.05 / 0.5 * g_sq, rel=1e-12)


def test_plain_sgd_displacement_uses_each_groups_lr():
    model, loss_fn = tanh_mlp()
    opt = torch.optim.SGD(two_groups(model, {"lr": 0.05}, {"lr": 0.2}))
    tracker = EnergyTracker(opt)
    before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
    record = tracker.step(loss_fn)
    expected = sum(
        0.5 * sum((p.detach() - b).pow(2).sum().item() for p, b in zip(g["params"], olds)) / g["lr"]
        for g, olds in zip(opt.param_groups, before)
    )
    assert record.kinetic == pytest.approx(expected, rel=1e-10)
    assert record.kinetic == pytest.approx(kinetic(opt), rel=1e-8)  # the same K recovered from .grad


@pytest.mark.parametrize("nesterov_group", [0, 1])
def test_nesterov_sgd_is_refused_before_any_step(nesterov_group):
    model, loss_fn = tanh_mlp()
    settings = [{"lr": 0.05}, {"lr": 0.05}]
    settings[nesterov_group]["nesterov"] = True
    opt = torch.optim.SGD(two_groups(model, *settings), momentum=0.9)
    with pytest.raises(ValueError, match=rf"param group {nesterov_group}: .*nesterov=True"):
        EnergyTracker(opt)
    with pytest.raises(ValueError, match="nesterov"):
        convention_for(opt).time_step(opt)
    train(opt, loss_fn, 1)  # torch steps it; the convention still has no K for its buffers
    with pytest.raises(ValueError, match=rf"param group {nesterov_group}: .*nesterov=True"):
        kinetic(opt)


def test_full_dampening_is_refused():
    model, _ = tanh_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=1.0)
    with pytest.raises(ValueError, match=r"dampening must be in \[0, 1\).*got 1\.0"):
        EnergyTracker(opt)


def sgd_map_matrix(stiffness: torch.Tensor, *, lr: float, momentum: float, nesterov: bool) -> torch.Tensor:
    """The linear one-step map (θ, b) → (θ', b') of torch's SGD on ``L = ½ Σ k_i θ_i²``,
    column by column (one step from each basis state)."""
    n = len(stiffness)
    columns = []
    for j in range(2 * n):
        basis = torch.zeros(2 * n, dtype=torch.float64)
        basis[j] = 1.0
        x = nn.Parameter(basis[:n].clone())
        opt = torch.optim.SGD([x], lr=lr, momentum=momentum, nesterov=nesterov)
        opt.state[x]["momentum_buffer"] = basis[n:].clone()
        x.grad = stiffness * x.detach()
        opt.step()
        columns.append(torch.cat([x.detach(), opt.state[x]["momentum_buffer"]]))
    return torch.stack(columns, dim=1)


def test_nesterov_map_is_not_volume_preserving_up_to_the_damping():
    """Heavy ball: det = μⁿ (damped symplectic Euler); Nesterov: μⁿ det(I − lr A)."""
    stiffness = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    lr, mu = 0.1, 0.9
    heavy = torch.linalg.det(sgd_map_matrix(stiffness, lr=lr, momentum=mu, nesterov=False))
    nesterov = torch.linalg.det(sgd_map_matrix(stiffness, lr=lr, momentum=mu, nesterov=True))
    assert float(heavy) == pytest.approx(mu**3, rel=1e-12)
    assert float(nesterov) == pytest.approx(mu**3 * float(torch.prod(1 - lr * stiffness)), rel=1e-12)

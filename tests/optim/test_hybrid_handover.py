"""The velocity hand-over of hamopt.Hybrid: θ̇ = M⁻¹p is preserved under the energy conventions,
and the next step's displacement is the new time step times that velocity."""

import math

import pytest
import torch

from hamopt import Hybrid, Leapfrog, Phase
from hamopt.optim.handover import adam_steady_step, read_velocity, transfer_velocity, write_velocity


def _params():
    g = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter(torch.randn(4, 6, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))
    return [w, b]


def _quadratic(params):
    return 0.5 * sum((p * p).sum() * (i + 1) for i, p in enumerate(params))


def _warm(kind, params, steps=3):
    """An optimiser of ``kind`` with momentum after a few steps on a quadratic."""
    make = {
        "leapfrog": lambda: Leapfrog(params, lr=0.1, gamma=0.2),
        "sgd": lambda: torch.optim.SGD(params, lr=0.05, momentum=0.9, dampening=0.3),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.0),
    }[kind]
    opt = make()
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = _quadratic(params)
            loss.backward()
            return loss
        opt.step(closure)
    return opt


FRESH = {
    "leapfrog": lambda ps: Leapfrog(ps, lr=0.3, gamma=0.1, mass="fan_in"),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.8, dampening=0.1),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=3e-3, betas=(0.9, 0.999), weight_decay=0.0),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, lr=3e-3, amsgrad=True),
}


@pytest.mark.parametrize("old", ["leapfrog", "sgd", "adamw"])
@pytest.mark.parametrize("new", list(FRESH))
def test_transfer_preserves_the_velocity(old, new):
    params = _params()
    source = _warm(old, params)
    before = read_velocity(source)
    assert len(before) == 2 and all(v.abs().sum() > 0 for v in before.values())
    target = FRESH[new](params)
    assert transfer_velocity(source, target) == 2
    after = read_velocity(target)
    for p in params:
        torch.testing.assert_close(after[p], before[p], rtol=1e-12, atol=0)


def _free_step(opt, params):
    """One step with a zero gradient (a free particle): the displacement is the drift alone."""
    start = [p.detach().clone() for p in params]

    def closure():
        opt.zero_grad()
        loss = sum((0.0 * p).sum() for p in params)
        loss.backward()
        return loss

    opt.step(closure)
    return [p.detach() - s for p, s in zip(params, start)]


def test_next_sgd_step_moves_h_times_the_decayed_velocity():
    params = _params()
    velocity = read_velocity(_warm("leapfrog", params))
    lr, mu, d = 0.02, 0.8, 0.1
    target = torch.optim.SGD(params, lr=lr, momentum=mu, dampening=d)
    write_velocity(target, velocity)
    h = math.sqrt(lr * (1 - d))
    for p, step in zip(params, _free_step(target, params)):
        torch.testing.assert_close(step, h * mu * velocity[p], rtol=1e-12, atol=1e-15)


def test_next_leapfrog_step_moves_dt_times_the_decayed_velocity():
    params = _params()
    velocity = read_velocity(_warm("sgd", params))
    dt, gamma = 0.3, 0.1
    target = Leapfrog(params, lr=dt, gamma=gamma)
    write_velocity(target, velocity)
    for p, step in zip(params, _free_step(target, params)):
        torch.testing.assert_close(step, dt * math.exp(-gamma * dt / 2) * velocity[p], rtol=1e-12, atol=1e-15)


def test_next_adam_step_moves_h_times_the_velocity_with_the_steady_decay():
    params = _params()
    source = _warm("leapfrog", params)
    velocity = read_velocity(source)
    for p in params:  # the metric estimate: g² of the gradient at the hand-over
        p.grad = torch.full_like(p, 0.5)
    lr, b1, b2 = 3e-3, 0.9, 0.999
    target = torch.optim.AdamW(params, lr=lr, betas=(b1, b2), weight_decay=0.0, eps=1e-12)
    transfer_velocity(source, target)
    state = target.state[params[0]]
    assert float(state["step"]) == adam_steady_step((b1, b2)) and b2 ** float(state["step"]) < 1e-16
    h = math.sqrt(lr * (1 - b1))
    for p, step in zip(params, _free_step(target, params)):
        # zero gradient: m' = β1 m, v' = β2 v, bias corrections 1  ->  Δθ = h β1/√β2 · θ̇
        torch.testing.assert_close(step, h * b1 / math.sqrt(b2) * velocity[p], rtol=1e-9, atol=1e-15)


def test_hybrid_switch_hands_over_the_velocity_and_reset_does_not():
    for handover, expect_state in (("velocity", True), ("reset", False)):
        params = _params()
        opt = Hybrid(params, [Phase("leapfrog", 0.1, steps=2), Phase("sgd", 0.05, hyper={"momentum": 0.9})],
                     handover=handover)

        def closure(opt=opt, params=params):
            opt.zero_grad()
            loss = _quadratic(params)
            loss.backward()
            return loss

        opt.step(closure)
        opt.step(closure)
        assert opt.stats["switched"] and isinstance(opt.active_optimizer, torch.optim.SGD)
        has = any("momentum_buffer" in opt.active_optimizer.state.get(p, {}) for p in params)
        assert has is expect_state


def test_hybrid_velocity_at_switch_equals_the_last_leapfrog_velocity():
    params = _params()
    opt = Hybrid(params, [Phase("leapfrog", 0.1, hyper={"gamma": 0.2}, steps=3),
                          Phase("adamw", 1e-2, hyper={"weight_decay": 0.0})])

    def closure():
        opt.zero_grad()
        loss = _quadratic(params)
        loss.backward()
        return loss

    opt.step(closure)
    opt.step(closure)
    leap = opt.active_optimizer
    opt.step(closure)  # third step: the switch happens at its end
    before = read_velocity(leap)
    after = read_velocity(opt.active_optimizer)
    for p in params:
        torch.testing.assert_close(after[p], before[p], rtol=1e-12, atol=0)

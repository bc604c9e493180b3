"""The family records' sharpness rules, preconditioner accessors and the band rules derived from them."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt
from hamopt import families
from hamopt.diagnostics.thresholds import (
    adam_threshold,
    euler_threshold,
    heavy_ball_threshold,
    leapfrog_threshold,
    step_size_at,
    threshold_for,
)


def _spectral_radius(matrix: list[list[float]]) -> float:
    return float(torch.linalg.eigvals(torch.tensor(matrix, dtype=torch.float64)).abs().max())


def _leapfrog_map(lam: float, dt: float, gamma: float) -> list[list[float]]:
    a, c = math.exp(-gamma * dt / 2), dt * lam / 2  # kick–drift–kick on (x, p), unit mass
    kick = torch.tensor([[1.0, 0.0], [-c, a]], dtype=torch.float64)
    drift = torch.tensor([[1.0, dt], [0.0, 1.0]], dtype=torch.float64)
    return (kick @ drift @ kick).tolist()


def _euler_map(lam: float, dt: float, gamma: float) -> list[list[float]]:
    return [[1.0, dt], [-dt * lam, math.exp(-gamma * dt)]]


def _heavy_ball_map(lam: float, lr: float, mu: float, d: float, wd: float) -> list[list[float]]:
    k = lam + wd  # (x, b): b⁺ = μ b + (1−d) k x, x⁺ = x − lr b⁺
    return [[1.0 - lr * (1 - d) * k, -lr * mu], [(1 - d) * k, mu]]


@pytest.mark.parametrize("gamma", [0.0, 0.3, 4.0])
def test_leapfrog_and_euler_thresholds_are_where_the_linear_map_turns_unstable(gamma):
    dt = 0.4
    lam = leapfrog_threshold(dt, {"gamma": gamma})
    assert _spectral_radius(_leapfrog_map(lam * 0.99, dt, gamma)) <= 1.0 + 1e-12
    assert _spectral_radius(_leapfrog_map(lam * 1.01, dt, gamma)) > 1.0
    if gamma:
        lam = euler_threshold(dt, {"gamma": gamma})
        assert _spectral_radius(_euler_map(lam * 0.99, dt, gamma)) < 1.0
        assert _spectral_radius(_euler_map(lam * 1.01, dt, gamma)) > 1.0
    else:
        assert euler_threshold(dt, {"gamma": 0.0}) == 0.0
        assert _spectral_radius(_euler_map(1e-3, dt, 0.0)) > 1.0


@pytest.mark.parametrize(("mu", "d", "wd"), [(0.0, 0.0, 0.0), (0.9, 0.0, 0.0), (0.5, 0.4, 0.2)])
def test_heavy_ball_threshold_is_where_the_linear_map_turns_unstable(mu, d, wd):
    lr = 0.05
    lam = heavy_ball_threshold(lr, {"momentum": mu, "dampening": d, "weight_decay": wd})
    assert _spectral_radius(_heavy_ball_map(lam * 0.99, lr, mu, d, wd)) < 1.0
    assert _spectral_radius(_heavy_ball_map(lam * 1.01, lr, mu, d, wd)) > 1.0


def test_adam_threshold_is_heavy_ball_with_dampening_beta1():
    assert adam_threshold(1e-3, {"betas": (0.9, 0.999)}) == pytest.approx(38.0 / 1e-3)
    assert adam_threshold(0.1, {"betas": (0.5, 0.9)}) == pytest.approx(
        heavy_ball_threshold(0.1, {"momentum": 0.5, "dampening": 0.5}))


def test_every_builtin_family_has_a_sharpness_rule_and_the_right_preconditioner():
    x = torch.zeros(3, 4, requires_grad=True)
    for name in ("leapfrog", "euler"):
        opt = families.get(name).build([x], 0.1, {"mass": "fan_in"})
        assert families.get(name).inverse_preconditioner(opt)(x) == pytest.approx(0.5)  # 1/√fan_in
        assert families.get(name).sharpness.preconditioned
    for name in ("sgd", "ecdsep", "bbi", "ecdq1"):
        assert families.get(name).preconditioner is None
    assert families.ADAMW.sharpness.preconditioned and families.ADAMW.preconditioner is not None
    for name in ("ecdsep", "bbi", "ecdq1"):
        rule = families.get(name).sharpness
        assert rule.threshold is None and rule.description.startswith("no threshold")


def test_threshold_for_an_optimizer_a_family_and_an_unregistered_optimizer():
    x = torch.zeros(2, requires_grad=True)
    assert threshold_for(torch.optim.SGD([x], lr=0.1, momentum=0.9)).value == pytest.approx(38.0)
    assert threshold_for("adamw", step_size=1e-3).value == pytest.approx(38000.0)
    assert threshold_for("leapfrog", step_size=0.5, hyper={"gamma": 0.0}).value == pytest.approx(16.0)
    got = threshold_for(torch.optim.Adagrad([x], lr=0.1))
    assert got.value is None and "not a registered" in got.description
    with pytest.raises(ValueError, match="needs step_size"):
        threshold_for("sgd")
    with pytest.raises(ValueError, match="only with a family name"):
        threshold_for(hamopt.Leapfrog([x], lr=0.1), step_size=0.2)


def test_band_rules_derive_from_the_thresholds():
    lam = 16.0
    # leapfrog and euler: fractions of the undamped leapfrog limit 2/√λ, whatever the damping
    for family in (families.LEAPFROG, families.EULER):
        assert family.stability.step_size(0.5, lam, {"gamma": 0.7}) == pytest.approx(0.25, rel=1e-12)
    # sgd: the heavy-ball limit, weight decay included
    rule = families.SGD.stability
    hyper = {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.5}
    lr = rule.step_size(1.0, lam, hyper)
    assert lr == pytest.approx(3.8 / 16.5, rel=1e-12)
    assert heavy_ball_threshold(lr, hyper) == pytest.approx(lam, rel=1e-12)


def test_step_size_at_inverts_a_threshold_and_refuses_an_unreachable_one():
    lam = 7.0
    dt = step_size_at(leapfrog_threshold, lam, {"gamma": 2.0})
    assert leapfrog_threshold(dt, {"gamma": 2.0}) == pytest.approx(lam, rel=1e-12)
    with pytest.raises(ValueError, match="no stable step"):
        step_size_at(euler_threshold, lam, {"gamma": 0.0})
    with pytest.raises(ValueError, match="eigenvalue must be finite and > 0"):
        step_size_at(leapfrog_threshold, -1.0, {})

"""The thresholds predict divergence: on a quadratic, each optimiser set to a measured sharpness
ratio of 0.9 stays bounded and at 1.1 diverges (the real optimisers, float64)."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt
from hamopt import families
from hamopt.diagnostics.stability import sharpness
from hamopt.diagnostics.thresholds import step_size_at

F64 = torch.float64
LAMBDA = 10.0


def _hessian(n: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    return q @ torch.diag(torch.linspace(0.5, LAMBDA, n, dtype=F64)) @ q.T


def _limit(family, ratio: float, hyper: dict) -> float:
    """The step size at which λ_max / threshold == ratio."""
    return step_size_at(family.sharpness.threshold, LAMBDA / ratio, {**family.defaults(), **hyper})


def _sgd(x, ratio, hyper):
    return torch.optim.SGD([x], lr=_limit(families.SGD, ratio, hyper), **hyper)


def _adam(cls, family):
    # eps dominates √v̂ at these tiny gradients, so P = diag(√v̂+ε) stays frozen as the rule assumes
    hyper = {"betas": (0.9, 0.999), "eps": 1e-2, "weight_decay": 0.0}

    def build(x, ratio, _):
        return cls([x], lr=_limit(family, ratio, hyper) * hyper["eps"], **hyper)

    return build


def _hamiltonian(cls, family, gamma, mode="exact"):
    def build(x, ratio, _):
        dt = _limit(family, ratio, {"gamma": gamma})
        return cls([x], lr=dt, gamma=gamma, cap=None, mass="identity", mode=mode)

    return build


CASES = {
    "gradient-descent": (lambda x, r, h: _sgd(x, r, {"momentum": 0.0}), 200),
    "heavy-ball": (lambda x, r, h: _sgd(x, r, {"momentum": 0.9}), 200),
    "heavy-ball-dampened-decayed": (
        lambda x, r, h: _sgd(x, r, {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.5}), 200),
    "adam": (_adam(torch.optim.Adam, families.ADAM), 300),
    "adamw": (_adam(torch.optim.AdamW, families.ADAMW), 300),
    "leapfrog": (_hamiltonian(hamopt.Leapfrog, families.LEAPFROG, 0.0), 100),
    "leapfrog-damped": (_hamiltonian(hamopt.Leapfrog, families.LEAPFROG, 3.0), 100),
    "leapfrog-streaming": (_hamiltonian(hamopt.Leapfrog, families.LEAPFROG, 0.5, "streaming"), 100),
    "euler-damped": (_hamiltonian(hamopt.Euler, families.EULER, 10.0), 300),
}


def _run(build, ratio: float, steps: int) -> tuple[float, float]:
    """(measured ratio, ‖x_end‖/‖x_0‖ maximised over the run)."""
    h = _hessian()
    x = torch.full((6,), 1e-9, dtype=F64, requires_grad=True)

    def loss():
        return 0.5 * x @ h @ x

    opt = build(x, ratio, None)

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    if isinstance(opt, torch.optim.Adam):  # warm up at a tiny lr: m's bias correction reaches 1
        lr = opt.param_groups[0]["lr"]
        opt.param_groups[0]["lr"] = lr * 1e-4
        for _ in range(150):
            opt.step(closure)
        opt.param_groups[0]["lr"] = lr
    measured = sharpness(loss, [x], optimizer=opt).ratio
    start = float(x.detach().norm())
    worst = 1.0
    for _ in range(steps):
        opt.step(closure)
        worst = max(worst, float(x.detach().norm()) / start)
        if worst > 1e6:
            break
    return measured, worst


@pytest.mark.parametrize("name", list(CASES))
def test_ratio_09_stays_bounded_and_11_diverges(name):
    build, steps = CASES[name]
    measured, growth = _run(build, 0.9, steps)
    assert measured == pytest.approx(0.9, rel=1e-4)
    # bounded: at most the transient of a non-normal map (heavy ball starting with full momentum)
    assert growth < 100.0, f"{name} at ratio 0.9 grew by {growth:.3g}"
    measured, growth = _run(build, 1.1, steps)
    assert measured == pytest.approx(1.1, rel=1e-4)
    assert growth > 1e4, f"{name} at ratio 1.1 grew only by {growth:.3g}"


def test_damping_lowers_the_leapfrog_limit():
    """At γ·dt ≈ 1.8 the undamped rule 4/dt² calls this step stable (ratio 0.87), yet it diverges
    as the damped threshold 4(1+a²)/((1+a)dt²) predicts."""
    build = _hamiltonian(hamopt.Leapfrog, families.LEAPFROG, 3.0)
    dt = _limit(families.LEAPFROG, 1.05, {"gamma": 3.0})
    assert LAMBDA * dt * dt / 4.0 < 0.95
    _, growth = _run(build, 1.05, 200)
    assert growth > 1e4


def test_undamped_euler_has_threshold_zero():
    x = torch.ones(3, dtype=F64, requires_grad=True)
    opt = hamopt.Euler([x], lr=0.01, gamma=0.0, cap=None)
    res = sharpness(lambda: 0.5 * (x * x).sum(), [x], optimizer=opt)
    assert res.threshold == 0.0 and res.ratio == math.inf


def test_ecd_reports_no_threshold_with_the_reason():
    x = torch.ones(3, dtype=F64, requires_grad=True)
    opt = hamopt.ECDSep([x], lr=0.01, eta=1.0)
    res = sharpness(lambda: 0.5 * (x * x).sum() + 1.0, [x], optimizer=opt)
    assert res.lambda_max == pytest.approx(1.0, rel=1e-6)
    assert res.threshold is None and res.ratio is None and "no threshold" in res.rule

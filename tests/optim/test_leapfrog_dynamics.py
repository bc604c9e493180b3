"""Leapfrog dynamics: energy conservation, dt² scaling, reversibility, volume, Euler contrast."""

import math

import numpy as np
import pytest
import torch

import hamopt
from hamopt.diagnostics import fit_loglog_slope, round_trip
from hamopt.optim.functional import euler_step, leapfrog_step

from .helpers import Quadratic, closure_for, flat, tanh_mlp


def energy_errors(cls, stiffness, start, dt, steps):
    model = Quadratic(stiffness, start)
    opt = cls(model.parameters(), lr=dt, gamma=0.0, mass="identity", cap=None, mode="exact")
    closure = closure_for(opt, model)
    h0 = float(model().detach())
    errs = []
    for _ in range(steps):
        opt.step(closure)
        errs.append(opt.stats["hamiltonian"] - h0)
    return np.array(errs)


PROBLEMS = {
    "harmonic oscillator": ([1.0], [1.0]),
    "anisotropic quadratic": ([1.0, 25.0], [1.0, 0.4]),
}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_energy_error_bounded_no_secular_drift(problem):
    stiffness, start = PROBLEMS[problem]
    errs = energy_errors(hamopt.Leapfrog, stiffness, start, dt=0.05, steps=10_000)
    h0 = 0.5 * sum(k * x * x for k, x in zip(stiffness, start))
    first, second = np.abs(errs[:5000]).max(), np.abs(errs[5000:]).max()
    assert first < 0.05 * h0  # small: O(dt²) (ω dt ≤ 0.25 here)
    # bounded: the second half is no worse than the first (no secular growth)
    assert second <= 1.05 * first
    # and the mean error does not trend: linear fit slope over time is negligible
    slope = np.polyfit(np.arange(errs.size), errs, 1)[0]
    assert abs(slope) * errs.size < 0.05 * first


@pytest.mark.parametrize("problem", PROBLEMS)
def test_energy_error_scales_as_dt_squared(problem):
    stiffness, start = PROBLEMS[problem]
    dts = [0.08, 0.04, 0.02, 0.01]
    sizes = [np.abs(energy_errors(hamopt.Leapfrog, stiffness, start, dt, steps=int(round(40 / dt)))).max() for dt in dts]
    fit = fit_loglog_slope(dts, sizes)
    assert fit.slope == pytest.approx(2.0, abs=0.1)


def test_euler_energy_drifts():
    errs = energy_errors(hamopt.Euler, [1.0], [1.0], dt=0.05, steps=2000)
    # explicit Euler on an oscillator multiplies the energy by (1 + dt²) each step: secular growth
    assert errs[-1] > 10 * abs(errs[100])
    assert errs[-1] == pytest.approx(0.5 * ((1 + 0.05**2) ** 2000 - 1), rel=1e-6)
    lf = energy_errors(hamopt.Leapfrog, [1.0], [1.0], dt=0.05, steps=2000)
    assert np.abs(lf).max() < 1e-3 * errs[-1]


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_reversibility_leapfrog_vs_euler(dtype, bound):
    results = {}
    for cls in (hamopt.Leapfrog, hamopt.Euler):
        model, loss_fn = tanh_mlp(dtype)
        results[cls.__name__] = round_trip(
            lambda ps, c=cls: c(ps, lr=0.05, gamma=0.0, cap=None), list(model.parameters()), loss_fn, steps=200
        )
    lf, eu = results["Leapfrog"], results["Euler"]
    assert lf.theta_error <= bound
    assert lf.momentum_error <= 10 * bound
    assert eu.theta_error > 1e3 * max(lf.theta_error, bound / 100)


def test_one_step_map_preserves_volume():
    k = torch.tensor([1.0, 9.0], dtype=torch.float64)

    def loss(theta):
        return 0.5 * (k * theta**2).sum() + 0.1 * theta[0] ** 3 * theta[1]  # non-quadratic coupling

    grad_fn = torch.func.grad(loss)

    def step(z):
        theta, p = leapfrog_step(z[:2], z[2:], grad_fn, dt=0.1, inv_mass=torch.tensor([0.5, 2.0], dtype=torch.float64))
        return torch.cat([theta, p])

    z0 = torch.tensor([0.3, -0.7, 0.2, 0.5], dtype=torch.float64)
    jac = torch.func.jacrev(step)(z0)
    assert abs(float(torch.linalg.det(jac)) - 1.0) < 1e-10
    # Euler is not volume preserving
    def euler(z):
        theta, p = euler_step(z[:2], z[2:], grad_fn, dt=0.1)
        return torch.cat([theta, p])

    assert abs(float(torch.linalg.det(torch.func.jacrev(euler)(z0))) - 1.0) > 1e-3
    # damped: determinant e^{-γ dt n} with n = 2 momentum dimensions
    def damped(z):
        theta, p = leapfrog_step(z[:2], z[2:], grad_fn, dt=0.1, gamma=0.5)
        return torch.cat([theta, p])

    assert float(torch.linalg.det(torch.func.jacrev(damped)(z0))) == pytest.approx(math.exp(-0.5 * 0.1 * 2), rel=1e-10)


def test_functional_step_matches_optimiser():
    model = Quadratic([1.0, 4.0], [0.3, -0.2])
    opt = hamopt.Leapfrog(model.parameters(), lr=0.1, gamma=0.2, mass="identity", cap=None)
    theta, p = model.x.detach().clone(), torch.zeros(2, dtype=torch.float64)
    grad_fn = lambda t: model.k * t  # noqa: E731
    for _ in range(5):
        opt.step(closure_for(opt, model))
        theta, p = leapfrog_step(theta, p, grad_fn, dt=0.1, gamma=0.2)
    torch.testing.assert_close(model.x.detach(), theta, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(opt.state[model.x]["momentum"], p, rtol=1e-14, atol=1e-15)


def test_exact_and_streaming_agree_on_full_batch():
    """On one fixed batch the streaming step t uses ∇L(θ_t), the gradient the exact step t−1
    computed at its end, so both visit the same positions (to rounding: the merged kick rounds
    differently); streaming's stored momentum is the exact one's half-step value
    p_{t+½} = e^{-γdt/2} p_t − (dt/2)∇L(θ_t), and its stats at call t+1 describe (θ_{t+1}, p_{t+1})."""
    dt, gamma = 0.05, 0.01
    runs = {}
    for mode in ("exact", "streaming"):
        model, loss_fn = tanh_mlp(torch.float64)
        opt = hamopt.Leapfrog(model.parameters(), lr=dt, gamma=gamma, mode=mode)
        stats = []
        for _ in range(30):
            opt.step(closure_for(opt, loss_fn))
            stats.append(dict(opt.stats))
        runs[mode] = (model, opt, stats, loss_fn)
    (m_e, o_e, s_e, loss_e), (m_s, o_s, s_s, _) = runs["exact"], runs["streaming"]
    torch.testing.assert_close(flat(m_e.parameters()), flat(m_s.parameters()), rtol=1e-12, atol=1e-13)
    # streaming's stored momentum is the half-step p_{29½}, whose closing half-kick with ∇L(θ_30)
    # gives exact's p_30:  p_30 = a p_{29½} − (dt/2) ∇L(θ_30)
    m_e.zero_grad()
    loss_e().backward()
    a = math.exp(-gamma * dt / 2)
    half = flat((o_e.state[p]["momentum"] + dt / 2 * p.grad) / a for p in m_e.parameters())
    torch.testing.assert_close(flat(o_s.state[p]["momentum"] for p in m_s.parameters()), half, rtol=1e-10, atol=1e-12)
    for t in range(1, 30):
        # H at the start of streaming call t == H at the end of exact step t−1; ΔH likewise
        assert s_s[t]["hamiltonian"] == pytest.approx(s_e[t - 1]["hamiltonian"], rel=1e-10, abs=1e-14)
        assert s_s[t]["delta_h"] == pytest.approx(s_e[t - 1]["delta_h"], rel=1e-6, abs=1e-13)
    assert s_s[0]["delta_h"] is None and s_s[0]["loss_after"] is None
    assert s_e[5]["loss_after"] is not None

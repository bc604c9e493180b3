"""The playground engine: validation, trajectories, energy series, drift scan, reversibility."""

from __future__ import annotations

import math

import pytest
import torch

from hamopt.diagnostics import fit_loglog_slope, tail_median_abs
from hamopt.landscapes import LANDSCAPES, make_landscape
from hamopt.playground import (
    MAX_STEPS,
    OPTIMIZERS,
    PlaygroundConfig,
    PlaygroundInputError,
    drift_scan,
    reversibility,
    run_trajectory,
    suggested_config,
)


@pytest.mark.parametrize(
    ("field", "kwargs", "needle"),
    [
        ("step_size", {"step_size": 0.0}, "(0, 10]"),
        ("step_size", {"step_size": -1.0}, "(0, 10]"),
        ("step_size", {"step_size": float("nan")}, "finite"),
        ("step_size", {"step_size": None}, "must be a number"),
        ("steps", {"steps": MAX_STEPS + 1}, f"[1, {MAX_STEPS}]"),
        ("steps", {"steps": 2.5}, "whole number"),
        ("steps", {"steps": float("nan")}, "whole number"),
        ("gamma", {"gamma": -0.1}, "[0, 100]"),
        ("mass", {"mass": 0.0}, "[0.001, 1000]"),
        ("cap", {"cap": 1.0}, "(1, 1e+06]"),
        ("momentum", {"momentum": 1.0}, "[0, 1)"),
        ("noise", {"noise": float("inf")}, "finite"),
        ("start x", {"start": (float("nan"), 0.0)}, "finite"),
        ("landscape", {"landscape": "moon"}, "quadratic"),
        ("optimizer", {"optimizer": "lbfgs"}, "leapfrog"),
        ("seed", {"seed": -1}, "[0, 4294967295]"),
    ],
)
def test_bad_input_names_the_field_and_range(field, kwargs, needle):
    with pytest.raises(PlaygroundInputError) as info:
        PlaygroundConfig(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert needle in str(info.value)


def test_every_landscape_and_optimizer_runs_and_records_consistent_series():
    for name in LANDSCAPES:
        for opt in OPTIMIZERS:
            tr = run_trajectory(
                PlaygroundConfig(**{**suggested_config(name, opt).__dict__, "steps": 20})
            )
            n = tr.steps_run
            assert n == 20 and not tr.diverged, (name, opt, tr.divergence)
            assert len(tr.theta) == len(tr.loss) == len(tr.kinetic) == len(tr.hamiltonian) == n + 1
            assert tr.theta[0] == pytest.approx(PlaygroundConfig(landscape=name).start)
            for k, l_, h in zip(tr.kinetic, tr.loss, tr.hamiltonian, strict=False):
                assert h == pytest.approx(k + l_, rel=1e-12, abs=1e-12)
            # deterministic landscapes: ΔH^int_t is the difference of the H series
            if not tr.noisy:
                for t in range(n - 1):
                    assert tr.delta_h_int[t] == pytest.approx(
                        tr.hamiltonian[t + 1] - tr.hamiltonian[t], abs=1e-9
                    )
                assert tr.delta_h_traj == tr.delta_h_int


def test_loss_series_is_the_landscape_value_along_the_path():
    tr = run_trajectory(PlaygroundConfig(landscape="rosenbrock", step_size=0.002, steps=30))
    land = make_landscape("rosenbrock")
    for point, loss in zip(tr.theta, tr.loss, strict=False):
        assert float(land.value(torch.tensor(point, dtype=torch.float64))) == pytest.approx(
            loss, rel=1e-12
        )


def test_noisy_quadratic_separates_same_batch_and_cross_batch_changes():
    tr = run_trajectory(PlaygroundConfig(landscape="noisy_quadratic", noise=0.2, steps=200, seed=3))
    for d_int, d_traj, delta in zip(tr.delta_h_int, tr.delta_h_traj, tr.resampling, strict=False):
        assert d_traj == pytest.approx(d_int + delta, abs=1e-12)
    assert tr.drift_int == pytest.approx(tail_median_abs(tr.delta_h_int))
    assert tr.drift_traj == pytest.approx(tail_median_abs(tr.delta_h_traj))
    # leapfrog's integrator error is small, the batch change dominates the trajectory change
    assert tr.drift_traj > 20 * tr.drift_int
    again = run_trajectory(
        PlaygroundConfig(landscape="noisy_quadratic", noise=0.2, steps=200, seed=3)
    )
    assert again.theta == tr.theta and again.delta_h_traj == tr.delta_h_traj  # seeded, bit for bit
    other = run_trajectory(
        PlaygroundConfig(landscape="noisy_quadratic", noise=0.2, steps=200, seed=4)
    )
    assert other.theta != tr.theta


def test_divergence_is_reported_not_raised():
    tr = run_trajectory(PlaygroundConfig(landscape="quadratic", step_size=1.0, steps=2000))
    assert tr.diverged and 0 < tr.diverged_at < 2000
    assert "step" in tr.divergence
    assert len(tr.theta) == tr.steps_run + 1 == tr.diverged_at + 1
    assert all(math.isfinite(c) for p in tr.theta for c in p)
    assert all(math.isfinite(h) for h in tr.hamiltonian)


def test_cap_engages_and_is_counted():
    tr = run_trajectory(
        PlaygroundConfig(
            landscape="quadratic", optimizer="euler", step_size=0.1, cap=2.0, steps=200
        )
    )
    assert tr.cap_engagements > 0 and not tr.diverged
    assert max(tr.hamiltonian) <= 2.0 * tr.hamiltonian[0] * (1 + 1e-9) + max(
        abs(d) for d in tr.delta_h_int
    )


def test_drift_scan_slopes_on_the_quadratic():
    """Leapfrog (γ = 0, no cap) conserves a modified energy: |H_t − H_0| = O(dt²) and the per-step
    change ΔH_t = O(dt³). The scan's fits must find both exponents, with CIs that contain them."""
    scan = drift_scan(PlaygroundConfig(landscape="quadratic", step_size=0.08, steps=400), points=5)
    assert not any(scan.diverged)
    assert scan.fit_int.n == 5
    assert scan.fit_int.slope == pytest.approx(3.0, abs=0.2)
    assert scan.fit_int.ci_low < 3.0 < scan.fit_int.ci_high
    assert scan.fit_error.slope == pytest.approx(2.0, abs=0.25)
    direct = fit_loglog_slope(scan.step_sizes, scan.drift_int)
    assert direct == scan.fit_int
    assert scan.step_sizes[-1] == pytest.approx(0.08) and scan.step_sizes[0] == pytest.approx(0.02)


def test_drift_scan_on_the_noisy_quadratic_sees_the_batch_noise():
    scan = drift_scan(
        PlaygroundConfig(landscape="noisy_quadratic", noise=0.2, step_size=0.08, steps=300),
        points=4,
    )
    assert scan.fit_int.slope > 2.0  # integrator error still shrinks with dt
    assert abs(scan.fit_traj.slope) < 0.5  # the resampling term does not


def test_drift_scan_leaves_diverged_points_out():
    scan = drift_scan(
        PlaygroundConfig(landscape="quadratic", steps=300), step_sizes=(0.05, 0.1, 0.2, 0.9)
    )
    assert scan.diverged == (False, False, False, True)
    assert scan.fit_int.n == 3 and "1 of 4" in scan.fit_note
    with pytest.raises(PlaygroundInputError, match="step_size"):
        drift_scan(PlaygroundConfig(), step_sizes=(0.1, -0.1))


def test_reversibility_leapfrog_returns_euler_does_not():
    res = reversibility(PlaygroundConfig(landscape="double_well", step_size=0.02, steps=150))
    lf, eu = res.leapfrog, res.euler
    assert lf.result.theta_error < 1e-12
    assert eu.result.theta_error > 1e-3
    for path in res.paths:
        assert len(path.forward) == len(path.backward) == 151
        assert path.forward[-1] == path.backward[0]  # the flip happens in place
    assert lf.backward[-1] == pytest.approx(lf.forward[0], abs=1e-12)
    assert lf.result.steps == 150 and lf.result.dt == 0.02


def test_reversibility_reports_a_diverging_euler_trip():
    res = reversibility(PlaygroundConfig(landscape="quadratic", step_size=0.6, steps=600))
    assert (
        res.euler.result is None
        or not math.isfinite(res.euler.result.theta_error)
        or res.euler.divergence
    )
    assert res.euler.divergence
    assert all(math.isfinite(c) for p in res.euler.forward for c in p)
    with pytest.raises(PlaygroundInputError, match="origin"):
        reversibility(PlaygroundConfig(start=(0.0, 0.0)))

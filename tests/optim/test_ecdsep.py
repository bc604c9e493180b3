"""ECDSep: the spec's checks, its bounce, its log-form invariant and its argument validation."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import hamopt

from . import ecd_checks as checks
from .ecd_helpers import TwoTensors, function, make, run

NAME = "ECDSep"


# ---------------------------------------------------------------- the spec's checks
@pytest.mark.parametrize("fname", ["quadratic", "rosenbrock", "ackley", "zakharov"])
@pytest.mark.parametrize("eta", [1.0, 5.0])
def test_invariant_exact_with_consEn(fname, eta):
    checks.invariant_exact_with_consEn(NAME, fname, 10, eta=eta)


def test_invariant_exact_in_2d_with_extra_energy():
    checks.invariant_exact_with_consEn(NAME, "rosenbrock", 2, deltaEn=0.5)


@pytest.mark.parametrize("fname", ["quadratic", "ackley"])
def test_invariant_error_shrinks_with_dt_without_consEn(fname):
    checks.invariant_error_shrinks_without_consEn(NAME, fname, lr=0.02, time=2.0, eta=1.0)


def test_deterministic_without_chaos():
    checks.deterministic_without_chaos(NAME)


def test_seeded_chaos():
    checks.seeded_chaos(NAME)


def test_resume_from_state_dict_is_identical():
    checks.resume_is_identical(NAME)


def test_deepcopy_continues_identically():
    checks.deepcopy_is_identical(NAME)


# ---------------------------------------------------------------- torch.optim conventions
def test_foreach_matches_single_tensor():
    checks.foreach_matches_single_tensor(NAME)


def test_two_groups_and_missing_grads():
    checks.two_groups_and_missing_grads(NAME)


def test_global_options_must_agree_across_groups():
    checks.global_option_must_agree(NAME, "eta", 3.0)


def test_lr_scheduler_acts():
    checks.lr_scheduler_acts(NAME)


def test_stats_keys():
    checks.stats_keys(NAME)


def test_tracker_reads_it_like_leapfrog():
    checks.tracker_reads_it_like_leapfrog(NAME, "ecdsep")


def test_non_finite_loss_raises():
    checks.non_finite_loss_raises(NAME)


# ---------------------------------------------------------------- skips and bad input
def test_loss_below_F0_skips_and_says_so():
    checks.skip_below_floor(NAME, "F0")


def test_first_step_skipped_initialises_once():
    checks.first_step_skipped_initialises_once(NAME, "F0")


def test_closure_is_required():
    checks.closure_required(NAME)


def test_bad_lr_and_weight_decay():
    checks.bad_lr(NAME)


def test_bad_hyperparameters_name_the_argument():
    f = function("quadratic", 3)
    with pytest.raises(ValueError, match="eta must be finite and >= 1"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=0.5)
    with pytest.raises(TypeError, match="eta"):
        hamopt.ECDSep(f.parameters(), lr=0.1)  # eta is required
    with pytest.raises(ValueError, match="nu must be finite and >= 0"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, nu=-1e-3)
    with pytest.raises(ValueError, match="s must be finite and >= 0"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, s=-1.0)
    with pytest.raises(ValueError, match="deltaEn must be finite and >= 0"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, deltaEn=-1.0)
    with pytest.raises(ValueError, match="eps2 must be finite and >= 0"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, eps2=-1.0)
    with pytest.raises(ValueError, match="F0 must be a finite number"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, F0=math.inf)
    with pytest.raises(TypeError, match="consEn must be True or False"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, consEn=1)


# ---------------------------------------------------------------- ECDSep specifics
def test_lr_may_be_a_tensor():
    f = function("rosenbrock", 4)
    opt = hamopt.ECDSep(f.parameters(), lr=torch.tensor(0.01, dtype=torch.float64), eta=1.0, nu=0.0)
    g = function("rosenbrock", 4)
    ref = hamopt.ECDSep(g.parameters(), lr=0.01, eta=1.0, nu=0.0)
    run(opt, f, 5)
    run(ref, g, 5)
    assert torch.equal(f.x, g.x)
    assert opt.stats["kinetic"] == ref.stats["kinetic"]


def test_s_not_one_forces_unit_extra_energy():
    f = function("quadratic", 3)
    opt = hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, s=0.0)
    assert opt.param_groups[0]["deltaEn"] == 1.0
    with pytest.warns(UserWarning, match="forces deltaEn=1"):
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, s=0.0, deltaEn=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hamopt.ECDSep(f.parameters(), lr=0.1, eta=1.0, s=1.0, deltaEn=0.3)
    checks.invariant_exact_with_consEn(NAME, "quadratic", 10, s=0.0)


def test_first_step_follows_the_spec():
    """p0 = −∇L √δE/‖∇L‖, log C = η log F0 + log(s + δE), then kick and drift with P2."""
    eta, dt, delta = 2.0, 0.01, 0.25
    f = function("rosenbrock", 4)
    theta0 = f.x.detach().clone()
    loss0 = f()
    (g,) = torch.autograd.grad(loss0, f.x)
    opt = hamopt.ECDSep(f.parameters(), lr=dt, eta=eta, deltaEn=delta, nu=0.0)
    run(opt, f, 1)
    F = loss0.item()
    p = -g * math.sqrt(delta) / g.norm()          # ‖p0‖² = δE; the rescale is the identity
    p = p - dt * eta / F * g                      # kick
    theta = theta0 + dt * 2 * p / (1.0 + p.square().sum())  # drift
    torch.testing.assert_close(f.x.detach(), theta, rtol=0, atol=1e-14)
    torch.testing.assert_close(opt.state[f.x]["momentum"], p, rtol=0, atol=1e-14)
    assert opt.stats["invariant_log_target"] == pytest.approx(eta * math.log(F) + math.log(1.0 + delta))
    assert opt.stats["P2"] == pytest.approx(p.square().sum().item())


def test_bounce_keeps_the_norm_and_turns_the_direction():
    m = TwoTensors()
    opt = make(NAME, m.parameters(), seed=0, nu=0.3)
    run(opt, m, 5)
    stats = run(opt, m, 1)[0]
    assert stats["bounced"]
    opt.finalize_bounce()
    p_after = torch.cat([opt.state[p]["momentum"].reshape(-1) for p in m.parameters()])
    assert p_after.square().sum().item() == pytest.approx(stats["P2"], rel=1e-12)
    assert stats["bounces"] == 6


def test_deferred_bounce_rescale_matches_the_eager_one():
    checks.deferred_bounce_rescale_matches_eager(NAME)


def test_large_eta_stays_finite_in_log_form():
    """V = F^η would overflow a float64 (η = 400, F ≈ 6.5: 10^325); the log form does not."""
    f = function("zakharov", 10)
    opt = hamopt.ECDSep(f.parameters(), lr=1e-4, eta=400.0, nu=0.0, seed=0)
    stats = run(opt, f, 50)
    assert 400 * math.log10(stats[0]["potential"]) > 308
    assert all(math.isfinite(s["invariant"]) and s["invariant_error"] <= 1e-6 for s in stats)
    assert torch.all(torch.isfinite(f.x))


def test_zero_gradient_start_does_not_divide_by_zero():
    f = function("quadratic", 4)
    with torch.no_grad():
        f.x.zero_()
        f.x[0] = 0.0
    opt = hamopt.ECDSep(f.parameters(), lr=0.01, eta=1.0, deltaEn=1.0, F0=-1.0, nu=1e-3, seed=0)
    run(opt, f, 3)
    assert torch.all(torch.isfinite(f.x)) and torch.all(torch.isfinite(opt.state[f.x]["momentum"]))


# ---------------------------------------------------------------- the benchmark's report
def test_benchmark_reports_best_loss_against_adamw_and_sgd(monkeypatch):
    """The spec's comparison with AdamW is a report, not an assertion: check that the benchmark's
    table runs every optimiser on a test function and formats the result."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_ecd.py"
    spec = importlib.util.spec_from_file_location("bench_ecd", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds bench/ to sys.path
    monkeypatch.setitem(sys.modules, "bench_ecd", bench)
    spec.loader.exec_module(bench)
    cells = bench.best_loss_table(dim=10, steps=5, quick=True, seeds=(0, 1), functions=("rosenbrock",))
    assert [c.optimiser for c in cells] == list(bench.OPTIMISERS)
    assert all(math.isfinite(c.mean) and c.runs == 2 for c in cells)
    text = bench.format_best_loss(cells)
    for name in bench.OPTIMISERS:
        assert f"| {name} |" in text

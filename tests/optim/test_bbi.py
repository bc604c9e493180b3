"""BBI: the spec's checks, the bounce schedule, the momentum initialisation and validation."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt

from . import ecd_checks as checks
from .ecd_helpers import TwoTensors, function, run

NAME = "BBI"


# ---------------------------------------------------------------- the spec's checks
@pytest.mark.parametrize("fname", ["quadratic", "rosenbrock", "ackley", "zakharov"])
def test_invariant_exact_with_consEn(fname):
    checks.invariant_exact_with_consEn(NAME, fname, 10)


def test_invariant_exact_in_2d_through_bounces():
    checks.invariant_exact_with_consEn(NAME, "rosenbrock", 2, deltaEn=1.0, threshold0=10, threshold=15,
                                       n_fixed_bounces=5)


@pytest.mark.parametrize("fname", ["quadratic", "ackley"])
def test_invariant_error_shrinks_with_dt_without_consEn(fname):
    checks.invariant_error_shrinks_without_consEn(NAME, fname, lr=0.01, time=1.0)


def test_deterministic_without_bounces():
    checks.deterministic_without_chaos(NAME)


def test_seeded_bounces():
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
    checks.global_option_must_agree(NAME, "threshold0", 7)


def test_lr_scheduler_acts():
    checks.lr_scheduler_acts(NAME)


def test_stats_keys():
    checks.stats_keys(NAME)


def test_tracker_reads_it_like_leapfrog():
    checks.tracker_reads_it_like_leapfrog(NAME, "bbi")


def test_non_finite_loss_raises():
    checks.non_finite_loss_raises(NAME)


# ---------------------------------------------------------------- skips and bad input
def test_loss_below_v0_skips_and_says_so():
    checks.skip_below_floor(NAME, "v0")


def test_first_step_skipped_initialises_once():
    checks.first_step_skipped_initialises_once(NAME, "v0")


def test_closure_is_required():
    checks.closure_required(NAME)


def test_bad_lr_and_weight_decay():
    checks.bad_lr(NAME)


def test_bad_hyperparameters_name_the_argument():
    f = function("quadratic", 3)
    for key in ("threshold0", "threshold"):
        for bad in (0, -5):
            with pytest.raises(ValueError, match=f"{key} must be an int >= 1"):
                hamopt.BBI(f.parameters(), lr=0.1, **{key: bad})
        with pytest.raises(TypeError, match=f"{key} must be an int >= 1"):
            hamopt.BBI(f.parameters(), lr=0.1, **{key: 2.5})
    with pytest.raises(ValueError, match="n_fixed_bounces must be an int >= 0"):
        hamopt.BBI(f.parameters(), lr=0.1, n_fixed_bounces=-1)
    with pytest.raises(ValueError, match="deltaEn must be finite and >= 0"):
        hamopt.BBI(f.parameters(), lr=0.1, deltaEn=-1.0)
    with pytest.raises(ValueError, match="momentum_init must be one of 'global', 'per_tensor'"):
        hamopt.BBI(f.parameters(), lr=0.1, momentum_init="layer")
    with pytest.raises(ValueError, match="v0 must be a finite number"):
        hamopt.BBI(f.parameters(), lr=0.1, v0=math.nan)


# ---------------------------------------------------------------- the bounce schedule
def test_bounce_schedule_follows_the_counters():
    """T0 = 5, N_b = 2, T1 = 7, and a loss that improves for three steps, then stays flat.

    Counters (c0 fixed, c progress; a normal step adds 1 to both, a new minimum resets c):
    steps 0-2 improve (c = 0), steps 3-4 do not: c0 = 5 → step 5 is a fixed bounce (1st of 2, so
    c0 restarts at 0; c = 0). Steps 6-10 bring c0 to 5 → step 11 is the 2nd fixed bounce (the last:
    c0 goes on from 6 and never equals 5 again; c = 0). Then only progress bounces, each after
    T1 = 7 flat steps: steps 12-18 → bounce at 19, 20-26 → 27, 28-34 → 35.
    """
    m = TwoTensors()
    opt = hamopt.BBI(m.parameters(), lr=1e-3, threshold0=5, n_fixed_bounces=2, threshold=7, seed=0)
    values = iter([10.0, 9.0, 8.0] + [8.0] * 40)

    def closure():
        opt.zero_grad(set_to_none=True)
        m().backward()  # a real gradient; the loss value is the scripted one
        return torch.tensor(next(values), dtype=torch.float64)

    stats = []
    for _ in range(40):
        before = torch.cat([p.detach().reshape(-1) for p in m.parameters()]).clone()
        opt.step(closure)
        stats.append(dict(opt.stats))
        moved = not torch.equal(before, torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
        assert moved != stats[-1]["bounced"]  # a bounce leaves θ unchanged, any other step moves it
    bounces = [s["step"] for s in stats if s["bounced"]]
    assert bounces == [5, 11, 19, 27, 35]
    assert [stats[i]["bounce_kind"] for i in bounces] == ["fixed", "fixed", "progress", "progress", "progress"]
    assert stats[-1]["fixed_bounces"] == 2 and stats[-1]["bounces"] == 5
    assert stats[-1]["min_V"] == 8.0


def test_no_fixed_bounces_when_n_fixed_is_zero():
    f = function("quadratic", 4)
    opt = hamopt.BBI(f.parameters(), lr=1e-3, threshold0=3, n_fixed_bounces=0, seed=0)
    stats = run(opt, f, 20)
    assert not any(s["bounced"] for s in stats)


def test_bounce_keeps_the_rescaled_norm_and_draws_uniform_directions():
    m = TwoTensors()
    opt = hamopt.BBI(m.parameters(), lr=1e-3, threshold0=3, seed=0)
    stats = run(opt, m, 4)
    assert [s["bounced"] for s in stats] == [False, False, False, True]
    pi = torch.cat([opt.state[p]["momentum"].reshape(-1) for p in m.parameters()])
    assert pi.square().sum().item() == pytest.approx(stats[-1]["P2"], rel=1e-12)
    v, e = stats[-1]["potential"], stats[-1]["energy"]
    assert v * v + v * pi.square().sum().item() == pytest.approx(e * e, rel=1e-12)
    # direction: a uniform(−½, ½) draw, so every entry has the same sign pattern as the draw
    g = torch.Generator().manual_seed(0)
    u = torch.cat([torch.empty_like(p).uniform_(-0.5, 0.5, generator=g).reshape(-1) for p in m.parameters()])
    torch.testing.assert_close(pi / pi.norm(), u / u.norm(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- first step, both initialisations
@pytest.mark.parametrize("init", ["global", "per_tensor"])
def test_first_step_follows_the_spec(init):
    dt, delta = 0.01, 0.5
    m = TwoTensors()
    params = list(m.parameters())
    theta0 = [p.detach().clone() for p in params]
    loss0 = m()
    grads = torch.autograd.grad(loss0, params)
    opt = hamopt.BBI(params, lr=dt, deltaEn=delta, momentum_init=init)
    run(opt, m, 1)
    V = loss0.item()
    E = V + delta
    k = math.sqrt(E * E / V - V)
    if init == "global":
        gn = math.sqrt(sum(g.square().sum().item() for g in grads))
        pis = [-g / gn * k for g in grads]
    else:  # each tensor starts with magnitude k; the rescale fixes only the total norm
        pis = [-g / g.norm() * k for g in grads]
    p2 = sum(p.square().sum().item() for p in pis)
    r = math.sqrt((V * ((E / V) ** 2 - 1)) / p2)
    for theta, p, pi, g in zip(theta0, params, pis, grads):
        new_pi = r * pi - 0.5 * dt * (V / E + E / V) * g
        torch.testing.assert_close(opt.state[p]["momentum"], new_pi, rtol=0, atol=1e-13)
        torch.testing.assert_close(p.detach(), theta + dt * (V / E) * new_pi, rtol=0, atol=1e-13)
    assert opt.stats["rescale"] == pytest.approx(1.0 if init == "global" else 1 / math.sqrt(2))

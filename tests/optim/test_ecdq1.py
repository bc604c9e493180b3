"""ECDq1: the spec's checks, the projection variants, the first step and validation."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt

from . import ecd_checks as checks
from .ecd_helpers import TwoTensors, closure_for, function, run

NAME = "ECDq1"


# ---------------------------------------------------------------- the spec's checks
@pytest.mark.parametrize("fname", ["quadratic", "rosenbrock", "ackley", "zakharov"])
@pytest.mark.parametrize("projection", ["global", "per_tensor"])
def test_invariant_exact_with_consEn(fname, projection):
    checks.invariant_exact_with_consEn(NAME, fname, 10, projection=projection)


def test_invariant_exact_in_2d():
    checks.invariant_exact_with_consEn(NAME, "rosenbrock", 2, eta=10.0)


@pytest.mark.parametrize("fname", ["quadratic", "rosenbrock"])
def test_invariant_error_shrinks_with_dt_without_consEn(fname):
    checks.invariant_error_shrinks_without_consEn(NAME, fname, lr=0.01, time=2.0, eta=1.0)


def test_deterministic_without_chaos():
    checks.deterministic_without_chaos(NAME)


def test_seeded_chaos():
    checks.seeded_chaos(NAME)


def test_resume_from_state_dict_is_identical():
    checks.resume_is_identical(NAME)


def test_deepcopy_continues_identically():
    checks.deepcopy_is_identical(NAME)


# ---------------------------------------------------------------- torch.optim conventions
@pytest.mark.parametrize("projection", ["global", "per_tensor"])
def test_foreach_matches_single_tensor(projection):
    checks.foreach_matches_single_tensor(NAME, projection=projection)


def test_two_groups_and_missing_grads():
    checks.two_groups_and_missing_grads(NAME)


def test_global_options_must_agree_across_groups():
    checks.global_option_must_agree(NAME, "projection", "per_tensor")


def test_lr_scheduler_acts():
    checks.lr_scheduler_acts(NAME)


def test_stats_keys():
    checks.stats_keys(NAME)


def test_tracker_reads_it_like_leapfrog():
    checks.tracker_reads_it_like_leapfrog(NAME, "ecdq1")


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
    with pytest.raises(ValueError, match="eta must be finite and > 0"):
        hamopt.ECDq1(f.parameters(), lr=0.1, eta=0.0)
    with pytest.raises(TypeError, match="eta"):
        hamopt.ECDq1(f.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="nu must be finite and >= 0"):
        hamopt.ECDq1(f.parameters(), lr=0.1, eta=1.0, nu=-0.1)
    with pytest.raises(ValueError, match="projection must be one of 'global', 'per_tensor'"):
        hamopt.ECDq1(f.parameters(), lr=0.1, eta=1.0, projection="layer")
    with pytest.raises(ValueError, match="eps1 must be finite and >= 0"):
        hamopt.ECDq1(f.parameters(), lr=0.1, eta=1.0, eps1=-1.0)
    one = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = hamopt.ECDq1([one], lr=0.1, eta=1.0)
    with pytest.raises(ValueError, match="at least 2 parameters"):
        opt.step(closure_for(opt, lambda: one.square().sum()))


# ---------------------------------------------------------------- the kick and its projection
def _state(opt, m):
    v = [opt.state[p]["velocity"].clone() for p in m.parameters()]
    g = [p.grad.clone() for p in m.parameters()]
    return v, g


def _kick_excess(projection: str, lr: float) -> tuple[float, float, float]:
    """Run 3 steps at lr 0.01, then one at ``lr`` from the same state; return (‖v‖² − 1 after the
    kick, a²‖G − v⟨v,G⟩‖², ⟨kick, v⟩)."""
    m = TwoTensors()
    eta = 4.0
    opt = hamopt.ECDq1(m.parameters(), lr=0.01, eta=eta, nu=0.0, projection=projection, seed=0)
    run(opt, m, 3)
    opt.param_groups[0]["lr"] = lr
    loss = m()
    grads = torch.autograd.grad(loss, list(m.parameters()))
    v = [opt.state[p]["velocity"].clone() for p in m.parameters()]
    norm = math.sqrt(sum(x.square().sum().item() for x in v))
    v = [x / norm for x in v]  # the rescale
    d = sum(p.numel() for p in m.parameters())
    a = 0.5 * (lr / math.sqrt(eta)) * eta * d / (d - 1) / (loss.item() + 1.0)  # F0 = −1
    vg = sum((x * g).sum().item() for x, g in zip(v, grads))
    perp_sq = sum((g - x * vg).square().sum().item() for x, g in zip(v, grads))
    run(opt, m, 1)
    v_new = [opt.state[p]["velocity"] for p in m.parameters()]
    along = sum(((xn - x) * x).sum().item() for xn, x in zip(v_new, v))
    return opt.stats["kick_norm_excess"], a * a * perp_sq, along


def test_global_projection_keeps_the_kick_tangent_to_the_sphere():
    """With the global ⟨v, G⟩ the kick is orthogonal to v: ‖v‖² − 1 = a²‖G − v⟨v,G⟩‖² = O(Δt²)."""
    excess, predicted, along = _kick_excess("global", 0.01)
    assert excess == pytest.approx(predicted, rel=1e-8)
    assert abs(along) < 1e-14
    excess_half, _, _ = _kick_excess("global", 0.005)
    assert excess / excess_half == pytest.approx(4.0, rel=1e-5)  # second order in Δt


def test_per_tensor_projection_is_not_tangent_globally():
    """Each tensor's own ⟨v_i, G_i⟩ leaves a first-order radial component when the tensors' dots differ."""
    excess, predicted, along = _kick_excess("per_tensor", 0.01)
    assert abs(along) > 1e-6
    excess_half, _, _ = _kick_excess("per_tensor", 0.005)
    assert 1.5 < excess / excess_half < 2.5  # first order in Δt dominates


@pytest.mark.parametrize("projection", ["global", "per_tensor"])
@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_first_steps_follow_the_rule(projection, wd):
    """Reference implementation of the spec (per tensor or global dot, with the L2 term inside F),
    two steps, float64."""
    lr, eta, F0 = 0.02, 3.0, -1.0
    m = TwoTensors()
    params = list(m.parameters())
    ref = [p.detach().clone() for p in params]
    opt = hamopt.ECDq1(params, lr=lr, eta=eta, F0=F0, nu=0.0, projection=projection,
                       weight_decay=wd)
    d = sum(p.numel() for p in params)
    dt = lr / math.sqrt(eta)
    v = None
    for _ in range(2):
        x = [t.clone().requires_grad_() for t in ref]
        m2 = TwoTensors()
        with torch.no_grad():
            m2.w.copy_(x[0])
            m2.b.copy_(x[1])
        loss = m2()
        grads = torch.autograd.grad(loss, list(m2.parameters()))
        if v is None:  # v0 = −∇L/‖∇L‖ (the loss's gradient)
            gn = math.sqrt(sum(g.square().sum().item() for g in grads))
            v = [-g / gn for g in grads]
        F = loss.item() + 0.5 * wd * sum(t.square().sum().item() for t in ref) - F0
        grads = [g + wd * t for g, t in zip(grads, ref)]  # G = ∇L + λθ
        n2 = sum(t.square().sum().item() for t in v)
        if abs(1.0 - n2) >= 1e-10:  # eps1
            v = [t / math.sqrt(n2) for t in v]
        a = 0.5 * dt * eta * d / (d - 1) / F
        if projection == "global":
            vg = sum((t * g).sum().item() for t, g in zip(v, grads))
            v = [t - a * (g - t * vg) for t, g in zip(v, grads)]
        else:
            v = [t - a * (g - t * (t * g).sum().item()) for t, g in zip(v, grads)]
        ref = [t + dt * u for t, u in zip(ref, v)]
        run(opt, m, 1)
    # The rescale is skipped when |1 − P2| < eps1 = 1e-10. The reference sums in Python, the
    # optimiser in torch reductions whose order may follow the thread count, so when |1 − P2|
    # lies near eps1 the two may decide differently; the outcomes then differ by < eps1/2.
    for p, t, u in zip(params, ref, v):
        torch.testing.assert_close(p.detach(), t, rtol=0, atol=1e-10)
        torch.testing.assert_close(opt.state[p]["velocity"], u, rtol=0, atol=1e-10)


def test_bounce_uses_nu_over_sqrt_d_and_keeps_the_speed():
    m = TwoTensors()
    opt = hamopt.ECDq1(m.parameters(), lr=0.01, eta=2.0, nu=0.5, seed=0)
    stats = run(opt, m, 5)
    assert all(s["bounced"] and s["d"] == 17 for s in stats)
    opt.finalize_bounce()
    v = torch.cat([opt.state[p]["velocity"].reshape(-1) for p in m.parameters()])
    assert v.square().sum().item() == pytest.approx(stats[-1]["P2"], rel=1e-12)
    assert all(s["invariant_error"] < 1e-12 for s in stats)


def test_deferred_bounce_rescale_matches_the_eager_one():
    checks.deferred_bounce_rescale_matches_eager(NAME)

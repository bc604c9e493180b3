"""Leapfrog/Euler as torch.optim optimisers: options, state, closures, groups, errors."""

import copy
import io
import math

import pytest
import torch
from torch import nn

import hamopt
from hamopt import NonFiniteError

from .helpers import closure_for, flat, tanh_mlp


def run(model, loss_fn, opt, steps):
    for _ in range(steps):
        opt.step(closure_for(opt, loss_fn))


# ---------------------------------------------------------------- stats and state layout
@pytest.mark.parametrize("mode", ["exact", "streaming"])
def test_stats_and_momentum_state(mode):
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode=mode)
    ret = opt.step(closure_for(opt, loss_fn))
    assert float(ret.detach()) == pytest.approx(opt.stats["loss"])
    for p in model.parameters():
        st = opt.state[p]
        assert st["momentum"].shape == p.shape
        assert set(st) <= {"momentum", "hamopt_global"}  # the first parameter also carries the optimiser-wide scalars
    keys = {"loss", "loss_after", "kinetic", "hamiltonian", "delta_h", "cap_engaged", "cap_engagements"}
    assert keys <= set(opt.stats)
    opt.step(closure_for(opt, loss_fn))
    s = opt.stats
    assert isinstance(s["cap_engaged"], bool) and s["cap_engagements"] == 0
    assert isinstance(s["kinetic"], float) and isinstance(s["hamiltonian"], float)
    if mode == "exact":
        assert s["hamiltonian"] == pytest.approx(s["kinetic"] + s["loss_after"])
        assert s["delta_h"] == pytest.approx(s["hamiltonian"] - (s["loss"] + s["kinetic_before"]))
    else:
        assert s["loss_after"] is None and s["hamiltonian"] == pytest.approx(s["kinetic"] + s["loss"])


def test_streaming_plain_loop_with_and_without_loss():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming")
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step(loss=loss)
    assert opt.stats["hamiltonian"] is not None and opt.stats["delta_h"] is not None
    opt2 = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming")
    opt2.zero_grad()
    loss_fn().backward()
    with pytest.warns(UserWarning, match="loss="):
        opt2.step()
    assert opt2.stats["loss"] is None and opt2.stats["hamiltonian"] is None and opt2.stats["kinetic"] is not None
    opt3 = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming", cap=None)
    opt3.step()  # no warning without a cap


# ---------------------------------------------------------------- cap
def test_cap_engages_and_bounds_energy():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, gamma=0.0, cap=2.0)
    opt.step(closure_for(opt, loss_fn))
    h0 = opt.global_state["H0"]
    assert h0 == pytest.approx(opt.stats["loss"])  # p0 = 0 → H0 = L0
    with torch.no_grad():
        for p in model.parameters():
            opt.state[p]["momentum"].normal_().mul_(5.0)  # far above the cap
    opt.step(closure_for(opt, loss_fn))
    s = opt.stats
    assert s["cap_engaged"] and s["cap_engagements"] == 1 == opt.cap_engagements
    assert s["delta_h"] is not None  # measured before the cap acts
    assert s["hamiltonian"] <= 2.0 * h0 * (1 + 1e-12)
    # the recorded K is the state's K
    assert s["kinetic"] == pytest.approx(opt.kinetic_energy(), rel=1e-10)
    assert s["kinetic"] + s["loss_after"] == pytest.approx(2.0 * h0, rel=1e-10)
    opt.step(closure_for(opt, loss_fn))
    assert opt.stats["cap_engagements"] >= 1


def test_cap_none_never_engages():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, cap=None)
    opt.step(closure_for(opt, loss_fn))
    with torch.no_grad():
        for p in model.parameters():
            opt.state[p]["momentum"].fill_(10.0)
    opt.step(closure_for(opt, loss_fn))
    assert not opt.stats["cap_engaged"] and opt.cap_engagements == 0


# ---------------------------------------------------------------- state_dict / deepcopy
@pytest.mark.parametrize("mode", ["exact", "streaming"])
@pytest.mark.parametrize("cls", [hamopt.Leapfrog, hamopt.Euler])
def test_state_dict_resume_is_bit_identical(mode, cls):
    model, loss_fn = tanh_mlp(torch.float32)
    opt = cls(model.parameters(), lr=0.05, mode=mode, cap=1.5)
    run(model, loss_fn, opt, 7)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    run(model, loss_fn, opt, 6)
    reference = flat(model.parameters()).clone()
    ref_stats = dict(opt.stats)

    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, loss_fn2 = tanh_mlp(torch.float32, seed=5)  # different init, overwritten by the load
    model2.load_state_dict(saved["model"])
    opt2 = cls(model2.parameters(), lr=0.05, mode=mode, cap=1.5)
    opt2.load_state_dict(saved["opt"])
    assert opt2.global_state["H0"] == opt.global_state["H0"]
    # the same batch as the first run (tanh_mlp(seed=0) draws its data from generator seed 1)
    run(model2, lambda: _loss_on(model2), opt2, 6)
    assert torch.equal(flat(model2.parameters()), reference)
    assert opt2.stats["hamiltonian"] == ref_stats["hamiltonian"]
    assert opt2.stats["cap_engagements"] == ref_stats["cap_engagements"]
    assert opt2.global_state["step"] == opt.global_state["step"] == 13


def _loss_on(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=g, dtype=torch.float32)
    y = torch.randint(0, 3, (64,), generator=g)
    return nn.functional.cross_entropy(model(x), y)


def test_state_dict_is_a_snapshot_and_deepcopy_works():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05)
    run(model, loss_fn, opt, 2)
    sd = opt.state_dict()
    run(model, loss_fn, opt, 2)
    assert sd["state"][0]["hamopt_global"]["step"] == 2 and opt.global_state["step"] == 4
    twin = copy.deepcopy(opt)
    assert twin.global_state == opt.global_state
    twin.step(closure_for(twin, loss_fn))
    assert twin.global_state["step"] == 5 and opt.global_state["step"] == 4


# ---------------------------------------------------------------- foreach vs single tensor
@pytest.mark.parametrize("mode", ["exact", "streaming"])
@pytest.mark.parametrize("cls", [hamopt.Leapfrog, hamopt.Euler])
@pytest.mark.parametrize("track_energy", [True, False])
def test_foreach_and_single_tensor_paths_identical(mode, cls, track_energy):
    out = []
    for foreach in (True, False):
        model, loss_fn = tanh_mlp(torch.float32)
        opt = cls(model.parameters(), lr=0.1, gamma=0.01, mode=mode, foreach=foreach, cap=1.2,
                  track_energy=track_energy)
        run(model, loss_fn, opt, 15)
        out.append((flat(model.parameters()), flat(opt.state[p]["momentum"] for p in model.parameters()),
                    dict(opt.stats)))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert out[0][2] == out[1][2]


def test_streaming_trajectory_independent_of_energy_bookkeeping():
    out = []
    for track in (True, False):
        model, loss_fn = tanh_mlp(torch.float32)
        opt = hamopt.Leapfrog(model.parameters(), lr=0.1, gamma=0.01, mode="streaming", cap=None, track_energy=track)
        run(model, loss_fn, opt, 12)
        out.append(flat(model.parameters()))
    assert torch.equal(out[0], out[1])


def test_streaming_kinetic_identity_matches_materialised_momentum():
    """K(p_t) from reductions equals K of the momentum after an explicit closing half-kick."""
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.07, gamma=0.3, mode="streaming", cap=None)
    run(model, loss_fn, opt, 5)
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    a, c = math.exp(-0.3 * 0.07 / 2), 0.07 / 2
    from hamopt.optim.mass import fan_in_inverse_mass

    expected = sum(0.5 * fan_in_inverse_mass(p) * (a * opt.state[p]["momentum"] - c * p.grad).pow(2).sum().item()
                   for p in model.parameters())
    opt.step(loss=loss)
    assert opt.stats["kinetic"] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- groups, grads, schedulers
def test_param_groups_added_later_and_missing_grads():
    a = nn.Linear(3, 3).double()
    b = nn.Linear(3, 1).double()
    frozen = nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = hamopt.Leapfrog(list(a.parameters()) + [frozen], lr=0.05, mode="streaming")
    opt.add_param_group({"params": b.parameters(), "lr": 0.01, "gamma": 0.5, "mass": "identity"})
    x = torch.randn(8, 3, dtype=torch.float64)
    before = frozen.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        loss = b(torch.tanh(a(x))).pow(2).mean()
        loss.backward()
        opt.step(loss=loss)
    assert torch.equal(frozen, before) and frozen not in opt.state or "momentum" not in opt.state.get(frozen, {})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.state[b.weight]["momentum"].abs().sum() > 0
    with pytest.raises(ValueError, match="cap"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "cap": 3.0})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "lr": -1.0})


def test_lr_scheduler_changes_dt():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.1, mode="streaming")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        opt.step(closure_for(opt, loss_fn))
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    assert opt.global_state["pending_dt"][0] == pytest.approx(0.025)


def test_named_parameters_accepted():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.named_parameters(), lr=0.05)
    run(model, loss_fn, opt, 1)
    assert opt.param_groups[0]["param_names"][0] == "0.weight"


# ---------------------------------------------------------------- bad input
def params():
    return [nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"lr": 0.0}, ValueError, "lr must be finite and > 0"),
        ({"lr": -1e-3}, ValueError, "lr must be finite and > 0"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"lr": float("inf")}, ValueError, "lr"),
        ({"lr": "0.1"}, TypeError, "lr"),
        ({"lr": 0.1, "gamma": -0.1}, ValueError, "gamma must be finite and >= 0"),
        ({"lr": 0.1, "cap": 1.0}, ValueError, "cap must be None .* > 1"),
        ({"lr": 0.1, "cap": 0.5}, ValueError, "cap"),
        ({"lr": 0.1, "mass_clip": (0.0, 1.0)}, ValueError, "mass_clip must satisfy 0 < low <= high"),
        ({"lr": 0.1, "mass_clip": (2.0, 1.0)}, ValueError, "mass_clip"),
        ({"lr": 0.1, "mass_clip": 3}, ValueError, "mass_clip"),
        ({"lr": 0.1, "mass": "fanin"}, ValueError, "mass must be one of 'fan_in', 'identity'"),
        ({"lr": 0.1, "mode": "fast"}, ValueError, "mode must be one of 'exact', 'streaming'"),
        ({"lr": 0.1, "foreach": 1}, TypeError, "foreach"),
        ({"lr": 0.1, "check_finite": None}, TypeError, "check_finite must be True or False"),
        ({"lr": 0.1, "track_energy": "yes"}, TypeError, "track_energy must be True or False"),
    ],
)
def test_bad_options(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        hamopt.Leapfrog(params(), **kwargs)


def test_exact_mode_needs_closure():
    p = params()
    opt = hamopt.Leapfrog(p, lr=0.1)
    p[0].grad = torch.ones(3)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_sparse_and_complex_parameters_rejected():
    with pytest.raises(TypeError, match="complex|real"):
        hamopt.Leapfrog([nn.Parameter(torch.zeros(2, dtype=torch.complex64))], lr=0.1)
    with pytest.raises(TypeError, match="dense|strided"):
        hamopt.Leapfrog([torch.zeros(3, 3).to_sparse().requires_grad_()], lr=0.1)
    emb = nn.Embedding(5, 2, sparse=True)
    opt = hamopt.Leapfrog(emb.parameters(), lr=0.1, mode="streaming", cap=None)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="sparse gradients"):
        opt.step()


# ---------------------------------------------------------------- non-finite guard
@pytest.mark.parametrize("mode", ["exact", "streaming"])
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_raises_before_any_change(mode, what):
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode=mode)
    run(model, loss_fn, opt, 3)
    theta = flat(model.parameters()).clone()
    moms = flat(opt.state[p]["momentum"] for p in model.parameters()).clone()
    glob = copy.deepcopy(opt.global_state)

    def bad():
        opt.zero_grad()
        loss = loss_fn()
        if what == "loss":
            loss = loss * float("nan")
        loss.backward()
        if what == "gradient":
            next(model.parameters()).grad[0, 0] = float("inf")
        return loss

    with pytest.raises(NonFiniteError) as info:
        opt.step(bad)
    assert info.value.what == what and info.value.step == 3
    assert torch.equal(flat(model.parameters()), theta)
    assert torch.equal(flat(opt.state[p]["momentum"] for p in model.parameters()), moms)
    assert opt.global_state == glob


def test_exact_mode_second_evaluation_non_finite_restores():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05)
    run(model, loss_fn, opt, 2)
    theta = flat(model.parameters()).clone()
    moms = flat(opt.state[p]["momentum"] for p in model.parameters()).clone()
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = loss_fn() * (float("inf") if len(calls) == 2 else 1.0)
        loss.backward()
        return loss

    with pytest.raises(NonFiniteError, match="restored"):
        opt.step(closure)
    assert torch.equal(flat(model.parameters()), theta)
    assert torch.equal(flat(opt.state[p]["momentum"] for p in model.parameters()), moms)
    assert opt.global_state["step"] == 2
    assert math.isfinite(opt.kinetic_energy())


def test_check_finite_false_skips_reductions_in_lean_streaming():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming", cap=None, track_energy=False,
                          check_finite=False)
    opt.zero_grad()
    loss_fn().backward()
    next(model.parameters()).grad[0, 0] = float("nan")
    opt.step()  # no guard requested: the NaN reaches the parameters, as with torch.optim.SGD
    assert opt.stats["grad_norm"] is None
    assert torch.isnan(next(model.parameters())).any()
    # with energy bookkeeping the norm is reduced anyway, so the guard still acts
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming", check_finite=False)
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    next(model.parameters()).grad[0, 0] = float("inf")
    with pytest.raises(NonFiniteError):
        opt.step(loss=loss)

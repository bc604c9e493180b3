"""Checks every ECD optimiser must pass (the spec's list and the torch.optim conventions), written
once and called from test_ecdsep.py, test_bbi.py and test_ecdq1.py with the optimiser's name."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import hamopt
from hamopt.energy import EnergyTracker, is_displacement_form, kinetic, label

from .ecd_helpers import CHAOS, TwoTensors, closure_for, flat, function, make, roundtrip, run


def invariant_exact_with_consEn(name: str, fname: str, dim: int, steps: int = 150, **kw) -> None:
    """consEn, no chaos: the invariant's relative error after each rescale is ≤ 1e-6 (float64)."""
    f = function(fname, dim)
    opt = make(name, f.parameters(), seed=0, **kw)
    start = f().item()
    stats = run(opt, f, steps)
    assert not any(s["skipped"] for s in stats)
    errors = [s["invariant_error"] for s in stats]
    assert max(errors) <= 1e-6, (fname, max(errors))
    assert f().item() < start  # it moved downhill


def invariant_error_shrinks_without_consEn(name: str, fname: str, lr: float, time: float, **kw) -> list[float]:
    """consEn=False: the largest invariant error over a fixed time is small and shrinks when Δt halves."""
    worst = []
    for k in range(3):
        f = function(fname, 10)
        step = lr / 2**k
        opt = make(name, f.parameters(), lr=step, consEn=False, seed=0, **kw)
        stats = run(opt, f, round(time / step))
        worst.append(max(s["invariant_error"] for s in stats))
    assert worst[0] < 0.05, worst
    assert worst[1] < worst[0] / 1.6 and worst[2] < worst[1] / 1.6, worst
    return worst


def deterministic_without_chaos(name: str) -> None:
    """No chaos: two runs are identical bit for bit, whatever the seed."""
    out = []
    for seed in (0, 1):
        f = function("zakharov", 10)
        opt = make(name, f.parameters(), seed=seed)
        run(opt, f, 40)
        out.append(flat(f.parameters()))
    assert torch.equal(out[0], out[1])


def seeded_chaos(name: str) -> None:
    """With chaos: equal seeds give identical runs, different seeds different ones."""
    out = []
    for seed in (3, 3, 4):
        f = function("ackley", 10)
        opt = make(name, f.parameters(), seed=seed, **CHAOS[name])
        stats = run(opt, f, 30)
        assert any(s["bounced"] for s in stats)
        out.append(flat(f.parameters()))
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])


def resume_is_identical(name: str) -> None:
    """save → load state_dict mid-run (through torch.save/torch.load(weights_only=True)) → identical
    continuation, random draws included."""
    f = function("ackley", 10)
    opt = make(name, f.parameters(), seed=5, **CHAOS[name])
    run(opt, f, 13)
    model_sd = copy.deepcopy(f.state_dict())
    opt_sd = roundtrip(opt.state_dict())
    glob = opt_sd["state"][0]["hamopt_global"]
    assert glob["generator_state"].dtype == torch.uint8
    assert glob["step"] == 13
    tail = run(opt, f, 17)
    end = flat(f.parameters())

    g = function("ackley", 10)
    g.load_state_dict(model_sd)
    opt2 = make(name, g.parameters(), seed=999, **CHAOS[name])
    opt2.load_state_dict(opt_sd)
    tail2 = run(opt2, g, 17)
    assert torch.equal(flat(g.parameters()), end)
    assert [s["bounced"] for s in tail] == [s["bounced"] for s in tail2]
    assert any(s["bounced"] for s in tail)
    assert [s["loss"] for s in tail] == [s["loss"] for s in tail2]
    # the saved dict is a snapshot: stepping on did not change it
    assert opt_sd["state"][0]["hamopt_global"]["step"] == 13


def deepcopy_is_identical(name: str) -> None:
    """copy.deepcopy of (model, optimiser) carries the generator: both continue identically."""
    f = function("ackley", 10)
    opt = make(name, f.parameters(), seed=2, **CHAOS[name])
    run(opt, f, 5)
    f2, opt2 = copy.deepcopy((f, opt))
    run(opt, f, 10)
    run(opt2, f2, 10)
    assert torch.equal(flat(f.parameters()), flat(f2.parameters()))


def foreach_matches_single_tensor(name: str, **kw) -> None:
    """The foreach and the single-tensor bodies give identical numbers (two groups, weight decay, chaos)."""
    out = []
    for fe in (True, False):
        m = TwoTensors()
        opt = make(name, [{"params": [m.w]}, {"params": [m.b], "lr": 0.002}], seed=1, foreach=fe,
                   weight_decay=0.01, **CHAOS[name], **kw)
        stats = run(opt, m, 25)
        out.append((flat(m.parameters()), [s["loss"] for s in stats],
                    torch.cat([opt.state[p][opt._buffer].reshape(-1) for p in m.parameters()])))
    assert torch.equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]
    assert torch.equal(out[0][2], out[1][2])


def closure_required(name: str) -> None:
    f = function("quadratic", 3)
    opt = make(name, f.parameters(), seed=0)
    f().backward()
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="closure must return the loss"):
        opt.step(lambda: None)


def bad_lr(name: str) -> None:
    f = function("quadratic", 3)
    for lr in (0.0, -1e-3, math.nan):
        with pytest.raises(ValueError, match="lr must be finite and > 0"):
            make(name, f.parameters(), lr=lr)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\.lr must be finite and > 0"):
        make(name, [{"params": [f.x]}, {"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0}])
    with pytest.raises(ValueError, match="weight_decay must be finite and >= 0"):
        make(name, f.parameters(), weight_decay=-0.1)
    with pytest.raises(ValueError, match="seed must be None or an int >= 0"):
        make(name, f.parameters(), seed=-3)


def skip_below_floor(name: str, floor_key: str) -> None:
    """A loss at or below F0 (v0) + eps2 skips the step: nothing changes, stats say so, it is counted."""
    f = function("quadratic", 4)
    opt = make(name, f.parameters(), seed=0, **{floor_key: 100.0})
    before = flat(f.parameters())
    stats = run(opt, f, 3)
    assert all(s["skipped"] for s in stats)
    assert "eps2" in stats[-1]["skip_reason"] and "≤" in stats[-1]["skip_reason"]
    assert stats[-1]["skipped_steps"] == 3
    assert stats[-1]["potential"] <= 0.0
    assert stats[-1]["displacement_sq"] == 0.0 and stats[-1]["kinetic"] == 0.0
    assert torch.equal(flat(f.parameters()), before)
    assert opt.state_dict()["state"][0]["hamopt_global"]["skipped_steps"] == 3
    # lowering the floor lets the next step run
    for g in opt.param_groups:
        g[floor_key] = 0.0 if floor_key != "F0" or name != "ECDq1" else -1.0
    opt.step(closure_for(opt, f))
    assert not opt.stats["skipped"]
    assert not torch.equal(flat(f.parameters()), before)


def first_step_skipped_initialises_once(name: str, floor_key: str) -> None:
    """A skipped first step neither initialises twice nor rescales anything twice: the run after it
    equals a run that started one step later."""
    ref = function("rosenbrock", 6)
    opt_ref = make(name, ref.parameters(), seed=0)
    run(opt_ref, ref, 10)

    f = function("rosenbrock", 6)
    opt = make(name, f.parameters(), seed=0)
    calls = {"n": 0}

    def loss_fn():
        calls["n"] += 1
        base = opt.param_groups[0][floor_key]
        return f() - f().detach() + base if calls["n"] == 1 else f()  # value exactly at the floor

    run(opt, loss_fn, 11)
    assert opt.global_state["skipped_steps"] == 1
    torch.testing.assert_close(flat(f.parameters()), flat(ref.parameters()), rtol=0, atol=1e-12)


def two_groups_and_missing_grads(name: str) -> None:
    """Two param groups with their own lr; a tensor without a gradient this step is left alone."""
    m = TwoTensors()
    opt = make(name, [{"params": [m.w]}, {"params": [m.b], "lr": 0.002}], seed=0)
    assert opt.param_groups[1]["lr"] == 0.002
    run(opt, m, 3)
    buf = opt._buffer
    b_before, pb_before = m.b.detach().clone(), opt.state[m.b][buf].clone()
    w_before = m.w.detach().clone()

    def only_w():
        opt.zero_grad(set_to_none=True)
        loss = m()
        loss.backward()
        m.b.grad = None  # no gradient for b this step
        return loss

    opt.step(only_w)
    assert torch.equal(m.b.detach(), b_before)
    assert torch.equal(opt.state[m.b][buf], pb_before)
    assert not torch.equal(m.w.detach(), w_before)
    assert not opt.stats["skipped"]
    run(opt, m, 2)  # b joins again
    assert not torch.equal(m.b.detach(), b_before)
    # a param never touched has no state; a step where nothing has a gradient is a skip
    extra = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt.add_param_group({"params": [extra], "lr": 0.01})
    run(opt, m, 1)
    assert extra not in opt.state or opt._buffer not in opt.state[extra]
    opt.zero_grad(set_to_none=True)
    opt.step(lambda: torch.tensor(1.0))
    assert opt.stats["skipped"] and "no parameter has a gradient" in opt.stats["skip_reason"]


def global_option_must_agree(name: str, key: str, value) -> None:
    m = TwoTensors()
    with pytest.raises(ValueError, match=rf"param_groups\[1\]\.{key}=.*optimiser-wide"):
        make(name, [{"params": [m.w]}, {"params": [m.b], key: value}])


def lr_scheduler_acts(name: str) -> None:
    """The dynamics read lr from the param groups every step, so schedulers change them."""
    ends = []
    for schedule in (False, True):
        f = function("rosenbrock", 6)
        opt = make(name, f.parameters(), seed=0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1) if schedule else None
        closure = closure_for(opt, f)
        for _ in range(10):
            opt.step(closure)
            if sched is not None:
                sched.step()
        ends.append(flat(f.parameters()))
        if schedule:
            assert opt.param_groups[0]["lr"] == pytest.approx(make(name, [torch.zeros(2)]).defaults["lr"] * 0.01)
    assert not torch.equal(ends[0], ends[1])


def non_finite_loss_raises(name: str) -> None:
    f = function("quadratic", 4)
    opt = make(name, f.parameters(), seed=0)
    run(opt, f, 2)
    before = flat(f.parameters())
    with pytest.raises(hamopt.NonFiniteError, match="non-finite loss"):
        opt.step(closure_for(opt, lambda: f() * math.nan))
    assert torch.equal(flat(f.parameters()), before)
    # a NaN gradient on the very first step: refused before anything is initialised or moved
    g = function("quadratic", 4)
    fresh = make(name, g.parameters(), seed=0)
    start = flat(g.parameters())
    def nan_grad():
        fresh.zero_grad(set_to_none=True)
        loss = g()
        loss.backward()
        g.x.grad[0] = math.nan
        return loss

    with pytest.raises(hamopt.NonFiniteError, match="non-finite gradient"):
        fresh.step(nan_grad)
    assert torch.equal(flat(g.parameters()), start)
    assert not fresh.global_state["initialized"]
    assert torch.count_nonzero(fresh.state[g.x][fresh._buffer]) == 0


def tracker_reads_it_like_leapfrog(name: str, registered_name: str) -> None:
    """Registered in hamopt.energy: displacement-form K with h = lr, equal to the tracker's measurement."""
    f = function("rosenbrock", 6)
    opt = make(name, f.parameters(), seed=0)
    assert is_displacement_form(opt)
    assert label(opt) == registered_name
    tracker = EnergyTracker(opt)
    for _ in range(4):
        rec = tracker.step(f)
        assert rec.optimizer == registered_name
        assert rec.step_size == opt.param_groups[0]["lr"]
        assert rec.kinetic == pytest.approx(kinetic(opt), rel=1e-9, abs=1e-15)
        assert rec.kinetic == pytest.approx(opt.stats["kinetic"], rel=1e-9, abs=1e-15)
        assert rec.loss == pytest.approx(opt.stats["loss"])
    assert rec.kinetic > 0


def stats_keys(name: str) -> None:
    f = function("rosenbrock", 4)
    opt = make(name, f.parameters(), seed=0)
    run(opt, f, 2)
    for key in ("step", "loss", "potential", "invariant", "invariant_error", "skipped", "skip_reason",
                "bounced", "rescale", "P2", "grad_norm", "displacement_sq", "kinetic", "skipped_steps",
                "bounces"):
        assert key in opt.stats, key
    assert opt.stats["step"] == 1
    assert opt.stats["loss"] == pytest.approx(float(f().detach()), rel=0.5)  # the loss at θ_t


def deferred_bounce_rescale_matches_eager(name: str) -> None:
    """The bounce's rescale back to the kept norm is folded into the next step; applying it at once
    (``finalize_bounce`` after every step) gives the same trajectory to rounding, also when a
    parameter sits a step out right after a bounce (then it is applied to all buffers at once)."""
    ends = []
    for eager in (False, True):
        m = TwoTensors()
        opt = make(name, m.parameters(), seed=4, **CHAOS[name])
        closure = closure_for(opt, m)
        for i in range(12):
            if i == 6:  # b has no gradient this step
                def closure_w(opt=opt, m=m):
                    opt.zero_grad(set_to_none=True)
                    loss = m()
                    loss.backward()
                    m.b.grad = None
                    return loss
                opt.step(closure_w)
            else:
                opt.step(closure)
            assert opt.stats["bounced"]
            if eager:
                opt.finalize_bounce()
                assert opt.global_state["pending_norm_sq"] is None
                buf = torch.cat([opt.state[p][opt._buffer].reshape(-1) for p in m.parameters()])
                assert buf.square().sum().item() == pytest.approx(opt.stats["P2"], rel=1e-12)
        opt.finalize_bounce()
        ends.append((flat(m.parameters()),
                     torch.cat([opt.state[p][opt._buffer].reshape(-1) for p in m.parameters()])))
    torch.testing.assert_close(ends[0][0], ends[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ends[0][1], ends[1][1], rtol=1e-12, atol=1e-12)

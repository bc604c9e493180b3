"""Compiled and capturable steps of ECDSep, ECDq1 and BBI against the eager step.

Every run makes a few steps on a tiny tanh MLP with two param groups (one with weight decay, one
with its own lr) and an LR scheduler that changes dt at every step; bounces fire (ECDSep and
ECDq1 with ν > 0 at every step, BBI on its fixed-bounce step). Under ``torch.compile`` the
number of compiled graphs must not grow after the first step (torch's ``CompileCounter``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

import hamopt
from hamopt.errors import NonFiniteError

CLASSES = {"ecdsep": hamopt.ECDSep, "ecdq1": hamopt.ECDq1, "bbi": hamopt.BBI}
OPTIONS = {
    "ecdsep": dict(eta=2.0, nu=0.1),
    "ecdsep-nu0": dict(eta=2.0, nu=0.0, deltaEn=0.5),
    "ecdq1": dict(eta=2.0, nu=0.1),
    "ecdq1-per-tensor": dict(eta=2.0, nu=0.1, projection="per_tensor", weight_decay=0.0),
    "bbi": dict(threshold0=2, threshold=3, deltaEn=0.5),  # a fixed bounce on the third step
    "bbi-per-tensor": dict(threshold0=100, threshold=100, deltaEn=0.5, momentum_init="per_tensor"),
    "ecdsep-s2": dict(eta=2.0, nu=0.0, s=2.0, consEn=False),
}
STEPS = 5
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6)}
STAT_KEYS = ("loss", "potential", "invariant", "invariant_error", "rescale", "P2", "grad_norm", "displacement_sq",
             "kinetic")


def problem(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (16,), generator=g)
    return model, lambda: nn.functional.cross_entropy(model(x), y)


def build(case, model, *, tensor_lr=False, **extra):
    name = case.split("-")[0]

    def lr(value):
        return torch.tensor(value, dtype=torch.float64) if tensor_lr else value

    groups = [{"params": model[0].parameters(), "weight_decay": 0.01},
              {"params": model[2].parameters(), "lr": lr(0.03)}]
    return CLASSES[name](groups, lr=lr(0.05), seed=7, **{**OPTIONS[case], **extra})


def trajectory(case, dtype, *, backend=None, whole=False, steps=STEPS, scales=None, **extra):
    """``steps`` steps; returns (parameters, momenta, stats per step, graphs after each step, opt).
    ``whole``: a compiled training step that builds the closure, else ``torch.compile(opt.step)``;
    ``scales[t]`` multiplies the loss of step t."""
    model, loss_of = problem(dtype)
    opt = build(case, model, **extra)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t)
    counter = CompileCounter() if backend == "counter" else None

    def train_step(scale):
        def closure():
            opt.zero_grad()
            loss = loss_of() * scale
            loss.backward()
            return loss
        return opt.step(closure)

    def step_only(scale):
        def closure():
            opt.zero_grad()
            loss = loss_of() * scale
            loss.backward()
            return loss
        return compiled_step(closure)

    compiled_step = opt.step
    run = train_step
    if backend is not None:
        if whole:
            run = torch.compile(train_step, backend=counter or backend)
        else:
            compiled_step = torch.compile(opt.step, backend=counter or backend)
            run = step_only
    stats, graphs = [], []
    for t in range(steps):
        run(torch.tensor(1.0 if scales is None else scales[t], dtype=dtype))
        sched.step()
        stats.append({k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in opt.stats.items()})
        graphs.append(counter.frame_count if counter else None)
    buffer = opt._buffer
    moms = [opt.state[p][buffer].detach().clone() for p in model.parameters()]
    return [p.detach().clone() for p in model.parameters()], moms, stats, graphs, opt


def assert_agree(got, ref, dtype):
    for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
        torch.testing.assert_close(a, b, **TOL[dtype])
    for s, r in zip(got[2], ref[2]):
        assert bool(s["skipped"]) == r["skipped"] and bool(s["bounced"]) == r["bounced"]
        assert int(s["step"]) == r["step"] and int(s["bounces"]) == r["bounces"]
        for key in STAT_KEYS:
            if key not in r:
                continue
            if r[key] is None:
                assert s[key] is None or math.isnan(s[key])
            else:
                assert s[key] == pytest.approx(r[key], rel=TOL[dtype]["rtol"] * 10, abs=TOL[dtype]["atol"] * 10), key


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


CASES = [
    ("ecdsep", torch.float64, "counter", {}),
    ("ecdsep-nu0", torch.float64, "counter", {}),
    ("ecdsep", torch.float32, "aot_eager", {}),
    ("ecdq1", torch.float64, "counter", {}),
    ("ecdq1-per-tensor", torch.float32, "counter", {}),
    ("bbi", torch.float64, "counter", {}),
    ("bbi", torch.float32, "aot_eager", {}),
    ("ecdsep", torch.float64, "counter", {"capturable": True, "tensor_lr": True, "whole": True}),
    ("ecdq1", torch.float32, "counter", {"whole": True}),
    # capturable BBI draws at every step: its reference is the capturable step run eagerly
    ("bbi", torch.float64, "counter", {"capturable": True, "whole": True}),
]


@pytest.mark.parametrize(("case", "dtype", "backend", "extra"), CASES)
def test_compiled_step_agrees_with_eager_and_compiles_once(case, dtype, backend, extra):
    capturable_bbi = case == "bbi" and extra.get("capturable")
    ref = trajectory(case, dtype, capturable=True) if capturable_bbi else trajectory(case, dtype)
    got = trajectory(case, dtype, backend=backend, **extra)
    assert_agree(got, ref, dtype)
    if case.split("-")[0] != "ecdsep" or OPTIONS[case]["nu"] > 0:
        assert any(r["bounced"] for r in ref[2]), "a bounce must fire in this case"
    if backend == "counter":
        counts = got[3]
        assert counts[0] > 0 and counts[1:] == [counts[0]] * (STEPS - 1), f"graphs compiled per step: {counts}"
    if extra.get("capturable"):
        assert all(isinstance(v, torch.Tensor) for k, v in got[4].stats.items()
                   if k not in ("skip_reason", "bounce_kind", "d"))
    else:  # the eager step's stats, as Python values
        assert [list(s) for s in got[2]] == [list(r) for r in ref[2]]
        assert all(not isinstance(v, torch.Tensor) for v in got[4].stats.values())


@pytest.mark.parametrize("case", ["ecdsep", "ecdsep-nu0", "ecdsep-s2", "ecdq1", "ecdq1-per-tensor", "bbi-per-tensor"])
def test_capturable_equals_eager(case):
    ref = trajectory(case, torch.float64)
    got = trajectory(case, torch.float64, capturable=True)
    assert_agree(got, ref, torch.float64)
    assert int(got[4].global_state["step"]) == STEPS


def test_inductor_compiled_capturable_step_matches_eager():
    ref = trajectory("ecdsep", torch.float32)
    got = trajectory("ecdsep", torch.float32, backend="inductor", capturable=True, tensor_lr=True)
    assert_agree(got, ref, torch.float32)


def draws(opt, model, count, kind):
    """A generator seeded as ``opt``'s after ``count`` draws of the parameters' shapes."""
    gen = torch.Generator().manual_seed(7)
    for _ in range(count):
        for p in model.parameters():
            t = torch.empty_like(p)
            t.normal_(generator=gen) if kind == "normal" else t.uniform_(-0.5, 0.5, generator=gen)
    return gen


def test_skipped_step_compiled_equals_eager_and_capturable_consumes_its_draw():
    """Step 2's loss is negated, so F < 0 ≤ eps2: the eager step skips it without drawing. Compiled
    (not capturable) the draw made before the trace is put back: equal to eager. Capturable the
    skipped step consumes its draw, deterministically."""
    scales = [1.0, 1.0, -1.0, 1.0, 1.0]
    ref = trajectory("ecdsep", torch.float64, scales=scales)
    assert [r["skipped"] for r in ref[2]] == [False, False, True, False, False]
    assert ref[2][2]["skip_reason"].startswith("F = L")
    got = trajectory("ecdsep", torch.float64, scales=scales, backend="counter")
    assert_agree(got, ref, torch.float64)
    assert got[2][2]["skip_reason"] == ref[2][2]["skip_reason"]
    model, _ = problem(torch.float64)
    assert torch.equal(got[4].generator.get_state(), draws(got[4], model, 4, "normal").get_state())
    cap = trajectory("ecdsep", torch.float64, scales=scales, capturable=True)
    assert [bool(s["skipped"]) for s in cap[2]] == [False, False, True, False, False]
    assert int(cap[4].global_state["skipped_steps"]) == 1
    assert torch.equal(cap[4].generator.get_state(), draws(cap[4], model, 5, "normal").get_state())
    for a, b in zip(cap[0], ref[0]):  # after the skip the noise differs
        assert not torch.allclose(a, b, rtol=1e-10, atol=0)
    assert torch.equal(cap[0][0], trajectory("ecdsep", torch.float64, scales=scales, capturable=True)[0][0])


def test_capturable_bbi_bounce_uses_the_draw_of_its_step():
    """Capturable BBI draws U(−½, ½) at every step; the fixed bounce of step 2 (the third call)
    points π along the third draw, rescaled to the rescaled momentum's norm."""
    model, loss_of = problem(torch.float64)
    opt = build("bbi", model, capturable=True)

    def closure():
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert bool(opt.stats["bounced"]) and opt.stats["bounce_kind"] is None and bool(opt.stats["fixed_bounce"])
    gen = draws(opt, model, 2, "uniform")
    noise = [torch.empty_like(p).uniform_(-0.5, 0.5, generator=gen) for p in model.parameters()]
    moms = [opt.state[p]["momentum"] for p in model.parameters()]
    scale = math.sqrt(sum(float(m.square().sum()) for m in moms) / sum(float(u.square().sum()) for u in noise))
    for m, u in zip(moms, noise):
        torch.testing.assert_close(m, u * scale, rtol=1e-12, atol=1e-14)
    assert float(opt.stats["invariant_error"]) < 1e-12


@pytest.mark.parametrize("case", ["ecdsep", "ecdq1", "bbi"])
def test_nonfinite_gradient_changes_nothing(case):
    model, loss_of = problem(torch.float64)

    def run(opt, bad):
        def closure():
            opt.zero_grad()
            loss = loss_of()
            loss.backward()
            if bad:
                model[0].weight.grad[0, 0] = math.inf
            return loss
        return opt.step(closure)

    for capturable in (True, False):
        opt = build(case, model, capturable=capturable)
        step = opt.step if capturable else torch.compile(opt.step, backend="eager")
        for _ in range(2):
            run(opt, False)
        before = [p.detach().clone() for p in model.parameters()] + [opt.state[p][opt._buffer].clone()
                                                                     for p in model.parameters()]
        generator = opt.generator.get_state()
        opt.step = step
        if capturable:
            run(opt, True)
            assert not bool(opt.stats["finite"])
            assert int(opt.global_state["step"]) == 2
        else:
            with pytest.raises(NonFiniteError, match="gradient"):
                run(opt, True)
            assert opt.global_state["step"] == 2
            assert torch.equal(opt.generator.get_state(), generator)
        after = [p.detach().clone() for p in model.parameters()] + [opt.state[p][opt._buffer].clone()
                                                                    for p in model.parameters()]
        for a, b in zip(after, before):
            assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["ecdsep", "bbi"])
def test_state_dict_loads_across_capturable_both_ways(case):
    """Three steps in one mode, a checkpoint, two more in the other: the uninterrupted eager run."""
    ref = trajectory(case, torch.float64, steps=STEPS)

    def closure_for(o, loss_of):
        def closure():
            o.zero_grad()
            loss = loss_of()
            loss.backward()
            return loss
        return closure

    for first, second in ((True, False), (False, True)):
        model, loss_of = problem(torch.float64)
        opt = build(case, model, capturable=first)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t)
        for _ in range(3):
            opt.step(closure_for(opt, loss_of))
            sched.step()
        state = opt.state_dict()
        assert all(not isinstance(v, torch.Tensor) or k == "generator_state"
                   for entry in state["state"].values() for k, v in entry.get("hamopt_global", {}).items())
        resumed = build(case, model, capturable=second)
        resumed.load_state_dict(state)
        for group in resumed.param_groups:
            group["capturable"] = second
        sched = torch.optim.lr_scheduler.LambdaLR(resumed, lambda t: 1.0 + 0.2 * t, last_epoch=2)
        for _ in range(STEPS - 3):
            resumed.step(closure_for(resumed, loss_of))
            sched.step()
        if case == "bbi" and first:  # capturable BBI drew at every step: compare up to the bounce only
            assert int(resumed.global_state["bounces"]) == 1
            continue
        for a, b in zip(model.parameters(), ref[0]):
            torch.testing.assert_close(a.detach(), b, **TOL[torch.float64])
        assert int(resumed.global_state["step"]) == STEPS


@pytest.mark.parametrize(("case", "extra"), [("ecdsep", {"backend": "eager"}), ("ecdq1", {"capturable": True})])
def test_a_parameter_that_sits_a_step_out_after_a_bounce(case, extra):
    """Step 2 leaves the last layer's bias without a gradient, after a bounce whose rescale is
    deferred: the rescale then applies to every stored momentum, in the compiled and capturable
    steps as in the eager one."""
    def run(**extra):
        model, loss_of = problem(torch.float64)
        opt = build(case, model, **{k: v for k, v in extra.items() if k != "backend"})
        step = torch.compile(opt.step, backend=extra["backend"]) if "backend" in extra else opt.step
        def closure_for(t):
            def closure():
                opt.zero_grad()
                loss = loss_of()
                loss.backward()
                if t == 2:
                    model[2].bias.grad = None
                return loss
            return closure

        for t in range(4):
            step(closure_for(t))
        return [p.detach().clone() for p in model.parameters()] + [
            opt.state[p][opt._buffer].clone() for p in model.parameters()]

    for a, b in zip(run(**extra), run()):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_fused_step_under_compile_runs_eagerly():
    """``fused=True`` under ``torch.compile`` runs the fused step (its own noise) outside the graph."""
    def run(compiled):
        model, loss_of = problem(torch.float64)
        opt = hamopt.ECDSep(model.parameters(), lr=0.05, eta=2.0, nu=0.1, seed=3, fused=True)
        step = torch.compile(opt.step, backend="eager") if compiled else opt.step

        def closure():
            opt.zero_grad()
            loss = loss_of()
            loss.backward()
            return loss

        for _ in range(3):
            step(closure)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(True), run(False)):
        assert torch.equal(a, b)


def test_finalize_bounce_under_capturable():
    """The deferred rescale of a capturable optimiser (a NaN tensor when none is pending) is
    applied as in eager mode, and only once."""
    runs = []
    for capturable in (False, True):
        model, loss_of = problem(torch.float64)
        opt = build("ecdsep", model, capturable=capturable)

        def closure(opt=opt, loss_of=loss_of):
            opt.zero_grad()
            loss = loss_of()
            loss.backward()
            return loss

        for _ in range(2):
            opt.step(closure)
        opt.finalize_bounce()
        opt.finalize_bounce()
        runs.append([opt.state[p]["momentum"].clone() for p in model.parameters()])
        opt.step(closure)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(runs[0] + runs[1], runs[2] + runs[3]):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_capturable_and_fused_are_refused_together():
    w = nn.Parameter(torch.zeros(3))
    for cls in CLASSES.values():
        kwargs = {"eta": 2.0} if cls is not hamopt.BBI else {}
        with pytest.raises(ValueError, match="capturable=True cannot be combined with fused=True"):
            cls([w], lr=0.1, capturable=True, fused=True, **kwargs)
        with pytest.raises(TypeError, match="capturable must be True or False"):
            cls([w], lr=0.1, capturable="yes", **kwargs)

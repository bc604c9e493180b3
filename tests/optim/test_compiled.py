"""Compiled, capturable and fused steps of Leapfrog and Euler against the eager step.

Every variant runs the same six streaming steps on a tiny tanh MLP with an LR scheduler that
changes dt at every step and a loss spike that makes the energy cap fire, and must agree with the
eager step (float64: to rounding; float32: to float32 tolerance). Under ``torch.compile`` the
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
from hamopt.optim import _fused_cpu, fused_step

CLASSES = {"leapfrog": hamopt.Leapfrog, "euler": hamopt.Euler}
STEPS = 6
SPIKE = 3  # the step whose loss is scaled up so that H > cap · H0
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-6)}


def problem(dtype, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(32, 5, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (32,), generator=g)
    return model, (lambda scale: nn.functional.cross_entropy(model(x), y) * scale)


def spike(t):
    """The loss factor of step ``t``, as a tensor (an int argument would be specialised by Dynamo)."""
    return torch.tensor(6.0 if t == SPIKE else 1.0)


def trajectory(name, dtype, *, compile_backend=None, tensor_lr=False, **options):
    """Six steps; returns (parameters, momenta, stats per step, compile counter or None)."""
    model, loss_of = problem(dtype)
    lr = torch.tensor(0.05) if tensor_lr else 0.05
    opt = CLASSES[name](model.parameters(), lr=lr, mode="streaming", cap=2.0, **options)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t)
    counter = CompileCounter() if compile_backend == "counter" else None

    def train_step(t):
        opt.zero_grad()
        loss = loss_of(t)
        loss.backward()
        opt.step(loss=loss)

    step = train_step
    if compile_backend is not None:
        step = torch.compile(train_step, backend=counter or compile_backend)
    stats, graphs = [], []
    for t in range(STEPS):
        step(spike(t))
        sched.step()
        stats.append({k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in opt.stats.items()})
        graphs.append(counter.frame_count if counter else None)
    moms = [opt.state[p]["momentum"].detach().clone() for p in model.parameters()]
    return [p.detach().clone() for p in model.parameters()], moms, stats, graphs, opt


def assert_agree(got, ref, dtype):
    """Parameters, momenta and the stats of every step agree; the cap fired."""
    for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
        torch.testing.assert_close(a, b, **TOL[dtype])
    for s, r in zip(got[2], ref[2]):
        assert bool(s["cap_engaged"]) == r["cap_engaged"]
        for key in ("loss", "kinetic", "hamiltonian", "delta_h", "grad_norm"):
            if r[key] is None:
                assert s[key] is None or math.isnan(s[key])
            else:
                assert s[key] == pytest.approx(r[key], rel=TOL[dtype]["rtol"] * 10, abs=TOL[dtype]["atol"] * 10)
    assert any(r["cap_engaged"] for r in ref[2]), "the cap must fire in this problem"


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


CASES = [(v, n, d) for v in ("capturable", "fused", "fused-capturable") for n in CLASSES
         for d in (torch.float64, torch.float32)]
# traced variants (seconds each): float64 for Leapfrog and Euler, float32 once each
CASES += [("compiled", "leapfrog", torch.float64), ("compiled", "euler", torch.float32),
          ("compiled-capturable", "euler", torch.float64), ("compiled-capturable", "leapfrog", torch.float32)]


@pytest.mark.parametrize(("variant", "name", "dtype"), CASES)
def test_variant_agrees_with_eager_with_scheduler_and_cap(variant, name, dtype):
    ref = trajectory(name, dtype)
    options = {"capturable": "capturable" in variant, "fused": variant.startswith("fused")}
    backend = {"compiled": "eager", "compiled-capturable": "aot_eager"}.get(variant)
    got = trajectory(name, dtype, compile_backend=backend, **options)
    assert_agree(got, ref, dtype)
    if options["capturable"]:
        assert all(isinstance(v, torch.Tensor) for k, v in got[4].stats.items() if k not in ("mode", "loss_after",
                                                                                           "kinetic_before"))
    assert got[4].global_state["step"] == STEPS


@pytest.mark.parametrize(("name", "options"), [
    ("leapfrog", {}), ("euler", {}), ("leapfrog", {"capturable": True, "tensor_lr": True}),
    ("leapfrog", {"track_energy": False, "cap": None, "check_finite": False}),
])
def test_compiled_training_step_compiles_once(name, options):
    options = dict(options)
    if options.get("cap", 2.0) is None:  # lean step: the cap is off, so give trajectory its own value
        options.pop("cap")
        model, loss_of = problem(torch.float64)
        opt = CLASSES[name](model.parameters(), lr=0.05, mode="streaming", cap=None, **options)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t)
        counter = CompileCounter()

        @torch.compile(backend=counter)
        def train_step(t):
            opt.zero_grad()
            loss_of(t).backward()
            opt.step()

        counts = []
        for t in range(STEPS):
            train_step(spike(t))
            sched.step()
            counts.append(counter.frame_count)
    else:
        counts = trajectory(name, torch.float64, compile_backend="counter", **options)[3]
    assert counts[0] > 0
    assert counts[1:] == [counts[0]] * (STEPS - 1), f"graphs compiled per step: {counts}"


@pytest.mark.parametrize("name", list(CLASSES))
def test_compiled_exact_mode_runs_its_eager_step_without_recompiling(name):
    def run(compiled):
        model, loss_of = problem(torch.float64)
        opt = CLASSES[name](model.parameters(), lr=0.05, mode="exact")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t)

        def closure():
            opt.zero_grad()
            loss = loss_of(1.0)
            loss.backward()
            return loss

        counter = CompileCounter()
        step = torch.compile(opt.step, backend=counter) if compiled else opt.step
        counts = []
        for _ in range(4):
            step(closure)
            sched.step()
            counts.append(counter.frame_count)
        return [p.detach().clone() for p in model.parameters()], counts

    (eager, _), (compiled, counts) = run(False), run(True)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert counts[1:] == [counts[0]] * 3


def test_inductor_compiled_training_step_matches_eager():
    ref = trajectory("leapfrog", torch.float32)
    got = trajectory("leapfrog", torch.float32, compile_backend="inductor", capturable=True)
    assert_agree(got, ref, torch.float32)


def test_fused_off_the_hand_written_kernels_uses_the_inductor_program():
    """A non-contiguous parameter cannot go through the CPU kernels: the fused step then runs the
    Inductor-compiled program, with the same numbers."""
    def run(**options):
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(6, 4).t())  # non-contiguous
        b = nn.Parameter(torch.randn(6))
        x = torch.randn(8, 6)
        opt = hamopt.Leapfrog([w, b], lr=0.05, mode="streaming", cap=2.0, **options)
        for _ in range(3):
            opt.zero_grad()
            loss = ((x @ w.t()).tanh().sum(1) * b.sum()).pow(2).mean()
            loss.backward()
            opt.step(loss=loss)
        return opt, [w.detach().clone(), b.detach().clone()]

    opt, fused = run(fused=True)
    assert not fused_step.applies(opt) and opt._compiled_program is not None
    for a, b in zip(fused, run()[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_sums_are_accurate_on_large_float32_tensors():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2_359_296, generator=g)  # the largest ResNet-18 weight
    q = torch.randn(2_359_296, generator=g) + 0.5
    got = _fused_cpu.sums([p], [q], with_momenta=True)[:, 0]
    psq, qsq = p.double().square().sum(), q.double().square().sum()
    torch.testing.assert_close(got[:2], torch.stack([psq, qsq]), rtol=1e-9, atol=0)
    # the dot product cancels: its error is measured against the scale ‖p‖‖q‖
    assert abs(got[2] - (p.double() * q.double()).sum()) <= 1e-9 * (psq * qsq).sqrt()


@pytest.mark.parametrize("capturable", [False, True])
def test_nonfinite_gradient_changes_nothing(capturable):
    model, loss_of = problem(torch.float64)
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming", fused=True, capturable=capturable)
    for _ in range(2):
        opt.zero_grad()
        loss = loss_of(1.0)
        loss.backward()
        opt.step(loss=loss)
    before = [p.detach().clone() for p in model.parameters()]
    moms = [opt.state[p]["momentum"].clone() for p in model.parameters()]
    opt.zero_grad()
    loss = loss_of(1.0)
    loss.backward()
    next(model.parameters()).grad[0, 0] = math.inf
    if capturable:
        opt.step(loss=loss)  # no host sync: the step is masked on the device and flagged
        assert not bool(opt.stats["finite"])
        assert int(opt.global_state["step"]) == 2
    else:
        with pytest.raises(NonFiniteError, match="gradient"):
            opt.step(loss=loss)
        assert opt.global_state["step"] == 2
    for p, b, m in zip(model.parameters(), before, moms):
        assert torch.equal(p, b) and torch.equal(opt.state[p]["momentum"], m)


def test_capturable_state_dict_loads_into_an_eager_optimiser():
    model, loss_of = problem(torch.float64)
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming", capturable=True)
    twin_model, _ = problem(torch.float64)
    twin_model.load_state_dict(model.state_dict())
    eager = hamopt.Leapfrog(twin_model.parameters(), lr=0.05, mode="streaming")
    x, y = torch.ones(4, 5, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    for _ in range(2):
        for o, m in ((opt, model), (eager, twin_model)):
            o.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            o.step(loss=loss)
    resumed = hamopt.Leapfrog(twin_model.parameters(), lr=0.05, mode="streaming")
    resumed.load_state_dict(opt.state_dict())
    glob, ref = resumed.global_state, eager.global_state
    assert glob["step"] == ref["step"] == 2 and glob["pending"] is True
    assert glob["H0"] == pytest.approx(ref["H0"], rel=1e-12)
    assert glob["pending_dt"] == ref["pending_dt"]


@pytest.mark.parametrize("flag", ["capturable", "fused"])
def test_bad_options_are_refused_before_any_step(flag):
    w = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=f"{flag}=True needs mode='streaming'"):
        hamopt.Leapfrog([w], lr=0.1, mode="exact", **{flag: True})
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        hamopt.Euler([w], lr=0.1, mode="streaming", **{flag: "yes"})

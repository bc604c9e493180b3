"""Fail-safe behaviour of the optimisers: one regression test per known defect.

1. a failing second closure call in exact mode restores θ_t and p_t bit for bit;
2. ``add_param_group`` validates before adding; 3. duplicate parameters are refused;
4. a mass callable is checked at construction; 5. a state dict of another optimiser or mode is
refused at load time; 6. a late-joining parameter in streaming mode is not double-kicked;
7. the distributed-checkpoint helpers work and resume bit for bit (and checkpoints in the
earlier layout still load); 8. the ECD optimisers build on ``meta``; 9. ``torch.compile`` of an
ECD step with a pending bounce; 10. state dicts missing options load; 11. foreach and for-loop
agree for fp16/bf16 parameters.
"""

from __future__ import annotations

import math
import pickle
import re

import pytest
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

import hamopt

from .conformance_cases import (
    CONFLICTING_GLOBAL_OPTION,
    ECD,
    EXACT,
    HAMILTONIAN,
    NAMES,
    STREAMING,
    TinyNet,
    assert_same_tensors,
    build,
    closure_for,
    global_state,
    make,
    momentum_tensors,
    run,
    save_load,
    snapshot,
    step_count,
    swap_params_on_conversion,
    twin,
)


# ---------------------------------------------------------------------- 1. failing closures
class OutOfMemory(RuntimeError):
    pass


def bad_second_value(kind, model, opt):
    """What a failing closure call does instead of returning the back-propagated loss."""
    opt.zero_grad(set_to_none=True)
    if kind == "raises":
        raise OutOfMemory("CUDA out of memory (simulated)")
    loss = model.loss()
    if kind == "skips-backward":
        return loss
    loss.backward()
    if kind == "non-scalar":
        return loss.expand(3)
    if kind == "string":
        return f"{loss.item():.6f}"
    if kind == "list":
        return [loss]
    raise AssertionError(kind)


EXPECTED = {
    "raises": (OutOfMemory, "out of memory"),
    "non-scalar": ((ValueError, TypeError), "scalar"),
    "string": ((ValueError, TypeError), r"(?s)(closure.*(loss|scalar))|((loss|scalar).*closure)"),
    "list": ((ValueError, TypeError), ""),
    "skips-backward": ((RuntimeError, ValueError), "grad"),
}
ONE_CALL_KINDS = ["raises", "non-scalar", "string", "list"]
FAILURE_CASES = [(n, k) for n in EXACT for k in EXPECTED] + [(n, k) for n in STREAMING + ECD for k in ONE_CALL_KINDS]


@pytest.mark.parametrize(("name", "kind"), FAILURE_CASES)
def test_failing_closure_call_restores_the_state_bit_for_bit(name, kind):
    """Exact mode calls the closure twice; the second call fails after the drift. Every other
    optimiser and mode (one call per step) is a guard: its single call fails before any change."""
    model, opt = build(name)
    run(opt, model.loss, 2)  # non-zero momenta
    calls = []

    def closure():
        calls.append(None)
        if len(calls) == 2:
            return bad_second_value(kind, model, opt)
        opt.zero_grad(set_to_none=True)
        loss = model.loss()
        loss.backward()
        return loss

    error, words = EXPECTED[kind]
    for _ in range(2):  # a one-call step succeeds on call 1 and fails on call 2
        before, steps = snapshot(model, opt), step_count(opt)
        ref_model, ref_opt = twin(model, opt)
        try:
            opt.step(closure)
        except error as exc:
            assert re.search(words, str(exc), flags=re.IGNORECASE), str(exc)
            break
    else:
        pytest.fail(f"{kind}: no step raised")
    assert len(calls) == 2
    assert_same_tensors(snapshot(model, opt), before)
    assert step_count(opt) == steps
    # a retry continues as if the failed call had never happened
    run(opt, model.loss, 2)
    run(ref_opt, ref_model.loss, 2)
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))


# ---------------------------------------------------------------------- 2. add_param_group
def bad_groups(name):
    key, value = CONFLICTING_GLOBAL_OPTION[name]
    return {
        "negative-lr": (lambda: {"params": [nn.Parameter(torch.ones(2, dtype=torch.float64))], "lr": -0.1},
                        ValueError, "lr"),
        "integer-params": (lambda: {"params": [torch.ones(2, dtype=torch.int64)]}, TypeError, "floating"),
        "global-option": (lambda: {"params": [nn.Parameter(torch.ones(2, dtype=torch.float64))], key: value},
                          ValueError, key),
    }


@pytest.mark.parametrize("case", ["negative-lr", "integer-params", "global-option"])
@pytest.mark.parametrize("name", NAMES)
def test_refused_param_group_is_not_kept(name, case):
    model, opt = build(name)
    run(opt, model.loss, 2)
    ref_model, ref_opt = twin(model, opt)
    make_group, error, words = bad_groups(name)[case]
    group = make_group()
    with pytest.raises(error, match=words):
        opt.add_param_group(group)
    assert len(opt.param_groups) == 1
    run(opt, model.loss, 2)
    run(ref_opt, ref_model.loss, 2)
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))
    assert not momentum_tensors(opt, group["params"])


# ---------------------------------------------------------------------- 3. duplicate parameters
@pytest.mark.parametrize("name", NAMES)
def test_duplicate_parameters_are_refused(name):
    model = TinyNet()
    w = model.fc1.weight
    with pytest.raises(ValueError, match="(?i)duplicate"):
        make(name, [w, w, model.fc1.bias])
    opt = make(name, model.fc1.parameters())
    with pytest.raises(ValueError, match="(?i)duplicate"):
        opt.add_param_group({"params": [model.fc2.weight, model.fc2.weight]})
    assert len(opt.param_groups) == 1


# ---------------------------------------------------------------------- 4. mass callables
BAD_MASSES = {
    "negative": lambda t: -1.0,
    "zero": lambda t: 0.0,
    "nan": lambda t: math.nan,
    "inf": lambda t: math.inf,
    "string": lambda t: "heavy",
    "none": lambda t: None,
    "two-elements": lambda t: torch.ones(2),
}


@pytest.mark.parametrize("bad", list(BAD_MASSES))
@pytest.mark.parametrize("name", HAMILTONIAN)
def test_bad_mass_callable_is_refused_at_construction(name, bad):
    model = TinyNet()
    with pytest.raises((ValueError, TypeError), match="mass"):
        make(name, model.parameters(), mass=BAD_MASSES[bad])
    opt = make(name, model.fc1.parameters())
    with pytest.raises((ValueError, TypeError), match="mass"):
        opt.add_param_group({"params": model.fc2.parameters(), "mass": BAD_MASSES[bad]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_good_mass_callable_is_accepted(name):
    model = TinyNet()
    opt = make(name, model.parameters(), mass=lambda t: torch.tensor(0.5))
    run(opt, model.loss, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------- 5. foreign state dicts
class SwappedNet(nn.Module):
    """Four tensors like :class:`TinyNet`, with other shapes."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5).double()
        self.fc2 = nn.Linear(5, 4).double()


FOREIGN = {
    "ECDSep-into-Leapfrog": ("ecdsep", "leapfrog-exact", ["ECDSep", "Leapfrog"]),
    "BBI-into-ECDSep": ("bbi", "ecdsep", ["BBI", "ECDSep"]),
    "ECDq1-into-BBI": ("ecdq1", "bbi", ["ECDq1", "BBI"]),
    "Leapfrog-into-Euler": ("leapfrog-exact", "euler-exact", ["Leapfrog", "Euler"]),
    "exact-into-streaming": ("leapfrog-exact", "leapfrog-streaming", ["exact", "streaming"]),
    "streaming-into-exact": ("euler-streaming", "euler-exact", ["streaming", "exact"]),
}


def assert_refused_and_untouched(model, opt, state_dict, words):
    run(opt, model.loss, 2)
    ref_model, ref_opt = twin(model, opt)
    with pytest.raises((ValueError, TypeError)) as info:
        opt.load_state_dict(state_dict)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
    run(opt, model.loss, 2)
    run(ref_opt, ref_model.loss, 2)
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))


@pytest.mark.parametrize("case", list(FOREIGN))
def test_state_dict_of_another_optimiser_or_mode_is_refused(case):
    source, target, words = FOREIGN[case]
    src_model, src_opt = build(source)
    run(src_opt, src_model.loss, 2)
    model, opt = build(target)
    assert_refused_and_untouched(model, opt, save_load(src_opt.state_dict()), words)


@pytest.mark.parametrize("target", ["leapfrog-exact", "ecdsep"])
def test_state_dict_of_sgd_is_refused(target):
    src_model = TinyNet()
    sgd = torch.optim.SGD(src_model.parameters(), lr=0.1, momentum=0.9)
    run(sgd, src_model.loss, 2)
    model, opt = build(target)
    assert_refused_and_untouched(model, opt, sgd.state_dict(), [type(opt).__name__])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_with_other_shapes_is_refused(name):
    other = SwappedNet()
    src_opt = make(name, other.parameters())
    x = torch.randn(8, 3, dtype=torch.float64)
    run(src_opt, lambda: other.fc2(torch.tanh(other.fc1(x))).pow(2).mean() + 1.0, 2)
    model, opt = build(name)
    assert_refused_and_untouched(model, opt, src_opt.state_dict(), ["shape"])


# ---------------------------------------------------------------------- 6. late-joining parameters
class TwoQuadratics(nn.Module):
    """``L = ½ Σ k a² + [½ Σ k b²]`` with ``b`` switched on by ``use_b``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("k", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        self.a = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.3, 1.5, -1.0], dtype=torch.float64))
        self.use_b = False

    def loss(self):
        out = 0.5 * (self.k * self.a**2).sum()
        if self.use_b:
            out = out + 0.5 * (self.k * self.b**2).sum()
        return out


OPTIONS_6 = dict(lr=0.1, cap=None, mass="identity", gamma=0.05)


def first_exact_displacement(cls, lr):
    """How far ``b`` moves on its first exact-mode step (a fresh optimiser on ``½ Σ k b²``)."""
    q = TwoQuadratics()
    b0 = q.b.detach().clone()
    opt = cls([q.b], mode="exact", **{**OPTIONS_6, "lr": lr})
    run(opt, lambda: 0.5 * (q.k * q.b**2).sum(), 1)
    return q.b.detach() - b0


@pytest.mark.parametrize(("how", "lr_b"), [("add_param_group", 0.1), ("add_param_group", 0.03),
                                           ("first-gradient-late", 0.1)])
@pytest.mark.parametrize("cls", [hamopt.Leapfrog, hamopt.Euler], ids=["Leapfrog", "Euler"])
def test_late_joining_parameter_moves_as_in_exact_mode(cls, how, lr_b):
    q = TwoQuadratics()
    params = [q.a] if how == "add_param_group" else [q.a, q.b]
    opt = cls(params, mode="streaming", **OPTIONS_6)
    run(opt, q.loss, 3)
    assert q.b.grad is None
    if how == "add_param_group":
        opt.add_param_group({"params": [q.b], "lr": lr_b})
    q.use_b = True
    b0 = q.b.detach().clone()
    run(opt, q.loss, 1)
    torch.testing.assert_close(q.b.detach() - b0, first_exact_displacement(cls, lr_b), rtol=1e-12, atol=1e-15)



@pytest.mark.parametrize("cls", [hamopt.Leapfrog, hamopt.Euler], ids=["Leapfrog", "Euler"])
def test_late_joining_parameter_after_a_refused_step_still_moves_as_in_exact_mode(cls):
    """A step refused by the non-finite guard leaves no trace: the late parameter's momentum is
    still new at the next step, which therefore owes it no closing half-kick."""
    q = TwoQuadratics()
    opt = cls([q.a, q.b], mode="streaming", **OPTIONS_6)
    run(opt, q.loss, 3)
    q.use_b = True
    with pytest.raises(hamopt.NonFiniteError):
        run(opt, lambda: q.loss() * float("nan"), 1)
    assert q.b not in opt.state or "momentum" not in opt.state[q.b]
    b0 = q.b.detach().clone()
    run(opt, q.loss, 1)
    torch.testing.assert_close(q.b.detach() - b0, first_exact_displacement(cls, 0.1), rtol=1e-12, atol=1e-15)



@pytest.mark.parametrize("name", STREAMING)
def test_streaming_step_refused_by_the_non_finite_guard_creates_no_state(name):
    model, opt = build(name)
    with pytest.raises(hamopt.NonFiniteError):
        run(opt, lambda: model.loss() * float("nan"), 1)
    assert not any(opt._buffer in st for st in opt.state.values())
    assert global_state(opt)["step"] == 0


# ---------------------------------------------------------------------- 7. distributed checkpoints
@pytest.mark.parametrize("frozen", [None, "fc1.weight"], ids=["all-trained", "first-frozen"])
@pytest.mark.parametrize("name", NAMES)
def test_distributed_checkpoint_resume_is_bit_for_bit(name, frozen):
    """``frozen``: a parameter given to the optimiser with ``requires_grad=False`` (a frozen
    layer), which the helpers leave out of the checkpoint."""
    model, opt = build(name)
    model2, opt2 = build(name, seed=5)
    if frozen:
        model.get_parameter(frozen).requires_grad_(False)
        model2.get_parameter(frozen).requires_grad_(False)
    run(opt, model.loss, 3)
    saved = save_load({"model": model.state_dict(), "optim": get_optimizer_state_dict(model, opt)})
    model2.load_state_dict(saved["model"])
    set_optimizer_state_dict(model2, opt2, saved["optim"])
    assert step_count(opt2) == 3
    run(opt, model.loss, 3)
    run(opt2, model2.loss, 3)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


@pytest.mark.parametrize("name", NAMES)
def test_distributed_checkpoint_of_a_fresh_optimiser(name):
    """Before any step: the helpers neither step the optimiser nor fail, and the loaded copy
    starts exactly like a fresh one."""
    model, opt = build(name)
    before = snapshot(model, opt)
    osd = get_optimizer_state_dict(model, opt)
    assert_same_tensors(snapshot(model, opt), before)
    assert step_count(opt) == 0 and all(p.grad is None for p in model.parameters())
    model2, opt2 = build(name)
    set_optimizer_state_dict(model2, opt2, save_load(osd))
    assert step_count(opt2) == 0
    run(opt, model.loss, 2)
    run(opt2, model2.loss, 2)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


K_QUAD = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
X0 = torch.tensor([0.4, -0.7, 1.1], dtype=torch.float64)
P0 = torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)


def earlier_leapfrog_checkpoint(mode, pending_dt):
    """A Leapfrog/Euler state dict in the layout of the earlier releases (scalars under
    ``state["hamopt"]``, integer parameter ids)."""
    return {
        "state": {
            0: {"momentum": P0.clone()},
            "hamopt": {"step": 5, "H0": 2.0, "H_last": 1.9, "cap_engagements": 1,
                       "pending": pending_dt is not None,
                       "pending_dt": {} if pending_dt is None else {0: pending_dt}},
        },
        "param_groups": [{"lr": 0.1, "gamma": 0.0, "mass": "identity", "mass_clip": (0.125, 8.0), "cap": None,
                          "mode": mode, "foreach": None, "track_energy": True, "check_finite": True,
                          "differentiable": False, "params": [0]}],
    }


@pytest.mark.parametrize("mode", ["exact", "streaming"])
def test_earlier_leapfrog_checkpoint_still_loads(mode):
    x = nn.Parameter(X0.clone())
    loss = lambda: 0.5 * (K_QUAD * x**2).sum()  # noqa: E731
    opt = hamopt.Leapfrog([x], lr=0.1, gamma=0.0, mass="identity", cap=None, mode=mode)
    # streaming: the deferred closing half-kick of the saved step had dt = 0.2
    opt.load_state_dict(save_load(earlier_leapfrog_checkpoint(mode, None if mode == "exact" else 0.2)))
    assert step_count(opt) == 5 and global_state(opt)["H0"] == 2.0 and opt.cap_engagements == 1
    assert torch.equal(opt.state[x]["momentum"], P0)
    run(opt, loss, 1)
    dt = 0.1
    if mode == "exact":
        p_half = P0 - dt / 2 * K_QUAD * X0
        x1 = X0 + dt * p_half
        p1 = p_half - dt / 2 * K_QUAD * x1
    else:
        p1 = P0 - (0.2 / 2 + dt / 2) * K_QUAD * X0
        x1 = X0 + dt * p1
    torch.testing.assert_close(x.detach(), x1, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(opt.state[x]["momentum"], p1, rtol=1e-14, atol=1e-15)
    assert step_count(opt) == 6


def earlier_ecd_checkpoint(name, seed):
    glob = {"step": 4, "initialized": True, "skipped_steps": 1, "bounces": 2, "P2": float(P0.pow(2).sum()),
            "displacement_sq": 0.0, "seed": seed, "generator_state": torch.Generator().manual_seed(seed).get_state(),
            "pending_norm_sq": None}
    groups = {
        "ecdsep": {"lr": 0.1, "eta": 2.0, "F0": 0.0, "nu": 0.0, "s": 1.0, "deltaEn": 0.0, "weight_decay": 0.0,
                   "consEn": True, "eps1": 1e-10, "eps2": 1e-40},
        "bbi": {"lr": 0.1, "v0": 0.0, "threshold0": 1000, "threshold": 3000, "n_fixed_bounces": 1,
                "deltaEn": 0.0, "weight_decay": 0.0, "consEn": True, "eps1": 1e-10, "eps2": 1e-40,
                "momentum_init": "global"},
        "ecdq1": {"lr": 0.1, "eta": 2.0, "F0": -1.0, "nu": 0.0, "weight_decay": 0.0, "consEn": True,
                  "eps1": 1e-10, "eps2": 1e-40, "projection": "global"},
    }[name]
    if name == "ecdsep":
        glob["log_C"] = 2.7
    if name == "bbi":
        glob.update(energy=2.5, V0=2.5, counter0=4, counter=1, fixed_bounces=0, min_V=1.9)
    buffer = "velocity" if name == "ecdq1" else "momentum"
    return {"state": {0: {buffer: P0.clone()}, "ecd": glob},
            "param_groups": [{**groups, "foreach": None, "differentiable": False, "params": [0]}]}, buffer


@pytest.mark.parametrize("name", ECD)
def test_earlier_ecd_checkpoint_still_loads(name):
    x = nn.Parameter(X0.clone())
    loss = lambda: 0.5 * (K_QUAD * x**2).sum() + 1.0  # noqa: E731
    sd, buffer = earlier_ecd_checkpoint(name, seed=11)
    opt = make(name, [x], lr=0.1, nu=0.0, seed=99) if name != "bbi" else make(name, [x], lr=0.1, seed=99,
                                                                               threshold0=1000, threshold=3000)
    opt.load_state_dict(save_load(sd))
    assert step_count(opt) == 4 and global_state(opt)["bounces"] == 2
    assert torch.equal(opt.state[x][buffer], P0)
    assert torch.equal(opt.generator.get_state(), sd["state"]["ecd"]["generator_state"])
    run(opt, loss, 1)
    assert step_count(opt) == 5 and torch.isfinite(x).all()
    if name == "ecdsep":  # one ECDSep step by hand: rescale, kick, drift (nu = 0: no bounce)
        dt, eta, s = 0.1, 2.0, 1.0
        f = float(0.5 * (K_QUAD * X0**2).sum() + 1.0)
        p2 = float(P0.pow(2).sum())
        c = math.sqrt((math.exp(2.7 - eta * math.log(f)) - s) / p2)
        p1 = c * P0 - dt * eta / f * K_QUAD * X0
        x1 = X0 + dt * 2.0 * p1 / (s + float(p1.pow(2).sum()))
        torch.testing.assert_close(x.detach(), x1, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(opt.state[x][buffer], p1, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------- 8. meta-device construction
@pytest.mark.parametrize("name", ECD)
def test_ecd_builds_on_meta_and_draws_as_when_built_on_cpu(name):
    reference = TinyNet()
    with torch.device("meta"):
        meta_model = TinyNet.__new__(TinyNet)
        nn.Module.__init__(meta_model)
        meta_model.fc1, meta_model.fc2 = nn.Linear(4, 5), nn.Linear(5, 3)
        meta_model.double()
    opt = make(name, meta_model.parameters())
    with swap_params_on_conversion():
        meta_model.to_empty(device="cpu")
    meta_model.register_buffer("x", reference.x.clone())
    meta_model.register_buffer("y", reference.y.clone())
    meta_model.load_state_dict(reference.state_dict())
    ref_opt = make(name, reference.parameters())
    run(opt, meta_model.loss, 5)
    run(ref_opt, reference.loss, 5)
    assert global_state(opt)["bounces"] == global_state(ref_opt)["bounces"] > 0
    for p, q in zip(meta_model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


# ---------------------------------------------------------------------- 9. torch.compile
@pytest.mark.slow  # tracing takes 7-30 s per case on a loaded 2-core CPU
@pytest.mark.parametrize("name", ["ecdsep", "ecdq1"])
def test_compiled_ecd_step_with_a_pending_bounce_matches_eager(name):
    torch._dynamo.reset()
    model, opt = build(name)
    run(opt, model.loss, 2)
    assert opt.stats["bounced"]
    model2, opt2 = twin(model, opt)
    compiled = torch.compile(opt2.step, backend="eager")
    closure, closure2 = closure_for(opt, model.loss), closure_for(opt2, model2.loss)
    for _ in range(3):
        opt.step(closure)
        compiled(closure2)
    # compiled, the step reduces and decides in device tensors (hamopt.optim.ecd._tensor): equal to rounding
    for x, y in zip(snapshot(model2, opt2), snapshot(model, opt)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    torch._dynamo.reset()


# ---------------------------------------------------------------------- 10. missing options
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_without_foreach_resumes_bit_for_bit(name):
    model, opt = build(name)
    run(opt, model.loss, 2)
    sd = save_load(opt.state_dict())  # a copy: the live state dict shares opt's tensors
    for group in sd["param_groups"]:
        del group["foreach"]
    model2, opt2 = build(name)
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(sd)
    run(opt, model.loss, 2)
    run(opt2, model2.loss, 2)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_missing_any_option_still_steps(name):
    model, opt = build(name)
    run(opt, model.loss, 2)
    options = [k for k in opt.param_groups[0] if k != "params"]
    for key in options:
        sd = save_load(opt.state_dict())
        del sd["param_groups"][0][key]
        model2, opt2 = twin(model, opt)
        opt2.load_state_dict(sd)
        assert key in opt2.param_groups[0], key
        run(opt2, model2.loss, 1)
        assert all(torch.isfinite(p).all() for p in model2.parameters()), key


@pytest.mark.parametrize("name", NAMES)
def test_pickle_without_foreach_resumes(name):
    model, opt = build(name)
    run(opt, model.loss, 2)
    ref_model, ref_opt = twin(model, opt)
    del opt.param_groups[0]["foreach"]
    pair = pickle.loads(pickle.dumps({"model": model, "opt": opt}))
    run(pair["opt"], pair["model"].loss, 2)
    run(ref_opt, ref_model.loss, 2)
    assert_same_tensors(snapshot(pair["model"], pair["opt"]), snapshot(ref_model, ref_opt))


# ---------------------------------------------------------------------- 11. reduced precision kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_foreach_matches_for_loop_in_reduced_precision(name, dtype):
    results = []
    for foreach in (True, False):
        model, opt = build(name, dtype=dtype, foreach=foreach)
        run(opt, model.loss, 6)
        results.append(snapshot(model, opt))
    assert_same_tensors(results[0], results[1])

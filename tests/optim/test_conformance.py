"""The generic checks of PyTorch's optimizer test suite, for every hamopt optimiser and mode.

Modelled on ``torch/testing/_internal/common_optimizers.py`` and ``test/test_optim.py``: closures
and return values, param groups, LR schedulers, a tensor ``lr``, hooks, deepcopy/pickle,
``state_dict`` round trips, foreach against the for-loop, reduced precision, ``channels_last``,
parameters without gradients, ``zero_grad``, ``add_param_group``, the distributed-checkpoint
helpers, ``meta``-device construction and ``torch.compile``. What hamopt does not support
(complex, sparse, integer parameters, ``maximize``, ...) is asserted as a refusal with its message.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

from .conformance_cases import (
    CLOSURE_REQUIRED,
    HAMILTONIAN,
    NAMES,
    STREAMING,
    TinyNet,
    assert_same_tensors,
    build,
    closure_for,
    make,
    momentum_tensors,
    run,
    save_load,
    snapshot,
    step_count,
    swap_params_on_conversion,
    twin,
)

# The option that may differ per param group besides lr.
PER_GROUP_OPTION = {name: ("gamma", 0.5) for name in HAMILTONIAN}
PER_GROUP_OPTION.update({"ecdsep": ("weight_decay", 1e-2), "bbi": ("weight_decay", 1e-2),
                         "ecdq1": ("weight_decay", 1e-2)})


def assert_state_dicts_equal(a, b, path="state_dict"):
    """Recursive equality of two state dicts (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            assert_state_dicts_equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_state_dicts_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- step and closures
@pytest.mark.parametrize("name", NAMES)
def test_step_returns_the_closures_loss(name):
    model, opt = build(name)
    returned = []

    def closure():
        opt.zero_grad()
        loss = model.loss()
        loss.backward()
        returned.append(loss)
        return loss

    out = opt.step(closure)
    assert out is returned[0]
    assert momentum_tensors(opt, list(model.parameters()))  # the step acted


@pytest.mark.parametrize("name", NAMES)
def test_step_without_closure(name):
    model, opt = build(name)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model.loss()
    loss.backward()
    if name in CLOSURE_REQUIRED:
        with pytest.raises(ValueError, match="closure"):
            opt.step()
        assert_same_tensors([p.detach() for p in model.parameters()], before)
        return
    assert opt.step(loss=loss) is loss
    assert step_count(opt) == 1
    after_one = snapshot(model, opt)
    opt.zero_grad()
    model.loss().backward()
    with pytest.warns(UserWarning, match="loss"):
        assert opt.step() is None  # torch convention: no closure, no loss → None
    assert step_count(opt) == 2
    assert any(not torch.equal(a, b) for a, b in zip(after_one, snapshot(model, opt)))


@pytest.mark.parametrize("name", NAMES)
def test_loss_goes_down_on_a_fixed_batch(name):
    model, opt = build(name)
    losses = run(opt, model.loss, 12)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_grads_are_never_modified_in_place(name):
    model, opt = build(name)
    calls = []

    def closure():
        opt.zero_grad()
        loss = model.loss()
        loss.backward()
        calls.append([(p.grad, p.grad.clone()) for p in model.parameters()])
        return loss

    for _ in range(3):
        opt.step(closure)
        for grads in calls:
            for ref, clone in grads:
                assert torch.equal(ref, clone)


@pytest.mark.parametrize("name", NAMES)
def test_optimizer_can_be_printed(name):
    _, opt = build(name)
    text = repr(opt)
    assert type(opt).__name__ in text and "Parameter Group 0" in text and "lr: 0.05" in text


@pytest.mark.parametrize("name", NAMES)
def test_step_is_a_no_op_for_zero_gradients(name):
    model, opt = build(name)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad(set_to_none=False)
        loss = model.loss()
        (loss * 0.0).backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert_same_tensors([p.detach() for p in model.parameters()], before)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes_in_one_group(name):
    """A float32 and a float64 tensor in one group: foreach and the for-loop agree."""
    results = []
    for foreach in (True, False):
        model = TinyNet()
        model.fc1.float()
        opt = make(name, model.parameters(), foreach=foreach)
        run(opt, lambda m=model: m.fc2(torch.tanh(m.fc1(m.x.float())).double()).pow(2).mean() + 0.5, 4)
        results.append(snapshot(model, opt))
        assert model.fc1.weight.dtype == torch.float32 and model.fc2.weight.dtype == torch.float64
        assert all(t.dtype == torch.float32 for t in momentum_tensors(opt, list(model.fc1.parameters())))
    assert_same_tensors(results[0], results[1])


# ---------------------------------------------------------------------- param groups
@pytest.mark.parametrize("name", NAMES)
def test_two_groups_with_the_same_options_match_one_group(name):
    model_a, opt_a = build(name)
    model_b = TinyNet()
    opt_b = make(name, [{"params": model_b.fc1.parameters()}, {"params": model_b.fc2.parameters()}])
    run(opt_a, model_a.loss, 5)
    run(opt_b, model_b.loss, 5)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_with_different_options(name):
    key, value = PER_GROUP_OPTION[name]
    model_a, opt_a = build(name)
    model_b = TinyNet()
    opt_b = make(name, [{"params": model_b.fc1.parameters()},
                        {"params": model_b.fc2.parameters(), "lr": 0.02, key: value}])
    assert opt_b.param_groups[1]["lr"] == 0.02 and opt_b.param_groups[1][key] == value
    assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]
    run(opt_a, model_a.loss, 4)
    run(opt_b, model_b.loss, 4)
    assert opt_b.param_groups[1]["lr"] == 0.02 and opt_b.param_groups[1][key] == value
    assert not torch.equal(model_a.fc2.weight, model_b.fc2.weight)
    assert all(torch.isfinite(p).all() for p in model_b.parameters())


# ---------------------------------------------------------------------- learning rates
SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    "ExponentialLR": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=8,
                                                                  cycle_momentum=False),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("name", NAMES)
def test_lr_schedulers_drive_lr(name, scheduler):
    model, opt = build(name)
    ref_model, ref_opt = build(name)
    sched = SCHEDULERS[scheduler](opt)
    closure, ref_closure = closure_for(opt, model.loss), closure_for(ref_opt, ref_model.loss)
    for _ in range(6):
        lr = opt.param_groups[0]["lr"]
        ref_opt.param_groups[0]["lr"] = lr  # the same schedule written by hand
        opt.step(closure)
        ref_opt.step(ref_closure)
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(sched.get_last_lr()[0])
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))


@pytest.mark.parametrize("name", NAMES)
def test_one_cycle_with_momentum_cycling_is_refused_by_torch(name):
    _, opt = build(name)
    with pytest.raises(ValueError, match="momentum"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=8)


@pytest.mark.parametrize("name", NAMES)
def test_tensor_lr_matches_float_lr(name):
    model_a, opt_a = build(name)
    model_b, opt_b = build(name, lr=torch.tensor(0.05, dtype=torch.float64))
    run(opt_a, model_a.loss, 4)
    run(opt_b, model_b.loss, 4)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb)


# ---------------------------------------------------------------------- hooks
@pytest.mark.parametrize("name", NAMES)
def test_step_pre_and_post_hooks(name):
    model, opt = build(name)
    events = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: events.append(("pre", o, step_count(o))))
    post = opt.register_step_post_hook(lambda o, args, kwargs: events.append(("post", o, step_count(o))))
    run(opt, model.loss, 2)
    assert [(e[0], e[2]) for e in events] == [("pre", 0), ("post", 1), ("pre", 1), ("post", 2)]
    assert all(e[1] is opt for e in events)
    pre.remove()
    post.remove()
    run(opt, model.loss, 1)
    assert len(events) == 4


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_hooks(name):
    model, opt = build(name)
    run(opt, model.loss, 2)
    events = []
    opt.register_state_dict_pre_hook(lambda o: events.append("sd-pre"))

    def post(o, sd):
        events.append("sd-post")
        sd["note"] = "from the post hook"
        return sd

    opt.register_state_dict_post_hook(post)
    sd = opt.state_dict()
    assert events == ["sd-pre", "sd-post"] and sd["note"] == "from the post hook"

    _, fresh = build(name)

    def load_pre(o, state_dict):
        events.append("load-pre")
        state_dict = dict(state_dict)
        state_dict.pop("note")
        return state_dict

    fresh.register_load_state_dict_pre_hook(load_pre)
    fresh.register_load_state_dict_post_hook(lambda o: events.append("load-post"))
    fresh.load_state_dict(sd)
    assert events[2:] == ["load-pre", "load-post"]
    assert step_count(fresh) == 2


@pytest.mark.parametrize("name", NAMES)
def test_global_step_hooks(name):
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    model, opt = build(name)
    events = []
    handles = [register_optimizer_step_pre_hook(lambda o, a, k: events.append(("pre", type(o).__name__))),
               register_optimizer_step_post_hook(lambda o, a, k: events.append(("post", type(o).__name__)))]
    try:
        run(opt, model.loss, 1)
    finally:
        for h in handles:
            h.remove()
    assert events == [("pre", type(opt).__name__), ("post", type(opt).__name__)]


# ---------------------------------------------------------------------- copies and state dicts
@pytest.mark.parametrize("copier", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", NAMES)
def test_copies_continue_bit_for_bit(name, copier):
    model, opt = build(name)
    run(opt, model.loss, 3)
    if copier == "deepcopy":
        model2, opt2 = twin(model, opt)
    else:
        pair = pickle.loads(pickle.dumps({"model": model, "opt": opt}))
        model2, opt2 = pair["model"], pair["opt"]
    assert opt2.defaults == opt.defaults and step_count(opt2) == step_count(opt)
    public = lambda o: {k for k in vars(o) if not k.startswith("_")}  # noqa: E731
    assert public(opt2) == public(opt)
    run(opt, model.loss, 3)
    run(opt2, model2.loss, 3)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_through_torch_save_continues_bit_for_bit(name, dtype):
    model, opt = build(name, dtype=dtype)
    run(opt, model.loss, 3)
    saved = save_load({"model": model.state_dict(), "opt": opt.state_dict()})
    model2, opt2 = build(name, dtype=dtype, seed=7)  # different weights and a fresh optimiser
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    assert_state_dicts_equal(opt2.state_dict(), opt.state_dict())
    run(opt, model.loss, 3)
    run(opt2, model2.loss, 3)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


@pytest.mark.parametrize("name", NAMES)
def test_named_parameters_state_dict(name):
    model = TinyNet()
    opt = make(name, model.named_parameters())
    run(opt, model.loss, 2)
    sd = save_load(opt.state_dict())
    assert sd["param_groups"][0]["param_names"] == [n for n, _ in model.named_parameters()]
    model2 = TinyNet(seed=4)
    model2.load_state_dict(model.state_dict())
    opt2 = make(name, model2.named_parameters())
    opt2.load_state_dict(sd)
    run(opt, model.loss, 2)
    run(opt2, model2.loss, 2)
    assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))


@pytest.mark.parametrize("name", NAMES)
def test_distributed_checkpoint_round_trip_without_process_group(name):
    model, opt = build(name)
    run(opt, model.loss, 3)
    osd = get_optimizer_state_dict(model, opt)
    assert set(osd["state"]) >= {"fc1.weight", "fc2.bias"}
    model2, opt2 = build(name, seed=7)
    model2.load_state_dict(model.state_dict())
    set_optimizer_state_dict(model2, opt2, osd)
    assert_state_dicts_equal(opt2.state_dict(), opt.state_dict())
    assert step_count(opt2) == step_count(opt) == 3


# ---------------------------------------------------------------------- kernels and dtypes
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_foreach_matches_for_loop(name, dtype):
    results = []
    for foreach in (True, False):
        model, opt = build(name, dtype=dtype, foreach=foreach)
        run(opt, model.loss, 6)
        results.append(snapshot(model, opt))
    assert_same_tensors(results[0], results[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_reduced_precision_parameters(name, dtype):
    model, opt = build(name, dtype=dtype)
    ref_model, ref_opt = build(name, dtype=torch.float64)
    start = [p.detach().clone() for p in model.parameters()]
    run(opt, model.loss, 4)
    run(ref_opt, ref_model.loss, 4)
    params = list(model.parameters())
    assert all(p.dtype == dtype and torch.isfinite(p).all() for p in params)
    assert all(t.dtype == dtype for t in momentum_tensors(opt, params))
    assert any(not torch.equal(a, b) for a, b in zip(start, params))
    for p, ref in zip(params, ref_model.parameters()):
        torch.testing.assert_close(p.double(), ref.detach(), rtol=0.0, atol=0.03)


class ConvNet(nn.Module):
    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3).double()
        with torch.no_grad():
            for p in self.conv.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
        self.register_buffer("x", torch.randn(3, 2, 6, 6, generator=gen, dtype=torch.float64))
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def loss(self):
        return torch.tanh(self.conv(self.x)).pow(2).mean() + 0.5


# BBI's bounce draws its new direction in place, in memory order, so the two layouts get different
# (equally distributed) draws: the comparison runs BBI without bounces.
NO_BOUNCE = {"bbi": {"threshold0": 1000, "threshold": 1000}}


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_parameters(name):
    results = []
    for channels_last in (True, False):
        model = ConvNet(channels_last)
        opt = make(name, model.parameters(), **NO_BOUNCE.get(name, {}))
        run(opt, model.loss, 4)
        results.append((model, opt))
    (cl_model, cl_opt), (model, _) = results
    w = cl_model.conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    for t in momentum_tensors(cl_opt, [w]):
        assert t.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(w, model.conv.weight, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NAMES)
def test_parameters_without_gradient_are_left_alone(name):
    model = TinyNet()
    unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = make(name, [*model.parameters(), unused])
    run(opt, model.loss, 4)
    assert unused.grad is None and torch.equal(unused, torch.ones(3, dtype=torch.float64))
    assert not momentum_tensors(opt, [unused])


@pytest.mark.parametrize("name", STREAMING)
def test_streaming_step_without_any_gradient_is_a_no_op(name):
    model, opt = build(name, cap=None)
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step() is None
    assert_same_tensors([p.detach() for p in model.parameters()], before)


@pytest.mark.parametrize("name", NAMES)
def test_zero_grad(name):
    model, opt = build(name)
    run(opt, model.loss, 1)
    model.loss().backward()
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(model.parameters(), grads))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", NAMES)
def test_empty_parameter_list_is_refused(name):
    with pytest.raises(ValueError, match="empty"):
        make(name, [])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("param", "words"),
    [
        (lambda: nn.Parameter(torch.ones(3, dtype=torch.complex64)), "complex"),
        (lambda: nn.Parameter(torch.ones(2, 2).to_sparse()), "sparse"),
        (lambda: torch.ones(3, dtype=torch.int64), "floating"),
    ],
    ids=["complex", "sparse", "integer"],
)
def test_unsupported_parameters_are_refused(name, param, words):
    with pytest.raises(TypeError, match=words):
        make(name, [param()])


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradients_are_refused_before_any_change(name):
    emb = nn.Embedding(5, 3, sparse=True).double()
    opt = make(name, emb.parameters())
    before = emb.weight.detach().clone()
    idx = torch.tensor([0, 2, 4])
    with pytest.raises(TypeError, match="sparse"):
        opt.step(closure_for(opt, lambda: emb(idx).pow(2).sum() + 1.0))
    assert torch.equal(emb.weight, before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("option", ["maximize", "differentiable", "fused", "capturable"])
def test_unsupported_torch_options_are_refused(name, option):
    model = TinyNet()
    if option in ("fused", "capturable") and name in STREAMING:  # streaming Leapfrog/Euler support both
        assert make(name, model.parameters(), **{option: True}).param_groups[0][option] is True
        return
    if option in ("fused", "capturable") and name in ("ecdsep", "bbi", "ecdq1"):
        # fused CPU kernels (tests/optim/test_fused_ecd.py), capturable steps (tests/optim/test_compiled_ecd.py)
        assert make(name, model.parameters(), **{option: True}).param_groups[0][option] is True
        return
    with pytest.raises((TypeError, ValueError), match=option):
        make(name, model.parameters(), **{option: True})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lr", [-0.1, 0.0, float("nan"), float("inf")])
def test_bad_lr_is_refused_naming_lr(name, lr):
    with pytest.raises(ValueError, match="lr"):
        build(name, lr=lr)


@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_in_two_groups_is_refused(name):
    model = TinyNet()
    with pytest.raises(ValueError, match="group"):
        make(name, [{"params": model.fc1.parameters()}, {"params": [model.fc1.weight, *model.fc2.parameters()]}])


# ---------------------------------------------------------------------- add_param_group
@pytest.mark.parametrize("name", NAMES)
def test_add_param_group_mid_run(name):
    model = TinyNet()
    opt = make(name, model.fc2.parameters())
    run(opt, model.loss, 2)
    frozen = model.fc1.weight.detach().clone()
    opt.add_param_group({"params": model.fc1.parameters(), "lr": 0.02})
    group = opt.param_groups[1]
    assert group["lr"] == 0.02
    assert set(opt.defaults) <= set(group)
    assert all(group[k] == v for k, v in opt.defaults.items() if k != "lr")
    run(opt, model.loss, 3)
    assert not torch.equal(model.fc1.weight, frozen)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ValueError, match="group"):
        opt.add_param_group({"params": [model.fc1.bias]})


# ---------------------------------------------------------------------- devices and compile
@pytest.mark.parametrize("name", NAMES)
def test_build_on_meta_then_to_empty_then_step(name):
    reference = TinyNet()
    with torch.device("meta"):
        meta_model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3)).double()
    opt = make(name, meta_model.parameters())
    with swap_params_on_conversion():
        meta_model.to_empty(device="cpu")
    with torch.no_grad():
        for p, q in zip(meta_model.parameters(), reference.parameters()):
            p.copy_(q)
    assert all(p.device.type == "cpu" for p in meta_model.parameters())

    def loss_of(lin1, lin2):
        return lambda: nn.functional.cross_entropy(lin2(torch.tanh(lin1(reference.x))).float(), reference.y)

    ref_opt = make(name, reference.parameters())
    run(opt, loss_of(meta_model[0], meta_model[1]), 4)
    run(ref_opt, loss_of(reference.fc1, reference.fc2), 4)
    for p, q in zip(meta_model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.slow  # tracing takes 7-30 s per case on a loaded 2-core CPU
@pytest.mark.parametrize("name", NAMES)
def test_compiled_step_matches_eager(name):
    torch._dynamo.reset()
    model, opt = build(name)
    run(opt, model.loss, 2)  # momenta exist (and an ECD bounce is pending) before compiling
    model2, opt2 = twin(model, opt)
    compiled_step = torch.compile(opt2.step, backend="eager")
    closure, closure2 = closure_for(opt, model.loss), closure_for(opt2, model2.loss)
    for _ in range(3):
        opt.step(closure)
        compiled_step(closure2)
    if name in STREAMING or name in ("ecdsep", "bbi", "ecdq1"):
        # compiled, the streaming and ECD steps reduce and decide in device tensors: equal to rounding
        for x, y in zip(snapshot(model2, opt2), snapshot(model, opt)):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    else:
        assert_same_tensors(snapshot(model2, opt2), snapshot(model, opt))
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["leapfrog-streaming", "ecdsep"])
def test_inductor_compiled_step_matches_eager(name):
    torch._dynamo.reset()
    model, opt = build(name)
    run(opt, model.loss, 2)
    model2, opt2 = twin(model, opt)
    compiled_step = torch.compile(opt2.step)
    closure, closure2 = closure_for(opt, model.loss), closure_for(opt2, model2.loss)
    for _ in range(3):
        opt.step(closure)
        compiled_step(closure2)
    for p, q in zip(model2.parameters(), model.parameters()):
        torch.testing.assert_close(p, q)
    torch._dynamo.reset()


# ---------------------------------------------------------------------- mixed precision (GradScaler)
SCALE = 2.0**10  # a power of two: scaling and unscaling are exact


@pytest.mark.parametrize("name", STREAMING)
def test_grad_scaler_drives_streaming_mode(name):
    """``scaler.scale(loss).backward(); scaler.unscale_(opt); scaler.step(opt, loss=loss)``."""
    model, opt = build(name)
    ref_model, ref_opt = build(name)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    for _ in range(3):
        opt.zero_grad()
        loss = model.loss()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        scaler.step(opt, loss=loss)
        scaler.update()
    run(ref_opt, ref_model.loss, 3)
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))


@pytest.mark.parametrize("name", CLOSURE_REQUIRED)
def test_grad_scaler_cannot_drive_a_closure_but_a_scaling_closure_works(name):
    """``GradScaler.step`` refuses ``closure=``; a closure that scales the loss and unscales the
    gradients itself gives the unscaled run's numbers."""
    model, opt = build(name)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    with pytest.raises(RuntimeError, match="Closure"):
        scaler.step(opt, closure=closure_for(opt, model.loss))

    def scaled_closure():
        opt.zero_grad()
        loss = model.loss()
        (loss * SCALE).backward()
        for p in model.parameters():
            p.grad.div_(SCALE)
        return loss

    ref_model, ref_opt = build(name)
    for _ in range(3):
        opt.step(scaled_closure)
    run(ref_opt, ref_model.loss, 3)
    assert_same_tensors(snapshot(model, opt), snapshot(ref_model, ref_opt))

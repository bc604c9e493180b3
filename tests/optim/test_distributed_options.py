"""The distributed options seen from one process: ``process_group=``, the reduction hooks'
single-process path (the values themselves, no collective) and ``materialize_state``."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.distributed as dist

import hamopt
from hamopt.optim import _distributed as D

from .helpers import closure_for, tanh_mlp

BUILDERS = {
    "leapfrog-exact": lambda ps, **kw: hamopt.Leapfrog(ps, lr=0.05, **kw),
    "leapfrog-streaming": lambda ps, **kw: hamopt.Leapfrog(ps, lr=0.05, mode="streaming", **kw),
    "euler-exact": lambda ps, **kw: hamopt.Euler(ps, lr=0.05, **kw),
    "ecdsep": lambda ps, **kw: hamopt.ECDSep(ps, lr=0.01, eta=2.0, nu=0.1, seed=0, **kw),
    "bbi": lambda ps, **kw: hamopt.BBI(ps, lr=0.005, threshold0=1, seed=0, **kw),
    "ecdq1": lambda ps, **kw: hamopt.ECDq1(ps, lr=0.01, eta=2.0, nu=0.1, seed=0, **kw),
}


@pytest.fixture
def no_collectives(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a collective was issued in one process")

    for name in ("all_reduce", "broadcast", "all_gather"):
        monkeypatch.setattr(dist, name, refuse)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_one_process_reductions_return_the_values_themselves(name, no_collectives):
    """Not distributed: the hooks hand back the very tensors they got (no copy, no stack) and
    nothing is communicated, over whole steps."""
    assert not D.is_distributed()
    model, loss_fn = tanh_mlp()
    opt = BUILDERS[name](model.parameters())
    seen = []
    inner, inner_loss = opt._reduce, opt._reduce_with_loss

    def spy(*values):
        out = inner(*values)
        seen.append(all(o is v for o, v in zip(out, values, strict=True)))
        return out

    def spy_loss(loss, *values):
        out = inner_loss(loss, *values)
        seen.append(out[0] is loss and len(out) == len(values) + 1)
        return out

    opt._reduce, opt._reduce_with_loss = spy, spy_loss
    for _ in range(3):
        opt.step(closure_for(opt, loss_fn))
    assert seen and all(seen)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_process_group_is_an_attribute_not_state(name):
    model, loss_fn = tanh_mlp()
    opt = BUILDERS[name](model.parameters(), process_group=None)
    assert opt.process_group is None
    opt.step(closure_for(opt, loss_fn))
    sd = opt.state_dict()
    assert all("process_group" not in g for g in sd["param_groups"])
    assert "process_group" not in opt.defaults
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)
    opt.process_group = object()  # an unpicklable handle stands in for a ProcessGroup
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.process_group is None


@pytest.mark.parametrize("name", ["leapfrog-exact", "ecdsep"])
def test_a_bad_process_group_is_refused_naming_the_option(name):
    model, _ = tanh_mlp()
    with pytest.raises(TypeError, match="process_group must be None .* or a torch.distributed.ProcessGroup; got str"):
        BUILDERS[name](model.parameters(), process_group="world")


def _trajectory(name, materialize, steps=4):
    model, loss_fn = tanh_mlp()
    params = list(model.parameters())
    opt = BUILDERS[name](params[:2])
    opt.add_param_group({"params": params[2:]})
    if materialize:
        opt.materialize_state()
    frozen_grad = True
    out = []
    for t in range(steps):
        def closure(t=t):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            if frozen_grad and t < 2:  # the second group first takes part at step 2
                for p in params[2:]:
                    p.grad = None
            return loss

        opt.step(closure)
        out.append(([p.detach().clone() for p in params], repr(opt.stats)))
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_materialized_buffers_change_nothing(name):
    """Buffers made by materialize_state count as new: a run is bit-identical without them,
    also for a group that first steps later (its momentum owes no closing half-kick)."""
    plain, materialized = _trajectory(name, False), _trajectory(name, True)
    for (pa, sa), (pb, sb) in zip(plain, materialized, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(pa, pb))
        assert sa == sb


@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_fresh_state_has_the_structure_of_a_trained_one(name):
    """What distributed checkpointing loads into: after materialize_state, a fresh optimiser's
    state_dict has every key (and every tensor's shape) of a trained one's."""
    model, loss_fn = tanh_mlp()
    trained = BUILDERS[name](model.parameters())
    for _ in range(2):
        trained.step(closure_for(trained, loss_fn))
    fresh = BUILDERS[name](tanh_mlp()[0].parameters())
    fresh.materialize_state()

    def leaves(tree, prefix=""):
        if isinstance(tree, dict):
            for k, v in tree.items():
                yield from leaves(v, f"{prefix}.{k}")
        else:
            yield prefix, tuple(tree.shape) if isinstance(tree, torch.Tensor) else None

    assert dict(leaves(fresh.state_dict()["state"])) == dict(leaves(trained.state_dict()["state"]))

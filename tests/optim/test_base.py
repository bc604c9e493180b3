"""The shared base: the one reduction hook, the public optimiser-wide state, and where it is stored."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt
from hamopt.optim.base import GLOBAL_KEY, HamoptOptimizer

from .helpers import closure_for, tanh_mlp

BUILDERS = {
    "leapfrog-exact": lambda ps: hamopt.Leapfrog(ps, lr=0.05),
    "leapfrog-streaming": lambda ps: hamopt.Leapfrog(ps, lr=0.05, mode="streaming"),
    "euler-exact": lambda ps: hamopt.Euler(ps, lr=0.05),
    "ecdsep": lambda ps: hamopt.ECDSep(ps, lr=0.01, eta=2.0, nu=0.0, seed=0),
    "bbi": lambda ps: hamopt.BBI(ps, lr=0.005, seed=0),
    "ecdq1": lambda ps: hamopt.ECDq1(ps, lr=0.01, eta=2.0, nu=0.0, seed=0),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_reduction_goes_through_reduce(name):
    """Doubling every reduced value (what two ranks holding identical shards would sum to)
    doubles the squared gradient norm the step reports: the reductions pass through _reduce."""
    norms = []
    for factor in (1.0, 2.0):
        model, loss_fn = tanh_mlp()
        opt = BUILDERS[name](model.parameters())
        calls = []

        def scaled(*values, _opt=opt, _factor=factor, _calls=calls):
            _calls.append(len(values))
            return [None if v is None else v * _factor for v in values]

        opt._reduce = scaled
        opt.step(closure_for(opt, loss_fn))
        assert calls, "the step made no reduction through _reduce"
        norms.append(opt.stats["grad_norm"])
    assert norms[1] == pytest.approx(math.sqrt(2.0) * norms[0], rel=1e-12)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_global_state_is_a_copy_kept_with_the_first_parameter(name):
    model, loss_fn = tanh_mlp()
    opt = BUILDERS[name](model.parameters())
    assert isinstance(opt, HamoptOptimizer)
    first = next(model.parameters())
    assert opt.state and GLOBAL_KEY in opt.state[first]  # never empty: no dummy init step elsewhere
    assert all(isinstance(k, torch.Tensor) for k in opt.state)  # no non-parameter key
    opt.step(closure_for(opt, loss_fn))
    view = opt.global_state
    assert view["step"] == 1
    view["step"] = 99
    assert opt.global_state["step"] == 1
    sd = opt.state_dict()
    assert sd["state"][0][GLOBAL_KEY]["optimizer"] == type(opt).__name__
    assert "optimizer" not in opt.global_state

import math

import pytest
import torch

from hamopt.diagnostics.ablations import (
    Scramble,
    Thrash,
    last_level_cache_bytes,
    make_ablation,
    max_abs_difference,
)
from hamopt.optim import Leapfrog


def _problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    return model, lambda: torch.nn.functional.cross_entropy(model(x), y)


def test_thrash_touches_more_than_the_last_level_cache_before_each_loss():
    t = Thrash()
    assert t.buffer.numel() * 8 >= 2 * last_level_cache_bytes() - 8
    small = Thrash(nbytes=1 << 16)
    calls = []
    wrapped = small.wrap(lambda: calls.append(small.calls) or torch.tensor(1.0))
    wrapped()
    wrapped()
    assert calls == [1, 2] and small.checksum == float(small.buffer.numel() * 2)
    with pytest.raises(ValueError):
        Thrash(nbytes=0)


def test_scramble_moves_storage_and_keeps_every_value():
    model, loss_fn = _problem()
    opt = Leapfrog(model.parameters(), lr=0.05, mode="exact")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    params = list(model.parameters())
    ptrs = [p.data_ptr() for p in params]
    moms = [opt.state[p]["momentum"] for p in params]
    mom_ptrs = [m.data_ptr() for m in moms]
    values = [p.detach().clone() for p in params]
    mvalues = [m.clone() for m in moms]
    s = Scramble()
    s.after_step(opt)
    assert all(p.data_ptr() != q for p, q in zip(params, ptrs))
    assert all(opt.state[p]["momentum"].data_ptr() != q for p, q in zip(params, mom_ptrs))
    assert all(torch.equal(p, v) for p, v in zip(params, values))
    assert all(torch.equal(opt.state[p]["momentum"], v) for p, v in zip(params, mvalues))
    opt.step(closure)  # the optimiser keeps working on the relocated tensors
    assert all(torch.isfinite(p).all() for p in params)


def test_ablated_training_compared_with_default():
    series = {}
    for name in ("default", "thrash", "scramble"):
        model, loss_fn = _problem()
        opt = Leapfrog(model.parameters(), lr=0.05, mode="exact")
        abl = make_ablation(name) if name != "thrash" else Thrash(nbytes=1 << 20)
        hs = []
        for _ in range(10):
            fn = abl.wrap(loss_fn)

            def closure(fn=fn):
                opt.zero_grad()
                loss = fn()
                loss.backward()
                return loss

            opt.step(closure)
            abl.after_step(opt)
            hs.append(opt.stats["hamiltonian"])
        series[name] = hs
    d = max_abs_difference(series["thrash"], series["default"])
    assert d.identical and d.max_abs == 0.0 and d.steps_compared == 10
    s = max_abs_difference(series["scramble"], series["default"])
    assert s.max_abs < 1e-5  # alignment may change rounding, never the dynamics


def test_max_abs_difference_and_unknown_names():
    d = max_abs_difference([1.0, 2.0, None], [1.0, 2.5, None])
    assert d.max_abs == 0.5 and not d.identical
    assert max_abs_difference([1.0, None], [1.0, 3.0]).max_abs == math.inf
    assert max_abs_difference([1.0], [1.0]).identical
    with pytest.raises(ValueError, match="ablation must be one of"):
        make_ablation("shuffle")

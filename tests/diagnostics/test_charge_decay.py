"""Damped Leapfrog: the charge of the stored momentum decays as e^{−γ dt t} J_0 in exact mode and
as e^{−γ dt (t−½)} J_0 in streaming mode, where the stored momentum after t calls is the
half-step p_{t−½} (one opening half-kick, then t−1 merged closing + opening half-kicks)."""

from __future__ import annotations

import math

import pytest
import torch

from hamopt import Leapfrog
from hamopt.diagnostics.noether import NoetherMonitor
from hamopt.models.gpt import build_gpt

DT = 0.05
GAMMA = 0.5
STEPS = 40


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def damped_run(mode: str):
    """The symmetric tiny GPT (float64), one fixed batch, a random initial momentum; returns
    the charges before the first step and after each of ``STEPS`` steps."""
    model = build_gpt("tiny", n_layer=2, n_head=2, width=16, context=16, vocab_size=32, seed=1,
                      attention="symmetric").double()
    x = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(1))
    opt = Leapfrog(model.parameters(), lr=DT, gamma=GAMMA, cap=None, mode=mode)
    g = torch.Generator().manual_seed(2)
    for p in model.parameters():
        opt.state[p]["momentum"] = 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype)
    monitor = NoetherMonitor(model, opt, source="momentum")
    first = monitor.charges()

    def closure():
        opt.zero_grad()
        _, loss = model(x, x)
        loss.backward()
        return loss

    for _ in range(STEPS):
        opt.step(closure)
        monitor.after_step()
    return first, monitor.records


def deviation(record, first, kind, factor):
    return float((record.matrices(kind) - factor * first.matrices(kind)).norm())


@pytest.mark.parametrize("mode,lag", [("exact", 0.0), ("streaming", 0.5)])
def test_stored_charge_decays_as_exp_minus_gamma_dt_times_t_minus_lag(mode, lag):
    first, records = damped_run(mode)
    size = float(first.matrices("qk").norm())
    assert size > 0.1
    for t, record in enumerate(records, start=1):
        for kind in ("qk", "vo"):
            assert deviation(record, first, kind, math.exp(-GAMMA * DT * (t - lag))) < 1e-12 * size


def test_streaming_charge_is_not_the_full_step_decay():
    """Against e^{−γ dt t} J_0 the streaming charge is off by the factor e^{γ dt/2} − 1 ≈ 1.3e-2."""
    first, records = damped_run("streaming")
    t = len(records)
    full_step = math.exp(-GAMMA * DT * t)
    off = deviation(records[-1], first, "qk", full_step)
    expected_off = (math.exp(GAMMA * DT / 2) - 1) * full_step * float(first.matrices("qk").norm())
    assert off == pytest.approx(expected_off, rel=1e-6)
    assert off > 1e-3

"""The SOAP family: registered from pytorch-optimizer, energy by displacement, and the checks
that made it the CPU baseline (eager on the CPU, float64, deterministic, state_dict round trip)."""

from __future__ import annotations

import copy

import pytest
import torch

from hamopt import families
from hamopt.energy import EnergyTracker

pytest.importorskip("pytorch_optimizer")


def model(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).to(dtype)


def train(net, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=g, dtype=next(net.parameters()).dtype)
    y = torch.randn(32, 3, generator=g, dtype=x.dtype)
    for _ in range(steps):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()


def test_soap_is_a_registered_family_with_the_displacement_energy():
    from pytorch_optimizer import SOAP

    soap = families.get("soap")
    assert soap.optimizer_class is SOAP and families.for_optimizer(SOAP) is soap
    assert soap.energy.displacement_form and soap.stability is None and soap.momentum is None
    hyper = soap.validate_hyper({"betas": [0.9, 0.95], "precondition_frequency": 5})
    assert hyper["precondition_frequency"] == 5 and "lr" not in hyper
    with pytest.raises(families.HyperError, match="hyper.betaz: unknown key"):
        soap.validate_hyper({"betaz": 0.9})
    net = model()
    opt = soap.build(net.parameters(), 0.01, hyper)
    assert soap.time_step(opt) == pytest.approx(0.1)  # h = √lr
    assert soap.manifest(opt)["energy_convention"]["displacement_form"] is True


def test_the_energy_tracker_measures_soap_by_its_displacement():
    net = model()
    opt = families.get("soap").build(net.parameters(), 0.01, {})
    tracker = EnergyTracker(opt)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    before = [p.detach().clone() for p in net.parameters()]
    record = tracker.step(lambda: ((net(x) - y) ** 2).mean())
    moved = sum(float((p.detach() - b).square().sum()) for p, b in zip(net.parameters(), before))
    assert record.kinetic == pytest.approx(0.5 * moved / 0.01, rel=1e-9)


def test_soap_is_deterministic_in_float64_and_resumes_bit_for_bit():
    soap = families.get("soap")
    a, b = model(), model()
    oa, ob = soap.build(a.parameters(), 0.01, {}), soap.build(b.parameters(), 0.01, {})
    train(a, oa, 12)
    train(b, ob, 12)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert next(a.parameters()).dtype == torch.float64
    # 6 steps, save, restore into fresh objects, 6 more == 12 straight (precondition every 10)
    c = model()
    oc = soap.build(c.parameters(), 0.01, {})
    train(c, oc, 6)
    state, weights = copy.deepcopy(oc.state_dict()), copy.deepcopy(c.state_dict())
    d = model()
    d.load_state_dict(weights)
    od = soap.build(d.parameters(), 0.01, {})
    od.load_state_dict(state)
    train(d, od, 6, seed=1)
    e = model()
    oe = soap.build(e.parameters(), 0.01, {})
    train(e, oe, 6)
    train(e, oe, 6, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


def test_state_bytes_count_the_kronecker_factors():
    from hamopt.experiments.symbreak_metrics import optimizer_state_bytes

    w = torch.nn.Parameter(torch.randn(8, 8))
    opt = families.get("soap").build([w], 0.01, {})
    w.grad = torch.randn(8, 8)
    opt.step()
    w.grad = torch.randn(8, 8)
    opt.step()
    adam = torch.optim.AdamW([w], lr=0.01)
    adam.step()
    per_param = optimizer_state_bytes(opt) / w.numel()
    # m, v (2·64) and per side GG and Q (4 · 8 · 8): 6 floats per parameter at m = n = 8
    assert per_param == pytest.approx(6 * 4, abs=1)
    assert optimizer_state_bytes(adam) / w.numel() == pytest.approx(8, abs=0.2)

"""Noether charges: exact conservation under symmetric dynamics, e^{-γ dt t} decay, drift
under symmetry-breaking biases, momentum sources and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hamopt import Leapfrog
from hamopt.diagnostics.noether import (
    NoetherMonitor,
    noether_charges,
    rescale_charges,
    rescale_pairs,
)
from hamopt.energy import EnergyTracker
from hamopt.models.gpt import build_gpt

DT = 0.05


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 models run fastest on one thread (and do not fight a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def model(attention="symmetric", activation="gelu"):
    return build_gpt(
        "tiny",
        n_layer=2,
        n_head=2,
        width=16,
        context=16,
        vocab_size=32,
        seed=1,
        attention=attention,
        activation=activation,
    ).double()


def batch():
    return torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(1))


def random_momentum(opt, m, key="momentum", scale=0.1):
    g = torch.Generator().manual_seed(2)
    for p in m.parameters():
        opt.state[p][key] = scale * torch.randn(p.shape, generator=g, dtype=p.dtype)


def leapfrog_run(attention, *, gamma=0.0, mass="fan_in", mode="exact", steps=100):
    """100 Leapfrog steps on one fixed batch with fixed bias draws; returns (J_0, [J_t])."""
    m = model(attention)
    x = batch()
    opt = Leapfrog(m.parameters(), lr=DT, gamma=gamma, cap=None, mass=mass, mode=mode)
    random_momentum(opt, m)
    biases = m.draw_biases()
    mon = NoetherMonitor(m, opt)
    first = mon.charges()

    def closure():
        opt.zero_grad()
        _, loss = m(x, x, biases=biases)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        mon.after_step()
    return first, mon.records


def deviation(a, b, kind, factor=1.0):
    return float((a.matrices(kind) - factor * b.matrices(kind)).norm())


@pytest.mark.parametrize(
    "mass,mode", [("fan_in", "exact"), ("identity", "exact"), ("fan_in", "streaming")]
)
def test_symmetric_model_conserves_the_charges_to_rounding(mass, mode):
    first, records = leapfrog_run("symmetric", mass=mass, mode=mode)
    scale = float(first.matrices("qk").norm())
    assert scale > 0.1  # a non-trivial charge: random initial momentum
    for r in records:
        assert deviation(r, first, "qk") < 1e-12 * max(1.0, scale)
        assert deviation(r, first, "vo") < 1e-12 * max(1.0, scale)


def test_any_scalar_mass_per_tensor_conserves_the_charges():
    """Each tensor's drift term m_i P_i P_iᵀ is symmetric on its own: masses may all differ."""
    masses = {}

    def distinct(t):
        return masses.setdefault(id(t), 0.2 + 0.1 * len(masses))

    first, records = leapfrog_run("symmetric", mass=distinct, steps=30)
    assert len(set(masses.values())) > 5
    assert deviation(records[-1], first, "qk") < 1e-12
    assert deviation(records[-1], first, "vo") < 1e-12


def test_damping_scales_the_charges_by_exp_minus_gamma_dt_t():
    gamma = 0.5
    first, records = leapfrog_run("symmetric", gamma=gamma)
    for t, r in enumerate(records, start=1):
        factor = math.exp(-gamma * DT * t)
        assert deviation(r, first, "qk", factor) < 1e-13
        assert deviation(r, first, "vo", factor) < 1e-13
    assert float(records[-1].matrices("qk").norm()) < 0.1 * float(first.matrices("qk").norm())


def test_query_bias_breaks_qk_only_and_value_bias_breaks_vo():
    first, bq = leapfrog_run("bq", steps=30)
    assert deviation(bq[-1], first, "qk") > 1e-4
    assert deviation(bq[-1], first, "vo") < 1e-12
    first, both = leapfrog_run("bq+bv", steps=30)
    assert deviation(both[-1], first, "qk") > 1e-4
    assert deviation(both[-1], first, "vo") > 1e-4


def test_charges_are_antisymmetric_and_bounded_by_their_scale():
    first, records = leapfrog_run("bq+bv", steps=3)
    for c in records[-1].qk + records[-1].vo:
        assert torch.allclose(c.matrix, -c.matrix.T)
        assert c.matrix.shape == (8, 8)
        assert 0 < c.relative <= 1
    s = records[-1].summary()
    assert len(s["j_qk_head_norms"]) == 4 and s["noether_source"] == "momentum"
    assert s["j_qk_norm"] == pytest.approx(math.sqrt(sum(v * v for v in s["j_qk_head_norms"])))


def test_sgd_momentum_charge_decays_by_mu_per_step():
    m = model()
    x = batch()
    mu = 0.9
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=mu)
    random_momentum(opt, m, key="momentum_buffer")
    mon = NoetherMonitor(m, opt, source="momentum")
    first = mon.charges()
    for t in range(1, 11):
        opt.zero_grad()
        m(x, x)[1].backward()
        opt.step()
        r = mon.after_step()
        assert deviation(r, first, "qk", mu**t) < 1e-12
        assert deviation(r, first, "vo", mu**t) < 1e-12


def test_adamw_uses_the_displacement_and_sees_its_symmetry_breaking():
    m = model()
    x = batch()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    mon = NoetherMonitor(m, opt)  # auto -> displacement
    assert mon.source == "displacement"
    tracker = EnergyTracker(opt)
    energy, charges = mon.step(tracker, lambda: m(x, x)[1])
    assert energy.step == 0 and charges.source == "displacement"
    # Adam's element-wise normalisation is not rotation invariant: the charge is not zero.
    assert charges.summary()["j_qk_rel"] > 1e-3


def test_displacement_equals_the_velocity_for_leapfrog_with_unit_mass():
    m = model()
    x = batch()
    opt = Leapfrog(m.parameters(), lr=DT, gamma=0.0, cap=None, mass="identity", mode="exact")
    random_momentum(opt, m)
    mom = NoetherMonitor(m, opt, source="momentum")
    disp = NoetherMonitor(m, opt, source="displacement")
    disp.before_step()

    def closure():
        opt.zero_grad()
        loss = m(x, x)[1]
        loss.backward()
        return loss

    before = {p: opt.state[p]["momentum"].clone() for p in m.parameters()}
    opt.step(closure)
    d = disp.after_step()
    # θ_{t+1} − θ_t = dt p_{t+½}: rebuild p_{t+½} from p_t and p_{t+1} (both kicks use gradients
    # of a symmetric loss, so J(θ, p_{t+½}) = J(θ, p_{t+1})).
    m_rec = mom.after_step()
    assert deviation(d, m_rec, "qk") < 1e-12
    assert deviation(d, m_rec, "vo") < 1e-12
    assert before  # momenta existed before the step


def test_rescale_charges_of_relu_units():
    m = model(activation="relu")
    pairs = rescale_pairs(m)
    assert len(pairs) == 2
    fc, proj = pairs[0]
    q = rescale_charges(pairs)[0]
    i = 5
    expected = (
        fc.weight[i].double().square().sum()
        + fc.bias[i].double() ** 2
        - proj.weight[:, i].double().square().sum()
    )
    assert float(q[i]) == pytest.approx(float(expected.detach()))
    # The rescale is a symmetry of the function.
    x = batch()
    m.eval()
    before = m(x)[0]
    with torch.no_grad():
        fc.weight[i] *= 3.0
        fc.bias[i] *= 3.0
        proj.weight[:, i] /= 3.0
    assert torch.allclose(m(x)[0], before, atol=1e-12)
    assert rescale_pairs(model()) == []


def test_an_optimiser_without_momentum_state_asked_for_momentum_charges():
    m = model()
    with pytest.raises(ValueError, match="source='momentum'.*AdamW"):
        NoetherMonitor(m, torch.optim.AdamW(m.parameters()), source="momentum")
    with pytest.raises(ValueError, match="source='momentum'.*SGD"):
        NoetherMonitor(m, torch.optim.SGD(m.parameters(), lr=0.1), source="momentum")
    mon = NoetherMonitor(m, torch.optim.AdamW(m.parameters()), source="auto")
    with pytest.raises(RuntimeError, match="before_step"):
        mon.after_step()


def test_bad_arguments():
    m = model()
    with pytest.raises(ValueError, match="source"):
        NoetherMonitor(m, torch.optim.AdamW(m.parameters()), source="velocity")
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="model has no CausalSelfAttention"):
        NoetherMonitor(mlp, torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match="model has no"):
        noether_charges(mlp, lambda p: p)

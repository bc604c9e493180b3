"""The built-in families build the lab's optimisers exactly as before and read their state."""

import math

import pytest
import torch

from hamopt import BBI, ECDq1, ECDSep, Euler, Leapfrog, families
from hamopt.families import HyperError

HYPER = {
    "leapfrog": {"gamma": 0.01, "cap": None, "mass": "identity", "mass_clip": [0.25, 4.0]},
    "euler": {},
    "sgd": {"momentum": 0.5, "weight_decay": 1e-3},
    "adamw": {"betas": [0.8, 0.99], "amsgrad": True},
    "adam": {"eps": 1e-6},
    "ecdsep": {"eta": 2.0, "nu": 0.0},
    "bbi": {"threshold0": 5, "threshold": 4},
    "ecdq1": {"eta": 10.0},
}


def _params():
    return [torch.zeros(4, requires_grad=True), torch.ones(2, 3, requires_grad=True)]


def _same(a, b):
    assert type(a) is type(b)
    ga = [{k: v for k, v in g.items() if k != "params"} for g in a.param_groups]
    gb = [{k: v for k, v in g.items() if k != "params"} for g in b.param_groups]
    assert ga == gb


def test_builtin_names_in_order():
    assert families.names()[:8] == (
        "leapfrog", "euler", "sgd", "adamw", "adam", "ecdsep", "bbi", "ecdq1"
    )


def _previous_factory(type_, mode, hyper, params, lr, seed):
    """How the lab built each type before the families (written out, as a fixed reference)."""
    h = hyper
    if type_ in ("ecdsep", "bbi", "ecdq1"):
        return {"ecdsep": ECDSep, "bbi": BBI, "ecdq1": ECDq1}[type_](params, lr=lr, seed=seed, **h)
    if type_ in ("leapfrog", "euler"):
        cls = Leapfrog if type_ == "leapfrog" else Euler
        return cls(params, lr=lr, mode=mode, gamma=h["gamma"], cap=h["cap"], mass=h["mass"],
                   mass_clip=tuple(h["mass_clip"]))
    if type_ == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=h["momentum"], dampening=h["dampening"],
                               weight_decay=h["weight_decay"], nesterov=h["nesterov"], fused=True)
    cls = torch.optim.AdamW if type_ == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(h["betas"]), eps=h["eps"], weight_decay=h["weight_decay"],
               amsgrad=h["amsgrad"], fused=True)


CASES = [(name, None) for name in HYPER] + [("leapfrog", "streaming"), ("euler", "streaming")]


@pytest.mark.parametrize("name, mode", CASES)
def test_build_matches_the_labs_previous_factory(name, mode):
    family = families.get(name)
    hyper = family.validate_hyper(HYPER[name], mode=mode)
    reference = _previous_factory(name, mode or "exact", hyper, _params(), 0.05, 1234)
    built = family.build(_params(), 0.05, hyper, seed=1234, mode=mode)
    _same(built, reference)
    if family.seeded:
        assert families.get(name).manifest(built)["optimizer_seed"] == 1234


@pytest.mark.parametrize("device, fused", [("cpu", True), ("mps", False)])
def test_baselines_use_fused_kernels_on_cpu_and_cuda(device, fused):
    hyper = families.SGD.validate_hyper({})
    opt = families.SGD.construct(_params(), 0.1, hyper, device=device)
    assert bool(opt.param_groups[0]["fused"]) is fused


def test_sgd_refuses_nesterov_with_a_clear_message():
    with pytest.raises(HyperError, match=r"^hyper\.nesterov: Nesterov SGD is refused.*nesterov: false"):
        families.SGD.validate_hyper({"nesterov": True})


def test_sgd_label_follows_momentum():
    assert families.SGD.label({"momentum": 0.9}) == "sgd-momentum"
    assert families.SGD.label(families.SGD.validate_hyper({"momentum": 0.0})) == "sgd"
    opt = families.SGD.build(_params(), 0.1, {"momentum": 0.0})
    assert families.SGD.label(opt) == "sgd"
    assert families.LEAPFROG.label({}) == "leapfrog"


def test_time_step_and_step_size():
    lf = families.LEAPFROG.build(_params(), 0.3)
    sgd = families.SGD.build(_params(), 0.04)
    assert families.LEAPFROG.time_step(lf) == pytest.approx(0.3)
    assert families.LEAPFROG.step_size(lf) == pytest.approx(0.3)
    assert families.SGD.time_step(sgd) == pytest.approx(0.2)
    assert families.SGD.step_size(sgd) == pytest.approx(0.04)
    assert families.LEAPFROG.step_axis == "dt" and families.SGD.step_axis == "lr"


def _quadratic_step(opt, params, n=3):
    for _ in range(n):
        def closure():
            opt.zero_grad()
            loss = sum((p - 1.0).square().sum() for p in params)
            loss.backward()
            return loss

        opt.step(closure)


def test_momentum_readers():
    params = _params()
    lf = families.LEAPFROG.build(params, 0.1, {"cap": None})
    _quadratic_step(lf, params)
    read = families.LEAPFROG.momentum_reader(lf)
    for p in params:
        assert torch.equal(read(p), lf.state[p]["momentum"])

    params = _params()
    sgd = families.SGD.build(params, 0.04, {"momentum": 0.9})
    _quadratic_step(sgd, params)
    read = families.SGD.momentum_reader(sgd)
    for p in params:
        assert torch.allclose(read(p), -0.2 * sgd.state[p]["momentum_buffer"])
    assert families.SGD.momentum_reader(families.SGD.build(_params(), 0.1, {"momentum": 0.0})) is None
    assert families.ADAMW.momentum_reader(families.ADAMW.build(_params(), 0.1)) is None


def test_sgd_momentum_reader_follows_the_dampened_convention():
    params = _params()
    sgd = families.SGD.build(params, 0.04, {"momentum": 0.9, "dampening": 0.5})
    _quadratic_step(sgd, params)
    read = families.SGD.momentum_reader(sgd)
    for p in params:
        assert torch.allclose(read(p), -math.sqrt(0.04 / 0.5) * sgd.state[p]["momentum_buffer"])
    assert families.SGD.time_step(sgd) == pytest.approx(math.sqrt(0.04 * 0.5))
    nesterov = torch.optim.SGD(_params(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        families.SGD.momentum_reader(nesterov)


def test_ecd_manifest_records_the_seed_and_counts():
    params = _params()
    opt = families.ECDQ1.build(params, 0.05, {"eta": 10.0}, seed=1234)
    _quadratic_step(opt, params, n=4)
    m = families.ECDQ1.manifest(opt)
    assert m["family"] == "ecdq1" and m["optimizer_seed"] == 1234
    assert m["ecd"]["steps"] == 4 and m["ecd"]["skipped_steps"] >= 0 and m["ecd"]["bounces"] >= 0
    assert m["energy_convention"]["displacement_form"] is True


def test_hamiltonian_manifest_records_h0_and_cap_count():
    params = _params()
    opt = families.LEAPFROG.build(params, 0.1, {"cap": 1.01})
    _quadratic_step(opt, params, n=5)
    m = families.LEAPFROG.manifest(opt)["hamiltonian"]
    assert m["mode"] == "exact" and math.isfinite(m["H0"])
    assert m["cap_engagements"] == opt.cap_engagements


def test_manifest_prefers_the_public_global_state():
    params = _params()
    opt = families.ECDSEP.build(params, 0.05, {"eta": 2.0}, seed=5)
    public = {"seed": 99, "step": 7, "skipped_steps": 1, "bounces": 2}
    type(opt).global_state = property(lambda self: public)  # as the optimiser may expose it
    try:
        m = families.ECDSEP.manifest(opt)
    finally:
        del type(opt).global_state
    assert m["optimizer_seed"] == 99 and m["ecd"] == {"steps": 7, "skipped_steps": 1, "bounces": 2}
    assert families.ECDSEP.manifest(opt)["optimizer_seed"] == 5


def test_stability_rules_match_the_calibration_formulas():
    from hamopt.experiments.calibrate import StabilityLimits

    lam_p, lam_h = 16.0, 10.0
    limits = StabilityLimits(lam_h, lam_p, 2.0 / math.sqrt(lam_p), 30)
    rule = families.LEAPFROG.stability
    assert rule.eigenvalue == "lambda_preconditioned"
    assert rule.step_size(0.5, lam_p, {}) == pytest.approx(0.5 * limits.dt_limit)
    rule = families.SGD.stability
    assert rule.eigenvalue == "lambda_hessian"
    assert rule.step_size(0.5, lam_h, {"momentum": 0.9}) == pytest.approx(0.25 * limits.sgd_lr_limit(0.9))
    with pytest.raises(ValueError, match="needs momentum > 0"):
        rule.step_size(0.5, lam_h, {"momentum": 0.0})
    # dampening d scales the kick by (1 − d): heavy ball is stable iff lr·(1−d)·λ < 2(1+μ)
    assert rule.step_size(1.0, lam_h, {"momentum": 0.9, "dampening": 0.5}) == pytest.approx(
        2 * limits.sgd_lr_limit(0.9)
    )
    with pytest.raises(ValueError, match="dampening < 1"):
        rule.step_size(0.5, lam_h, {"momentum": 0.9, "dampening": 1.0})
    for name in ("adam", "adamw", "ecdsep", "bbi", "ecdq1"):
        assert families.get(name).stability is None
    assert families.families_with_stability() == ("leapfrog", "euler", "sgd")


def test_modes_and_capabilities():
    assert families.LEAPFROG.modes == ("exact", "streaming") == families.EULER.modes
    assert families.families_with_modes() == ("leapfrog", "euler")
    assert families.LEAPFROG.has_energy_cap and families.LEAPFROG.integrator
    assert not families.SGD.has_energy_cap and not families.ECDSEP.integrator
    assert families.ECDSEP.seeded and not families.ADAM.seeded

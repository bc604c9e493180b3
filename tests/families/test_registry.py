"""The registry: lookup by name and by class, and one-call registration of a third-party optimiser."""

import math

import pytest
import torch

from hamopt import families
from hamopt.energy import EnergyTracker, convention_for, is_displacement_form
from hamopt.errors import UnregisteredOptimizerError
from hamopt.families import HyperError, UnknownFamilyError


def test_get_unknown_lists_the_registered_names():
    with pytest.raises(UnknownFamilyError, match=r"unknown optimiser type 'lion'; registered: leapfrog, euler, sgd"):
        families.get("lion")


def test_for_optimizer_uses_the_nearest_registered_base():
    class MySGD(torch.optim.SGD):
        pass

    opt = MySGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    assert families.for_optimizer(opt) is families.SGD
    assert families.for_optimizer(torch.optim.AdamW) is families.ADAMW
    assert families.for_optimizer(torch.optim.Adam) is families.ADAM


def test_unregistered_optimizer_says_how_to_register():
    opt = torch.optim.Adagrad([torch.zeros(2, requires_grad=True)])
    with pytest.raises(UnregisteredOptimizerError, match=r"register_optimizer\(Adagrad, name=\.\.\.\)"):
        families.for_optimizer(opt)


def test_register_rejects_what_is_not_a_family():
    with pytest.raises(TypeError, match="Family"):
        families.register("sgd")
    with pytest.raises(TypeError, match="Optimizer subclass"):
        families.register_optimizer(dict, name="dict")


def _train(opt, params, steps=20):
    tracker = EnergyTracker(opt)
    target = torch.tensor([1.0, -2.0, 0.5])
    for _ in range(steps):
        tracker.step(lambda: 0.5 * (params[0] - target).square().sum())
    return tracker.records


def test_register_optimizer_in_one_call(restore_registry):
    family = families.register_optimizer(torch.optim.RMSprop, name="rmsprop")
    assert families.get("rmsprop") is family and "rmsprop" in families.names()
    hyper = family.validate_hyper({"alpha": 0.9})
    assert hyper["alpha"] == 0.9 and hyper["momentum"] == 0 and "lr" not in hyper
    with pytest.raises(HyperError, match=r"^hyper\.alphaa: unknown key"):
        family.validate_hyper({"alphaa": 0.9})
    with pytest.raises(HyperError, match=r"^hyper\.alpha: .*alpha"):
        family.validate_hyper({"alpha": -1.0})
    params = [torch.zeros(3, requires_grad=True)]
    opt = family.build(params, 0.01, hyper)
    assert type(opt) is torch.optim.RMSprop and opt.param_groups[0]["alpha"] == 0.9
    assert families.for_optimizer(opt) is family
    assert convention_for(opt).name == "rmsprop" and is_displacement_form(opt)
    assert family.time_step(opt) == pytest.approx(0.1) and family.stability is None
    records = _train(opt, params)
    # the displacement form: K_{t+1} = ½‖θ_{t+1} − θ_t‖² / lr, and H = K + L
    assert all(math.isfinite(r.kinetic) and r.kinetic > 0 for r in records)
    assert records[-1].loss < records[0].loss
    for r in records:
        assert r.hamiltonian == pytest.approx(r.kinetic + r.loss_after)
    assert family.manifest(opt)["energy_convention"]["displacement_form"] is True


def test_register_optimizer_with_a_state_kinetic_energy(restore_registry):
    family = families.register_optimizer(
        torch.optim.Adagrad, name="adagrad", kinetic=lambda o: sum(
            0.5 * float(s["sum"].sum()) for s in o.state.values()
        )
    )
    params = [torch.zeros(3, requires_grad=True)]
    opt = family.build(params, 0.1, {"lr_decay": 0.0})
    assert not is_displacement_form(opt)
    records = _train(opt, params, steps=5)
    assert records[-1].kinetic == pytest.approx(0.5 * float(opt.state[params[0]]["sum"].sum()))
    with pytest.raises(HyperError, match=r"^hyper\.lr_decay: .*lr_decay"):
        family.validate_hyper({"lr_decay": -1.0})


def test_reregistering_a_name_replaces_it(restore_registry):
    families.register_optimizer(torch.optim.RMSprop, name="custom")
    families.register_optimizer(torch.optim.Adagrad, name="custom")
    assert families.get("custom").optimizer_class is torch.optim.Adagrad
    with pytest.raises(UnregisteredOptimizerError):
        families.for_optimizer(torch.optim.RMSprop)
    rmsprop = torch.optim.RMSprop([torch.zeros(2, requires_grad=True)])
    with pytest.raises(UnregisteredOptimizerError):
        convention_for(rmsprop)  # its convention left with its family


class _EtaDescent(torch.optim.Optimizer):
    """Gradient descent whose step size is called ``eta`` (not ``lr``)."""

    def __init__(self, params, eta=0.1):
        super().__init__(params, {"eta": eta})

    @torch.no_grad()
    def step(self, closure=None):
        with torch.enable_grad():
            loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["eta"])
        return loss


def test_displacement_form_reads_each_groups_step_size_under_its_own_name(restore_registry):
    family = families.register_optimizer(_EtaDescent, name="eta-descent", step_size_name="eta")
    a, b = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = _EtaDescent([{"params": [a], "eta": 0.1}, {"params": [b], "eta": 0.4}])
    assert family.time_step(opt) == pytest.approx(math.sqrt(0.1))
    record = EnergyTracker(opt).step(lambda: 0.5 * (a.square().sum() + b.square().sum()))
    # Δθ = −eta·θ per group, so K = Σ_groups ½ ‖eta θ‖² / eta = ½ (0.1·2 + 0.4·3)
    assert record.step_size == pytest.approx(0.1)
    assert record.kinetic == pytest.approx(0.5 * (0.1 * 2 + 0.4 * 3))

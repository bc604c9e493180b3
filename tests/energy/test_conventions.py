"""Energy conventions of the baselines equal the spec §5 formulas recomputed from their state."""

import pytest
import torch
from torch import nn

import hamopt
from hamopt.energy import EnergyConvention, EnergyTracker, convention_for, kinetic, register
from hamopt.errors import UnregisteredOptimizerError

from ..optim.helpers import closure_for, tanh_mlp


def train(opt, loss_fn, steps=5):
    for _ in range(steps):
        opt.step(closure_for(opt, loss_fn))


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_sgd_momentum_kinetic_matches_formula(dampening):
    model, loss_fn = tanh_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=dampening)
    train(opt, loss_fn)
    expected = sum(
        0.5 * 0.05 / (1 - dampening) * opt.state[p]["momentum_buffer"].pow(2).sum().item()
        for p in model.parameters()
    )
    assert kinetic(opt) == pytest.approx(expected, rel=1e-12)
    assert convention_for(opt).time_step(opt) == pytest.approx((0.05 * (1 - dampening)) ** 0.5)


@pytest.mark.parametrize("cls", [torch.optim.AdamW, torch.optim.Adam])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_kinetic_matches_formula(cls, amsgrad):
    model, loss_fn = tanh_mlp()
    opt = cls(model.parameters(), lr=1e-3, betas=(0.8, 0.99), eps=1e-6, amsgrad=amsgrad)
    train(opt, loss_fn, 7)
    expected = 0.0
    for p in model.parameters():
        st = opt.state[p]
        t = float(st["step"])
        m_hat = st["exp_avg"] / (1 - 0.8**t)
        v = st["max_exp_avg_sq"] if amsgrad else st["exp_avg_sq"]
        v_hat = v / (1 - 0.99**t)
        expected += 0.5 * 1e-3 / (1 - 0.8) * (m_hat**2 / (v_hat.sqrt() + 1e-6)).sum().item()
    assert kinetic(opt) == pytest.approx(expected, rel=1e-10)
    assert convention_for(opt).time_step(opt) == pytest.approx((1e-3 * (1 - 0.8)) ** 0.5)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_plain_sgd_displacement_form(wd):
    model, loss_fn = tanh_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=wd)
    train(opt, loss_fn, 2)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(closure_for(opt, loss_fn))
    disp = sum((p.detach() - b).pow(2).sum().item() for p, b in zip(model.parameters(), before))
    assert kinetic(opt) == pytest.approx(0.5 * disp / 0.05, rel=1e-8)
    assert hamopt.energy.is_displacement_form(opt)


def test_leapfrog_kinetic_is_mass_weighted():
    model, loss_fn = tanh_mlp()
    opt = hamopt.Leapfrog(model.parameters(), lr=0.05)
    train(opt, loss_fn, 3)
    from hamopt.optim.mass import fan_in_inverse_mass

    expected = sum(
        0.5 * fan_in_inverse_mass(p) * opt.state[p]["momentum"].pow(2).sum().item() for p in model.parameters()
    )
    assert kinetic(opt) == pytest.approx(expected, rel=1e-12)
    assert kinetic(opt) == pytest.approx(opt.stats["kinetic"], rel=1e-12)


def test_unregistered_optimizer_says_how_to_register():
    model, _ = tanh_mlp()
    opt = torch.optim.Adagrad(model.parameters())
    with pytest.raises(UnregisteredOptimizerError, match=r"hamopt\.energy\.register"):
        kinetic(opt)


def test_register_custom_optimizer():
    class MySGD(torch.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            with torch.enable_grad():
                loss = closure()
            for g in self.param_groups:
                for p in g["params"]:
                    p.add_(p.grad, alpha=-g["lr"])
            return loss

    register(MySGD, EnergyConvention(name="my-sgd", kinetic=lambda o: 0.0, step_size=lambda o: 0.1,
                                     time_step=lambda o: 0.1, displacement_form=True, description="test"))
    model, loss_fn = tanh_mlp()
    tracker = EnergyTracker(MySGD(model.parameters(), lr=0.1))
    rec = tracker.step(loss_fn)
    assert rec.optimizer == "my-sgd" and rec.kinetic > 0  # displacement measured by the tracker


# ---------------------------------------------------------------- tracker
@pytest.mark.parametrize(
    "make",
    [
        lambda ps: hamopt.Leapfrog(ps, lr=0.05),
        lambda ps: hamopt.Euler(ps, lr=0.05),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.05),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3),
    ],
)
def test_tracker_records_are_consistent(make):
    model, _ = tanh_mlp()
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g))
               for _ in range(5)]
    tracker = EnergyTracker(make(list(model.parameters())))
    for x, y in batches:
        tracker.step(lambda x=x, y=y: nn.functional.cross_entropy(model(x), y))
    recs = tracker.records
    assert [r.step for r in recs] == list(range(5))
    for prev, cur in zip(recs, recs[1:]):
        same = prev.delta_h_int == pytest.approx(prev.hamiltonian - prev.hamiltonian_before, abs=1e-12)
        assert same or prev.cap_engaged
        assert prev.resampling == pytest.approx(cur.loss - prev.loss_after, abs=1e-15)
        assert prev.delta_h_traj == pytest.approx(prev.delta_h_int + prev.resampling, abs=1e-15)
        assert cur.kinetic_before == pytest.approx(prev.kinetic, rel=1e-12)
    assert recs[-1].resampling is None and recs[-1].grad_norm > 0


def test_tracker_streaming_leapfrog_gets_trajectory_change():
    model, loss_fn = tanh_mlp()
    tracker = EnergyTracker(hamopt.Leapfrog(model.parameters(), lr=0.05, mode="streaming"))
    for _ in range(4):
        tracker.step(loss_fn)
    recs = tracker.records
    assert recs[0].delta_h_int is None
    assert recs[1].delta_h_traj == pytest.approx(recs[2].hamiltonian - recs[1].hamiltonian)


def test_tracker_non_finite_baseline_raises_before_update():
    model, loss_fn = tanh_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = EnergyTracker(opt)
    tracker.step(loss_fn)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(hamopt.NonFiniteError):
        tracker.step(lambda: loss_fn() * float("nan"))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))

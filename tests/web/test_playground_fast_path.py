"""``run_trajectory`` (analytic gradients, lean bookkeeping) against its reference route (autograd
closure and ``EnergyTracker``): the same path, energies, divergence and cap counts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hamopt.landscapes import LANDSCAPES
from hamopt.playground import OPTIMIZERS, PlaygroundConfig, run_trajectory, suggested_config
from hamopt.playground.stepping import reads_stats

SERIES = ("loss", "kinetic", "hamiltonian", "delta_h_int", "delta_h_traj", "resampling")


def assert_same_run(fast, ref) -> None:
    assert fast.diverged_at == ref.diverged_at
    assert fast.divergence == ref.divergence
    assert fast.cap_engagements == ref.cap_engagements
    assert len(fast.theta) == len(ref.theta) == len(fast.delta_h_int) + 1
    scale = max([1.0, *(abs(h) for h in ref.hamiltonian)])
    for a, b in zip(fast.theta, ref.theta, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    for name in SERIES:
        for t, (a, b) in enumerate(zip(getattr(fast, name), getattr(ref, name), strict=True)):
            if a is None or b is None:
                assert a is b, (name, t)
            else:
                # differences of nearly equal energies: compared on the scale of H
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12 * scale), (name, t)
    for name in ("drift_int", "drift_traj", "energy_error"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-6, abs=1e-12 * scale)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("landscape", list(LANDSCAPES))
def test_fast_run_equals_the_tracked_run(landscape, optimizer):
    config = replace(suggested_config(landscape, optimizer), steps=80)
    assert_same_run(run_trajectory(config), run_trajectory(config, reference=True))


@pytest.mark.parametrize(
    "config",
    [
        # energy cap engaged on most steps; with damping
        PlaygroundConfig(landscape="double_well", optimizer="leapfrog", step_size=0.4, cap=1.01, steps=150),
        PlaygroundConfig(landscape="double_well", optimizer="euler", step_size=0.2, cap=1.05,
                         gamma=0.05, steps=150),
        PlaygroundConfig(landscape="noisy_quadratic", optimizer="euler", step_size=0.05, cap=1.5,
                         noise=0.5, steps=150),
        # plain SGD (displacement form), weight decay
        PlaygroundConfig(landscape="noisy_quadratic", optimizer="sgd_momentum", step_size=0.02,
                         momentum=0.0, weight_decay=0.1, steps=150),
        # ECD with its seeded random bounces
        PlaygroundConfig(landscape="ackley", optimizer="ecdsep", step_size=0.02, nu=0.5, seed=4,
                         steps=150),
        # runs that stop: θ leaves the landscape, the energy blows up
        PlaygroundConfig(landscape="quadratic", optimizer="leapfrog", step_size=2.0, steps=400),
        PlaygroundConfig(landscape="rosenbrock", optimizer="sgd_momentum", step_size=0.05, steps=200),
        PlaygroundConfig(landscape="himmelblau", optimizer="adamw", step_size=3.0, steps=200),
    ],
    ids=["cap-leapfrog", "cap-euler-damped", "cap-euler-noisy", "plain-sgd", "ecd-bounce", "escape",
         "sgd-blowup", "adamw-big"],
)
def test_fast_run_equals_the_tracked_run_at_the_edges(config):
    fast, ref = run_trajectory(config), run_trajectory(config, reference=True)
    assert_same_run(fast, ref)


def test_edge_cases_reach_the_edges():
    """The edge configurations above do what they are there for (so their test can fail)."""
    cap = run_trajectory(PlaygroundConfig(landscape="double_well", optimizer="leapfrog", step_size=0.4,
                                          cap=1.01, steps=150))
    assert cap.cap_engagements > 50
    escape = run_trajectory(PlaygroundConfig(landscape="quadratic", optimizer="leapfrog", step_size=2.0,
                                             steps=400))
    assert escape.diverged and "left the landscape" in escape.divergence
    blowup = run_trajectory(PlaygroundConfig(landscape="rosenbrock", optimizer="sgd_momentum",
                                             step_size=0.05, steps=200))
    assert blowup.diverged


def test_only_exact_integrators_are_read_from_their_stats():
    from hamopt.landscapes import make_landscape

    for key, info in OPTIMIZERS.items():
        config = suggested_config("quadratic", key)
        opt = info.build([make_landscape("quadratic").theta], config)
        assert reads_stats(opt) == (key in ("leapfrog", "euler")), key


def test_closure_buffers_keep_a_value_until_the_call_after_next():
    import torch

    from hamopt.landscapes import make_landscape
    from hamopt.playground.stepping import AnalyticClosure

    landscape = make_landscape("quadratic")  # ½(x² + 10y²): ∇L = (x, 10y)
    closure = AnalyticClosure(landscape, reuse_buffers=True)
    closure.next_batch(None, 0)
    with torch.no_grad():
        landscape.theta.copy_(torch.tensor([1.0, 2.0], dtype=torch.float64))
    loss1 = closure()
    grad1 = landscape.theta.grad
    with torch.no_grad():
        landscape.theta.copy_(torch.tensor([3.0, -1.0], dtype=torch.float64))
    loss2 = closure()
    grad2 = landscape.theta.grad
    # the first call's gradient and loss survive the second call (a failed exact step restores them)
    assert grad1.tolist() == [1.0, 20.0] and loss1.item() == 20.5 and closure.loss == 20.5
    assert grad2.tolist() == [3.0, -10.0] and loss2.item() == 9.5 and grad2 is not grad1
    closure()  # the third call writes the first pair again
    assert landscape.theta.grad is grad1 and grad1.tolist() == [3.0, -10.0]


def test_exact_step_follows_a_change_of_the_inverse_mass():
    import torch

    from hamopt import Leapfrog

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Leapfrog([p], lr=0.1, gamma=0.0, cap=None, mass="identity")

    def closure():
        p.grad = p.detach().clone()  # L = ½‖θ‖²
        return 0.5 * p.detach().square().sum()

    opt.step(closure)
    moms = opt.state[p]["momentum"]
    assert opt.stats["kinetic"] == pytest.approx(0.5 * moms.square().sum().item(), rel=1e-15)
    opt.param_groups[0]["mass"] = lambda t: 0.25
    opt.step(closure)
    assert opt.stats["kinetic"] == pytest.approx(0.5 * 0.25 * moms.square().sum().item(), rel=1e-15)

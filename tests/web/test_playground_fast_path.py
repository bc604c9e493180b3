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

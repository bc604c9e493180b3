"""Each replica of a batch computes what the unbatched optimiser and EnergyTracker compute alone."""

from __future__ import annotations

import pytest
import torch

from .helpers import assert_records_close, run_alone, run_batched

CASES = [
    ("leapfrog", "exact", {"cap": None}, [0.05, 0.1, 0.2]),
    ("leapfrog", "streaming", {"cap": None}, [0.05, 0.1, 0.2]),
    ("euler", "exact", {"cap": None}, [0.02, 0.04, 0.08]),
    ("euler", "streaming", {"cap": None}, [0.02, 0.04, 0.08]),
    ("sgd", None, {"momentum": 0.9, "weight_decay": 1e-3}, [0.01, 0.02, 0.05]),
    ("adamw", None, {}, [1e-3, 3e-3, 1e-2]),
]
SEEDS = [0, 1, 2]


@pytest.mark.parametrize(("type_", "mode", "hyper", "steps_sizes"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_float64_replicas_equal_the_unbatched_optimiser(type_, mode, hyper, steps_sizes):
    steps = 40
    tracker, _, _ = run_batched(type_, steps_sizes, SEEDS, hyper, mode, steps, torch.float64)
    for r, (lr, seed) in enumerate(zip(steps_sizes, SEEDS)):
        alone = run_alone(type_, lr, seed, hyper, mode, steps, torch.float64)
        assert_records_close(alone, tracker.records[r], 1e-12)


@pytest.mark.parametrize(("type_", "mode", "hyper", "steps_sizes"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_float32_series_within_1e5_over_200_steps(type_, mode, hyper, steps_sizes):
    steps = 200
    tracker, _, _ = run_batched(type_, steps_sizes, SEEDS, hyper, mode, steps, torch.float32)
    for r, (lr, seed) in enumerate(zip(steps_sizes, SEEDS)):
        alone = run_alone(type_, lr, seed, hyper, mode, steps, torch.float32)
        assert_records_close(alone, tracker.records[r], 1e-5)


ECD_HYPER = [{"eta": 2.0, "nu": 1e-3}, {"eta": 3.0, "nu": 0.0, "deltaEn": 0.5, "weight_decay": 1e-3},
             {"eta": 2.0, "nu": 1e-2, "F0": 0.9}]  # F0 near the loss: steps are skipped


@pytest.mark.parametrize("hyper", ECD_HYPER, ids=["bounces", "delta-wd", "skips"])
def test_ecdsep_replicas_draw_their_own_bounces(hyper):
    from hamopt.experiments.drift_setup import optimizer_seed

    sizes, steps = [0.05, 0.1, 0.2], 40
    tracker, opt, _ = run_batched("ecdsep", sizes, SEEDS, hyper, None, steps, torch.float64)
    for r, (lr, seed) in enumerate(zip(sizes, SEEDS)):
        alone = run_alone("ecdsep", lr, seed, hyper, None, steps, torch.float64, opt_seed=optimizer_seed(seed))
        assert_records_close(alone, tracker.records[r], 1e-12)
    if hyper["nu"] > 0:
        assert all(b > 0 for b in opt.bounces)
    if "F0" in hyper:
        assert any(k > 0 for k in opt.skipped_steps) and any(k < steps for k in opt.skipped_steps)


BBI_HYPER = [{"threshold0": 5, "threshold": 7, "n_fixed_bounces": 2},
             {"deltaEn": 0.3, "weight_decay": 1e-3, "threshold0": 4, "threshold": 100},
             {"v0": 0.9, "threshold0": 3, "threshold": 5}]  # v0 near the loss: steps are skipped


@pytest.mark.parametrize("hyper", BBI_HYPER, ids=["bounces", "delta-wd", "skips"])
def test_bbi_replicas_bounce_and_skip_on_their_own(hyper):
    from hamopt.experiments.drift_setup import optimizer_seed

    sizes, steps = [0.05, 0.1, 0.2], 30
    tracker, opt, _ = run_batched("bbi", sizes, SEEDS, hyper, None, steps, torch.float64)
    for r, (lr, seed) in enumerate(zip(sizes, SEEDS)):
        alone = run_alone("bbi", lr, seed, hyper, None, steps, torch.float64, opt_seed=optimizer_seed(seed))
        assert_records_close(alone, tracker.records[r], 1e-12)
    assert all(b > 0 for b in opt.bounces)
    if "v0" in hyper:
        assert any(k > 0 for k in opt.skipped_steps)

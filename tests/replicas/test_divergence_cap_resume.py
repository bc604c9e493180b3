"""A diverging replica is frozen while the others go on; a capped replica caps alone; a batch
resumes mid-run from its state dicts."""

from __future__ import annotations

import pytest
import torch

from hamopt.replicas import ReplicaStack, ReplicaTracker, build_replica_optimizer

from .helpers import advance, assert_records_close, make_model, run_alone, run_batched

SEEDS = [0, 1, 2]
TYPES = [("leapfrog", "exact", {"cap": None}, [0.05, 0.1, 0.2]),
         ("leapfrog", "streaming", {"cap": None}, [0.05, 0.1, 0.2]),
         ("euler", "exact", {"cap": None}, [0.02, 0.04, 0.08]),
         ("sgd", None, {"momentum": 0.9}, [0.01, 0.02, 0.05]),
         ("adamw", None, {}, [1e-3, 3e-3, 1e-2])]
IDS = [f"{t[0]}-{t[1]}" for t in TYPES]


@pytest.mark.parametrize(("type_", "mode", "hyper", "sizes"), TYPES, ids=IDS)
def test_a_diverging_replica_is_frozen_and_the_others_go_on(type_, mode, hyper, sizes):
    poison = {1: 6}  # replica of seed 1 sees a NaN batch at step 6
    steps = 15
    tracker, opt, stack = run_batched(type_, sizes, SEEDS, hyper, mode, steps, torch.float64, poison)
    assert opt.active == [True, False, True]
    at, reason = opt.diverged[1]
    assert at == 6 and "non-finite loss at step 6" in reason
    assert len(tracker.records[1]) == 6
    for r, (lr, seed) in enumerate(zip(sizes, SEEDS)):
        alone = run_alone(type_, lr, seed, hyper, mode, steps, torch.float64, poison)
        assert_records_close(alone, tracker.records[r], 1e-12)
    # the frozen replica's parameters are those it had before step 6
    frozen = make_model(1, torch.float64)
    reference = ReplicaStack([make_model(s, torch.float64) for s in SEEDS])
    ref_opt = build_replica_optimizer(type_, reference.parameters(), sizes, hyper, mode=mode)
    advance(ReplicaTracker(ref_opt, reference.zero_grad), reference, SEEDS, 0, 6, torch.float64)
    for name, _ in frozen.named_parameters():
        assert torch.equal(stack.params[name][1], reference.params[name][1]), name


@pytest.mark.parametrize("mode", ["exact", "streaming"])
def test_a_capped_replica_caps_alone(mode):
    hyper = {"cap": 1.02, "gamma": 0.0}
    sizes = [0.02, 0.6, 0.9]
    steps = 40
    tracker, opt, _ = run_batched("leapfrog", sizes, SEEDS, hyper, mode, steps, torch.float64)
    assert opt.cap_engagements[0] == 0 and opt.cap_engagements[2] > 0
    for r, (lr, seed) in enumerate(zip(sizes, SEEDS)):
        alone = run_alone("leapfrog", lr, seed, hyper, mode, steps, torch.float64)
        assert alone[-1].cap_engagements == opt.cap_engagements[r]
        assert_records_close(alone, tracker.records[r], 1e-12)


@pytest.mark.parametrize(("type_", "mode", "hyper", "sizes"), TYPES, ids=IDS)
def test_resume_mid_batch_continues_bit_for_bit(type_, mode, hyper, sizes):
    dtype = torch.float32
    whole, whole_opt, whole_stack = run_batched(type_, sizes, SEEDS, hyper, mode, 12, dtype, {2: 4})
    part, part_opt, part_stack = run_batched(type_, sizes, SEEDS, hyper, mode, 12, dtype, {2: 4}, stop_after=7)
    saved_opt = part_opt.state_dict()
    saved_params = {k: v.detach().clone() for k, v in part_stack.params.items()}
    fresh = ReplicaStack([make_model(s + 10, dtype) for s in SEEDS])
    with torch.no_grad():
        for k, v in saved_params.items():
            fresh.params[k].copy_(v)
    opt = build_replica_optimizer(type_, fresh.parameters(), sizes, hyper, mode=mode)
    opt.load_state_dict(saved_opt)
    tracker = ReplicaTracker(opt, fresh.zero_grad)
    advance(tracker, fresh, SEEDS, 7, 12, dtype)
    assert opt.diverged == whole_opt.diverged and opt.steps == whole_opt.steps
    for k in saved_params:
        assert torch.equal(fresh.params[k], whole_stack.params[k]), k
    for r in range(len(SEEDS)):
        tail = whole.records[r][7:]
        assert [rec.loss for rec in tracker.records[r]] == [rec.loss for rec in tail]


def test_a_state_of_another_optimiser_is_refused():
    stack = ReplicaStack([make_model(s, torch.float64) for s in SEEDS])
    lf = build_replica_optimizer("leapfrog", stack.parameters(), [0.1] * 3, {}, mode="exact")
    sgd = build_replica_optimizer("sgd", stack.parameters(), [0.1] * 3, {"momentum": 0.9})
    with pytest.raises(ValueError, match="ReplicaSGD"):
        lf.load_state_dict(sgd.state_dict())
    streaming = build_replica_optimizer("leapfrog", stack.parameters(), [0.1] * 3, {}, mode="streaming")
    with pytest.raises(ValueError, match="mode 'exact'"):
        streaming.load_state_dict(lf.state_dict())


def test_bad_options_are_refused_with_the_field_named():
    stack = ReplicaStack([make_model(s, torch.float64) for s in SEEDS])
    with pytest.raises(ValueError, match=r"lr\[1\] must be a finite number > 0"):
        build_replica_optimizer("leapfrog", stack.parameters(), [0.1, -1.0, 0.1], {}, mode="exact")
    with pytest.raises(ValueError, match="one value per replica"):
        build_replica_optimizer("sgd", stack.parameters(), [0.1, 0.1], {"momentum": 0.9})
    with pytest.raises(ValueError, match="momentum must be > 0"):
        build_replica_optimizer("sgd", stack.parameters(), [0.1] * 3, {"momentum": 0.0})
    with pytest.raises(ValueError, match="type: 'ecdq1' has no batched replicas"):
        build_replica_optimizer("ecdq1", stack.parameters(), [0.1] * 3, {"eta": 2.0})
    with pytest.raises(ValueError, match="seeds: ECDSep replicas need one generator seed per replica"):
        build_replica_optimizer("ecdsep", stack.parameters(), [0.1] * 3, {"eta": 2.0})
    with pytest.raises(ValueError, match="momentum_init: only 'global' is batched"):
        build_replica_optimizer("bbi", stack.parameters(), [0.1] * 3, {"momentum_init": "per_tensor"}, seeds=[0, 1, 2])

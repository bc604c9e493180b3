"""ReplicaStack: per-replica batch-norm statistics, refusals with the model named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hamopt import families
from hamopt.energy import EnergyTracker
from hamopt.replicas import ReplicaStack, ReplicaTracker, build_replica_optimizer

SEEDS = [0, 1, 2]


def bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()


def batches(seed: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g))
            for _ in range(steps)]


def test_batch_norm_keeps_per_replica_statistics():
    steps, sizes = 8, [0.05, 0.1, 0.2]
    data = [batches(s, steps) for s in SEEDS]
    stack = ReplicaStack([bn_model(s) for s in SEEDS])
    opt = build_replica_optimizer("leapfrog", stack.parameters(), sizes, {}, mode="exact")
    tracker = ReplicaTracker(opt, stack.zero_grad)
    for t in range(steps):
        x = torch.stack([d[t][0] for d in data])
        y = torch.stack([d[t][1] for d in data])
        tracker.step(lambda x=x, y=y: stack.losses(x, y))
    for r, seed in enumerate(SEEDS):
        model = bn_model(seed)
        alone = EnergyTracker(families.get("leapfrog").build(model.parameters(), sizes[r], {}, mode="exact"))
        for x, y in data[r]:
            alone.step(lambda x=x, y=y, model=model: F.cross_entropy(model(x), y))
        losses = [rec.loss for rec in alone.records]
        assert losses == pytest.approx([rec.loss for rec in tracker.records[r]], rel=1e-12)
        for name, buf in model.named_buffers():
            assert torch.allclose(buf.to(stack.buffers[name].dtype), stack.buffers[name][r], rtol=1e-12, atol=0), name


def test_models_of_different_architectures_are_refused():
    other = nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 3)).double()
    with pytest.raises(ValueError, match="replica 1 .*does not have the architecture of replica 0"):
        ReplicaStack([bn_model(0), other])


def test_a_channels_last_model_is_refused_naming_it():
    from hamopt.models import build_model

    models = [build_model("small_cnn", num_classes=10, input_shape=(3, 32, 32), width=4, depth=2, seed=s,
                          channels_last=True) for s in (0, 1)]
    if not any(getattr(h, "__name__", "") == "_inputs_channels_last" for h in models[0]._forward_pre_hooks.values()):
        pytest.skip("this build has no channels-last input hook")
    with pytest.raises(ValueError, match="converts its inputs to channels-last.*channels_last=False"):
        ReplicaStack(models)


def test_the_closure_must_return_one_loss_per_replica():
    stack = ReplicaStack([bn_model(s) for s in SEEDS])
    opt = build_replica_optimizer("sgd", stack.parameters(), [0.1] * 3, {"momentum": 0.9})
    x, y = torch.randn(3, 12, 5, dtype=torch.float64), torch.randint(0, 3, (3, 12))

    def closure():
        stack.zero_grad()
        loss = stack.losses(x, y).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"\[R\] vector of per-replica losses with R = 3"):
        opt.step(closure)

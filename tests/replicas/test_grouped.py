"""The grouped (baddbmm) path of ReplicaStack: which models take it, and that each replica's
outputs, losses and gradients are the unbatched model's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hamopt.models import build_model
from hamopt.replicas import ReplicaStack

SEEDS = [0, 1, 2, 3]


def digits_mlp(seed: int, depth: int = 2, activation: str = "tanh") -> nn.Module:
    return build_model("mlp", num_classes=10, input_shape=(8, 8), width=16, depth=depth, activation=activation,
                       seed=seed).double()


def sequential(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), nn.ReLU(),
                         nn.Sequential(nn.Linear(7, 5), nn.Sigmoid()), nn.Linear(5, 3)).double()


@pytest.mark.parametrize(("build", "shape"), [(digits_mlp, (8, 8)), (lambda s: digits_mlp(s, 0), (8, 8)),
                                              (lambda s: digits_mlp(s, 1, "relu"), (8, 8)), (sequential, (3, 4))],
                         ids=["mlp-depth2", "logistic", "mlp-relu", "sequential"])
def test_grouped_replicas_equal_each_model_alone(build, shape):
    models = [build(s) for s in SEEDS]
    stack = ReplicaStack(models)
    assert stack.grouped
    g = torch.Generator().manual_seed(7)
    x = torch.randn(len(SEEDS), 9, *shape, generator=g, dtype=torch.float64)
    classes = stack.outputs(x).shape[-1]
    y = torch.randint(0, classes, (len(SEEDS), 9), generator=g)
    losses = stack.losses(x, y)
    losses.sum().backward()
    for r, model in enumerate(models):
        out = model(x[r])
        torch.testing.assert_close(stack.outputs(x)[r], out, rtol=1e-12, atol=0)
        loss = F.cross_entropy(out, y[r])
        torch.testing.assert_close(losses[r], loss, rtol=1e-12, atol=0)
        loss.backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(stack.params[name].grad[r], p.grad, rtol=1e-12, atol=1e-15, msg=name)


def test_a_custom_loss_is_applied_per_replica():
    models = [sequential(s) for s in SEEDS]
    stack = ReplicaStack(models, loss_fn=lambda out, y: (out - y).square().sum())
    x = torch.randn(len(SEEDS), 5, 3, 4, dtype=torch.float64)
    y = torch.randn(len(SEEDS), 5, 3, dtype=torch.float64)
    losses = stack.losses(x, y)
    for r, model in enumerate(models):
        torch.testing.assert_close(losses[r], (model(x[r]) - y[r]).square().sum(), rtol=1e-12, atol=0)


class Shifted(nn.Sequential):
    """A Sequential with its own forward: the grouped path must not guess it."""

    def forward(self, x):
        return super().forward(x) + 1.0


@pytest.mark.parametrize("build", [
    lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)),  # buffers
    lambda: nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)),  # an activation not in the table
    lambda: Shifted(nn.Linear(4, 2)),  # a forward of its own
    lambda: nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)),  # a flatten of other axes
], ids=["batchnorm", "gelu", "own-forward", "flatten-0"])
def test_other_models_fall_back_to_vmap(build):
    torch.manual_seed(0)
    assert not ReplicaStack([build(), build()]).grouped


def test_a_model_with_a_hook_falls_back_to_vmap():
    models = [nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)) for _ in range(2)]
    models[0][1].register_forward_hook(lambda m, i, o: o * 2)
    assert not ReplicaStack(models).grouped
    assert ReplicaStack(models[1:]).grouped


def test_resnet_falls_back_to_vmap():
    models = [build_model("small_cnn", num_classes=10, input_shape=(3, 8, 8), width=4, depth=2, seed=s,
                          channels_last=False) for s in (0, 1)]
    assert not ReplicaStack(models).grouped

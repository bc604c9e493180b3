import math

import pytest
import torch
from torch import nn

import hamopt
from hamopt.optim.mass import fan_in, fan_in_inverse_mass, inverse_mass


def test_linear_weight_and_bias():
    lin = nn.Linear(10, 5)
    assert fan_in(lin.weight) == 10
    assert fan_in_inverse_mass(lin.weight) == pytest.approx(1 / math.sqrt(10))
    assert fan_in_inverse_mass(lin.bias) == 1.0


def test_conv2d_and_groups():
    conv = nn.Conv2d(4, 8, 3)
    assert fan_in(conv.weight) == 4 * 9
    assert fan_in_inverse_mass(conv.weight) == pytest.approx(1 / 6)
    grouped = nn.Conv2d(4, 8, 3, groups=2)
    assert fan_in(grouped.weight) == (4 // 2) * 9
    assert fan_in_inverse_mass(grouped.weight) == pytest.approx(1 / math.sqrt(18))
    depthwise = nn.Conv2d(8, 8, 3, groups=8)
    assert fan_in_inverse_mass(depthwise.weight) == pytest.approx(1 / 3)


def test_norm_layers_are_unit_mass():
    for layer in (nn.BatchNorm2d(7), nn.LayerNorm(7), nn.GroupNorm(1, 7)):
        for p in layer.parameters():
            assert fan_in_inverse_mass(p) == 1.0


def test_clip_bounds():
    assert fan_in_inverse_mass(nn.Linear(1000, 2).weight) == 0.125
    assert fan_in_inverse_mass(nn.Linear(1000, 2).weight, clip=(0.01, 8.0)) == pytest.approx(1 / math.sqrt(1000))
    assert fan_in_inverse_mass(nn.Linear(1, 2).weight) == 1.0
    assert fan_in_inverse_mass(nn.Linear(4, 2).weight, clip=(0.125, 0.25)) == 0.25


def test_identity_and_callable_rules():
    w = nn.Linear(16, 2).weight
    assert inverse_mass(w, "identity", (0.125, 8.0)) == 1.0
    assert inverse_mass(w, lambda t: 0.5 * t.ndim, (0.125, 8.0)) == 1.0
    with pytest.raises(ValueError, match="mass"):
        inverse_mass(w, lambda t: -1.0, (0.125, 8.0))


def test_optimizer_uses_mass_in_drift():
    lin = nn.Linear(16, 1, bias=False)
    w0 = lin.weight.detach().clone()
    lin.weight.grad = torch.ones_like(lin.weight)
    opt = hamopt.Leapfrog(lin.parameters(), lr=0.1, gamma=0.0, cap=None, mode="streaming")
    opt.step()
    # p½ = −dt/2 · g ; θ' = θ + dt · m · p½ with m = 1/sqrt(16)
    torch.testing.assert_close(lin.weight.detach(), w0 - 0.1 * 0.25 * 0.05 * torch.ones_like(w0))

"""hamopt.testfunctions: values, minima, gradients, batching and validation."""

from __future__ import annotations

import math

import pytest
import torch

from hamopt import testfunctions as tf

ALL = [tf.Quadratic, tf.Rosenbrock, tf.Ackley, tf.Zakharov]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dim", [2, 10, 100])
def test_minimum_is_reached_at_the_minimiser(cls, dim):
    f = cls(dim, dtype=torch.float64)
    assert f.x.shape == (dim,)
    assert f.value(f.minimizer()).item() == pytest.approx(f.minimum, abs=1e-12)
    assert f().item() > f.minimum + 1e-3  # the default start is not at the minimum


@pytest.mark.parametrize("cls", ALL)
def test_gradient_vanishes_at_the_minimiser_and_matches_finite_differences(cls):
    f = cls(5, dtype=torch.float64)
    with torch.no_grad():
        f.x.copy_(f.minimizer())
    f().backward()
    assert torch.all(torch.isfinite(f.x.grad))
    assert torch.linalg.vector_norm(f.x.grad).item() < 1e-10
    x = (f.start + 0.1 * torch.arange(5, dtype=torch.float64)).requires_grad_()
    f.value(x).backward()
    fd = torch.autograd.functional.jacobian(f.value, x.detach())
    torch.testing.assert_close(x.grad, fd)


def test_known_values():
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    assert tf.rosenbrock(x).item() == pytest.approx(24.2)
    z = torch.tensor([1.0, 1.0], dtype=torch.float64)
    s = 0.5 * 1 + 0.5 * 2
    assert tf.zakharov(z).item() == pytest.approx(2 + s**2 + s**4)
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    expected = -20 * math.exp(-0.2 * math.sqrt(0.5)) - math.exp(1.0) + 20 + math.e
    assert tf.ackley(a).item() == pytest.approx(expected)
    q = tf.Quadratic(3, condition=100.0, dtype=torch.float64)
    torch.testing.assert_close(q.coeffs, torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    assert q().item() == pytest.approx(0.5 * 111.0)


@pytest.mark.parametrize("cls", ALL)
def test_value_works_on_a_batch_of_points(cls):
    f = cls(2, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(torch.linspace(-2, 2, 7, dtype=torch.float64),
                                      torch.linspace(-1, 3, 5, dtype=torch.float64), indexing="ij"), -1)
    out = f.value(grid)
    assert out.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert out[i, j].item() == pytest.approx(f.value(grid[i, j]).item())


def test_rotated_quadratic_is_seeded_and_has_the_same_spectrum():
    a = tf.Quadratic(4, condition=50.0, seed=3, dtype=torch.float64)
    b = tf.Quadratic(4, condition=50.0, seed=3, dtype=torch.float64)
    c = tf.Quadratic(4, condition=50.0, seed=4, dtype=torch.float64)
    torch.testing.assert_close(a.rotation, b.rotation)
    assert not torch.allclose(a.rotation, c.rotation)
    hess = torch.autograd.functional.hessian(a.value, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.eigvalsh(hess), a.coeffs)


def test_reset_and_start():
    f = tf.Rosenbrock(4, start=torch.zeros(4))
    with torch.no_grad():
        f.x.add_(1.0)
    f.reset()
    assert torch.equal(f.x.detach(), torch.zeros(4))
    assert list(dict(f.named_parameters())) == ["x"]
    assert torch.equal(tf.Rosenbrock.default_start(4), torch.tensor([-1.2, 1.0, -1.2, 1.0]))
    assert isinstance(tf.make("ackley", 3), tf.Ackley)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="dim must be an int >= 2"):
        tf.Rosenbrock(1)
    with pytest.raises(ValueError, match="condition"):
        tf.Quadratic(3, condition=0.5)
    with pytest.raises(ValueError, match="start must have shape"):
        tf.Ackley(3, start=torch.zeros(2))
    with pytest.raises(ValueError, match="name must be one of"):
        tf.make("sphere", 3)
    with pytest.raises(TypeError, match="dim"):
        tf.Zakharov(2.5)

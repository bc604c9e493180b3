"""The band search's stability limits: the scaled power iteration and the step-size rules."""

import math

import pytest
import torch

from hamopt.experiments.bands_limit import StepLimit, top_scaled_eigenvalue


def test_scaled_top_eigenvalue_matches_a_known_quadratic():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)) @ q.T
    theta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 3.0], dtype=torch.float64)

    def loss():
        return 0.5 * theta @ a @ theta + theta.sum()

    lam = top_scaled_eigenvalue([theta], loss, [scale], iterations=300, seed=0)
    truth = torch.linalg.eigvals(torch.diag(scale) @ a).real.max().item()  # eig(PH) = eig(√P H √P)
    assert lam == pytest.approx(truth, rel=1e-6)
    assert top_scaled_eigenvalue([theta], loss, [1.0], iterations=300, seed=0) == pytest.approx(5.0, rel=1e-6)


def test_step_limit_places_fractions_in_units_of_h():
    dt = StepLimit("lf", 4.0, 1, 0.25, "lambda_preconditioned", "dt", 30)
    lr = StepLimit("sgd", 3.0, 2, 1.2, "lambda_hessian", "lr", 30)
    assert dt.step_size(0.5) == 2.0 and lr.step_size(0.5) == 0.75
    assert lr.fraction(lr.step_size(0.3)) == pytest.approx(0.3)
    assert StepLimit.from_dict(lr.as_dict()) == lr
    assert math.isclose(lr.step_size(1 / 3), 0.3333, rel_tol=1e-9)  # four significant digits

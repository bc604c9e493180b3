"""Sharpness and Hessian trace on quadratics with known Hessians (float64, 1e-6 relative)."""

from __future__ import annotations

import math

import pytest
import torch

import hamopt
from hamopt.diagnostics.stability import HessianTrace, Sharpness, hessian_trace, sharpness

F64 = torch.float64


def _spd(n: int, low: float, high: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    ev = torch.linspace(low, high, n, dtype=F64)
    return q @ torch.diag(ev) @ q.T, ev


def _quadratic(h: torch.Tensor, params: list[torch.Tensor]):
    def loss():
        x = torch.cat([p.reshape(-1) for p in params])
        return 0.5 * x @ h @ x

    return loss


def _params(shapes, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=F64).requires_grad_() for s in shapes]


def test_lambda_max_of_a_known_hessian():
    h, ev = _spd(40, 0.1, 25.0)
    params = _params([(5, 4), (20,)])
    res = sharpness(_quadratic(h, params), params)
    assert isinstance(res, Sharpness)
    assert res.lambda_max == pytest.approx(25.0, rel=1e-6)
    assert res.converged and 1 <= res.iterations <= 40
    assert res.threshold is None and res.ratio is None and not res.preconditioned


def test_lambda_max_is_the_largest_algebraic_eigenvalue_of_an_indefinite_hessian():
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen, dtype=F64))
    ev = torch.tensor([-30.0, -2.0] + [0.5 * k for k in range(1, 11)], dtype=F64)
    h = q @ torch.diag(ev) @ q.T
    params = _params([(12,)])
    assert sharpness(_quadratic(h, params), params).lambda_max == pytest.approx(5.0, rel=1e-6)


def test_iteration_budget_without_convergence_is_reported():
    h, _ = _spd(200, 1.0, 1.001)  # a tight cluster: slow for the residual test
    params = _params([(200,)])
    res = sharpness(_quadratic(h, params), params, iters=2, tol=1e-12)
    assert res.iterations == 2 and not res.converged


def test_leapfrog_preconditioner_is_the_inverse_mass():
    h, _ = _spd(13, 0.5, 8.0)
    params = _params([(3, 4), (1,)])
    masses = {params[0]: 0.25, params[1]: 3.0}
    opt = hamopt.Leapfrog(params, lr=0.3, gamma=0.0, cap=None, mass=lambda p: masses[p])
    res = sharpness(_quadratic(h, params), params, optimizer=opt)
    s = torch.diag(torch.tensor([0.25**0.5] * 12 + [3.0**0.5], dtype=F64))
    truth = torch.linalg.eigvalsh(s @ h @ s)[-1].item()
    assert res.lambda_max == pytest.approx(truth, rel=1e-6)
    assert res.preconditioned and res.family == "leapfrog"
    assert res.threshold == pytest.approx(4.0 / 0.3**2, rel=1e-12)
    assert res.ratio == pytest.approx(truth * 0.3**2 / 4.0, rel=1e-6)


def test_adam_preconditioner_is_the_denominator_of_its_update():
    h, _ = _spd(10, 0.5, 4.0)
    params = _params([(10,)])
    loss = _quadratic(h, params)
    opt = torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.99), eps=1e-3)
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    st = opt.state[params[0]]
    denom = (st["exp_avg_sq"] / (1 - 0.99 ** st["step"].item())).sqrt() + 1e-3
    s = torch.diag(denom.rsqrt())
    truth = torch.linalg.eigvalsh(s @ h @ s)[-1].item()
    res = sharpness(loss, params, optimizer=opt)
    assert res.lambda_max == pytest.approx(truth, rel=1e-6)
    assert res.threshold == pytest.approx((2 + 2 * 0.8) / ((1 - 0.8) * 1e-2), rel=1e-12)
    # one more step moves θ by exactly lr · m̂ / P: the reader's P is torch's
    before = params[0].detach().clone()
    opt.zero_grad()
    loss().backward()
    opt.step()
    st = opt.state[params[0]]
    m_hat = st["exp_avg"] / (1 - 0.8 ** st["step"].item())
    from hamopt.families.state import adam_inverse_preconditioner

    step = 1e-2 * m_hat * adam_inverse_preconditioner(opt)(params[0])
    assert torch.allclose(before - params[0].detach(), step, rtol=1e-10, atol=1e-14)


def test_adam_without_state_is_refused_with_a_reason():
    params = _params([(4,)])
    opt = torch.optim.AdamW(params, lr=1e-3)
    with pytest.raises(ValueError, match="take a step first"):
        sharpness(_quadratic(torch.eye(4, dtype=F64), params), params, optimizer=opt)


def test_param_groups_with_different_step_sizes_compare_to_the_first_groups_threshold():
    h, _ = _spd(8, 0.5, 6.0)
    params = _params([(5,), (3,)])
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.4}],
                          momentum=0.5)
    res = sharpness(_quadratic(h, params), params, optimizer=opt)
    # heavy ball with per-group lr: stable iff λ(D H) < 2+2μ with D = diag(lr_g)
    d = torch.diag(torch.tensor([0.1] * 5 + [0.4] * 3, dtype=F64))
    radius = torch.linalg.eigvalsh(d.sqrt() @ h @ d.sqrt())[-1].item()
    assert res.ratio == pytest.approx(radius / 3.0, rel=1e-6)
    assert res.threshold == pytest.approx(3.0 / 0.1, rel=1e-12)


def test_unused_parameter_and_named_parameters_and_modules():
    model = torch.nn.Linear(3, 1, bias=True).double()
    unused = torch.nn.Parameter(torch.ones(2, dtype=F64))
    x = torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(0))

    def loss():
        return 0.5 * (model(x) ** 2).mean() + 0.0 * unused.sum()

    a = sharpness(loss, list(model.named_parameters()) + [unused])
    b = sharpness(loss, model)
    xb = torch.cat([x, torch.ones(7, 1, dtype=F64)], 1)
    truth = torch.linalg.eigvalsh(xb.T @ xb / 7)[-1].item()
    assert a.lambda_max == pytest.approx(truth, rel=1e-6) and b.lambda_max == pytest.approx(truth, rel=1e-6)


def test_trace_is_exact_on_a_diagonal_hessian():
    diag = torch.tensor([0.5, 2.0, 3.5, 7.0, 11.0, 0.25], dtype=F64)
    params = _params([(2, 3)])
    res = hessian_trace(_quadratic(torch.diag(diag), params), params, samples=3)
    assert isinstance(res, HessianTrace) and res.samples == 3 and len(res.values) == 3
    assert res.estimate == pytest.approx(diag.sum().item(), rel=1e-12)
    assert res.stderr == pytest.approx(0.0, abs=1e-9)


def test_trace_of_a_dense_hessian_and_its_standard_error():
    h, ev = _spd(20, 0.5, 5.0, seed=4)
    params = _params([(20,)])
    n = 1500
    res = hessian_trace(_quadratic(h, params), params, samples=n, seed=2)
    values = torch.tensor(res.values, dtype=F64)
    assert res.estimate == pytest.approx(values.mean().item(), rel=1e-12)
    assert res.stderr == pytest.approx((values.std(correction=1) / math.sqrt(n)).item(), rel=1e-10)
    # Rademacher: Var[zᵀAz] = 2 Σ_{i≠j} A_ij²
    off = 2.0 * ((h**2).sum() - (h.diagonal() ** 2).sum()).item()
    assert res.stderr**2 * n == pytest.approx(off, rel=0.15)
    truth = ev.sum().item()
    assert abs(res.estimate - truth) < 4.0 * res.stderr < 0.02 * truth


def test_trace_with_an_optimizer_is_the_preconditioned_trace():
    h, _ = _spd(6, 0.5, 5.0)
    params = _params([(6,)])
    opt = hamopt.Leapfrog(params, lr=0.1, mass="identity", cap=None)
    diag_h = torch.diag(h.diagonal())
    res = hessian_trace(_quadratic(diag_h, params), params, optimizer=opt, samples=2)
    assert res.estimate == pytest.approx(h.diagonal().sum().item(), rel=1e-12) and res.preconditioned


def test_does_not_touch_grads_or_state():
    h, _ = _spd(5, 1.0, 2.0)
    params = _params([(5,)])
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sharpness(_quadratic(h, params), params, optimizer=opt)
    hessian_trace(_quadratic(h, params), params, optimizer=opt, samples=2)
    assert params[0].grad is None and not opt.state


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iters": 0}, "iters must be an integer >= 1"),
        ({"iters": 2.5}, "iters must be an integer"),
        ({"tol": 0.0}, r"tol must be a number in \(0, 1\)"),
        ({"tol": 1.5}, r"tol must be a number in \(0, 1\)"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_sharpness_arguments(kwargs, match):
    params = _params([(3,)])
    with pytest.raises(ValueError, match=match):
        sharpness(_quadratic(torch.eye(3, dtype=F64), params), params, **kwargs)


def test_bad_inputs_are_named():
    params = _params([(3,)])
    loss = _quadratic(torch.eye(3, dtype=F64), params)
    with pytest.raises(ValueError, match="samples must be an integer >= 2"):
        hessian_trace(loss, params, samples=1)
    other = torch.zeros(2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match=r"params\[0\] \(shape \(2,\)\) is not in the optimizer"):
        sharpness(loss, [other], optimizer=torch.optim.SGD(params, lr=0.1))
    with pytest.raises(ValueError, match="no tensor that requires grad"):
        sharpness(loss, [torch.zeros(3)])
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        sharpness(1.0, params)
    with pytest.raises(ValueError, match="scalar"):
        sharpness(lambda: params[0] * 2, params)
    with pytest.raises(FloatingPointError, match="not finite"):
        sharpness(lambda: params[0].sum() * float("nan"), params)

r"""Stability monitor: preconditioned sharpness ``λ_max(P⁻¹∇²L)`` against the optimiser's threshold.

>>> res = sharpness(loss_fn, model.parameters(), optimizer=opt)        # doctest: +SKIP
>>> res.lambda_max, res.threshold, res.ratio, res.iterations, res.converged  # doctest: +SKIP

``P`` is the optimiser's preconditioner read from its family record
(:attr:`hamopt.families.Family.preconditioner`): ``I`` for SGD, the mass ``M`` of Leapfrog and
Euler (so ``P⁻¹ = M⁻¹``), ``diag(√v̂+ε)`` of Adam/AdamW from the optimiser's current state. The
threshold is the family's linear stability limit at the optimiser's step size
(:mod:`hamopt.diagnostics.thresholds`), so ``ratio = λ_max/threshold`` crosses 1 where the
linearised update starts to diverge. Without an optimiser, ``P = I`` and there is no threshold.

The eigenvalue comes from Lanczos on ``S H S`` (``S = √P⁻¹``, same spectrum as ``P⁻¹H``) with
Hessian-vector products by double back-propagation (:mod:`hamopt.diagnostics._hvp`); the trace
from Hutchinson's estimator ``tr A ≈ (1/n) Σ zₖᵀ A zₖ`` with Rademacher probes, whose standard
error is ``s/√n`` (``s`` the sample standard deviation of the ``n`` quadratic forms).

Param groups: when groups differ in step size, each group's ``P⁻¹`` is multiplied by
``threshold_0/threshold_g`` so that one number is compared with the first group's threshold
(exact when the groups differ only in step size, e.g. heavy ball with per-group lr).

Neither function touches ``.grad`` or the optimiser's state; ``loss_fn`` is called once (a
model in training mode updates its normalisation statistics as in any forward pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ._hvp import ScaledHessian, hutchinson, lanczos_top
from .thresholds import Threshold, threshold_for

__all__ = ["HessianTrace", "Sharpness", "hessian_trace", "sharpness", "threshold_for"]


@dataclass(frozen=True)
class Sharpness:
    """One sharpness estimate.

    Attributes:
        lambda_max: the top eigenvalue of ``P⁻¹H`` (``H`` without an optimiser).
        threshold: the optimiser's stability threshold on it, or None (no optimiser, or a family
            without one; :attr:`rule` says why).
        ratio: ``lambda_max / threshold`` (``inf`` for a positive eigenvalue against a threshold
            ≤ 0), or None without a threshold.
        iterations: Lanczos steps taken, one Hessian-vector product each.
        converged: the top Ritz pair's residual met ``tol`` (or the Krylov space became exact).
        family: the optimiser's family name, or None.
        rule: the threshold's formula, or why there is none.
        preconditioned: True when ``P ≠ I`` (the eigenvalue is of ``P⁻¹H``).
    """

    lambda_max: float
    threshold: float | None
    ratio: float | None
    iterations: int
    converged: bool
    family: str | None = None
    rule: str = ""
    preconditioned: bool = False


@dataclass(frozen=True)
class HessianTrace:
    """A Hutchinson estimate of ``tr(P⁻¹H)`` (``tr H`` without an optimiser).

    Attributes:
        estimate: the mean of the probes' quadratic forms.
        stderr: their sample standard deviation over ``√samples``.
        samples: the number of probes (one Hessian-vector product each).
        values: each probe's ``zᵀ S H S z``.
        preconditioned: True when ``P ≠ I``.
    """

    estimate: float
    stderr: float
    samples: int
    values: tuple[float, ...]
    preconditioned: bool = False


def _tensors(params: Iterable[Tensor] | nn.Module) -> list[Tensor]:
    items = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    out: list[Tensor] = []
    seen: set[int] = set()
    for i, p in enumerate(items):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Tensor):  # named_parameters
            p = p[1]
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}")
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    if not out:
        raise ValueError("params has no tensor that requires grad")
    return out


def _operator(
    loss_fn: Callable[[], Tensor], params: list[Tensor], optimizer: Optimizer | None
) -> tuple[ScaledHessian, Threshold]:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable () -> scalar loss, got {type(loss_fn).__name__}")
    if optimizer is None:
        none = Threshold(None, None, "no threshold: no optimizer given (λ_max of the plain Hessian)")
        with torch.enable_grad():
            return ScaledHessian(loss_fn, params), none
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    from .. import families

    group_of = {p: i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    for i, p in enumerate(params):
        if p not in group_of:
            raise ValueError(f"params[{i}] (shape {tuple(p.shape)}) is not in the optimizer's param groups")
    reference = threshold_for(optimizer)
    try:
        family = families.for_optimizer(optimizer)
    except Exception:  # unregistered: plain Hessian, no threshold
        with torch.enable_grad():
            return ScaledHessian(loss_fn, params), reference
    reader = family.inverse_preconditioner(optimizer)
    inverse = [1.0 if reader is None else reader(p) for p in params]
    values = [family.sharpness_threshold(g["lr"], g).value for g in optimizer.param_groups]
    if reference.value is not None and all(v is not None and v > 0 for v in values):
        inverse = [x * (reference.value / values[group_of[p]]) for x, p in zip(inverse, params)]
    elif reference.value is not None:  # a group with threshold ≤ 0 is unstable at any curvature
        bad = min(v for v in values if v is not None)
        reference = Threshold(min(bad, 0.0), reference.family, reference.description, reference.eigenvalue)
    with torch.enable_grad():
        return ScaledHessian(loss_fn, params, inverse), reference


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def sharpness(
    loss_fn: Callable[[], Tensor],
    params: Iterable[Tensor] | nn.Module,
    *,
    optimizer: Optimizer | None = None,
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
) -> Sharpness:
    r"""The preconditioned sharpness ``λ_max(P⁻¹∇²L)`` at the current parameters, and its ratio
    to the optimiser's stability threshold.

    Args:
        loss_fn: ``() -> scalar loss`` on a fixed batch (called once; the graph is kept for the
            Hessian-vector products).
        params: the parameters (tensors, ``named_parameters()`` pairs or a module); with an
            optimizer each must belong to one of its param groups.
        optimizer: supplies ``P`` and the threshold through its family record; None: ``P = I``,
            no threshold.
        iters: at most this many Lanczos steps (Hessian-vector products), >= 1.
        tol: stop when the top Ritz pair's residual is below ``tol · |λ|``; in (0, 1).
        seed: seeds the Lanczos start vector.
    """
    iters = _check_int("iters", iters, 1)
    _check_int("seed", seed, 0)
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0.0 < tol < 1.0):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    op, threshold = _operator(loss_fn, _tensors(params), optimizer)
    lam, steps, converged = lanczos_top(op, iters=iters, tol=float(tol), seed=seed)
    value = threshold.value
    if value is None:
        ratio = None
    elif value <= 0.0:
        ratio = math.inf if lam > 0 else 0.0
    else:
        ratio = lam / value
    preconditioned = threshold.eigenvalue == "preconditioned"
    return Sharpness(lam, value, ratio, steps, converged, threshold.family, threshold.description, preconditioned)


def hessian_trace(
    loss_fn: Callable[[], Tensor],
    params: Iterable[Tensor] | nn.Module,
    *,
    optimizer: Optimizer | None = None,
    samples: int = 100,
    seed: int = 0,
) -> HessianTrace:
    r"""Hutchinson's estimate of ``tr(P⁻¹∇²L)`` (``P`` as in :func:`sharpness`) with its standard
    error, from ``samples`` >= 2 Rademacher probes (one Hessian-vector product each).

    ``E[zᵀAz] = tr A`` and ``Var[zᵀAz] = 2 Σ_{i≠j} A_ij²`` for Rademacher ``z``: exact for a
    diagonal ``A`` with any number of probes.
    """
    samples = _check_int("samples", samples, 2)
    _check_int("seed", seed, 0)
    op, threshold = _operator(loss_fn, _tensors(params), optimizer)
    values = hutchinson(op, samples=samples, seed=seed)
    mean = math.fsum(values) / samples
    var = math.fsum((x - mean) ** 2 for x in values) / (samples - 1)
    return HessianTrace(mean, math.sqrt(var / samples), samples, tuple(values),
                        threshold.eigenvalue == "preconditioned")

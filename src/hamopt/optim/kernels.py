r"""Tensor-list kernels of the Hamiltonian integrators, each with a single-tensor and a
multi-tensor (``torch._foreach_*``) body that produce identical numbers.

State: parameters θ_i, momenta p_i (same shapes), one scalar inverse mass m_i per tensor.

* :func:`kick`    ``p_i ← a · p_i − c · g_i``     (a half-kick has ``a = e^{-γ dt/2}``, ``c = dt/2``)
* :func:`drift`   ``θ_i ← θ_i + h · m_i · p_i``
* :func:`kinetic_energy`  ``K = ½ Σ_i m_i ‖p_i‖²`` as a 0-d float64 tensor (no host sync)
* :func:`squared_norm`    ``Σ_i ‖x_i‖²`` as a 0-d float64 tensor (no host sync)
* :func:`squared_norms`   ``(‖x_i‖²)_i`` and :func:`dots` ``(⟨x_i, y_i⟩)_i`` as float64 vectors
* :func:`scale`   ``x_i ← s · x_i``

All reductions use ``torch.linalg.vector_norm`` per tensor (the op ``torch._foreach_norm`` runs
per tensor on the CPU), so both bodies round the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor


def kick(moms: list[Tensor], grads: list[Tensor], *, decay: float, coeff: float, foreach: bool) -> None:
    """``p ← decay · p − coeff · g`` for every tensor pair (in place)."""
    if not moms:
        return
    if foreach:
        if decay != 1.0:
            torch._foreach_mul_(moms, decay)
        torch._foreach_add_(moms, grads, alpha=-coeff)
    else:
        for p, g in zip(moms, grads):
            if decay != 1.0:
                p.mul_(decay)
            p.add_(g, alpha=-coeff)


def drift(params: list[Tensor], moms: list[Tensor], inv_masses: Sequence[float], *, h: float, foreach: bool) -> None:
    """``θ ← θ + h · m · p`` for every tensor (in place).

    The multi-tensor body batches tensors that share an inverse mass into one foreach call,
    so the per-tensor scalar costs no temporary.
    """
    if not params:
        return
    if foreach:
        buckets: dict[float, list[int]] = defaultdict(list)
        for i, m in enumerate(inv_masses):
            buckets[m].append(i)
        for m, idx in buckets.items():
            torch._foreach_add_([params[i] for i in idx], [moms[i] for i in idx], alpha=h * m)
    else:
        for theta, p, m in zip(params, moms, inv_masses):
            theta.add_(p, alpha=h * m)


def _norms(tensors: list[Tensor], foreach: bool) -> list[Tensor]:
    if foreach:
        return list(torch._foreach_norm(tensors))
    return [torch.linalg.vector_norm(t) for t in tensors]


def _stack64(values: list[Tensor]) -> Tensor:
    device = values[0].device
    return torch.stack([v.to(device=device, dtype=torch.float64) for v in values])


def squared_norms(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``(‖x_i‖²)_i`` as a float64 vector on the first tensor's device."""
    return _stack64(_norms(tensors, foreach)).square()


def dots(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    """``(⟨x_i, y_i⟩)_i`` as a float64 vector, without temporaries for contiguous tensors."""
    out = []
    for x, y in zip(xs, ys):
        if x.is_contiguous() and y.is_contiguous():
            out.append(torch.dot(x.view(-1), y.view(-1)))
        else:
            out.append((x * y).sum())
    return _stack64(out)


def squared_norm(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``Σ_i ‖x_i‖²`` as a 0-d float64 tensor on the first tensor's device."""
    if not tensors:
        return torch.zeros((), dtype=torch.float64)
    return _stack64(_norms(tensors, foreach)).square().sum()


def kinetic_energy(moms: list[Tensor], inv_masses: Sequence[float], *, foreach: bool) -> Tensor:
    """``K = ½ Σ_i m_i ‖p_i‖²`` as a 0-d float64 tensor on the first tensor's device."""
    if not moms:
        return torch.zeros((), dtype=torch.float64)
    sq = _stack64(_norms(moms, foreach)).square()
    m = torch.tensor(list(inv_masses), dtype=torch.float64, device=sq.device)
    return 0.5 * torch.dot(sq, m)


def scale(tensors: list[Tensor], factor: float, *, foreach: bool) -> None:
    """``x ← factor · x`` (in place)."""
    if not tensors or factor == 1.0:
        return
    if foreach:
        torch._foreach_mul_(tensors, factor)
    else:
        for t in tensors:
            t.mul_(factor)


def copy(dst: list[Tensor], src: list[Tensor], *, foreach: bool) -> None:
    """``dst ← src`` (in place)."""
    if not dst:
        return
    if foreach:
        torch._foreach_copy_(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)

r"""Tensor-list kernels of the Hamiltonian integrators, each with a single-tensor and a
multi-tensor (``torch._foreach_*``) body that produce identical numbers.

State: parameters θ_i, momenta p_i (same shapes), one scalar inverse mass m_i per tensor.

* :func:`kick`    ``p_i ← a · p_i − c · g_i``     (a half-kick has ``a = e^{-γ dt/2}``, ``c = dt/2``)
* :func:`drift`   ``θ_i ← θ_i + h · m_i · p_i``
* :func:`kinetic_energy`  ``K = ½ Σ_i m_i ‖p_i‖²`` as a 0-d float64 tensor (no host sync)
* :func:`squared_norm`    ``Σ_i ‖x_i‖²`` as a 0-d float64 tensor (no host sync)
* :func:`squared_norms`   ``(‖x_i‖²)_i`` and :func:`dots` ``(⟨x_i, y_i⟩)_i`` as float64 vectors
* :func:`scale`   ``x_i ← s · x_i``; :func:`scale_each` ``x_i ← s_i · x_i``; :func:`scale_by_tensor`
  ``x_i ← c · x_i`` with ``c`` a 0-d device tensor (no host sync)
* :func:`axpy`    ``y_i ← y_i + α x_i``; :func:`copy` ``y_i ← x_i``
* :func:`fill_normal`, :func:`fill_uniform` draw from a generator tensor by tensor, in order, so
  both bodies consume the generator identically.

Low precision: on the CPU ``torch._foreach_mul_`` rounds a Python scalar to a float16/bfloat16
tensor's dtype before multiplying, while ``Tensor.mul_`` keeps it in float32. The multi-tensor
bodies therefore pass such scalars as 0-d float64 CPU tensors (:func:`_foreach_scalar`), which
takes ``Tensor.mul_``'s path, so the two bodies agree bit for bit in every dtype.

Squared norms are accurate to about 1e-9 relative even for tensors of millions of float32
elements: each tensor is reduced in chunks of 4096 elements (float32 partial norms, one row
per chunk) and the partial sums are added in float64. A single float32 norm of a 2.4 M-element
ResNet-18 weight loses about 5e-5 relative accuracy (measured: ``torch._foreach_norm`` on the
ResNet-18 parameter set, 5.0e-5 against a float64 reference; chunked, 1.7e-9), which would
blur energy changes of order 1e-7 nats. The chunked reduction costs about 20 % more than
``torch._foreach_norm`` and does not depend on the thread count (each chunk is reduced by one
thread). Both bodies use it, so they round the same way.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _foreach_scalar(tensors: list[Tensor], value: float) -> float | Tensor:
    """``value`` as the multi-tensor ops must receive it to round like ``Tensor.mul_(value)``."""
    if any(t.dtype in _LOW_PRECISION and t.device.type == "cpu" for t in tensors):
        return torch.tensor(value, dtype=torch.float64)
    return value


def kick(moms: list[Tensor], grads: list[Tensor], *, decay: float, coeff: float, foreach: bool) -> None:
    """``p ← decay · p − coeff · g`` for every tensor pair (in place)."""
    if not moms:
        return
    if foreach:
        if decay != 1.0:
            torch._foreach_mul_(moms, _foreach_scalar(moms, decay))
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


_CHUNK = 4096


def _flat_view(t: Tensor) -> Tensor:
    """All elements of ``t`` as a 1-d tensor, a view where the layout allows (order is irrelevant
    to the reductions here)."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(-1)
    return t.reshape(-1)


def squared_norm64(t: Tensor) -> Tensor:
    """``‖t‖²`` as a 0-d float64 tensor: float32 (or the tensor's dtype) partial norms over chunks
    of 4096 elements, summed in float64."""
    flat = _flat_view(t)
    n = flat.numel()
    if n <= _CHUNK:
        return torch.linalg.vector_norm(flat).to(torch.float64).square()
    k = n - n % _CHUNK
    total = torch.linalg.vector_norm(flat[:k].view(-1, _CHUNK), dim=1).to(torch.float64).square().sum()
    if k < n:
        total = total + torch.linalg.vector_norm(flat[k:]).to(torch.float64).square()
    return total


@functools.lru_cache(maxsize=1024)
def _row_length(n: int) -> int | None:
    """The largest divisor of ``n`` between 1,024 and 8,192 (None when there is none)."""
    for r in range(min(_SMALL, n), 1023, -1):
        if n % r == 0:
            return r
    return None


def _rows(t: Tensor) -> Tensor | None:
    """All of ``t``'s elements as a 2-D view with rows of 1,024 to 8,192 elements, or None."""
    flat = _flat_view(t)
    r = _row_length(flat.numel())
    return None if r is None else flat.view(-1, r)


def _large_squared_norms(tensors: list[Tensor]) -> Tensor:
    """:func:`squared_norm64` of each tensor, batched: one row-norm per tensor, then a single
    float64 segment sum over all rows (fewer dispatches than reducing tensor by tensor)."""
    views = [_rows(t) for t in tensors]
    device = tensors[0].device
    if any(v is None for v in views) or any(t.device != device for t in tensors):
        return _stack64([squared_norm64(t) for t in tensors])
    row_norms = torch.cat([torch.linalg.vector_norm(v, dim=1).to(torch.float64) for v in views])  # type: ignore[union-attr]
    counts = torch.tensor([v.shape[0] for v in views], device=device)  # type: ignore[union-attr]
    segment = torch.repeat_interleave(torch.arange(len(views), device=device), counts)
    return torch.zeros(len(views), dtype=torch.float64, device=device).index_add_(0, segment, row_norms.square())


def _stack64(values: list[Tensor]) -> Tensor:
    """Stack 0-d tensors into one float64 vector on the first one's device (one cast when they
    share a dtype and a device)."""
    device, dtype = values[0].device, values[0].dtype
    if all(v.device == device and v.dtype == dtype for v in values):
        return torch.stack(values).to(torch.float64)
    return torch.stack([v.to(device=device, dtype=torch.float64) for v in values])


_SMALL = 8_192  # up to this size a single float32 norm is accurate to ~1e-7 (measured)


def squared_norms(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``(‖x_i‖²)_i`` as a float64 vector on the first tensor's device.

    Tensors of up to 8,192 elements are reduced whole (one ``torch._foreach_norm`` call in the
    multi-tensor body, ``vector_norm`` each in the other, which round identically); larger ones
    by :func:`squared_norm64`.
    """
    small = [i for i, t in enumerate(tensors) if t.numel() <= _SMALL]
    large = [i for i, t in enumerate(tensors) if t.numel() > _SMALL]
    parts: list[tuple[list[int], Tensor]] = []
    if small:
        ts = [tensors[i] for i in small]
        norms = torch._foreach_norm(ts) if foreach else [torch.linalg.vector_norm(t) for t in ts]
        parts.append((small, _stack64(list(norms)).square()))
    if large:
        parts.append((large, _large_squared_norms([tensors[i] for i in large])))
    if len(parts) == 1:
        return parts[0][1]
    out = torch.empty(len(tensors), dtype=torch.float64, device=parts[0][1].device)
    for index, values in parts:
        out[torch.tensor(index, device=out.device)] = values.to(out.device)
    return out


def dots(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    """``(⟨x_i, y_i⟩)_i`` as a float64 vector, without temporaries when both tensors of a pair
    share a dense layout (contiguous or channels-last)."""
    out = []
    for x, y in zip(xs, ys):
        if x.stride() == y.stride():
            out.append(torch.dot(_flat_view(x), _flat_view(y)))
        else:
            out.append(torch.dot(x.reshape(-1), y.reshape(-1)))
    return _stack64(out)


def squared_norm(tensors: list[Tensor], *, foreach: bool) -> Tensor:
    """``Σ_i ‖x_i‖²`` as a 0-d float64 tensor on the first tensor's device."""
    if not tensors:
        return torch.zeros((), dtype=torch.float64)
    return squared_norms(tensors, foreach=foreach).sum()


def kinetic_energy(moms: list[Tensor], inv_masses: Sequence[float], *, foreach: bool) -> Tensor:
    """``K = ½ Σ_i m_i ‖p_i‖²`` as a 0-d float64 tensor on the first tensor's device."""
    if not moms:
        return torch.zeros((), dtype=torch.float64)
    sq = squared_norms(moms, foreach=foreach)
    m = torch.tensor(list(inv_masses), dtype=torch.float64, device=sq.device)
    return 0.5 * torch.dot(sq, m)


def scale(tensors: list[Tensor], factor: float, *, foreach: bool) -> None:
    """``x ← factor · x`` (in place)."""
    if not tensors or factor == 1.0:
        return
    if foreach:
        torch._foreach_mul_(tensors, _foreach_scalar(tensors, factor))
    else:
        for t in tensors:
            t.mul_(factor)


def scale_each(tensors: list[Tensor], factors: Sequence[float], *, foreach: bool) -> None:
    """``x_i ← c_i x_i`` with one Python float per tensor (in place)."""
    if not tensors:
        return
    if foreach and not any(t.dtype in _LOW_PRECISION for t in tensors):
        torch._foreach_mul_(tensors, list(factors))
    else:  # a scalar list would be rounded to float16/bfloat16 first (see the module docstring)
        for t, c in zip(tensors, factors):
            t.mul_(c)


def scale_by_tensor(tensors: list[Tensor], factor: Tensor, *, foreach: bool) -> None:
    """``x ← c x`` with ``c`` a 0-d tensor on the tensors' device (cast to their dtype)."""
    if not tensors:
        return
    dtypes = {t.dtype for t in tensors}
    if foreach and len(dtypes) == 1:
        torch._foreach_mul_(tensors, factor.to(tensors[0].dtype))
    else:
        cast = {dt: factor.to(dt) for dt in dtypes}
        for t in tensors:
            t.mul_(cast[t.dtype])


def axpy(ys: list[Tensor], xs: list[Tensor], alpha: float, *, foreach: bool) -> None:
    """``y ← y + α x`` for every pair (in place)."""
    if not ys or alpha == 0.0:
        return
    if foreach:
        torch._foreach_add_(ys, xs, alpha=alpha)
    else:
        for y, x in zip(ys, xs):
            y.add_(x, alpha=alpha)


def fill_normal(bufs: list[Tensor], generator: torch.Generator) -> None:
    """``z ~ N(0, I)`` into every buffer, in order, from ``generator``."""
    for b in bufs:
        b.normal_(generator=generator)


def fill_uniform(bufs: list[Tensor], generator: torch.Generator, low: float, high: float) -> None:
    """``u ~ U(low, high)`` per entry into every buffer, in order, from ``generator``."""
    for b in bufs:
        b.uniform_(low, high, generator=generator)


def copy(dst: list[Tensor], src: list[Tensor], *, foreach: bool) -> None:
    """``dst ← src`` (in place)."""
    if not dst:
        return
    if foreach:
        torch._foreach_copy_(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)

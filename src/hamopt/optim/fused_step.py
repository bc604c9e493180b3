r"""The fused streaming step of :class:`~hamopt.optim.Leapfrog` and :class:`~hamopt.optim.Euler` on
the CPU (``fused=True``, ``capturable=False``).

The step of :meth:`HamiltonianOptimizer._step_streaming` (same decisions, same stats, same
errors, same state), with its passes over memory replaced by the two hand-written kernels of
:mod:`hamopt.optim._fused_cpu`:

1. one read of p and g gives every tensor's ``‖p‖², ‖g‖², ⟨p, g⟩`` (``‖g‖²`` alone when no energy
   is tracked; nothing at all for a lean step without the non-finite guard);
2. the decisions (non-finite guard, K, H, ΔH, the cap's factor f) are made on these few numbers
   (on the CPU, reading them costs no device synchronisation);
3. one pass reads θ, p, g and writes θ, p with per-tensor coefficients ``(d, c, h)``:
   Leapfrog ``p ← d p − c g; θ ← θ + h p`` with ``d = a f a₁``, ``c = a f c₁ + c₂``, ``h = dt m``
   (the deferred closing half-kick, the cap and the opening half-kick folded together; a fresh
   momentum gets ``d = 1, c = c₂``), Euler ``θ ← θ + h p; p ← d p − c g`` with ``h = dt m f``,
   ``d = e^{-γ dt} f``, ``c = dt``.

A lean Leapfrog step thus moves 5 streams of the parameter size, and a step with energy and cap
7, as many as ``torch.optim.AdamW(fused=True)``. Numbers equal the eager path's to float rounding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ..errors import NonFiniteError
from . import _distributed as D
from . import _fused_cpu

if TYPE_CHECKING:
    from .hamiltonian import HamiltonianOptimizer


def applies(opt: HamiltonianOptimizer) -> bool:
    """True when the hand-written kernels can run this step: one process, and every parameter
    with a gradient is a contiguous float32/float64 CPU tensor whose gradient matches it."""
    if D.is_distributed(opt.process_group) or opt._sharded:
        return False
    for group in opt.param_groups:
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if not (p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and g.dtype == p.dtype
                    and p.is_contiguous() and g.is_contiguous() and not g.is_sparse):
                return False
    return True


def streaming_step(opt: HamiltonianOptimizer, loss: Any, *, source: str) -> Any:
    """One fused streaming step (see the module docstring); returns ``loss``."""
    glob = opt._global
    lt = opt._loss_tensor(loss, source)
    if lt is None:
        opt._warn_no_loss()
    sets = opt._gather()
    energy = opt._needs_energy()
    reduce = energy or opt.param_groups[0]["check_finite"]
    leapfrog = opt._integrator == "leapfrog"
    rows = [_fused_cpu.sums(s.moms, s.grads, with_momenta=energy).tolist() if (reduce and s.grads) else None
            for s in sets]
    lval = None if lt is None else float(lt)
    present = [r for r in rows if r is not None]
    gsq = math.fsum(x for r in present for x in r[1]) if present else None
    closing = []  # per set: (dt owed, a₁, c₁) of the deferred half-kick (None, 1, 0 when none is owed)
    for s in sets:
        prev = opt._pending_dt(s) if leapfrog else None
        closing.append((prev, 1.0, 0.0) if prev is None else (prev, math.exp(-s.option("gamma") * prev / 2), prev / 2))
    kinetic = None
    if energy and present:
        kinetic = 0.0
        for s, r, (_, a1, c1) in zip(sets, rows, closing):
            if r is None:
                continue
            for i, m in enumerate(s.inv_masses):
                ci = 0.0 if s.fresh[i] else c1
                kinetic += 0.5 * m * (a1 * a1 * r[0][i] - 2 * a1 * ci * r[2][i] + ci * ci * r[1][i])
    try:
        opt._raise_if_nonfinite(lval, gsq)
    except NonFiniteError:
        opt._drop_fresh_buffers(sets)
        raise
    kinetic, hamiltonian, delta_h, factor = opt._streaming_energy(lval, kinetic)
    for s, (prev, a1, c1) in zip(sets, closing):
        dt, gamma = s.lr, s.option("gamma")
        if leapfrog:
            a2, c2 = math.exp(-gamma * dt / 2), dt / 2
            if prev is None:
                d = [a2 * factor] * len(s.params)
                c = [c2] * len(s.params)
            else:
                d = [1.0 if f else a2 * factor * a1 for f in s.fresh]
                c = [c2 if f else a2 * factor * c1 + c2 for f in s.fresh]
            h = [dt * m for m in s.inv_masses]
            glob["pending_dt"][s.index] = dt
        else:
            d = [math.exp(-gamma * dt) * factor] * len(s.params)
            c = [dt] * len(s.params)
            h = [dt * m * factor for m in s.inv_masses]
        _fused_cpu.update(s.params, s.moms, s.grads, torch.tensor([d, c, h], dtype=torch.float64),
                          drift_first=not leapfrog)
    if leapfrog:
        glob["pending"] = True
    opt._finish_stats(
        step=glob["step"], loss=lval, kinetic=kinetic, hamiltonian=hamiltonian, delta_h=delta_h,
        grad_norm=None if gsq is None else math.sqrt(gsq), cap_engaged=factor != 1.0,
    )
    glob["step"] += 1
    return loss

r"""The preconditioned leapfrog optimiser (kick–drift–kick with symmetric damping).

One step of size ``dt`` (``lr``) with damping ``γ`` and diagonal inverse mass ``M⁻¹``::

    p_{t+½} = e^{-γ dt/2} p_t − (dt/2) ∇L(θ_t)
    θ_{t+1} = θ_t + dt · M⁻¹ p_{t+½}
    p_{t+1} = e^{-γ dt/2} p_{t+½} − (dt/2) ∇L(θ_{t+1})

With ``γ = 0`` the map is symplectic and time-reversible: the energy error stays bounded with
size O(dt²) (no secular drift on smooth problems), and negating p and stepping again retraces the
path. ``γ > 0`` keeps time symmetry but contracts volume by ``e^{-γ dt · n}`` per step.

Modes:

* ``"exact"``: ``step(closure)`` calls the closure twice (θ_t, then θ_{t+1}), on the same batch.
* ``"streaming"``: one gradient per step. The closing half-kick of step t is deferred and applied
  with the next call's gradient ``∇L_{B_{t+1}}(θ_{t+1})``, merged with that call's opening half-kick.
  Works with ``step(closure)`` and with ``loss.backward(); opt.step(loss=loss)``. A parameter
  whose momentum is new this call (its first gradient, or a group added mid-run) owes no closing
  half-kick: its first step is exact mode's first step.
  On a fixed (full) batch both modes visit the same θ_t: the streaming step t uses the gradient
  the exact step t−1 evaluated at θ_t, so positions agree to rounding and the streaming momentum
  after call t is the exact momentum's half-step value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import kernels
from .base import ParamSet
from .hamiltonian import HamiltonianOptimizer

__all__ = ["Leapfrog"]


class Leapfrog(HamiltonianOptimizer):
    r"""Preconditioned, damped leapfrog integrator of ``H = ½ Σ m_i ‖p_i‖² + L(θ)``.

    Args:
        params: iterable of parameters or of param-group dicts (``named_parameters`` works too).
        lr: the time step ``dt`` > 0 (so LR schedulers act on it). Per group.
        gamma: damping ``γ ≥ 0``; momenta are multiplied by ``e^{-γ dt/2}`` at each half-kick. Per group.
        mass: inverse-mass rule: ``"fan_in"`` (``clip(1/sqrt(fan_in), mass_clip)`` for weights, 1 for
            biases and norm parameters), ``"identity"`` or a callable ``tensor -> float``. Per group.
        mass_clip: ``(low, high)`` with ``0 < low ≤ high``, the clip of the fan-in rule. Per group.
        cap: energy cap ``α > 1``: after a step with ``H > α H0`` the momentum is rescaled so that
            ``H = α H0`` (spec §4); ``None`` disables it. Optimiser-wide.
        mode: ``"exact"`` (two gradients per step on one batch) or ``"streaming"`` (one). Optimiser-wide.
        foreach: multi-tensor (``torch._foreach_*``) kernels; ``None`` picks them (they run on the CPU
            too). Both paths give identical numbers, float16 and bfloat16 included.
        track_energy: compute ``K``, ``H`` and ``ΔH`` every step (one reduction and one host sync).
            In streaming mode K is obtained from reductions of the untouched state (no extra pass
            over the momenta), and the update is one merged pass either way.
        check_finite: streaming mode: reduce the gradient norm every step and raise
            :class:`~hamopt.NonFiniteError` before any change when it or the loss is not finite
            (one read of the gradients and one host sync). ``False`` skips it when nothing else
            needs the norm (``track_energy=False, cap=None``): then a streaming step does no
            reduction and no host sync at all, like ``torch.optim.SGD``. Exact mode always checks.
        capturable: streaming mode: every per-step value (dt, K, H0, the cap's factor, the step
            counter) lives in a device tensor and every decision (the cap, the non-finite guard)
            is made on the device: no host sync at all, so the step can be captured in a CUDA
            graph. ``stats`` then holds 0-d tensors (read them when needed; ``stats["finite"]``
            is False for a step that a non-finite loss or gradient left without effect). Use a
            tensor ``lr`` for a scheduler inside a captured graph. Optimiser-wide.
        fused: streaming mode: one read of p and g for the energy sums and one pass for the
            whole update (hand-written kernels for contiguous float32/float64 CPU tensors,
            compiled once per machine; an Inductor-compiled step elsewhere). Same numbers as the
            eager step to float rounding. Optimiser-wide. Under ``torch.compile`` (any options)
            a streaming step compiles once: see :mod:`hamopt.optim.tensor_step`.
        process_group: the ``torch.distributed`` process group the loss, K and ‖g‖² are reduced
            over (None: the default group). Under DDP or FSDP2 the closure (or ``loss=``) gives
            each rank's local mean loss on an equal-sized local batch and the optimiser uses the
            mean over the ranks; see :mod:`hamopt.optim.base`. Not saved in ``state_dict``; a
            pickled or deep-copied optimiser uses the default group.

    After each step ``opt.stats`` holds ``step, mode, loss, loss_after, kinetic, hamiltonian,
    delta_h, grad_norm, cap_engaged, cap_engagements`` (floats, None where the mode cannot know one).
    """

    _name = "Leapfrog"

    # exact mode -------------------------------------------------------------
    def _exact_first_half(self, sets: list[ParamSet]) -> None:
        fe = self._foreach()
        for s in sets:
            dt = s.lr
            kernels.kick(s.moms, s.grads, decay=math.exp(-s.option("gamma") * dt / 2), coeff=dt / 2, foreach=fe)
            kernels.drift(s.params, s.moms, s.inv_masses, h=dt, foreach=fe)

    def _exact_second_half(self, sets: list[ParamSet]) -> None:
        fe = self._foreach()
        for s in sets:
            dt = s.lr
            kernels.kick(s.moms, s.grads, decay=math.exp(-s.option("gamma") * dt / 2), coeff=dt / 2, foreach=fe)

    # streaming mode ---------------------------------------------------------
    def _pending_dt(self, s: ParamSet) -> float | None:
        """The dt of the closing half-kick the set's stored momenta still owe (None: nothing owed).
        A fresh momentum owes nothing whatever this returns."""
        glob = self._global
        if not glob["pending"] or all(s.fresh):
            return None
        dt = glob["pending_dt"].get(s.index)
        return s.lr if dt is None else dt

    def _streaming_kinetic(self, sets: list[ParamSet], grad_sq: list[Tensor | None]) -> Tensor:
        """``K(p_t)`` with ``p_t = a₁ p_{t−½} − c₁ g`` (the deferred half-kick) expanded as
        ``½ Σ m (a₁² ‖p‖² − 2 a₁ c₁ ⟨p, g⟩ + c₁² ‖g‖²)``, so p_t never has to be materialised
        (``c₁ = 0`` for a fresh momentum: its p_t is 0)."""
        fe = self._foreach()
        terms = []
        for s, gsq in zip(sets, grad_sq):
            if gsq is None:
                continue
            m = torch.tensor(s.inv_masses, dtype=torch.float64, device=gsq.device)
            psq = kernels.squared_norms(s.moms, foreach=fe)
            prev = self._pending_dt(s)
            if prev is None:
                terms.append(0.5 * torch.dot(m, psq))
                continue
            a1, c1 = math.exp(-s.option("gamma") * prev / 2), prev / 2
            pg = kernels.dots(s.moms, s.grads)
            if any(s.fresh):
                gsq = gsq * torch.tensor([0.0 if f else 1.0 for f in s.fresh], dtype=torch.float64, device=gsq.device)
            terms.append(0.5 * torch.dot(m, a1 * a1 * psq - 2 * a1 * c1 * pg + c1 * c1 * gsq))
        return torch.stack(terms).sum()

    def _streaming_advance(self, sets: list[ParamSet], *, cap_factor: float) -> None:
        """One pass: ``p ← a₂ s (a₁ p − c₁ g) − c₂ g`` (deferred closing half-kick of the previous
        step, the cap's factor s, this step's opening half-kick), then ``θ ← θ + dt m p``. A fresh
        momentum gets the opening half-kick only, ``p ← −c₂ g``."""
        fe = self._foreach()
        glob = self._global
        for s in sets:
            a2, c2 = math.exp(-s.option("gamma") * s.lr / 2), s.lr / 2
            prev = self._pending_dt(s)
            if prev is None:
                kernels.kick(s.moms, s.grads, decay=a2 * cap_factor, coeff=c2, foreach=fe)
            else:
                a1, c1 = math.exp(-s.option("gamma") * prev / 2), prev / 2
                owing = [i for i, f in enumerate(s.fresh) if not f]
                fresh = [i for i, f in enumerate(s.fresh) if f]
                moms = [s.moms[i] for i in owing] if fresh else s.moms
                grads = [s.grads[i] for i in owing] if fresh else s.grads
                kernels.kick(moms, grads, decay=a2 * cap_factor * a1, coeff=a2 * cap_factor * c1 + c2, foreach=fe)
                kernels.kick([s.moms[i] for i in fresh], [s.grads[i] for i in fresh], decay=1.0, coeff=c2,
                             foreach=fe)
            kernels.drift(s.params, s.moms, s.inv_masses, h=s.lr, foreach=fe)
            glob["pending_dt"][s.index] = s.lr
        glob["pending"] = True

r"""Batched Leapfrog and Euler: R replicas of :class:`hamopt.optim.Leapfrog` / :class:`~hamopt.optim.Euler`.

Replica r integrates ``H_r = ½ Σ_i m_i ‖p_i[r]‖² + L_r(θ[r])`` with its own time step ``dt_r``
(the masses ``m_i`` come from one replica's shapes, so they are shared). Leapfrog, exact mode::

    p½ = a_r p − (dt_r/2) ∇L_r(θ),  θ' = θ + dt_r m p½,  p' = a_r p½ − (dt_r/2) ∇L_r(θ'),
    a_r = e^{−γ dt_r/2}

streaming mode defers the closing half-kick to the next call (``p ← a₂ s (a₁ p − c₁ g) − c₂ g``,
``θ ← θ + dt m p``, with ``s`` the cap's factor); Euler: ``θ' = θ + dt m p``,
``p' = e^{−γ dt} p − dt ∇L(θ)``. Each replica has its own energy reference ``H0_r`` (H of its
first step), its own cap decision (spec §4: ``p ← p √(max(ε, α H0 − L)/max(ε, K))`` when
``H > α H0``), its own engagement count and, per replica, the ``stats`` keys of the unbatched
optimiser, with the same meaning (see :class:`hamopt.optim.Leapfrog`). In exact mode a replica
that goes non-finite at ``θ_{t+1}`` gets ``θ_t, p_t`` back bit for bit and is frozen (see
:mod:`hamopt.replicas.base`).

Layout: the momenta of all tensors live in one ``[R, P]`` buffer (``moms`` are its per-tensor
views) and each step's gradients are gathered into one ``[R, P]`` tensor, so a kick is two
kernels, an energy one matrix-vector product with the per-element inverse masses, and a drift
one product plus one ``_foreach_add_``, whatever the number of parameter tensors.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import NonFiniteError
from ..optim.hamiltonian import CAP_EPS, MODES
from ..optim.mass import inverse_mass, validate_mass
from .base import ReplicaOptimizer

__all__ = ["ReplicaEuler", "ReplicaLeapfrog"]


class _ReplicaHamiltonian(ReplicaOptimizer, abc.ABC):
    """Options as :class:`hamopt.optim.Leapfrog` (``lr``: one ``dt`` per replica); ``gamma``,
    ``mass``, ``mass_clip``, ``cap`` and ``mode`` are shared by the replicas."""

    self_reported = True

    def __init__(self, params: Sequence[Tensor], *, lr: Any, gamma: float = 1e-3, mass: Any = "fan_in",
                 mass_clip: tuple[float, float] = (0.125, 8.0), cap: float | None = 2.0,
                 mode: str = "exact") -> None:
        super().__init__(params, lr=lr)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0 or not math.isfinite(gamma):
            raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))
                                or not math.isfinite(cap) or cap <= 1.0):
            raise ValueError(f"cap must be None (no cap) or a finite number > 1; got {cap!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
        clip = validate_mass(mass, mass_clip)
        self.gamma, self.cap, self.mode = float(gamma), None if cap is None else float(cap), mode
        self.inv_masses = [inverse_mass(p[0], mass, clip) for p in self.params]
        like = self.params[0]
        for i, p in enumerate(self.params):
            if p.dtype != like.dtype or p.device != like.device:
                raise ValueError(f"params[{i}]: every stacked parameter must have the dtype and device of params[0] "
                                 f"({like.dtype}, {like.device}); got {p.dtype}, {p.device}")
        sizes = [p[0].numel() for p in self.params]
        self._flat_moms = torch.zeros(self.size, sum(sizes), dtype=like.dtype, device=like.device)
        self.moms = self._views(self._flat_moms, sizes)
        # per element: m_i of the tensor it belongs to (float64 for energies)
        self._mass_row = torch.repeat_interleave(torch.tensor(self.inv_masses, dtype=torch.float64),
                                                 torch.tensor(sizes)).to(like.device)
        self._drift_buffer = torch.empty_like(self._flat_moms)
        self._drift_views = self._views(self._drift_buffer, sizes)
        self.H0: list[float | None] = [None] * self.size
        self.H_last: list[float | None] = [None] * self.size
        self.cap_engagements = [0] * self.size
        self.pending = False
        self.pending_dt: list[float | None] = [None] * self.size
        self.stats: list[dict[str, Any] | None] = [None] * self.size

    # ------------------------------------------------------------------ layout
    def _views(self, flat: Tensor, sizes: list[int]) -> list[Tensor]:
        """``flat`` ([R, P]) as one ``[R, *shape]`` view per parameter tensor."""
        out, start = [], 0
        for p, n in zip(self.params, sizes):
            out.append(flat[:, start:start + n].view(p.shape))
            start += n
        return out

    def _flat_grads(self) -> Tensor:
        """The stacked gradients gathered into one ``[R, P]`` tensor (in the momenta's order)."""
        return torch.cat([p.grad.reshape(self.size, -1) for p in self.params], 1)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ coefficients
    def _kick(self, grads: Tensor, decay: list[float], coeff: list[float]) -> None:
        """``p[r] ← decay_r p[r] − coeff_r g[r]`` (``grads`` flat ``[R, P]``)."""
        p = self._flat_moms
        a, c = self._vector(decay, p), self._vector(coeff, p)
        p.mul_(a[:, None]).addcmul_(grads, c[:, None], value=-1)

    def _drift(self, h: list[float]) -> None:
        """``θ[r] ← θ[r] + h_r m_i p[r]`` (the coefficient ``h_r m_i`` formed in float64)."""
        coeff = torch.outer(torch.tensor(h, dtype=torch.float64, device=self._mass_row.device), self._mass_row)
        torch.mul(self._flat_moms, coeff.to(self._flat_moms.dtype), out=self._drift_buffer)
        with torch.no_grad():
            torch._foreach_add_(self.params, self._drift_views)

    def _scale(self, factors: list[float]) -> None:
        if all(f == 1.0 for f in factors):
            return
        self._flat_moms.mul_(self._vector(factors, self._flat_moms)[:, None])

    def _active_values(self, values: list[float], idle: float) -> list[float]:
        return [v if a else idle for v, a in zip(values, self.active)]

    # ------------------------------------------------------------------ energies
    def _mass_weighted(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``[R]`` float64: ``Σ_i m_i ⟨x_i[r], y_i[r]⟩`` for flat ``[R, P]`` x, y (y = x if None)."""
        x64 = x.double()
        return (x64.square() if y is None else x64 * y.double()) @ self._mass_row

    def _kinetic(self) -> Tensor:
        """``[R]`` float64: ``½ Σ_i m_i ‖p_i[r]‖²``."""
        return 0.5 * self._mass_weighted(self._flat_moms)

    def kinetic_energy(self) -> list[float]:
        """K of each replica's stored momenta (in streaming mode: the half-step ones)."""
        return self._to_host(self._kinetic())[0]

    def _cap_factor(self, r: int, loss: float, kinetic: float) -> float:
        alpha, h0 = self.cap, self.H0[r]
        if alpha is None or h0 is None or kinetic + loss <= alpha * h0:
            return 1.0
        self.cap_engagements[r] += 1
        return math.sqrt(max(CAP_EPS, alpha * h0 - loss) / max(CAP_EPS, kinetic))

    def _finish(self, r: int, **values: Any) -> None:
        stats = {"step": self.steps[r], "mode": self.mode, "loss": None, "loss_after": None, "kinetic_before": None,
                 "kinetic": None, "hamiltonian": None, "delta_h": None, "grad_norm": None, "cap_engaged": False}
        stats.update(values)
        stats["cap_engagements"] = self.cap_engagements[r]
        self.stats[r] = stats
        self.steps[r] += 1

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One step of every active replica; returns the ``[R]`` losses at θ_t. ``stats[r]`` is the
        replica's step record (None for a replica frozen before or at this step)."""
        if not callable(closure):
            raise TypeError(f"{self.name}.step() needs a closure that returns the [R] per-replica losses")
        self.stats = [None] * self.size
        return self._step_exact(closure) if self.mode == "exact" else self._step_streaming(closure)

    @staticmethod
    def _sq_rows(x: Tensor) -> Tensor:
        """``[R]`` float64: ``‖x[r]‖²`` of a flat ``[R, P]`` tensor."""
        return torch.linalg.vector_norm(x, dim=1, dtype=torch.float64).square()

    def _step_exact(self, closure: Callable[[], Tensor]) -> Tensor:
        loss0 = self._call(closure)
        grads = self._flat_grads()
        l0, gsq0, k0 = self._to_host(loss0, self._sq_rows(grads), self._kinetic())
        self._freeze_nonfinite(l0, gsq0)
        if not any(self.active):
            return loss0
        self._zero_inactive([grads])
        before = [t.clone() for t in self.params] + [self._flat_moms.clone()]
        self._first_half(grads)
        loss1 = self._call(closure)
        grads = self._flat_grads()
        self._zero_inactive([grads])
        self._second_half(grads)
        l1, gsq1, k1 = self._to_host(loss1, self._sq_rows(grads), self._kinetic())
        self._restore_nonfinite(before, l1, gsq1, k1)
        factors = [1.0] * self.size
        for r in range(self.size):
            if not self.active[r]:
                continue
            if self.H0[r] is None:
                self.H0[r] = k0[r] + l0[r]
            factors[r] = self._cap_factor(r, l1[r], k1[r])
        self._scale(factors)
        for r in range(self.size):
            if not self.active[r]:
                continue
            k_after = k1[r] * factors[r] * factors[r]
            self.H_last[r] = k_after + l1[r]
            self._finish(r, loss=l0[r], loss_after=l1[r], kinetic_before=k0[r], kinetic=k_after,
                         hamiltonian=k_after + l1[r], delta_h=(k1[r] + l1[r]) - (k0[r] + l0[r]),
                         grad_norm=math.sqrt(gsq0[r]), cap_engaged=factors[r] != 1.0)
        return loss0

    def _restore_nonfinite(self, before: list[Tensor], l1: list[float], gsq1: list[float], k1: list[float]) -> None:
        """Exact mode: a replica non-finite at θ_{t+1} gets θ_t and p_t back and is frozen."""
        bad = [r for r in range(self.size)
               if self.active[r] and not (math.isfinite(l1[r]) and math.isfinite(gsq1[r]) and math.isfinite(k1[r]))]
        if not bad:
            return
        index = torch.tensor(bad, device=self.params[0].device)
        for now, old in zip(self.params + [self._flat_moms], before):
            now.index_copy_(0, index, old.index_select(0, index))
        for r in bad:
            what = "loss" if not math.isfinite(l1[r]) else "gradient"
            self.freeze(r, str(NonFiniteError(what, self.steps[r], l1[r] if what == "loss" else gsq1[r],
                                              "detected at θ_{t+1}; θ_t and p_t were restored")))

    def _step_streaming(self, closure: Callable[[], Tensor]) -> Tensor:
        loss = self._call(closure)
        grads = self._flat_grads()
        lval, gsq, kinetic = self._to_host(loss, self._sq_rows(grads), self._streaming_kinetic(grads))
        self._freeze_nonfinite(lval, gsq)
        if not any(self.active):
            return loss
        self._zero_inactive([grads])
        factors = [1.0] * self.size
        for r in range(self.size):
            if not self.active[r]:
                continue
            ham = kinetic[r] + lval[r]
            if self.H0[r] is None:
                self.H0[r] = ham
            delta_h = None if self.H_last[r] is None else ham - self.H_last[r]
            factors[r] = self._cap_factor(r, lval[r], kinetic[r])
            k = kinetic[r] * factors[r] * factors[r]
            self.H_last[r] = k + lval[r]
            self._finish(r, loss=lval[r], kinetic=k, hamiltonian=k + lval[r], delta_h=delta_h,
                         grad_norm=math.sqrt(gsq[r]), cap_engaged=factors[r] != 1.0)
        self._streaming_advance(grads, factors)
        return loss

    # ------------------------------------------------------------------ integrator hooks
    # ``grads`` is the flat ``[R, P]`` gradient (:meth:`_flat_grads`) in every hook.
    @abc.abstractmethod
    def _first_half(self, grads: Tensor) -> None:
        ...

    @abc.abstractmethod
    def _second_half(self, grads: Tensor) -> None:
        ...

    @abc.abstractmethod
    def _streaming_kinetic(self, grads: Tensor) -> Tensor:
        ...

    @abc.abstractmethod
    def _streaming_advance(self, grads: Tensor, factors: list[float]) -> None:
        ...

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Momenta and every per-replica scalar (the stacked parameters are the caller's)."""
        return {"type": self.name, "mode": self.mode, "momenta": [m.clone() for m in self.moms],
                "H0": list(self.H0), "H_last": list(self.H_last), "cap_engagements": list(self.cap_engagements),
                "pending": self.pending, "pending_dt": list(self.pending_dt), **self._scalars()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != self.name or state.get("mode") != self.mode:
            raise ValueError(f"state_dict: saved by {state.get('type')!r} in mode {state.get('mode')!r}; this is "
                             f"{self.name!r} in mode {self.mode!r}")
        self._check_buffers(state["momenta"], self.moms, "momenta")
        with torch.no_grad():
            for m, saved in zip(self.moms, state["momenta"]):
                m.copy_(saved)
        self.H0, self.H_last = list(state["H0"]), list(state["H_last"])
        self.cap_engagements = [int(c) for c in state["cap_engagements"]]
        self.pending, self.pending_dt = bool(state["pending"]), list(state["pending_dt"])
        self._load_scalars(state)


class ReplicaLeapfrog(_ReplicaHamiltonian):
    """R replicas of :class:`hamopt.optim.Leapfrog` (see the module docstring)."""

    name = "ReplicaLeapfrog"

    def _half_kick(self, grads: Tensor) -> None:
        decay = [math.exp(-self.gamma * dt / 2) for dt in self.lr]
        self._kick(grads, self._active_values(decay, 1.0), self._active_values([dt / 2 for dt in self.lr], 0.0))

    def _first_half(self, grads: Tensor) -> None:
        self._half_kick(grads)
        self._drift(self._active_values(self.lr, 0.0))

    def _second_half(self, grads: Tensor) -> None:
        self._half_kick(grads)

    def _owed(self) -> list[float] | None:
        """The dt of the closing half-kick each replica's momentum still owes (None: nothing)."""
        if not self.pending:
            return None
        return [self.lr[r] if d is None else d for r, d in enumerate(self.pending_dt)]

    def _streaming_kinetic(self, grads: Tensor) -> Tensor:
        """``½ Σ m (a₁² ‖p‖² − 2 a₁ c₁ ⟨p, g⟩ + c₁² ‖g‖²)`` per replica (p_t never materialised)."""
        psq = self._mass_weighted(self._flat_moms)
        owed = self._owed()
        if owed is None:
            return 0.5 * psq
        device = psq.device
        a1 = torch.tensor([math.exp(-self.gamma * dt / 2) for dt in owed], dtype=torch.float64, device=device)
        c1 = torch.tensor([dt / 2 for dt in owed], dtype=torch.float64, device=device)
        pg = self._mass_weighted(self._flat_moms, grads)
        gsq = self._mass_weighted(grads)
        return 0.5 * (a1 * a1 * psq - 2 * a1 * c1 * pg + c1 * c1 * gsq)

    def _streaming_advance(self, grads: Tensor, factors: list[float]) -> None:
        owed = self._owed()
        decay, coeff = [], []
        for r, dt in enumerate(self.lr):
            a2, c2, s = math.exp(-self.gamma * dt / 2), dt / 2, factors[r]
            if owed is None:
                decay.append(a2 * s)
                coeff.append(c2)
            else:
                a1, c1 = math.exp(-self.gamma * owed[r] / 2), owed[r] / 2
                decay.append(a2 * s * a1)
                coeff.append(a2 * s * c1 + c2)
        self._kick(grads, self._active_values(decay, 1.0), self._active_values(coeff, 0.0))
        self._drift(self._active_values(self.lr, 0.0))
        self.pending_dt = [dt if a else old for dt, a, old in zip(self.lr, self.active, self.pending_dt)]
        self.pending = True


class ReplicaEuler(_ReplicaHamiltonian):
    """R replicas of :class:`hamopt.optim.Euler` (see the module docstring)."""

    name = "ReplicaEuler"

    def _euler_update(self, grads: Tensor) -> None:
        self._drift(self._active_values(self.lr, 0.0))
        decay = [math.exp(-self.gamma * dt) for dt in self.lr]
        self._kick(grads, self._active_values(decay, 1.0), self._active_values(self.lr, 0.0))

    def _first_half(self, grads: Tensor) -> None:
        self._euler_update(grads)

    def _second_half(self, grads: Tensor) -> None:
        """Nothing: the gradient at θ_{t+1} is not used by an explicit Euler step."""

    def _streaming_kinetic(self, grads: Tensor) -> Tensor:
        return self._kinetic()

    def _streaming_advance(self, grads: Tensor, factors: list[float]) -> None:
        self._scale(self._active_values(factors, 1.0))
        self._euler_update(grads)

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
        self.moms = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.H0: list[float | None] = [None] * self.size
        self.H_last: list[float | None] = [None] * self.size
        self.cap_engagements = [0] * self.size
        self.pending = False
        self.pending_dt: list[float | None] = [None] * self.size
        self.stats: list[dict[str, Any] | None] = [None] * self.size

    # ------------------------------------------------------------------ coefficients
    def _per_tensor(self, coeffs: list[float], like: Tensor) -> Tensor:
        """``[n_tensors, R]``: ``coeffs[r] · m_i`` in the parameters' dtype."""
        m = torch.tensor(self.inv_masses, dtype=torch.float64)
        table = m[:, None] * torch.tensor(coeffs, dtype=torch.float64)[None, :]
        return table.to(device=like.device, dtype=like.dtype)

    def _kick(self, grads: list[Tensor], decay: list[float], coeff: list[float]) -> None:
        """``p[r] ← decay_r p[r] − coeff_r g[r]`` for every tensor."""
        like = self.moms[0]
        a, c = self._vector(decay, like), self._vector(coeff, like)
        for p, g in zip(self.moms, grads):
            p.mul_(self._column(a, p)).addcmul_(g, self._column(c, p), value=-1)

    def _drift(self, h: list[float]) -> None:
        """``θ[r] ← θ[r] + h_r m_i p[r]``."""
        table = self._per_tensor(h, self.params[0])
        with torch.no_grad():
            for i, (theta, p) in enumerate(zip(self.params, self.moms)):
                theta.addcmul_(p, self._column(table[i], p))

    def _scale(self, factors: list[float]) -> None:
        if all(f == 1.0 for f in factors):
            return
        f = self._vector(factors, self.moms[0])
        for p in self.moms:
            p.mul_(self._column(f, p))

    def _active_values(self, values: list[float], idle: float) -> list[float]:
        return [v if a else idle for v, a in zip(values, self.active)]

    # ------------------------------------------------------------------ energies
    def _kinetic(self) -> Tensor:
        """``[R]`` float64: ``½ Σ_i m_i ‖p_i[r]‖²``."""
        m = torch.tensor(self.inv_masses, dtype=torch.float64, device=self.moms[0].device)
        return 0.5 * (m[:, None] * self._sq_norms(self.moms)).sum(0)

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

    def _step_exact(self, closure: Callable[[], Tensor]) -> Tensor:
        loss0 = self._call(closure)
        grads = self._grads()
        l0, gsq0, k0 = self._to_host(loss0, self._sq_norms(grads).sum(0), self._kinetic())
        self._freeze_nonfinite(l0, gsq0)
        if not any(self.active):
            return loss0
        self._zero_inactive(grads)
        before = [t.clone() for t in self.params + self.moms]
        self._first_half(grads)
        loss1 = self._call(closure)
        grads = self._grads()
        self._zero_inactive(grads)
        self._second_half(grads)
        l1, gsq1, k1 = self._to_host(loss1, self._sq_norms(grads).sum(0), self._kinetic())
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
        for now, old in zip(self.params + self.moms, before):
            now.index_copy_(0, index, old.index_select(0, index))
        for r in bad:
            what = "loss" if not math.isfinite(l1[r]) else "gradient"
            self.freeze(r, str(NonFiniteError(what, self.steps[r], l1[r] if what == "loss" else gsq1[r],
                                              "detected at θ_{t+1}; θ_t and p_t were restored")))

    def _step_streaming(self, closure: Callable[[], Tensor]) -> Tensor:
        loss = self._call(closure)
        grads = self._grads()
        grad_sq = self._sq_norms(grads)
        lval, gsq, kinetic = self._to_host(loss, grad_sq.sum(0), self._streaming_kinetic(grads, grad_sq))
        self._freeze_nonfinite(lval, gsq)
        if not any(self.active):
            return loss
        self._zero_inactive(grads)
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
    @abc.abstractmethod
    def _first_half(self, grads: list[Tensor]) -> None:
        ...

    @abc.abstractmethod
    def _second_half(self, grads: list[Tensor]) -> None:
        ...

    @abc.abstractmethod
    def _streaming_kinetic(self, grads: list[Tensor], grad_sq: Tensor) -> Tensor:
        ...

    @abc.abstractmethod
    def _streaming_advance(self, grads: list[Tensor], factors: list[float]) -> None:
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
        for m, saved in zip(self.moms, state["momenta"]):
            m.copy_(saved)
        self.H0, self.H_last = list(state["H0"]), list(state["H_last"])
        self.cap_engagements = [int(c) for c in state["cap_engagements"]]
        self.pending, self.pending_dt = bool(state["pending"]), list(state["pending_dt"])
        self._load_scalars(state)


class ReplicaLeapfrog(_ReplicaHamiltonian):
    """R replicas of :class:`hamopt.optim.Leapfrog` (see the module docstring)."""

    name = "ReplicaLeapfrog"

    def _half_kick(self, grads: list[Tensor]) -> None:
        decay = [math.exp(-self.gamma * dt / 2) for dt in self.lr]
        self._kick(grads, self._active_values(decay, 1.0), self._active_values([dt / 2 for dt in self.lr], 0.0))

    def _first_half(self, grads: list[Tensor]) -> None:
        self._half_kick(grads)
        self._drift(self._active_values(self.lr, 0.0))

    def _second_half(self, grads: list[Tensor]) -> None:
        self._half_kick(grads)

    def _owed(self) -> list[float] | None:
        """The dt of the closing half-kick each replica's momentum still owes (None: nothing)."""
        if not self.pending:
            return None
        return [self.lr[r] if d is None else d for r, d in enumerate(self.pending_dt)]

    def _streaming_kinetic(self, grads: list[Tensor], grad_sq: Tensor) -> Tensor:
        """``½ Σ m (a₁² ‖p‖² − 2 a₁ c₁ ⟨p, g⟩ + c₁² ‖g‖²)`` per replica (p_t never materialised)."""
        m = torch.tensor(self.inv_masses, dtype=torch.float64, device=grad_sq.device)[:, None]
        psq = self._sq_norms(self.moms)
        owed = self._owed()
        if owed is None:
            return 0.5 * (m * psq).sum(0)
        a1 = torch.tensor([math.exp(-self.gamma * dt / 2) for dt in owed], dtype=torch.float64, device=m.device)
        c1 = torch.tensor([dt / 2 for dt in owed], dtype=torch.float64, device=m.device)
        pg = self._dots(self.moms, grads)
        return 0.5 * (m * (a1 * a1 * psq - 2 * a1 * c1 * pg + c1 * c1 * grad_sq)).sum(0)

    def _streaming_advance(self, grads: list[Tensor], factors: list[float]) -> None:
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

    def _euler_update(self, grads: list[Tensor]) -> None:
        self._drift(self._active_values(self.lr, 0.0))
        decay = [math.exp(-self.gamma * dt) for dt in self.lr]
        self._kick(grads, self._active_values(decay, 1.0), self._active_values(self.lr, 0.0))

    def _first_half(self, grads: list[Tensor]) -> None:
        self._euler_update(grads)

    def _second_half(self, grads: list[Tensor]) -> None:
        """Nothing: the gradient at θ_{t+1} is not used by an explicit Euler step."""

    def _streaming_kinetic(self, grads: list[Tensor], grad_sq: Tensor) -> Tensor:
        return self._kinetic()

    def _streaming_advance(self, grads: list[Tensor], factors: list[float]) -> None:
        self._scale(self._active_values(factors, 1.0))
        self._euler_update(grads)

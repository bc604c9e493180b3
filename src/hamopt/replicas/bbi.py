r"""Batched BBI: R replicas of :class:`hamopt.optim.BBI`, each with its own generator and counters.

Replica r follows :class:`~hamopt.optim.BBI`'s step (see its module docstring) with its own
``Δt_r``, its own energy ``E_r = V0_r + δE`` fixed at its first non-skipped step, its own skip
test, rescale, fixed and progress counters, and its own bounces: ``π[r] ← u · ‖r π[r]‖ / ‖u‖``
with ``u ~ U(−½, ½)`` drawn from replica r's generator tensor by tensor in parameter order (the
numbers the unbatched optimiser with that seed draws). In one batched step some replicas kick and
drift while others bounce or sit the step out. Only ``momentum_init="global"`` is batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .ecd import ReplicaECDSep, _at_least

__all__ = ["ReplicaBBI"]

_COUNTERS = ("V0", "energy", "counter0", "counter", "fixed_bounces", "min_V")


def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return value


class ReplicaBBI(ReplicaECDSep):
    """R replicas of :class:`hamopt.optim.BBI` (options as there; ``lr`` and ``seeds`` per replica).

    It reuses :class:`ReplicaECDSep`'s generators, momenta, skip and bounce counts, displacement
    bookkeeping and state handling; ECDSep's own options (η, F0, ν, s) are not used."""

    name = "ReplicaBBI"

    def __init__(self, params: Sequence[Tensor], *, lr: Any, seeds: Sequence[int], v0: float = 0.0,
                 threshold0: int = 1000, threshold: int = 3000, n_fixed_bounces: int = 1, deltaEn: float = 0.0,
                 weight_decay: float = 0.0, consEn: bool = True, eps1: float = 1e-10, eps2: float = 1e-40,
                 momentum_init: str = "global") -> None:
        if momentum_init != "global":
            raise ValueError(f"momentum_init: only 'global' is batched; got {momentum_init!r} (run such replicas "
                             "one by one)")
        super().__init__(params, lr=lr, seeds=seeds, eta=1.0, F0=0.0, nu=0.0, s=1.0, deltaEn=deltaEn,
                         weight_decay=weight_decay, consEn=consEn, eps1=eps1, eps2=eps2)
        if isinstance(v0, bool) or not isinstance(v0, (int, float)) or not math.isfinite(v0):
            raise ValueError(f"v0 must be a finite number; got {v0!r}")
        self.v0 = float(v0)
        self.delta = _at_least("deltaEn", deltaEn, 0.0)
        self.threshold0 = _int_at_least("threshold0", threshold0, 1)
        self.threshold = _int_at_least("threshold", threshold, 1)
        self.n_fixed_bounces = _int_at_least("n_fixed_bounces", n_fixed_bounces, 0)
        n = self.size
        self.V0: list[float | None] = [None] * n
        self.energy: list[float | None] = [None] * n
        self.counter0, self.counter, self.fixed_bounces = [0] * n, [0] * n, [0] * n
        self.min_V = [math.inf] * n

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One step of every active replica; returns the ``[R]`` losses at θ_t."""
        loss_t = self._call(closure)
        grads = self._grads()
        loss, wd, p2m, gsq = self._to_host(loss_t, self._sq_total(self.params),
                                           self._sq_total(self.moms), self._sq_total(grads))
        self._freeze_nonfinite(loss, gsq)
        self.last_loss, self.last_grad_norm = loss, [math.sqrt(v) if v >= 0 else v for v in gsq]
        self.stepped = list(self.active)
        n = self.size
        moving, bouncing = [False] * n, [False] * n
        first, init, scale, kick, drift = [1.0] * n, [0.0] * n, [1.0] * n, [0.0] * n, [0.0] * n
        target = [0.0] * n
        for r in range(n):
            if not self.active[r]:
                continue
            pot = loss[r] + 0.5 * self.weight_decay * wd[r] - self.v0
            if not pot > self.eps2:
                self.skipped_steps[r] += 1
                self.displacement_sq[r] = 0.0
                continue
            p2 = p2m[r]
            if self.energy[r] is None:
                self.V0[r], self.energy[r] = pot, pot + self.delta
                magnitude = math.sqrt(max(0.0, self.energy[r] ** 2 / pot - pot))
                first[r] = 0.0
                init[r] = -magnitude / math.sqrt(gsq[r]) if gsq[r] > 0.0 else 0.0
                p2 = magnitude * magnitude if gsq[r] > 0.0 else 0.0
            energy = self.energy[r]
            goal = pot * ((energy / pot) ** 2 - 1.0)
            c = 1.0
            if self.consEn and p2 > 0.0 and not (abs(p2 - goal) < self.eps1 or goal < 0.0):
                c = math.sqrt(goal / p2)
            fixed_due = self.counter0[r] == self.threshold0 and self.fixed_bounces[r] < self.n_fixed_bounces
            if fixed_due or self.counter[r] >= self.threshold:
                bouncing[r], target[r] = True, c * c * p2
                self.P2[r], self.displacement_sq[r] = c * c * p2, 0.0
                if fixed_due:
                    self.fixed_bounces[r] += 1
                    self.counter0[r] = 0 if self.fixed_bounces[r] < self.n_fixed_bounces else self.counter0[r] + 1
                self.counter[r] = 0
                self.bounces[r] += 1
                continue
            moving[r] = True
            scale[r] = c
            kick[r] = 0.5 * self.lr[r] * (pot / energy + energy / pot)
            drift[r] = self.lr[r] * pot / energy
            self.counter0[r] += 1
            self.counter[r] += 1
            if pot < self.min_V[r]:
                self.min_V[r], self.counter[r] = pot, 0
        if any(moving) or any(bouncing):
            self._move(grads, first, init, scale, kick, drift, moving)
            self._bounce_uniform(bouncing, target)
        self._advance_steps()
        return loss_t

    def _move(self, grads: list[Tensor], first: list[float], init: list[float], scale: list[float],
              kick: list[float], drift: list[float], moving: list[bool]) -> None:
        """Initialise (first step), rescale, kick and drift the moving replicas (the others are
        left as they are: identity coefficients, zeroed gradients)."""
        self._zero_inactive(grads)
        like, col, n = self.moms[0], self._column, self.size
        v_scale = self._vector([v if m else 1.0 for v, m in zip(scale, moving)], like)
        v_kick = self._vector([v if m else 0.0 for v, m in zip(kick, moving)], like)
        v_wd = self._vector([v * self.weight_decay if m else 0.0 for v, m in zip(kick, moving)], like)
        v_drift = self._vector([v if m else 0.0 for v, m in zip(drift, moving)], like)
        if any(f == 0.0 and m for f, m in zip(first, moving)):  # first step: π ← −g · magnitude/‖g‖
            v_first = self._vector([f if m else 1.0 for f, m in zip(first, moving)], like)
            v_init = self._vector([v if m else 0.0 for v, m in zip(init, moving)], like)
            for p, g in zip(self.moms, grads):
                p.mul_(col(v_first, p)).addcmul_(g, col(v_init, p))
        for p, g, theta in zip(self.moms, grads, self.params):
            p.mul_(col(v_scale, p)).addcmul_(g, col(v_kick, p), value=-1)
            if self.weight_decay:
                p.addcmul_(theta, col(v_wd, p), value=-1)
            theta.addcmul_(p, col(v_drift, p))
        if any(moving):
            p2 = self._to_host(self._sq_total(self.moms))[0]
            for r in range(n):
                if moving[r]:
                    self.P2[r] = p2[r]
                    self.displacement_sq[r] = drift[r] * drift[r] * p2[r]

    def _bounce_uniform(self, bouncing: list[bool], target: list[float]) -> None:
        """``π[r] ← u · √(target_r / ‖u‖²)``, ``u ~ U(−½, ½)`` from replica r's generator."""
        rows = [r for r in range(self.size) if bouncing[r]]
        if not rows:
            return
        for r in rows:
            for p in self.moms:
                p[r].uniform_(-0.5, 0.5, generator=self.generators[r])
        now = self._sq_total(self.moms)
        goal = torch.tensor([target[r] if bouncing[r] else 0.0 for r in range(self.size)], dtype=torch.float64,
                            device=now.device)
        mask = torch.tensor(bouncing, device=now.device)
        factor = torch.where(mask & (now > 0), torch.sqrt(goal / torch.where(now > 0, now, 1.0)), 1.0)
        for p in self.moms:
            p.mul_(self._column(factor.to(p.dtype), p))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "type": self.name, **{k: list(getattr(self, k)) for k in _COUNTERS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for k in _COUNTERS:
            setattr(self, k, list(state[k]))

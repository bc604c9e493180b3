r"""Batched ECDSep: R replicas of :class:`hamopt.optim.ECDSep`, each with its own generator.

Replica r follows :class:`~hamopt.optim.ECDSep`'s step exactly (see its module docstring), with
its own time step ``Δt_r``, its own invariant ``log C_r``, its own skip test (``F_r ≤ eps2``: the
replica sits the step out, the others move), its own rescale ``c_r`` and its own bounces, whose
noise ``z[r] ~ N(0, I)`` is drawn from replica r's generator (seeded with ``seeds[r]``) tensor by
tensor in parameter order — the numbers the unbatched optimiser with that seed draws. The
norm-restoring rescale after a bounce is deferred to the next step's first multiply, per replica.

Energy (the lab reads ECD runs in the displacement form): ``displacement_sq[r]`` holds
``‖θ_{t+1} − θ_t‖²`` of the replica's last step; :class:`~hamopt.replicas.ReplicaTracker`
measures the displacement from the parameters themselves, as the unbatched tracker does.

A replica whose ``‖p‖²`` is not finite after the kick (the unbatched optimiser raises a
``FloatingPointError``) is frozen with that message.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import ReplicaOptimizer

__all__ = ["ReplicaECDSep"]

_LOG_MAX = 700.0  # exp() of anything larger overflows a float64


def _at_least(name: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}; got {value!r}")
    return float(value)


class ReplicaECDSep(ReplicaOptimizer):
    """R replicas of :class:`hamopt.optim.ECDSep` (options as there; ``lr`` and ``seeds`` per replica)."""

    name = "ReplicaECDSep"
    self_reported = False
    displacement_form = True

    def __init__(self, params: Sequence[Tensor], *, lr: Any, seeds: Sequence[int], eta: float, F0: float = 0.0,
                 nu: float = 1e-5, s: float = 1.0, deltaEn: float = 0.0, weight_decay: float = 0.0,
                 consEn: bool = True, eps1: float = 1e-10, eps2: float = 1e-40) -> None:
        super().__init__(params, lr=lr)
        if len(seeds) != self.size or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in seeds):
            raise ValueError(f"seeds: one int >= 0 per replica is needed ({self.size}); got {list(seeds)!r}")
        self.eta = _at_least("eta", eta, 1.0)
        if isinstance(F0, bool) or not isinstance(F0, (int, float)) or not math.isfinite(F0):
            raise ValueError(f"F0 must be a finite number; got {F0!r}")
        self.F0 = float(F0)
        self.nu, self.s = _at_least("nu", nu, 0.0), _at_least("s", s, 0.0)
        self.delta = _at_least("deltaEn", deltaEn, 0.0)
        if self.s != 1.0 and self.delta != 1.0:
            if self.delta != 0.0:
                warnings.warn(f"s={self.s:g} != 1 forces deltaEn=1 (as the published ECDSep does); "
                              f"deltaEn={self.delta:g} is ignored", stacklevel=2)
            self.delta = 1.0
        self.weight_decay = _at_least("weight_decay", weight_decay, 0.0)
        if not isinstance(consEn, bool):
            raise TypeError(f"consEn must be True or False; got {consEn!r}")
        self.consEn = consEn
        self.eps1, self.eps2 = _at_least("eps1", eps1, 0.0), _at_least("eps2", eps2, 0.0)
        self.seeds = [int(x) for x in seeds]
        device = self.params[0].device
        self.generators = [torch.Generator(device=device).manual_seed(x) for x in self.seeds]
        self.moms = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        n = self.size
        self.log_C: list[float | None] = [None] * n
        self.initialized = [False] * n
        self.skipped_steps, self.bounces = [0] * n, [0] * n
        self.P2, self.displacement_sq = [0.0] * n, [0.0] * n
        self.pending_norm_sq: list[float | None] = [None] * n
        self.stepped = [False] * n

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One step of every active replica; returns the ``[R]`` losses at θ_t. ``stepped[r]`` is
        False for a replica frozen before or at this step (a skipped step counts as stepped)."""
        loss_t = self._call(closure)
        grads = self._grads()
        wd_sq = self._sq_total(self.params)
        loss, wd, p2m, gsq = self._to_host(loss_t, wd_sq, self._sq_total(self.moms),
                                           self._sq_total(grads))
        self._freeze_nonfinite(loss, gsq)
        self.last_loss, self.last_grad_norm = loss, [math.sqrt(v) if v >= 0 else v for v in gsq]
        self.stepped = list(self.active)
        n = self.size
        moving = [False] * n
        first, scale, kick, init = [1.0] * n, [1.0] * n, [0.0] * n, [0.0] * n
        for r in range(n):
            if not self.active[r]:
                continue
            pot = loss[r] + 0.5 * self.weight_decay * wd[r] - self.F0
            if not pot > self.eps2:
                self.skipped_steps[r] += 1
                self.displacement_sq[r] = 0.0
                continue
            moving[r] = True
            log_v = self.eta * math.log(pot)
            owed, p2 = 1.0, p2m[r]
            if self.pending_norm_sq[r] is not None:
                pending, self.pending_norm_sq[r] = self.pending_norm_sq[r], None
                if p2 > 0.0:
                    owed, p2 = math.sqrt(pending / p2), pending
            if not self.initialized[r]:
                self.log_C[r] = log_v + math.log(self.s + self.delta)
                if self.delta > 0.0 and gsq[r] > 0.0:
                    first[r], init[r] = 0.0, -math.sqrt(self.delta / gsq[r])
                    p2 = self.delta
                self.initialized[r] = True
            c = 1.0
            if self.consEn and p2 > 0.0:
                x = self.log_C[r] - log_v
                target = math.exp(x) - self.s if x < _LOG_MAX else math.inf
                if not (abs(target - p2) < self.eps1 or target < 0.0):
                    c = (math.sqrt(target / p2) if math.isfinite(target)
                         else math.exp(min(0.5 * (x - math.log(p2)), _LOG_MAX)))
            scale[r], kick[r] = c * owed, self.lr[r] * self.eta / pot
        if not any(moving):
            self._advance_steps()
            return loss_t
        self._zero_inactive(grads)
        like = self.moms[0]
        col = self._column
        v_first, v_init = self._vector(first, like), self._vector(init, like)
        v_scale, v_kick = self._vector(scale, like), self._vector(kick, like)
        v_wd = self._vector([k * self.weight_decay for k in kick], like)
        for p, g, theta in zip(self.moms, grads, self.params):
            if init != [0.0] * n:  # first step with δE > 0: p ← −g √(δE/‖g‖²)
                p.mul_(col(v_first, p)).addcmul_(g, col(v_init, p))
            p.mul_(col(v_scale, p)).addcmul_(g, col(v_kick, p), value=-1)
            if self.weight_decay:
                p.addcmul_(theta, col(v_wd, p), value=-1)
        p2_all = self._to_host(self._sq_total(self.moms))[0]
        h = [0.0] * n
        for r in range(n):
            if not moving[r]:
                continue
            if not math.isfinite(p2_all[r]):
                moving[r] = False
                self.freeze(r, f"ECDSep: ‖p‖² = {p2_all[r]} after the kick at step {self.steps[r]}")
                continue
            if self.s + p2_all[r] > 0.0:
                h[r] = self.lr[r] * 2.0 / (self.s + p2_all[r])
            self.displacement_sq[r] = h[r] * h[r] * p2_all[r]
        v_h = self._vector(h, like)
        for theta, p in zip(self.params, self.moms):
            theta.addcmul_(p, col(v_h, p))
        self._bounce(moving, p2_all)
        self._advance_steps()
        return loss_t

    def _bounce(self, moving: list[bool], p2: list[float]) -> None:
        """``p ← p + ν ‖p‖ z`` per replica, ``z`` from the replica's generator (rescale deferred)."""
        bouncing = [r for r in range(self.size) if moving[r] and self.nu > 0.0 and p2[r] > 0.0]
        for r in range(self.size):
            if moving[r]:
                self.P2[r] = p2[r]
        if not bouncing:
            return
        noise = [torch.zeros_like(p) for p in self.moms]
        for r in bouncing:
            for z in noise:
                z[r].normal_(generator=self.generators[r])
            self.pending_norm_sq[r] = p2[r]
            self.bounces[r] += 1
        alpha = self._vector([self.nu * math.sqrt(p2[r]) if r in bouncing else 0.0 for r in range(self.size)],
                             self.moms[0])
        for p, z in zip(self.moms, noise):
            p.addcmul_(z, self._column(alpha, p))

    def _advance_steps(self) -> None:
        for r in range(self.size):
            self.steps[r] += self.stepped[r] and self.active[r]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"type": self.name, "momenta": [m.clone() for m in self.moms], "seeds": list(self.seeds),
                "generator_states": [g.get_state() for g in self.generators], "log_C": list(self.log_C),
                "initialized": list(self.initialized), "skipped_steps": list(self.skipped_steps),
                "bounces": list(self.bounces), "P2": list(self.P2), "displacement_sq": list(self.displacement_sq),
                "pending_norm_sq": list(self.pending_norm_sq), **self._scalars()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != self.name:
            raise ValueError(f"state_dict: saved by {state.get('type')!r}; this is {self.name!r}")
        self._check_buffers(state["momenta"], self.moms, "momenta")
        for m, saved in zip(self.moms, state["momenta"]):
            m.copy_(saved)
        self.seeds = [int(x) for x in state["seeds"]]
        for g, st in zip(self.generators, state["generator_states"]):
            g.set_state(st)
        for key in ("log_C", "initialized", "skipped_steps", "bounces", "P2", "displacement_sq", "pending_norm_sq"):
            setattr(self, key, list(state[key]))
        self._load_scalars(state)

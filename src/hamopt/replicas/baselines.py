r"""Batched torch baselines: R replicas of ``torch.optim.SGD`` (heavy ball) and ``torch.optim.AdamW``.

The updates are torch's, with the step size a per-replica column:

* SGD, momentum μ, dampening d, weight decay λ: ``g ← g + λ θ``; ``b ← g`` on the first step,
  else ``b ← μ b + (1 − d) g``; ``θ ← θ − lr_r b``.
* AdamW (β1, β2, ε, λ): ``θ ← (1 − lr_r λ) θ``; ``m ← β1 m + (1 − β1) g``;
  ``v ← β2 v + (1 − β2) g²``; ``θ ← θ − (lr_r / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)``.

Their kinetic energies follow :mod:`hamopt.energy.conventions`, per replica:
``K_r = ½ · lr_r/(1−d) · ‖b[r]‖²`` and ``K_r = ½ · lr_r/(1−β1) · Σ m̂[r]² / (√v̂[r] + ε)``.
Plain SGD (μ = 0, the displacement form) and Nesterov SGD, and AMSGrad, are refused.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import ReplicaOptimizer

__all__ = ["ReplicaAdamW", "ReplicaSGD"]


def _check_range(name: str, value: Any, low: float, high: float, *, high_open: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = low <= v and (v < high if high_open else v <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}{bracket}; got {value!r}")
    return float(value)


class _ReplicaBaseline(ReplicaOptimizer, abc.ABC):
    self_reported = False

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One step of every active replica on the batch ``closure`` evaluates; returns the
        ``[R]`` losses at θ_t. ``last_loss``/``last_grad_norm`` hold them as floats."""
        loss = self._call(closure)
        grads = self._grads()
        lval, gsq = self._to_host(loss, self._sq_total(grads))
        self._freeze_nonfinite(lval, gsq)
        self.last_loss, self.last_grad_norm = lval, [math.sqrt(v) if v >= 0 else v for v in gsq]
        self.stepped = list(self.active)
        if any(self.active):
            self._zero_inactive(grads)
            self._update(grads)
            for r in range(self.size):
                self.steps[r] += self.active[r]
        return loss

    @abc.abstractmethod
    def _update(self, grads: list[Tensor]) -> None:
        ...

    def _lr_column(self, like: Tensor, values: list[float]) -> Tensor:
        return self._column(self._vector(values, like), like)


class ReplicaSGD(_ReplicaBaseline):
    """R replicas of ``torch.optim.SGD(momentum=μ > 0, dampening=d, weight_decay=λ)``."""

    name = "ReplicaSGD"

    def __init__(self, params: Sequence[Tensor], *, lr: Any, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr=lr)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        if self.momentum == 0.0:
            raise ValueError("momentum must be > 0: plain SGD's energy is the displacement form, which the batched "
                             "baselines do not measure; use momentum in (0, 1)")
        if nesterov:
            raise ValueError("nesterov: Nesterov SGD has no energy convention; use nesterov=False")
        self.dampening = _check_range("dampening", dampening, 0.0, 1.0)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0, 1.0, high_open=False)
        self.buffers: list[Tensor] | None = None

    def _update(self, grads: list[Tensor]) -> None:
        active = list(self.active)
        if self.weight_decay:
            grads = [g.add(p, alpha=self.weight_decay) for g, p in zip(grads, self.params)]
            self._zero_inactive(grads)
        if self.buffers is None:
            self.buffers = [g.clone() for g in grads]
        else:
            keep = self._vector([self.momentum if a else 1.0 for a in active], grads[0])
            add = self._vector([1.0 - self.dampening if a else 0.0 for a in active], grads[0])
            for b, g in zip(self.buffers, grads):
                b.mul_(self._column(keep, b)).addcmul_(g, self._column(add, b))
        lr = self._vector([lr if a else 0.0 for lr, a in zip(self.lr, active)], grads[0])
        for p, b in zip(self.params, self.buffers):
            p.addcmul_(b, self._column(lr, p), value=-1)

    def kinetic_energy(self) -> list[float]:
        """``½ · lr_r/(1−d) · ‖b[r]‖²`` (0 before the first step)."""
        if self.buffers is None:
            return [0.0] * self.size
        sq = self._to_host(self._sq_total(self.buffers))[0]
        return [0.5 * lr / (1.0 - self.dampening) * s for lr, s in zip(self.lr, sq)]

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.name, "buffers": None if self.buffers is None else [b.clone() for b in self.buffers],
                **self._scalars()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != self.name:
            raise ValueError(f"state_dict: saved by {state.get('type')!r}; this is {self.name!r}")
        saved = state["buffers"]
        if saved is not None:
            self._check_buffers(saved, self.params, "buffers")
            saved = [b.clone() for b in saved]
        self.buffers = saved
        self._load_scalars(state)


class ReplicaAdamW(_ReplicaBaseline):
    """R replicas of ``torch.optim.AdamW(betas, eps, weight_decay)`` (no AMSGrad)."""

    name = "ReplicaAdamW"

    def __init__(self, params: Sequence[Tensor], *, lr: Any, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr=lr)
        if amsgrad:
            raise ValueError("amsgrad: AMSGrad is not batched; use amsgrad=False or run the replicas one by one")
        if len(tuple(betas)) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1); got {betas!r}")
        self.beta1 = _check_range("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_range("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_range("eps", eps, 0.0, 1.0, high_open=False)
        if self.eps == 0.0:
            raise ValueError("eps must be a number in (0, 1]; got 0")
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0, 1.0, high_open=False)
        self.exp_avg = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, requires_grad=False) for p in self.params]

    def _update(self, grads: list[Tensor]) -> None:
        like = grads[0]
        active = list(self.active)
        t = [s + 1 for s in self.steps]
        decay = self._vector([1.0 - lr * self.weight_decay if a else 1.0 for lr, a in zip(self.lr, active)], like)
        b1 = self._vector([self.beta1 if a else 1.0 for a in active], like)
        b2 = self._vector([self.beta2 if a else 1.0 for a in active], like)
        step = self._vector([lr / (1.0 - self.beta1 ** k) if a else 0.0 for lr, k, a in zip(self.lr, t, active)],
                            like)
        bc2 = self._vector([math.sqrt(1.0 - self.beta2 ** k) if a else 1.0 for k, a in zip(t, active)], like)
        col = self._column
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            p.mul_(col(decay, p))
            m.mul_(col(b1, p)).addcmul_(g, 1 - col(b1, p))
            v.mul_(col(b2, p)).addcmul_(g * g, 1 - col(b2, p))
            denom = (v.sqrt() / col(bc2, p)).add_(self.eps)
            p.addcmul_(m / denom, col(step, p), value=-1)

    def kinetic_energy(self) -> list[float]:
        """``½ · lr_r/(1−β1) · Σ m̂² / (√v̂ + ε)`` with torch's bias corrections (0 before a step)."""
        out = []
        terms = torch.zeros(self.size, dtype=torch.float64, device=self.params[0].device)
        steps = torch.tensor([max(s, 1) for s in self.steps], dtype=torch.float64, device=terms.device)
        c1 = (1.0 - self.beta1 ** steps)
        c2 = (1.0 - self.beta2 ** steps)
        for m, v in zip(self.exp_avg, self.exp_avg_sq):
            shape = (-1, *([1] * (m.dim() - 1)))
            m_hat = m.double() / c1.view(shape)
            v_hat = v.double() / c2.view(shape)
            terms += (m_hat.square() / (v_hat.sqrt() + self.eps)).reshape(self.size, -1).sum(1)
        values = self._to_host(terms)[0]
        for r, (lr, value) in enumerate(zip(self.lr, values)):
            out.append(0.0 if self.steps[r] == 0 else 0.5 * lr / (1.0 - self.beta1) * value)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.name, "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq], **self._scalars()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("type") != self.name:
            raise ValueError(f"state_dict: saved by {state.get('type')!r}; this is {self.name!r}")
        self._check_buffers(state["exp_avg"], self.exp_avg, "exp_avg")
        self._check_buffers(state["exp_avg_sq"], self.exp_avg_sq, "exp_avg_sq")
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
            dst.copy_(src)
        self._load_scalars(state)

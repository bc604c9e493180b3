r"""What every batched optimiser shares: R replicas stacked as ``[R, *shape]`` tensors.

A replica optimiser steps R independent copies of one model at once. Every parameter is one
stacked tensor whose slice ``r`` belongs to replica r; every per-replica number (step size, energy
reference H0, the cap's decision, the non-finite check) is a length-R vector, and each update is
the unbatched optimiser's formula with its scalars replaced by per-replica columns::

    p[r] ← a_r · p[r] − c_r · g[r]        (one kernel over all replicas)

**Frozen replicas.** A replica whose loss or gradient is not finite is *frozen*: it is recorded as
diverged at that step (:attr:`ReplicaOptimizer.diverged`, with the message the unbatched optimiser
would raise), its state is left exactly as it was before the step, and every later step leaves it
unchanged (its gradients are zeroed and its coefficients are the identity, ``a = 1, c = 0``) while
the other replicas go on. :meth:`ReplicaOptimizer.freeze` freezes a replica from outside (the lab's
"loss exploded" rule).

Closures: ``closure()`` zeroes the stacked gradients, evaluates the ``[R]`` vector of per-replica
losses on the current batches, back-propagates their sum (slice r of each gradient is then
replica r's own gradient) and returns the vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import NonFiniteError

__all__ = ["ReplicaOptimizer"]


def _as_step_sizes(name: str, value: Any, size: int) -> list[float]:
    values = [value] * size if isinstance(value, (int, float)) and not isinstance(value, bool) else list(value)
    if len(values) != size:
        raise ValueError(f"{name}: one value per replica is needed ({size}); got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"{name}[{i}] must be a finite number > 0; got {v!r}")
        out.append(float(v))
    return out


class ReplicaOptimizer:
    """Base class of the batched optimisers (see the module docstring).

    Args:
        params: the stacked parameters ``[R, *shape]`` (e.g. :meth:`ReplicaStack.parameters`).
        lr: the step size of each replica (a sequence of R positive numbers, or one for all).
    """

    name = "replica optimiser"

    def __init__(self, params: Sequence[Tensor], *, lr: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("params: a replica optimiser needs at least one stacked parameter")
        self.size = int(self.params[0].shape[0])
        for i, p in enumerate(self.params):
            if p.dim() == 0 or p.shape[0] != self.size:
                raise ValueError(f"params[{i}]: every parameter must be stacked [R, *shape] with R = {self.size}; "
                                 f"got shape {tuple(p.shape)}")
        self.lr = _as_step_sizes("lr", lr, self.size)
        self.steps = [0] * self.size
        self.active = [True] * self.size
        self.diverged: list[tuple[int, str] | None] = [None] * self.size

    # ------------------------------------------------------------------ replicas
    def freeze(self, replica: int, reason: str) -> None:
        """Stop replica ``replica`` here: it is recorded as diverged at its current step."""
        if self.active[replica]:
            self.active[replica] = False
            self.diverged[replica] = (self.steps[replica], reason)

    def _freeze_nonfinite(self, loss: list[float], grad_sq: list[float]) -> list[int]:
        """Freeze every active replica whose loss or gradient norm is not finite (the unbatched
        optimisers raise :class:`~hamopt.NonFiniteError` there, before changing anything)."""
        frozen = []
        for r in range(self.size):
            if not self.active[r]:
                continue
            if not math.isfinite(loss[r]):
                self.freeze(r, str(NonFiniteError("loss", self.steps[r], loss[r])))
            elif not math.isfinite(grad_sq[r]):
                value = math.sqrt(grad_sq[r]) if grad_sq[r] >= 0 else grad_sq[r]
                self.freeze(r, str(NonFiniteError("gradient", self.steps[r], value,
                                                  "the global gradient norm is not finite")))
            else:
                continue
            frozen.append(r)
        return frozen

    # ------------------------------------------------------------------ per-replica columns
    def _vector(self, values: Sequence[float], like: Tensor) -> Tensor:
        return torch.tensor(list(values), dtype=like.dtype, device=like.device)

    @staticmethod
    def _column(vector: Tensor, like: Tensor) -> Tensor:
        """``vector`` ([R]) shaped to broadcast over ``like`` ([R, *shape])."""
        return vector.view(-1, *([1] * (like.dim() - 1)))

    def _active_mask(self, like: Tensor) -> Tensor:
        return torch.tensor(self.active, device=like.device)

    def _zero_inactive(self, tensors: list[Tensor]) -> None:
        """Zero the slices of frozen replicas (their gradients may be NaN)."""
        if all(self.active):
            return
        mask = self._active_mask(tensors[0])
        for t in tensors:
            t.masked_fill_(~self._column(mask, t), 0)

    # ------------------------------------------------------------------ reductions
    @staticmethod
    def _sq_total(tensors: Sequence[Tensor]) -> Tensor:
        """``[R]`` float64: ``Σ_i ‖x_i[r]‖²`` (one gather and one reduction for all tensors)."""
        rows = torch.cat([t.reshape(t.shape[0], -1) for t in tensors], 1) if len(tensors) > 1 else \
            tensors[0].reshape(tensors[0].shape[0], -1)
        return torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64).square()

    @staticmethod
    def _to_host(*values: Tensor) -> list[list[float]]:
        """One host transfer of several ``[R]`` vectors."""
        flat = torch.cat([v.detach().to(torch.float64).reshape(-1) for v in values]).tolist()
        n = values[0].numel()
        return [flat[i * n:(i + 1) * n] for i in range(len(values))]

    # ------------------------------------------------------------------ closures
    def _call(self, closure: Callable[[], Tensor]) -> Tensor:
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor) or loss.shape != (self.size,):
            got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"{self.name}: the closure must return the [R] vector of per-replica losses with "
                             f"R = {self.size}; got {got}")
        missing = sum(p.grad is None for p in self.params)
        if missing:
            raise RuntimeError(f"{self.name}: the closure left {missing} stacked parameter(s) without a gradient "
                               "(did it call backward() on the sum of the losses?)")
        return loss.detach()

    def _grads(self) -> list[Tensor]:
        return [p.grad for p in self.params]  # type: ignore[misc]

    # ------------------------------------------------------------------ state
    def _scalars(self) -> dict[str, Any]:
        return {"lr": list(self.lr), "steps": list(self.steps), "active": list(self.active),
                "diverged": [None if d is None else list(d) for d in self.diverged]}

    def _load_scalars(self, state: dict[str, Any]) -> None:
        self.lr = _as_step_sizes("lr", state["lr"], self.size)
        self.steps = [int(s) for s in state["steps"]]
        self.active = [bool(a) for a in state["active"]]
        self.diverged = [None if d is None else (int(d[0]), str(d[1])) for d in state["diverged"]]

    def _check_buffers(self, saved: list[Tensor], own: list[Tensor], key: str) -> None:
        if len(saved) != len(own) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(saved, own)):
            raise ValueError(f"state_dict[{key!r}]: saved for other stacked shapes "
                             f"({[tuple(a.shape) for a in saved]}) than this optimiser's "
                             f"({[tuple(b.shape) for b in own]})")

r"""The stability monitor inside a training loop: :func:`~hamopt.diagnostics.stability.sharpness`
every ``every`` steps, kept as per-step series (None where not measured).

>>> monitor = SharpnessMonitor(model, optimizer, loss_fn, every=10)   # doctest: +SKIP
>>> for t in range(T):
...     monitor.before_step(t)          # measures at t = 0, 10, 20, ...
...     optimizer.step(closure)
>>> monitor.columns(T)                  # {"lambda_max": [...], "threshold": [...], "sharpness_ratio": [...]}

A measurement at step ``t`` is of the state the step starts from (``θ_t`` and the optimiser's
state after t steps), so it sits in the same row as the loss ``L(θ_t)``. It does not change the
run: gradients, optimiser state and the module's buffers (normalisation statistics) are as they
were, so a run with the monitor on trains exactly as without it. A measurement that cannot be made
is recorded as None: before the first step of an optimiser whose preconditioner lives in its state
(Adam), and once the loss or a Hessian-vector product is no longer finite (a diverging run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .stability import Sharpness, sharpness

__all__ = ["SharpnessMonitor"]


class SharpnessMonitor:
    """Measure the preconditioned sharpness of ``model`` under ``optimizer`` every ``every`` steps.

    Args:
        model: the module whose trainable parameters are measured.
        optimizer: gives the preconditioner and the threshold (its family record).
        loss_fn: ``() -> scalar loss`` on the fixed measurement batch.
        every: measure before steps ``0, every, 2·every, ...``; >= 1.
        iters, tol, seed: as in :func:`~hamopt.diagnostics.stability.sharpness`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        loss_fn: Callable[[], Tensor],
        *,
        every: int,
        iters: int = 50,
        tol: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.every, self.iters, self.tol, self.seed = every, iters, tol, seed
        self.measured: dict[int, Sharpness | None] = {}

    def before_step(self, t: int) -> Sharpness | None:
        """Measure now if ``t`` is a multiple of ``every`` (else nothing; returns the result)."""
        if t % self.every:
            return None
        buffers = [b.detach().clone() for b in self.model.buffers()]
        try:
            res = sharpness(self.loss_fn, [p for p in self.model.parameters() if p.requires_grad],
                            optimizer=self.optimizer, iters=self.iters, tol=self.tol, seed=self.seed)
        except FloatingPointError:
            res = None  # the run is diverging: no finite curvature to report
        except ValueError:
            if self.optimizer.state:
                raise
            res = None  # the preconditioner lives in the optimiser's state, which is still empty
        finally:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
        self.measured[t] = res
        return res

    def columns(self, steps: int) -> dict[str, list[Any]]:
        """``lambda_max``, ``threshold`` and ``sharpness_ratio`` per step (None where not measured;
        a ratio of ``inf``, undamped Euler's, is stored as None too)."""
        out: dict[str, list[Any]] = {"lambda_max": [], "threshold": [], "sharpness_ratio": []}
        for t in range(steps):
            res = self.measured.get(t)
            out["lambda_max"].append(None if res is None else res.lambda_max)
            out["threshold"].append(None if res is None else res.threshold)
            ratio = None if res is None else res.ratio
            out["sharpness_ratio"].append(ratio if ratio is not None and math.isfinite(ratio) else None)
        return out

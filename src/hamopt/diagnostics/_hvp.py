r"""Matrix-free ``S H S`` products and the two estimators built on them: Lanczos and Hutchinson.

``H = ∇²L(θ)`` over a list of parameter tensors and ``S = diag(√P⁻¹)``. The eigenvalues of
``S H S`` are those of ``P⁻¹H`` (similar matrices: ``P⁻¹H = S (S H S) S⁻¹``) and its trace is
``tr(P⁻¹H)``, but ``S H S`` is symmetric, so symmetric Lanczos applies.

A product is one double back-propagation (``torch.autograd.grad`` of the gradient with
``grad_outputs = S v``) through a graph built once per estimate. Vectors are flat float64 on the
parameters' device; each product casts to the parameters' dtype and back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["ScaledHessian", "hutchinson", "lanczos_top"]


class ScaledHessian:
    """The operator ``v ↦ S H S v`` at the current parameters on the batch ``loss_fn`` evaluates.

    Args:
        loss_fn: ``() -> scalar loss``; called once here (the graph is kept for the products).
        params: the tensors to differentiate (all require grad).
        inverse_preconditioner: per tensor ``P⁻¹``, a number or a tensor of its shape, or None
            for ``P = I``; every value must be finite and > 0.
    """

    def __init__(
        self,
        loss_fn: Callable[[], Tensor],
        params: Sequence[Tensor],
        inverse_preconditioner: Sequence[Tensor | float] | None = None,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("params is empty: there is no parameter to measure the Hessian over")
        self.device = self.params[0].device
        self.roots = [self._root(v, p, i) for i, (v, p) in enumerate(
            zip(inverse_preconditioner or [1.0] * len(self.params), self.params))]
        loss = loss_fn()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"the loss is not finite ({float(loss.detach())}): no Hessian to measure")
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # a gradient that is None or constant has a zero Hessian block
        self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._live]
        self.sizes = [p.numel() for p in self.params]
        self.size = sum(self.sizes)
        self.products = 0

    def _root(self, value: Tensor | float, p: Tensor, index: int) -> Tensor | float:
        if isinstance(value, Tensor):
            if value.shape != p.shape and value.numel() != 1:
                raise ValueError(f"inverse preconditioner of parameter {index} has shape {tuple(value.shape)}, "
                                 f"the parameter {tuple(p.shape)}")
            value = value.to(device=p.device, dtype=torch.float64)
            if not (torch.isfinite(value).all() and (value > 0).all()):
                raise ValueError(f"inverse preconditioner of parameter {index} must be finite and > 0")
            return value.sqrt().reshape(-1) if value.numel() > 1 else float(value.sqrt())
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"inverse preconditioner of parameter {index} must be finite and > 0, got {value!r}")
        return math.sqrt(value)

    def __call__(self, v: Tensor) -> Tensor:
        """``S H S v`` for a flat float64 vector ``v``."""
        pieces = list(torch.split(v, self.sizes))
        scaled = [r * piece for r, piece in zip(self.roots, pieces)]
        out = torch.zeros_like(v)
        if self._live:
            outputs = [scaled[i].reshape(self.params[i].shape).to(self.params[i].dtype) for i in self._live]
            hv = torch.autograd.grad(self._grads, self.params, grad_outputs=outputs, retain_graph=True,
                                     allow_unused=True)
            parts = [torch.zeros(n, dtype=torch.float64, device=v.device) if h is None
                     else h.detach().reshape(-1).to(torch.float64) for h, n in zip(hv, self.sizes)]
            out = torch.cat([r * part for r, part in zip(self.roots, parts)])
        self.products += 1
        if not torch.isfinite(out).all():
            raise FloatingPointError("a Hessian-vector product is not finite")
        return out


def _gaussian(size: int, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(size, generator=gen, dtype=torch.float64).to(device)


def lanczos_top(op: ScaledHessian, *, iters: int, tol: float, seed: int) -> tuple[float, int, bool]:
    r"""The largest (algebraic) eigenvalue of ``op`` by Lanczos with full re-orthogonalisation.

    Step ``j`` adds ``q_j`` to the Krylov basis and extends the tridiagonal ``T_j``; its top Ritz
    pair ``(θ, y)`` has residual ``‖A Q y − θ Q y‖ = β_j |y_j|``. It stops when that residual is
    at most ``tol · |θ|`` (the eigenvalue error is then of order ``tol²·|θ|·|θ|/gap``), when the
    Krylov space is invariant (``β_j ≈ 0``: exact), or after ``iters`` products.

    Returns ``(θ, products, converged)``.
    """
    v = _gaussian(op.size, seed, op.device)
    v = v / v.norm()
    basis: list[Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    theta, beta = 0.0, 0.0
    for j in range(min(iters, op.size)):
        basis.append(v)
        w = op(v)
        alpha = float(torch.dot(v, w))
        alphas.append(alpha)
        w = w - alpha * v - (beta * basis[-2] if j > 0 else 0.0)
        stacked = torch.stack(basis)
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tri += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(tri)
        theta = float(evals[-1])
        scale = max(abs(float(evals[0])), abs(theta), 1e-300)
        if beta <= 1e-12 * scale:  # invariant subspace: the Ritz values are eigenvalues
            return theta, j + 1, True
        if beta * abs(float(evecs[-1, -1])) <= tol * max(abs(theta), 1e-300):
            return theta, j + 1, True
        betas.append(beta)
        v = w / beta
    converged = len(alphas) == op.size  # a full basis spans the space
    return theta, len(alphas), converged


def hutchinson(op: ScaledHessian, *, samples: int, seed: int) -> list[float]:
    r"""``zᵀ A z`` for ``samples`` Rademacher probes ``z`` (entries ±1, so ``E[zᵀAz] = tr A``)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    values = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (op.size,), generator=gen, dtype=torch.float64) * 2.0 - 1.0).to(op.device)
        values.append(float(torch.dot(z, op(z))))
    return values

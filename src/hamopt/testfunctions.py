r"""Smooth optimisation test functions in any dimension, as torch modules.

Each class is an :class:`torch.nn.Module` holding one parameter vector ``x`` of shape ``(dim,)``;
``forward()`` returns the scalar loss at ``x``. ``value(points)`` evaluates the same function on a
batch of points of shape ``(..., dim)`` (no parameter involved), e.g. to draw contour plots.

* :class:`Quadratic`: ``½ Σ_i a_i (Qx)_i²``, ``a_i`` log-spaced in [1, condition];
  minimiser 0; default start ``x_i = 1``.
* :class:`Rosenbrock`: ``Σ_{i<d} 100 (x_{i+1} − x_i²)² + (1 − x_i)²``; minimiser (1, …, 1);
  default start (−1.2, 1, −1.2, 1, …).
* :class:`Ackley`: ``−20 e^{−0.2 ‖x‖/√d} − e^{mean cos 2πx} + 20 + e``; minimiser 0; default
  start ``x_i = 3 cos i`` (i = 1…d; not symmetric, so the dynamics do not stay on a diagonal).
* :class:`Zakharov`: ``Σ x_i² + S² + S⁴`` with ``S = Σ_i ½ i x_i`` (i = 1…d); minimiser 0; default
  start ``x_i = (−1)^i / 2``.

Every minimum value is 0 (:attr:`TestFunction.minimum`). ``Q`` is the identity unless
``Quadratic(seed=...)`` asks for a random rotation. Ackley's ``‖x‖`` is written with
:func:`torch.linalg.vector_norm`, whose gradient at 0 is 0, so the minimiser has a finite gradient.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "FUNCTIONS",
    "Ackley",
    "Quadratic",
    "Rosenbrock",
    "TestFunction",
    "Zakharov",
    "ackley",
    "make",
    "quadratic",
    "rosenbrock",
    "zakharov",
]


# ---------------------------------------------------------------------- pure functions
def _check_points(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: points must be a torch.Tensor of shape (..., dim), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name}: points must have shape (..., dim) with dim >= 1, got {tuple(x.shape)}")


def quadratic(x: Tensor, coeffs: Tensor, rotation: Tensor | None = None) -> Tensor:
    """``½ Σ_i a_i (Qx)_i²`` over the last axis of ``x`` (``Q`` = ``rotation``, identity if None)."""
    _check_points(x, "quadratic")
    y = x if rotation is None else x @ rotation.T
    return 0.5 * (coeffs * y.square()).sum(-1)


def rosenbrock(x: Tensor) -> Tensor:
    """``Σ_{i<d} 100 (x_{i+1} − x_i²)² + (1 − x_i)²`` over the last axis (needs dim >= 2)."""
    _check_points(x, "rosenbrock")
    if x.shape[-1] < 2:
        raise ValueError(f"rosenbrock: dim must be >= 2, got {x.shape[-1]}")
    a, b = x[..., :-1], x[..., 1:]
    return (100.0 * (b - a.square()).square() + (1.0 - a).square()).sum(-1)


def ackley(x: Tensor) -> Tensor:
    """``−20 exp(−0.2 ‖x‖/√d) − exp(mean_i cos 2π x_i) + 20 + e`` over the last axis."""
    _check_points(x, "ackley")
    d = x.shape[-1]
    rms = torch.linalg.vector_norm(x, dim=-1) / math.sqrt(d)
    return -20.0 * torch.exp(-0.2 * rms) - torch.exp(torch.cos(2.0 * math.pi * x).mean(-1)) + 20.0 + math.e


def zakharov(x: Tensor) -> Tensor:
    """``Σ x_i² + S² + S⁴`` with ``S = Σ_i ½ i x_i`` (i = 1…d) over the last axis."""
    _check_points(x, "zakharov")
    i = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    s = (0.5 * i * x).sum(-1)
    return x.square().sum(-1) + s.square() + s.pow(4)


# ---------------------------------------------------------------------- modules
def _check_dim(dim: Any, low: int, name: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name}: dim must be an int >= {low}, got {dim!r}")
    if dim < low:
        raise ValueError(f"{name}: dim must be an int >= {low}, got {dim}")
    return dim


class TestFunction(nn.Module, abc.ABC):
    """A test function with one parameter ``x`` of shape ``(dim,)``.

    Attributes:
        dim: the dimension.
        minimum: the known minimum value (0 for every function here).
        x: the parameter, initialised at :meth:`default_start` (or ``start``).
    """

    __test__ = False  # not a pytest test class
    name = "function"
    minimum = 0.0

    def __init__(self, dim: int, *, start: Tensor | None = None, dtype: torch.dtype = torch.float32,
                 low: int = 1) -> None:
        super().__init__()
        self.dim = _check_dim(dim, low, type(self).__name__)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"{type(self).__name__}: dtype must be a floating-point torch.dtype, got {dtype!r}")
        x0 = self.default_start(dim, dtype) if start is None else torch.as_tensor(start, dtype=dtype).clone()
        if x0.shape != (dim,):
            raise ValueError(f"{type(self).__name__}: start must have shape ({dim},), got {tuple(x0.shape)}")
        self.register_buffer("start", x0.clone())
        self.x = nn.Parameter(x0)

    @staticmethod
    @abc.abstractmethod
    def default_start(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The documented start point of dimension ``dim``."""

    def minimizer(self) -> Tensor:
        """The point where :attr:`minimum` is reached."""
        return torch.zeros(self.dim, dtype=self.x.dtype)

    @abc.abstractmethod
    def value(self, points: Tensor) -> Tensor:
        """The function on a batch of points ``(..., dim)`` → ``(...)``."""

    def forward(self) -> Tensor:
        return self.value(self.x)

    @torch.no_grad()
    def reset(self) -> None:
        """Put ``x`` back at its start point."""
        self.x.copy_(self.start)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Quadratic(TestFunction):
    """``½ Σ_i a_i (Qx)_i²`` with ``a_i = condition^{i/(d−1)}`` (log-spaced in [1, condition]).

    Args:
        dim: dimension >= 1.
        condition: ratio of the largest to the smallest curvature, >= 1.
        seed: None keeps the axes (``Q = I``); an int draws a random rotation ``Q`` from it.
        start: start point (default ``x_i = 1``).
        dtype: floating-point dtype of ``x``.
    """

    name = "quadratic"

    def __init__(self, dim: int, *, condition: float = 10.0, seed: int | None = None,
                 start: Tensor | None = None, dtype: torch.dtype = torch.float32) -> None:
        if isinstance(condition, bool) or not isinstance(condition, (int, float)) or not (
            math.isfinite(condition) and condition >= 1.0
        ):
            raise ValueError(f"Quadratic: condition must be a finite number >= 1, got {condition!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Quadratic: seed must be None or an int, got {seed!r}")
        super().__init__(dim, start=start, dtype=dtype)
        self.condition = float(condition)
        exps = torch.linspace(0.0, 1.0, dim, dtype=torch.float64) if dim > 1 else torch.zeros(1, dtype=torch.float64)
        self.register_buffer("coeffs", (self.condition**exps).to(dtype))
        if seed is None:
            self.rotation = None
        else:
            g = torch.Generator().manual_seed(seed)
            q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
            q = q * torch.sign(torch.diagonal(r))
            self.register_buffer("rotation", q.to(dtype))

    @staticmethod
    def default_start(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.ones(dim, dtype=dtype)

    def value(self, points: Tensor) -> Tensor:
        return quadratic(points, self.coeffs.to(points.dtype),
                         None if self.rotation is None else self.rotation.to(points.dtype))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, condition={self.condition:g}, rotated={self.rotation is not None}"


class Rosenbrock(TestFunction):
    """``Σ_{i<d} 100 (x_{i+1} − x_i²)² + (1 − x_i)²``; minimum 0 at ``(1, …, 1)``; dim >= 2.

    Default start: the classic ``(−1.2, 1, −1.2, 1, …)``.
    """

    name = "rosenbrock"

    def __init__(self, dim: int, *, start: Tensor | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(dim, start=start, dtype=dtype, low=2)

    @staticmethod
    def default_start(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        x = torch.ones(dim, dtype=dtype)
        x[0::2] = -1.2
        return x

    def minimizer(self) -> Tensor:
        return torch.ones(self.dim, dtype=self.x.dtype)

    def value(self, points: Tensor) -> Tensor:
        return rosenbrock(points)


class Ackley(TestFunction):
    """``−20 exp(−0.2 ‖x‖/√d) − exp(mean cos 2πx) + 20 + e``; minimum 0 at 0; many local minima
    near the integer lattice. Default start ``x_i = 3 cos i`` (i = 1…d): spread over [−3, 3] and
    not on a symmetry axis of the function."""

    name = "ackley"

    @staticmethod
    def default_start(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        i = torch.arange(1, dim + 1, dtype=torch.float64)
        return (3.0 * torch.cos(i)).to(dtype)

    def value(self, points: Tensor) -> Tensor:
        return ackley(points)


class Zakharov(TestFunction):
    """``Σ x_i² + S² + S⁴`` with ``S = Σ_i ½ i x_i``; minimum 0 at 0. Default start
    ``x_i = (−1)^i / 2`` (i = 1…d), which keeps ``S`` of order d/8."""

    name = "zakharov"

    @staticmethod
    def default_start(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        i = torch.arange(1, dim + 1)
        return (0.5 * (-1.0) ** i).to(dtype)

    def value(self, points: Tensor) -> Tensor:
        return zakharov(points)


FUNCTIONS: dict[str, type[TestFunction]] = {
    "quadratic": Quadratic,
    "rosenbrock": Rosenbrock,
    "ackley": Ackley,
    "zakharov": Zakharov,
}


def make(name: str, dim: int, **kwargs: Any) -> TestFunction:
    """Build a test function by name (``"quadratic"``, ``"rosenbrock"``, ``"ackley"``, ``"zakharov"``)."""
    cls = FUNCTIONS.get(name)
    if cls is None:
        raise ValueError(f"name must be one of {', '.join(map(repr, FUNCTIONS))}; got {name!r}")
    return cls(dim, **kwargs)

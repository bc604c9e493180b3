r"""Two-dimensional loss landscapes for the optimiser playground.

Each landscape is a :class:`torch.nn.Module` holding one parameter ``theta`` of shape ``(2,)``
(float64) and a pure, batched ``value(x)`` over points ``x`` of shape ``(..., 2)`` (for contour
grids); the quadratic, Rosenbrock and Ackley values come from :mod:`hamopt.testfunctions`.
``loss(batch)`` evaluates the landscape at ``theta`` on one "mini-batch"; deterministic
landscapes ignore the batch (``sample_batch`` returns None).

=====================  ==============================================================  =============
name                   L(x, y)                                                         minima
=====================  ==============================================================  =============
``quadratic``          ½ (a₁ x² + a₂ y²), a = (1, 10)                                   (0, 0)
``rosenbrock``         (1 − x)² + 100 (y − x²)²                                         (1, 1)
``double_well``        (x² − 1)² + ½ y²                                                 (±1, 0)
``himmelblau``         (x² + y − 11)² + (x + y² − 7)²                                   four, L = 0
``ackley``             −20 e^{−0.2‖θ‖/√2} − e^{mean cos 2πθ} + 20 + e                   (0, 0)
``noisy_quadratic``    ½ Σ a_i (θ_i − ξ_i)², ξ ~ N(0, σ² I) drawn afresh every step     ξ (moves)
=====================  ==============================================================  =============

The noisy quadratic mimics mini-batch noise: every step sees a different loss L_{B_t} whose
minimum is shifted by ξ_t (a seeded ``torch.Generator`` draws ξ, so runs are reproducible).
The same-batch energy change ΔH^int and the cross-batch change ΔH^traj then differ by the
resampling term ``δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})`` (spec §6). Its contour plot shows
the noise-free quadratic ``E_ξ L_B − ½ σ² Σ a_i``.

``value_and_gradient(x, y)`` gives ``L`` and its analytic gradient ``∇L`` at one point in plain
floats (no autograd): the playground's closure uses it to hand the optimisers ``θ.grad`` at a
fraction of autograd's per-call cost; a test checks it against autograd of ``value`` at many
points of every landscape. ``loss_and_gradient(batch)`` is the same at ``theta`` on a batch.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import testfunctions as tf

__all__ = [
    "LANDSCAPES",
    "Ackley",
    "AnisotropicQuadratic",
    "DoubleWell",
    "Himmelblau",
    "Landscape",
    "LandscapeInfo",
    "NoisyQuadratic",
    "Rosenbrock",
    "make_landscape",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]


class Landscape(nn.Module, abc.ABC):
    """A loss ``L: R² → R`` with one trainable point ``theta`` (float64, shape ``(2,)``).

    Subclasses define :meth:`value` and the class attributes ``title``, ``bounds`` (the contour
    window), ``default_start`` and ``log_contours`` (draw levels of ``log10(1 + L)``).
    """

    title: str = "landscape"
    bounds: Bounds = ((-3.0, 3.0), (-3.0, 3.0))
    default_start: tuple[float, float] = (1.0, 1.0)
    log_contours: bool = False
    noisy: bool = False

    def __init__(self, start: tuple[float, float] | None = None) -> None:
        super().__init__()
        x0 = self.default_start if start is None else start
        self.theta = nn.Parameter(torch.tensor([float(x0[0]), float(x0[1])], dtype=torch.float64))

    @abc.abstractmethod
    def value(self, x: Tensor) -> Tensor:
        """Noise-free ``L(x)`` for points ``x`` of shape ``(..., 2)``; returns shape ``(...)``."""

    @abc.abstractmethod
    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        """``(L, ∂L/∂x, ∂L/∂y)`` of the noise-free landscape at one point, in float64 arithmetic
        (the analytic form of :meth:`value` and its gradient)."""

    def sample_batch(self) -> Tensor | None:
        """Draw the next mini-batch (None: the landscape is deterministic)."""
        return None

    def batch_shift(self, batch: Tensor | None) -> tuple[float, float]:
        """How far ``batch`` moves the loss: ``L_B(θ) = L(θ − shift)`` ((0, 0) here)."""
        return (0.0, 0.0)

    def loss_and_gradient(
        self, batch: Tensor | None = None, point: tuple[float, float] | None = None
    ) -> tuple[float, float, float]:
        """``(L_B, ∂L_B/∂x, ∂L_B/∂y)`` at ``point`` (default ``theta``) on ``batch``, no autograd."""
        x, y = self.theta.detach().tolist() if point is None else point
        sx, sy = self.batch_shift(batch)
        return self.value_and_gradient(x - sx, y - sy)

    def loss(self, batch: Tensor | None = None) -> Tensor:
        """``L_B(theta)`` on ``batch`` (a scalar tensor with autograd to ``theta``)."""
        return self.value(self.theta)

    def forward(self, batch: Tensor | None = None) -> Tensor:
        return self.loss(batch)


class AnisotropicQuadratic(Landscape):
    """``L = ½ (a₁ x² + a₂ y²)``; curvatures ``a`` (default (1, 10), condition number 10).

    Leapfrog with unit mass is stable for ``dt < 2 / sqrt(max a)``.
    """

    title = "anisotropic quadratic ½(x² + 10y²)"
    bounds = ((-3.0, 3.0), (-2.0, 2.0))
    default_start = (2.5, 1.2)

    def __init__(
        self,
        start: tuple[float, float] | None = None,
        curvatures: tuple[float, float] = (1.0, 10.0),
    ) -> None:
        super().__init__(start)
        a = tuple(float(c) for c in curvatures)
        if len(a) != 2 or not all(math.isfinite(c) and c > 0 for c in a):
            raise ValueError(f"curvatures must be two finite numbers > 0, got {curvatures!r}")
        self.register_buffer("curvatures", torch.tensor(a, dtype=torch.float64))
        self._a = a

    def value(self, x: Tensor) -> Tensor:
        return tf.quadratic(x, self.curvatures.to(x.dtype))

    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        a1, a2 = self._a
        gx, gy = a1 * x, a2 * y
        return 0.5 * (a1 * (x * x) + a2 * (y * y)), gx, gy


class Rosenbrock(Landscape):
    """``L = (1 − x)² + 100 (y − x²)²``: a curved, stiff valley with its minimum at (1, 1)."""

    title = "Rosenbrock (1−x)² + 100(y−x²)²"
    bounds = ((-2.0, 2.0), (-1.0, 3.0))
    default_start = (-1.2, 1.0)
    log_contours = True

    def value(self, x: Tensor) -> Tensor:
        return tf.rosenbrock(x)

    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        valley, off = y - x * x, 1.0 - x
        loss = 100.0 * (valley * valley) + off * off
        return loss, -400.0 * x * valley - 2.0 * off, 200.0 * valley


class DoubleWell(Landscape):
    """``L = (x² − 1)² + ½ y²``: two minima at (±1, 0) separated by a barrier of height 1."""

    title = "double well (x²−1)² + ½y²"
    bounds = ((-2.0, 2.0), (-1.5, 1.5))
    default_start = (-1.6, 0.8)

    def value(self, x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return (u.square() - 1.0).square() + 0.5 * v.square()

    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        well = x * x - 1.0
        return well * well + 0.5 * (y * y), 4.0 * x * well, y


class Himmelblau(Landscape):
    """``L = (x² + y − 11)² + (x + y² − 7)²``: four minima with L = 0 (one at (3, 2))."""

    title = "Himmelblau (x²+y−11)² + (x+y²−7)²"
    bounds = ((-5.0, 5.0), (-5.0, 5.0))
    default_start = (-0.5, 0.5)
    log_contours = True

    def value(self, x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return (u.square() + v - 11.0).square() + (u + v.square() - 7.0).square()

    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        a, b = x * x + y - 11.0, x + y * y - 7.0
        return a * a + b * b, 4.0 * x * a + 2.0 * b, 2.0 * a + 4.0 * y * b


class Ackley(Landscape):
    """Ackley's function in 2-D: many local minima near the integer lattice, minimum 0 at 0."""

    title = "Ackley (many local minima)"
    bounds = ((-4.0, 4.0), (-4.0, 4.0))
    default_start = (2.5, 2.2)

    def value(self, x: Tensor) -> Tensor:
        return tf.ackley(x)

    def value_and_gradient(self, x: float, y: float) -> tuple[float, float, float]:
        if not (math.isfinite(x) and math.isfinite(y)):
            return math.nan, math.nan, math.nan
        # L = −20 e^{−0.2 r/√2} − e^{c} + 20 + e with r = ‖θ‖, c = ½ (cos 2πx + cos 2πy);
        # ∂/∂x: 4/√2 · e^{−0.2 r/√2} · x/r + π sin(2πx) e^{c} (the first term is 0 at r = 0)
        r = math.hypot(x, y)
        radial = math.exp(-0.2 * r / math.sqrt(2.0))
        wave = math.exp(0.5 * (math.cos(2.0 * math.pi * x) + math.cos(2.0 * math.pi * y)))
        pull = 4.0 / math.sqrt(2.0) * radial / r if r > 0.0 else 0.0
        loss = -20.0 * radial - wave + 20.0 + math.e
        return (loss, pull * x + math.pi * math.sin(2.0 * math.pi * x) * wave,
                pull * y + math.pi * math.sin(2.0 * math.pi * y) * wave)


class NoisyQuadratic(AnisotropicQuadratic):
    """``L_B(θ) = ½ Σ a_i (θ_i − ξ_i)²`` with a fresh ``ξ ~ N(0, σ² I)`` per mini-batch.

    Args:
        start: initial point.
        noise: ``σ ≥ 0``, the spread of the per-batch minimum (σ = 0: the plain quadratic).
        seed: seed of the generator that draws ξ; the same seed gives the same batches.
    """

    title = "noisy quadratic ½Σa(θ−ξ)², ξ~N(0,σ²)"
    noisy = True

    def __init__(
        self,
        start: tuple[float, float] | None = None,
        noise: float = 0.1,
        seed: int = 0,
        curvatures: tuple[float, float] = (1.0, 10.0),
    ) -> None:
        super().__init__(start, curvatures)
        sigma = float(noise)
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
        self.noise = sigma
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample_batch(self) -> Tensor:
        return self.noise * torch.randn(2, generator=self.generator, dtype=torch.float64)

    def loss(self, batch: Tensor | None = None) -> Tensor:
        shift = torch.zeros(2, dtype=torch.float64) if batch is None else batch
        return self.value(self.theta - shift)

    def batch_shift(self, batch: Tensor | None) -> tuple[float, float]:
        """The batch's ξ (the minimum it moves the loss to)."""
        if batch is None:
            return (0.0, 0.0)
        x, y = batch.tolist()
        return float(x), float(y)


@dataclass(frozen=True)
class LandscapeInfo:
    """A registry entry: display label and a factory ``(start, noise, seed) -> Landscape``."""

    name: str
    label: str
    build: Callable[[tuple[float, float] | None, float, int], Landscape]
    cls: type[Landscape]


def _plain(cls: type[Landscape]) -> Callable[[tuple[float, float] | None, float, int], Landscape]:
    return lambda start, noise, seed: cls(start)


LANDSCAPES: dict[str, LandscapeInfo] = {
    "quadratic": LandscapeInfo(
        "quadratic", "anisotropic quadratic", _plain(AnisotropicQuadratic), AnisotropicQuadratic
    ),
    "rosenbrock": LandscapeInfo("rosenbrock", "Rosenbrock", _plain(Rosenbrock), Rosenbrock),
    "double_well": LandscapeInfo("double_well", "double well", _plain(DoubleWell), DoubleWell),
    "himmelblau": LandscapeInfo("himmelblau", "Himmelblau", _plain(Himmelblau), Himmelblau),
    "ackley": LandscapeInfo("ackley", "Ackley", _plain(Ackley), Ackley),
    "noisy_quadratic": LandscapeInfo(
        "noisy_quadratic",
        "noisy quadratic (mini-batch noise)",
        lambda start, noise, seed: NoisyQuadratic(start, noise=noise, seed=seed),
        NoisyQuadratic,
    ),
}


def make_landscape(
    name: str, start: tuple[float, float] | None = None, *, noise: float = 0.0, seed: int = 0
) -> Landscape:
    """Build the landscape ``name`` (a key of :data:`LANDSCAPES`) at ``start``."""
    info = LANDSCAPES.get(name)
    if info is None:
        raise ValueError(
            f"landscape must be one of {', '.join(map(repr, LANDSCAPES))}; got {name!r}"
        )
    return info.build(start, noise, seed)

r"""Layerwise inverse-mass rules for the Hamiltonian ``H = ½ Σ_i m_i ‖p_i‖² + L(θ)``.

Each parameter tensor ``i`` gets one scalar inverse mass ``m_i = M_i^{-1}``:

* ``"fan_in"`` (default): for weights (``ndim >= 2``)
  ``m = clip(1 / sqrt(max(1, fan_in)), [low, high])`` with ``fan_in`` the product of all
  dimensions but the first (``Linear``: ``in_features``; ``Conv2d``:
  ``in_channels / groups · kh · kw``, which is exactly ``prod(weight.shape[1:])``);
  ``m = 1`` for biases and normalisation parameters (``ndim <= 1``). The clip applies to
  weights only.
* ``"identity"``: ``m = 1`` for every tensor.
* a callable ``f(tensor) -> float``: any user rule; its value must be finite and > 0 and is
  used as is (no clip).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

from torch import Tensor

MassRule = Union[str, Callable[[Tensor], float]]

MASS_NAMES = ("fan_in", "identity")


def fan_in(tensor: Tensor) -> int:
    """Product of all dimensions but the first (1 for tensors with ``ndim <= 1``)."""
    n = 1
    for d in tensor.shape[1:]:
        n *= int(d)
    return n


def fan_in_inverse_mass(tensor: Tensor, clip: tuple[float, float] = (0.125, 8.0)) -> float:
    """``clip(1/sqrt(max(1, fan_in)), clip)`` for ``ndim >= 2``, else 1."""
    if tensor.ndim <= 1:
        return 1.0
    low, high = clip
    return min(max(1.0 / math.sqrt(max(1, fan_in(tensor))), low), high)


def inverse_mass(tensor: Tensor, rule: MassRule, clip: tuple[float, float]) -> float:
    """Evaluate ``rule`` for one parameter tensor and check the result."""
    if rule == "fan_in":
        return fan_in_inverse_mass(tensor, clip)
    if rule == "identity":
        return 1.0
    if callable(rule):
        value = rule(tensor)
        value = float(value.item() if isinstance(value, Tensor) else value)
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(
                f"mass: the callable returned {value!r} for a parameter of shape "
                f"{tuple(tensor.shape)}; an inverse mass must be finite and > 0"
            )
        return value
    raise ValueError(f"mass must be one of {', '.join(map(repr, MASS_NAMES))} or a callable; got {rule!r}")


def validate_mass(rule: object, clip: object) -> tuple[float, float]:
    """Check a mass rule name/callable and the clip pair; return the clip as floats."""
    if not (callable(rule) or rule in MASS_NAMES):
        raise ValueError(
            f"mass must be one of {', '.join(map(repr, MASS_NAMES))} or a callable tensor -> float; got {rule!r}"
        )
    try:
        low, high = (float(c) for c in clip)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"mass_clip must be a pair (low, high) with 0 < low <= high; got {clip!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high):
        raise ValueError(f"mass_clip must satisfy 0 < low <= high (both finite); got {clip!r}")
    return low, high

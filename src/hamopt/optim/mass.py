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
import numbers
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
        return _checked_value(rule(tensor), tensor, "mass")
    raise ValueError(f"mass must be one of {', '.join(map(repr, MASS_NAMES))} or a callable; got {rule!r}")


def _checked_value(value: object, tensor: Tensor, name: str) -> float:
    """A callable's return value as a finite float > 0, or an error naming ``name``."""
    shape = tuple(tensor.shape)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: the callable returned a tensor of shape {tuple(value.shape)} for a parameter of "
                             f"shape {shape}; it must return one number (the inverse mass)")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: the callable returned {type(value).__name__} {value!r} for a parameter of shape "
                        f"{shape}; it must return a real number (the inverse mass), finite and > 0")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name}: the callable returned {value!r} for a parameter of shape {shape}; an inverse mass "
                         "must be finite and > 0")
    return value


def check_mass_on(rule: Callable[[Tensor], object], tensor: Tensor, name: str, index: int) -> None:
    """Evaluate a mass callable on one parameter at construction; errors name ``name`` and the
    parameter. On a ``meta`` parameter a tensor-valued result cannot be read and is only checked
    for its size."""
    try:
        value = rule(tensor)
    except Exception as exc:
        raise ValueError(f"{name}: the callable raised {type(exc).__name__}: {exc} for parameter {index} "
                         f"(shape {tuple(tensor.shape)})") from exc
    if isinstance(value, Tensor) and value.device.type == "meta":
        if value.numel() != 1:
            raise ValueError(f"{name}: the callable returned a tensor of shape {tuple(value.shape)} for parameter "
                             f"{index}; it must return one number (the inverse mass)")
        return
    _checked_value(value, tensor, f"{name} (parameter {index})")


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

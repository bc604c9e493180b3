"""Argument checks shared by hamopt optimisers.

Every check names the argument and the allowed values, as torch.optim does, and runs in
``__init__``/``add_param_group`` before any compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


def as_float(name: str, value: Any) -> float:
    """Return ``value`` as a Python float (accepting a 1-element tensor) or raise TypeError."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor, got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` must be finite and > 0."""
    v = as_float(name, value)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` must be finite and >= 0."""
    v = as_float(name, value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return v


def check_at_least(name: str, value: Any, low: float) -> float:
    """``value`` must be finite and >= ``low``."""
    v = as_float(name, value)
    if not math.isfinite(v) or v < low:
        raise ValueError(f"{name} must be finite and >= {low:g}, got {v!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` must be one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_optional_bool(name: str, value: Any) -> None:
    """``value`` must be None, True or False."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be None, True or False, got {value!r}")


def check_params_supported(params: Iterable[Tensor], optimizer_name: str) -> None:
    """Reject sparse and complex parameters: the energies here are real, dense quantities."""
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if p.is_sparse or p.layout != torch.strided:
            raise TypeError(
                f"params: {optimizer_name} supports only dense (strided) parameters; "
                f"parameter {i} has layout {p.layout}"
            )
        if p.is_complex():
            raise TypeError(
                f"params: {optimizer_name} supports only real floating-point parameters; "
                f"parameter {i} has dtype {p.dtype}"
            )
        if not p.is_floating_point():
            raise TypeError(
                f"params: {optimizer_name} needs floating-point parameters; parameter {i} has dtype {p.dtype}"
            )


def check_grads_supported(grads: Iterable[Tensor], optimizer_name: str) -> None:
    """Reject sparse gradients with a clear message."""
    for g in grads:
        if g.is_sparse:
            raise TypeError(f"{optimizer_name} does not support sparse gradients")

"""Argument checks shared by hamopt optimisers.

Every check names the argument and the allowed values, as torch.optim does, and runs in
``__init__``/``add_param_group`` before any compute.
"""

from __future__ import annotations

import math
import numbers
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


def check_no_duplicates(tensors: list[Tensor], where: str, groups: Iterable[Iterable[Tensor]]) -> None:
    """Refuse a parameter listed twice in ``tensors`` or already in one of ``groups`` (it would be
    updated twice per step)."""
    seen: dict[int, int] = {}
    for i, t in enumerate(tensors):
        if id(t) in seen:
            raise ValueError(
                f"{where}params: parameter {i} (shape {tuple(t.shape)}) is the same tensor as parameter "
                f"{seen[id(t)]}; list each parameter once (a duplicate would be updated twice per step)"
            )
        seen[id(t)] = i
    owner = {id(q): j for j, group in enumerate(groups) for q in group}
    for t in tensors:
        if id(t) in owner:
            raise ValueError(
                f"{where}params: a parameter of shape {tuple(t.shape)} is already in param_groups[{owner[id(t)]}]; "
                "each parameter may belong to one group only"
            )


def loss_tensor(value: Any, source: str) -> Tensor | None:
    """A loss as a 0-d float64 tensor (None stays None); anything but a real scalar is refused
    with a message saying what ``source`` must return."""
    if value is None:
        return None
    what = (f"{source} must return the loss it back-propagated, as a scalar tensor or a "
            "real number (e.g. `loss.backward(); return loss`)")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{what}; got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        return value.detach().reshape(()).to(torch.float64)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        text = repr(value)
        raise TypeError(f"{what}; got {type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}")
    return torch.tensor(float(value), dtype=torch.float64)

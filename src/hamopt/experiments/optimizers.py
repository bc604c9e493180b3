r"""The lab's one optimiser factory and the optimiser part of a run manifest.

:func:`make_optimizer` builds an optimiser of a spec type from ``(params, step_size, hyper,
seed)``: ``hyper`` holds the constructor's own keyword arguments (lists become tuples), the step
size is its ``lr``, the seed feeds the optimiser's own generator (the ECD bounces) and ``mode``
the Hamiltonian integrators' gradient mode. torch's baselines get ``fused`` when asked.
"""

from __future__ import annotations

from typing import Any

import torch

from .spec import ECD_TYPES, ecd_class

__all__ = ["make_optimizer", "optimizer_manifest"]


def _torch_class(kind: str) -> type[torch.optim.Optimizer] | None:
    return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW}.get(kind)


def make_optimizer(
    kind: str,
    params: Any,
    step_size: float,
    hyper: dict[str, Any],
    *,
    seed: int | None = None,
    mode: str | None = None,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """An optimiser of spec type ``kind`` with ``lr = step_size`` and ``hyper`` as keywords."""
    from ..optim import Euler, Leapfrog

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
    if kind in ECD_TYPES:
        return ecd_class(kind)(params, lr=step_size, seed=seed, **kwargs)
    integrator = {"leapfrog": Leapfrog, "euler": Euler}.get(kind)
    if integrator is not None:
        if mode is not None:
            kwargs["mode"] = mode
        return integrator(params, lr=step_size, **kwargs)
    cls = _torch_class(kind)
    if cls is None:
        raise ValueError(f"unknown optimiser type {kind!r}")
    if fused is not None:
        kwargs["fused"] = fused
    return cls(params, lr=step_size, **kwargs)


def optimizer_manifest(opt: torch.optim.Optimizer | None, seed: int | None) -> dict[str, Any]:
    """Manifest fields of an ECD optimiser: its generator seed, its energy convention and its
    step/skip/bounce counts; nothing for the other optimisers."""
    if opt is None or type(opt) not in {ecd_class(t) for t in ECD_TYPES}:
        return {}
    from ..energy import convention_for, is_displacement_form, label

    conv = convention_for(opt)
    glob = opt.state.get("ecd")
    return {
        "optimizer_seed": seed,
        "energy_convention": {
            "name": conv.name,
            "label": label(opt),
            "displacement_form": bool(is_displacement_form(opt)),
            "description": conv.description,
        },
        "ecd": None if glob is None else {
            "steps": int(glob["step"]),
            "skipped_steps": int(glob["skipped_steps"]),
            "bounces": int(glob["bounces"]),
        },
    }

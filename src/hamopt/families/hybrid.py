r"""The ``hybrid`` family: :class:`hamopt.Hybrid` in the registry.

Its energy convention delegates to the optimiser of the phase now running
(``hybrid.active_optimizer``): kinetic energy, step size, time step ``h``, displacement form and
label are those of that phase's family, so :class:`hamopt.energy.EnergyTracker` reports every
step under its phase's convention. The tracker reads a displacement-form step size from each
Hybrid group's ``step_size`` (the active phase's step size of the step just run). The step that
ends a phase (``hybrid.stats["switched"]``) reads ``K`` after the hand-over under the new
phase's convention, so its ``ΔH`` holds the jump of the mass change; per-phase energy summaries
leave those steps out.

``hyper`` is ``{phases: [...], total_steps: N or null, handover: velocity|reset}``, each phase a
mapping of :class:`hamopt.optim.Phase` fields (a switch rule as ``{plateau: {window, rel_tol}}``);
the family's step size is the schedule factor (1.0 runs every phase at its own step size).
No momentum reader: the Noether monitor uses the displacement. The 2-D playground offers
``Hybrid: Leapfrog → AdamW`` (the first half of the steps with Leapfrog, then AdamW).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch.optim import Optimizer

from ..energy import conventions as C
from ..optim.hybrid import Hybrid
from .record import Family, PlaygroundEntry
from .registry import register

__all__ = ["HYBRID", "HybridHyper"]


class HybridHyper(BaseModel):
    """The phases (mappings of Phase fields), the budget of fractional lengths, the hand-over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phases: list[dict[str, Any]] = Field(..., min_length=1)
    total_steps: int | None = Field(None, ge=1, strict=True)
    handover: Literal["velocity", "reset"] = "velocity"


def _active(opt: Optimizer) -> Optimizer:
    return opt.active_optimizer  # type: ignore[attr-defined,no-any-return]


HYBRID_CONVENTION = C.EnergyConvention(
    name="hybrid",
    kinetic=lambda opt: C.kinetic(_active(opt)),
    step_size=lambda opt: C.step_size(_active(opt)),
    time_step=lambda opt: C.convention_for(_active(opt)).time_step(_active(opt)),
    displacement_form=lambda opt: C.is_displacement_form(_active(opt)),
    description="the convention of the phase now running (K, h and step size of its family)",
    label=lambda opt: C.label(_active(opt)),
)


def _construct(params: Any, step_size: float, h: Mapping[str, Any], *, seed: int | None = None,
               fused: bool | None = None, **_: Any) -> Optimizer:
    return Hybrid(params, h["phases"], lr=step_size, total_steps=h["total_steps"], handover=h["handover"],
                  seed=seed, fused=fused)


def _playground_hyper(config: Any) -> dict[str, Any]:
    """The playground's Hybrid: Leapfrog (identity mass) for the first half of the steps, then
    AdamW, both at the playground's step size (the schedule factor times phase step sizes of 1),
    with the velocity hand-over."""
    return {
        "phases": [
            {"family": "leapfrog", "lr": 1.0, "steps": max(1, config.steps // 2),
             "hyper": {"gamma": config.gamma, "cap": config.cap, "mass": "identity"}},
            {"family": "adamw", "lr": 1.0,
             "hyper": {"betas": (config.momentum, 0.999), "weight_decay": config.weight_decay}},
        ],
        "total_steps": None,
        "handover": "velocity",
    }


def _manifest(opt: Optimizer) -> dict[str, Any]:
    hybrid: Any = opt
    return {"hybrid": {"phases": [p.describe() for p in hybrid.phases], "phase": hybrid.phase_index,
                       "switch_steps": list(hybrid.switch_steps)}}


HYBRID = register(
    Family(
        name="hybrid",
        display_name="Hybrid",
        optimizer_class=Hybrid,
        step_size_name="step_size",
        energy=HYBRID_CONVENTION,
        hyper_model=HybridHyper,
        construct=_construct,
        manifest_extras=_manifest,
        seeded=True,
        step_axis="lr",
        description="Hybrid: a sequence of optimiser phases (the step size is a schedule factor)",
        playground=PlaygroundEntry("hybrid", "Hybrid: Leapfrog → AdamW", ("gamma", "cap", "momentum", "weight_decay"),
                                   _playground_hyper),
    )
)

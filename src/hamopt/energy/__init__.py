"""Energy accounting for every optimiser under one convention (spec §5–§6)."""

from .conventions import (
    EnergyConvention,
    convention_for,
    is_displacement_form,
    kinetic,
    label,
    register,
    registered,
    step_size,
)
from .loss_tracker import LossTracker
from .tracker import EnergyTracker, StepRecord

__all__ = [
    "EnergyConvention",
    "EnergyTracker",
    "LossTracker",
    "StepRecord",
    "convention_for",
    "is_displacement_form",
    "kinetic",
    "label",
    "register",
    "registered",
    "step_size",
]

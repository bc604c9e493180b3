r"""Phases of a playground trajectory: which steps each phase of a :class:`hamopt.Hybrid` ran.

:func:`phase_spans` rebuilds the configured optimiser on a dummy 2-D parameter and reads its
phase lengths (the playground's Hybrid has fixed lengths), so a figure can draw each phase of the
path in its own colour. Any other optimiser has one span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PhaseSpan", "phase_spans"]


@dataclass(frozen=True)
class PhaseSpan:
    """Phase ``index`` (``label``) moved θ from ``theta[start]`` to ``theta[stop]``."""

    index: int
    label: str
    start: int
    stop: int


def phase_spans(trajectory: Any) -> list[PhaseSpan]:
    """The phases of ``trajectory`` (a :class:`~hamopt.playground.Trajectory`) as index spans of
    its ``theta``; one span for an optimiser that is not a Hybrid."""
    from ..optim import Hybrid

    steps = len(trajectory.theta) - 1
    config = trajectory.config
    opt = config.info.build([torch.zeros(2, requires_grad=True)], config)
    if not isinstance(opt, Hybrid):
        return [PhaseSpan(0, trajectory.optimizer_label, 0, steps)]
    spans, start = [], 0
    for phase in opt.phases:
        if start >= steps and spans:
            break
        stop = steps if phase.length is None or phase.index == len(opt.phases) - 1 else min(steps, start + phase.length)
        spans.append(PhaseSpan(phase.index, phase.label, start, stop))
        start = stop
    return spans

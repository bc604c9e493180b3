"""Phase-coloured paths on the playground's landscape figure (a :class:`hamopt.Hybrid` draws each
phase in its own colour; :func:`hamopt.playground.phases.phase_spans` gives the spans)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = ["PHASE_COLOURS", "add_phase_paths"]

# visible on the landscape image and the white legend
PHASE_COLOURS = ("#e8175d", "#00b7d4", "#f5b700", "#3fbf3f", "#ff8c00", "#9b59ff")


def add_phase_paths(fig: go.Figure, traj: Any, xs: np.ndarray, ys: np.ndarray) -> bool:
    """Draw one path trace per phase when the trajectory has more than one phase; True if drawn
    (the caller then draws no single path)."""
    from ..playground.phases import phase_spans

    spans = phase_spans(traj)
    if len(spans) < 2:
        return False
    for span in spans:
        sl = slice(span.start, span.stop + 1)  # each phase starts where the previous one ended
        colour = PHASE_COLOURS[span.index % len(PHASE_COLOURS)]
        fig.add_trace(go.Scatter(x=xs[sl], y=ys[sl], mode="lines+markers", marker=dict(size=3, color=colour),
                                 line=dict(color=colour, width=2), name=f"phase {span.index}: {span.label}"))
    return True

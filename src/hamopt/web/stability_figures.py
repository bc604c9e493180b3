r"""The stability monitor on the web page: a stored run's energy series with its sharpness ratio.

:func:`run_figure` draws a run of a sweep with ``stability: {every: k}`` as three panels sharing
the step axis — energy (L, K, H), the drift ``|ΔH^int|``, ``|ΔH^traj|``, ``|δ|`` (log), and the
ratio ``λ_max(P⁻¹H)/threshold`` at each measurement (log, the line ratio = 1 dashed) with a
marker where it first crossed 1. A run without the monitor's columns is drawn by
:func:`hamopt.web.lab_figures.run_energy_figure` as before.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from .lab_figures import run_energy_figure
from .plot_style import COLORS, finish_layout, line_trace, log_magnitudes, subplots

__all__ = ["STABILITY_COLUMNS", "read_stability_columns", "run_figure"]

STABILITY_COLUMNS = ("lambda_max", "threshold", "sharpness_ratio")


def read_stability_columns(results: Any, run_id: str) -> dict[str, list[float | None]]:
    """The monitor's columns of one run of a :class:`~hamopt.web.results.ResultsDir` (empty when
    the run has none)."""
    import pyarrow.parquet as pq

    from ..experiments.store import RunStore

    path = results.file(str(RunStore.steps_relpath(run_id)))
    names = pq.read_schema(path).names
    present = [c for c in STABILITY_COLUMNS if c in names]
    if not present:
        return {}
    table = pq.read_table(path, columns=present)
    return {c: [None if v is None else float(v) for v in table.column(c).to_pylist()] for c in present}


def _measured(steps: list[Any], ratios: list[float | None]) -> tuple[list[Any], list[float]]:
    pairs = [(s, r) for s, r in zip(steps, ratios) if r is not None and math.isfinite(r) and r > 0]
    return [s for s, _ in pairs], [r for _, r in pairs]


def run_figure(results: Any, run: Any) -> go.Figure:
    """``run`` (a :class:`~hamopt.web.results.RunSeries`) with its sharpness ratio when measured."""
    extra = read_stability_columns(results, run.run_id)
    if "sharpness_ratio" not in extra:
        return run_energy_figure(run)
    cols = run.columns
    steps = cols.get("step") or list(range(len(extra["sharpness_ratio"])))
    xs, ratios = _measured(steps, extra["sharpness_ratio"])
    fig = subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                   subplot_titles=("energy", "|ΔH| per step", "sharpness ratio λ_max(P⁻¹H) / threshold"))
    for i, name in enumerate(("hamiltonian", "kinetic", "loss")):
        if name in cols:
            fig.add_trace(line_trace(steps, cols[name], name, color=COLORS[i]), row=1, col=1)
    for i, name in enumerate(("delta_h_int", "delta_h_traj", "resampling")):
        if name in cols:
            fig.add_trace(line_trace(steps, log_magnitudes(cols[name]), f"|{name}|", color=COLORS[3 + i]),
                          row=2, col=1)
    fig.add_trace(go.Scatter(x=xs, y=ratios, mode="lines+markers", name="ratio",
                             line=dict(color=COLORS[6]), marker=dict(size=4)), row=3, col=1)
    fig.add_hline(y=1.0, line_dash="dash", line_color="black", row=3, col=1)
    crossing = next(((s, r) for s, r in zip(xs, ratios) if r > 1.0), None)
    if crossing is not None:
        fig.add_trace(go.Scatter(x=[crossing[0]], y=[crossing[1]], mode="markers", name="ratio first > 1",
                                 marker=dict(size=11, symbol="circle-open", color="black")), row=3, col=1)
        for row in (1, 2):
            fig.add_vline(x=crossing[0], line_dash="dot", line_color="gray", row=row, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_yaxes(type="log", row=3, col=1)
    m = run.manifest
    bits = [run.run_id] + [f"{k}={m[k]}" for k in ("optimizer", "mode", "step_size", "seed", "status") if k in m]
    finish_layout(fig, ", ".join(map(str, bits)), height=760, xaxis3_title="step")
    return fig

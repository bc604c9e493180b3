"""Plotly figures of the playground's results: the path on the landscape, H/K/L, |ΔH| per step,
the drift-vs-step-size scan and the reversibility round trips (drawing only).

Each function takes a result of :mod:`hamopt.playground` — a
:class:`~hamopt.playground.Trajectory`, :class:`~hamopt.playground.DriftScan` or
:class:`~hamopt.playground.ReversibilityResult` — and returns a ``plotly.graph_objects.Figure``.
The only numbers computed here are the landscape on a grid (by the landscape's own ``value``,
``log10(1 + L)`` for steep ones) and the fitted line ``10^(intercept + slope · log10 x)`` of a
:class:`~hamopt.diagnostics.SlopeFit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..landscapes import LANDSCAPES, Landscape
from .playground_phases import add_phase_paths
from .plot_style import (
    COLORS,
    LAYOUT,
    as_array,
    figure,
    finish_layout,
    line_trace,
    log_magnitudes,
    subplots,
)

__all__ = [
    "contour_figure",
    "delta_h_figure",
    "drift_scan_figure",
    "energy_figure",
    "reversibility_figure",
]

# contour grid points per axis: 61 keeps a redraw cheap in the browser (the 121² grid cost
# ≈ 0.3 s more per redraw on a 2-core machine); Ackley's unit-period ripples need more
GRID = 61
GRID_FOR = {"ackley": 121}


@lru_cache(maxsize=16)
def _grid(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The noise-free landscape on an n × n mesh over its bounds (log10(1 + L) if steep)."""
    import torch

    cls = LANDSCAPES[name].cls
    land: Landscape = LANDSCAPES[name].build(None, 0.0, 0)
    (x0, x1), (y0, y1) = cls.bounds
    n = GRID_FOR.get(name, GRID)
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        z = land.value(torch.stack([xx, yy], dim=-1))
        if cls.log_contours:
            z = torch.log10(1.0 + z.clamp_min(0.0))
    # float32 arrays: plotly validates and encodes them as one binary block (fast to send and draw)
    return (
        xs.numpy().astype(np.float32),
        ys.numpy().astype(np.float32),
        z.numpy().astype(np.float32),
        cls.log_contours,
    )


def _contour(name: str, showscale: bool = True) -> go.Contour:
    xs, ys, z, log = _grid(name)
    return go.Contour(
        x=xs,
        y=ys,
        z=z,
        ncontours=30,
        colorscale="Viridis",
        showscale=showscale,
        opacity=0.75,
        contours=dict(coloring="heatmap", showlines=True),
        colorbar=dict(title="log10(1+L)" if log else "L", len=0.8),
        hoverinfo="skip",
        name="L",
    )


def _landscape_axes(fig: go.Figure, name: str, *, titled: bool = False) -> None:
    """Both axes span the landscape's bounds (titled "x" and "y" if ``titled``)."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    fig.update_xaxes(range=[x0, x1], **({"title": "x"} if titled else {}))
    fig.update_yaxes(range=[y0, y1], **({"title": "y"} if titled else {}))


def _title(traj: Any) -> str:
    c = traj.config
    head = (
        f"{traj.optimizer_label} on {LANDSCAPES[c.landscape].label}: "
        f"{traj.step_label}={c.step_size:g}, {c.steps} steps"
    )
    if traj.diverged:
        return f"{head} — DIVERGED at step {traj.diverged_at}"
    return head


def _markers(x: Sequence[float], y: Sequence[float], name: str, **marker: Any) -> go.Scatter:
    return go.Scatter(x=x, y=y, mode="markers", marker=marker, name=name)


def contour_figure(traj: Any) -> go.Figure:
    """The landscape with the trajectory θ_0 … θ_T; a diverged run ends in a red cross."""
    name = traj.config.landscape
    fig = figure(_contour(name))
    pts = np.array(traj.theta, dtype=np.float64).reshape(-1, 2)
    xs, ys = pts[:, 0], pts[:, 1]
    if not add_phase_paths(fig, traj, xs, ys):  # a Hybrid: one colour per phase
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                marker=dict(size=3),
                line=dict(color="white", width=2),
                name="path",
            )
        )
    fig.add_trace(_markers(xs[:1], ys[:1], "start", size=11, color="#ff7f0e", symbol="circle"))
    if traj.diverged:
        end = dict(name="diverged", size=14, color="red", symbol="x", line=dict(width=2))
    else:
        end = dict(name="end", size=11, color="black", symbol="star")
    fig.add_trace(_markers(xs[-1:], ys[-1:], **end))
    finish_layout(fig, _title(traj), height=440, legend=dict(orientation="h", y=-0.15))
    _landscape_axes(fig, name, titled=True)
    return fig


def energy_figure(traj: Any) -> go.Figure:
    """H, K and L at (θ_t, p_t) on batch B_t over the steps."""
    steps = np.arange(len(traj.hamiltonian))
    fig = figure()
    for i, (label, series) in enumerate(
        (("H", traj.hamiltonian), ("K", traj.kinetic), ("L", traj.loss))
    ):
        fig.add_trace(line_trace(steps, as_array(series), label, color=COLORS[i]))
    title = f"energy: H = K + L (cap engaged {traj.cap_engagements}×)"
    if traj.diverged:
        title += f" — diverged at step {traj.diverged_at}"
    finish_layout(fig, title, xaxis_title="step", yaxis_title="nats")
    return fig


def delta_h_figure(traj: Any) -> go.Figure:
    """|ΔH^int_t| per step and, on a noisy landscape, |ΔH^traj_t| and |δ_t| (log scale)."""
    steps = np.arange(len(traj.delta_h_int))
    series = [("|ΔH^int| same batch", traj.delta_h_int, dict(color=COLORS[0]))]
    if traj.noisy:
        series += [
            ("|ΔH^traj| cross batch", traj.delta_h_traj, dict(color=COLORS[1])),
            ("|δ| resampling", traj.resampling, dict(color="#999", dash="dot")),
        ]
        title = f"|ΔH| per step — tail median: int {traj.drift_int:.3g}, traj {traj.drift_traj:.3g}"
    else:
        title = f"|ΔH| per step — tail median {traj.drift_int:.3g}"
    fig = figure(
        *(line_trace(steps, log_magnitudes(ys), name, **line) for name, ys, line in series)
    )
    finish_layout(
        fig,
        title,
        xaxis_title="step",
        yaxis_title="|ΔH| (nats)",
        yaxis_type="log",
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0.0, font=dict(size=11)),
    )
    return fig


def _fit_line(fit: Any, xs: Sequence[float]) -> tuple[list[float], list[float]]:
    lo, hi = min(xs), max(xs)
    grid = [lo * (hi / lo) ** (k / 20) for k in range(21)]
    return grid, [10 ** (fit.intercept + fit.slope * math.log10(x)) for x in grid]


def _fit_label(name: str, fit: Any) -> str:
    if fit is None:
        return f"{name}: no fit"
    ci = "" if math.isnan(fit.ci_low) else f" [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
    return f"{name}: slope {fit.slope:.2f}{ci}, R²={fit.r2:.3f}"


def drift_scan_figure(scan: Any) -> go.Figure:
    """drift vs step size on log-log axes with the OLS fit lines; diverged sizes as red crosses."""
    fig = figure()
    xs_ok = [s for s, d in zip(scan.step_sizes, scan.diverged, strict=True) if not d]
    series = [("|ΔH^int|", scan.drift_int, scan.fit_int, COLORS[0])]
    if scan.noisy:
        series.append(("|ΔH^traj|", scan.drift_traj, scan.fit_traj, COLORS[1]))
    series.append(("|H−H0|", scan.energy_error, scan.fit_error, COLORS[2]))
    for name, ys, fit, color in series:
        y_ok = [y for y, d in zip(ys, scan.diverged, strict=True) if not d]
        fig.add_trace(_markers(xs_ok, y_ok, _fit_label(name, fit), size=9, color=color))
        if fit is not None and len(xs_ok) >= 2:
            gx, gy = _fit_line(fit, xs_ok)
            fig.add_trace(
                go.Scatter(
                    x=gx, y=gy, mode="lines", line=dict(color=color, dash="dash"), showlegend=False
                )
            )
    bad = [s for s, d in zip(scan.step_sizes, scan.diverged, strict=True) if d]
    if bad:
        fig.add_trace(
            go.Scatter(
                x=bad,
                y=[None] * len(bad),
                mode="markers",
                name=f"diverged: {', '.join(f'{b:.3g}' for b in bad)}",
            )
        )
    finish_layout(
        fig,
        f"drift vs {scan.step_label} (tail median over the last 20 % of steps)",
        xaxis_title=scan.step_label,
        yaxis_title="drift (nats)",
        xaxis_type="log",
        yaxis_type="log",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def _round_trip_title(path: Any) -> str:
    if path.result is None or path.divergence:
        return f"{path.integrator}: diverged"
    return f"{path.integrator}: ‖θ_back−θ_0‖/‖θ_0‖ = {path.result.theta_error:.2e}"


def _round_trip_traces(path: Any, legend: bool) -> list[go.Scatter]:
    """Forward path, return path after the flip, θ_0 and θ_back of one integrator."""
    traces = [
        go.Scatter(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            mode="lines",
            line=style,
            name=label,
            showlegend=legend,
        )
        for pts, label, style in (
            (path.forward, "forward", dict(color="white", width=3)),
            (path.backward, "back (p flipped)", dict(color="#ff7f0e", width=2, dash="dash")),
        )
    ]
    if path.forward:
        start = dict(size=11, color="black", symbol="circle-open", line=dict(width=2))
        traces.append(_point(path.forward[0], "θ_0", start, legend))
    if path.backward:
        end = dict(size=10, color="red", symbol="x")
        traces.append(_point(path.backward[-1], "θ_back", end, legend))
    return traces


def _point(xy: Sequence[float], name: str, marker: dict, legend: bool) -> go.Scatter:
    return go.Scatter(
        x=[xy[0]], y=[xy[1]], mode="markers", marker=marker, name=name, showlegend=legend
    )


def reversibility_figure(result: Any) -> go.Figure:
    """Leapfrog and Euler side by side: forward path, return path after the flip, the start."""
    name = result.config.landscape
    titles = [_round_trip_title(path) for path in result.paths]
    fig = subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)
    for col, path in enumerate(result.paths, start=1):
        fig.add_trace(_contour(name, showscale=False), row=1, col=col)
        for trace in _round_trip_traces(path, legend=col == 1):
            fig.add_trace(trace, row=1, col=col)
    _landscape_axes(fig, name)
    fig.update_layout(**{**LAYOUT, "height": 460}, legend=dict(orientation="h", y=-0.12))
    return fig

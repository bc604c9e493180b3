"""Plotly figures of the playground's results: the path on the landscape, H/K/L, |ΔH| per step,
the drift-vs-step-size scan and the reversibility round trips (drawing only).

Each function takes a result of :mod:`hamopt.playground` — a
:class:`~hamopt.playground.Trajectory`, :class:`~hamopt.playground.DriftScan` or
:class:`~hamopt.playground.ReversibilityResult` — and returns a ``plotly.graph_objects.Figure``.
The only numbers computed here are the landscape on a grid (by the landscape's own ``value``,
``log10(1 + L)`` for steep ones) and the fitted line ``10^(intercept + slope · log10 x)`` of a
:class:`~hamopt.diagnostics.SlopeFit`.

The playground's three figures are redrawn on every change, so they are kept light: the path
plot's landscape is one cached picture with its level lines drawn in (no level-line trace), and a
run longer than :data:`~hamopt.web.plot_push.MAX_POINTS` steps is drawn at one step in k (first
and last kept; the title says so), which is all a plot a few hundred pixels wide can show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..landscapes import LANDSCAPES
from .landscape_layer import colorbar_trace, landscape_image, levels_trace
from .playground_phases import add_phase_paths
from .plot_push import decimated
from .plot_style import (
    COLORS,
    LAYOUT,
    as_array,
    figure,
    finish_layout,
    identical_series,
    light_figure,
    log_magnitudes,
    short_number,
    subplots,
)

__all__ = [
    "contour_figure",
    "delta_h_figure",
    "drift_scan_figure",
    "energy_figure",
    "reversibility_figure",
]

PATH_COLOR = "#e8175d"  # visible on the Viridis landscape and on the white legend alike


def _landscape_axes(fig: go.Figure, name: str, *, titled: bool = False) -> None:
    """Both axes span the landscape's bounds (titled "x" and "y" if ``titled``)."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    fig.update_xaxes(range=[x0, x1], **({"title": "x"} if titled else {}))
    fig.update_yaxes(range=[y0, y1], **({"title": "y"} if titled else {}))


def _hyper_text(traj: Any) -> str:
    """", γ=0.1" etc.: the hyperparameters the optimiser reads, as the title shows them."""
    c = traj.config
    shown = []
    for name, short in (("gamma", "γ"), ("momentum", "β"), ("cap", "α"), ("eta", "η")):
        if name in c.info.uses:
            value = getattr(c, name)
            shown.append(f"{short}={'off' if value is None else format(value, '.3g')}")
    return "".join(f", {s}" for s in shown)


def _title(traj: Any) -> str:
    """Two short lines (three when diverged), so a phone-wide plot shows all of it."""
    c = traj.config
    head = (
        f"{traj.optimizer_label} on {LANDSCAPES[c.landscape].label}:<br>"
        f"{traj.step_label}={c.step_size:.4g}, {c.steps} steps{_hyper_text(traj)}"
    )
    if traj.diverged:
        return f"{head}<br>DIVERGED at step {traj.diverged_at}"
    return head


def _markers(x: Sequence[float], y: Sequence[float], name: str, **marker: Any) -> go.Scatter:
    return go.Scatter(x=x, y=y, mode="markers", marker=marker, name=name)


def _marker_dict(x: Sequence[float], y: Sequence[float], name: str, **marker: Any) -> dict[str, Any]:
    return dict(type="scatter", x=x, y=y, mode="markers", marker=marker, name=name)


def _line_dict(x: Any, y: Any, name: str, **line: Any) -> dict[str, Any]:
    return dict(type="scatter", x=x, y=y, mode="lines", name=name, line=line)


def _inside(name: str, x: float, y: float) -> tuple[float, float, bool]:
    """(x, y) clipped to the landscape's bounds, and whether it had to be."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    cx, cy = min(max(x, x0), x1), min(max(y, y0), y1)
    return cx, cy, (cx, cy) != (x, y)


def _every(stride: int) -> str:
    return "" if stride == 1 else f" (1 step in {stride} drawn)"


def contour_figure(traj: Any) -> go.Figure:
    """The landscape (a picture with its level lines, colour bar) with the trajectory θ_0 … θ_T;
    a diverged run ends in a red cross, kept inside the frame (at the edge where the path left
    it)."""
    name = traj.config.landscape
    pts = np.array(traj.theta, dtype=np.float64).reshape(-1, 2)
    xs, ys = pts[:, 0], pts[:, 1]
    phased = figure()
    if add_phase_paths(phased, traj, xs, ys):  # a Hybrid: one colour per phase
        paths = [t.to_plotly_json() for t in phased.data]
    else:
        keep, _ = decimated(len(xs))
        paths = [_line_dict(xs[keep], ys[keep], "path", color=PATH_COLOR, width=2)]
    ex, ey, clipped = _inside(name, float(xs[-1]), float(ys[-1]))
    if traj.diverged:
        label = "diverged (left the frame here)" if clipped else "diverged"
        end = dict(name=label, size=14, color="red", symbol="x", line=dict(width=2, color="black"))
    else:
        end = dict(name="end", size=12, color="black", symbol="star")
    start = _marker_dict(xs[:1], ys[:1], "start", size=11, color="white", symbol="circle",
                         line=dict(width=2, color="black"))
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    return light_figure(
        [*paths, colorbar_trace(name).to_plotly_json(), start, _marker_dict([ex], [ey], **end)],
        # the legend below the x-axis title, also on a phone where the plot is short
        _title(traj), height=440, legend=dict(orientation="h", y=-0.24, yanchor="top"),
        images=[landscape_image(name, lined=True)],
        xaxis=dict(range=[x0, x1], title=dict(text="x")), yaxis=dict(range=[y0, y1], title=dict(text="y")),
    )


def energy_figure(traj: Any) -> go.Figure:
    """H, K and L at (θ_t, p_t) on batch B_t over the steps."""
    steps, stride = decimated(len(traj.hamiltonian))
    h, k, loss = (as_array(v)[steps] for v in (traj.hamiltonian, traj.kinetic, traj.loss))
    same = identical_series(h, loss)
    traces = [
        # drawn first and wider, so an identical L on top leaves it visible
        _line_dict(steps, h, "H (= L: K is 0)" if same else "H", color=COLORS[0], width=5 if same else 2),
        _line_dict(steps, k, "K", color=COLORS[1]),
        _line_dict(steps, loss, "L", color=COLORS[2], **({"dash": "dot"} if same else {})),
    ]
    title = "energy: H = K + L" + _every(stride)
    if "cap" in traj.config.info.uses and traj.config.cap is not None:
        title += f" (cap engaged {traj.cap_engagements}×)"
    if traj.diverged:
        title += f" — diverged at step {traj.diverged_at}"
    return light_figure(traces, title, xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="nats")))


def delta_h_figure(traj: Any) -> go.Figure:
    """|ΔH^int_t| per step and, on a noisy landscape, |ΔH^traj_t| and |δ_t| (log scale)."""
    steps, stride = decimated(len(traj.delta_h_int))
    series = [("|ΔH<sup>int</sup>| same batch", traj.delta_h_int, dict(color=COLORS[0]))]
    if traj.noisy:
        series += [
            ("|ΔH<sup>traj</sup>| cross batch", traj.delta_h_traj, dict(color=COLORS[1])),
            ("|δ| resampling", traj.resampling, dict(color="#999", dash="dot")),
        ]
        title = f"|ΔH| per step<br>tail median: int {traj.drift_int:.3g}, traj {traj.drift_traj:.3g}"
    else:
        title = f"|ΔH| per step — tail median {traj.drift_int:.3g}"
    title += _every(stride)
    # the legend under the plot: above it, it ran into the title on a phone-wide page
    return light_figure(
        [_line_dict(steps, log_magnitudes(ys)[steps], name, **line) for name, ys, line in series],
        title,
        xaxis=dict(title=dict(text="step")),
        yaxis=dict(title=dict(text="|ΔH| (nats)"), type="log"),
        legend=dict(orientation="h", y=-0.38, yanchor="top", x=0.0, font=dict(size=11)),
    )


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
    series = [("|ΔH<sup>int</sup>|", scan.drift_int, scan.fit_int, COLORS[0])]
    if scan.noisy:
        series.append(("|ΔH<sup>traj</sup>|", scan.drift_traj, scan.fit_traj, COLORS[1]))
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
    finite = [y for _, ys, _, _ in series for y, d in zip(ys, scan.diverged, strict=True)
              if not d and y is not None and y == y and y > 0]
    if bad:
        # a diverged size has no drift: its cross sits on the plot's floor, inside the frame
        floor = min(finite) if finite else 1.0
        fig.add_trace(
            _markers(bad, [floor] * len(bad), f"diverged: {', '.join(short_number(b) for b in bad)}",
                     size=12, color="red", symbol="x", line=dict(width=2, color="black"))
        )
    ticks = sorted(scan.step_sizes)
    finish_layout(
        fig,
        f"drift vs {scan.step_label} (log–log; tail median over the last 20 % of steps)",
        xaxis_title=f"{scan.step_label} (log scale)",
        yaxis_title="drift (nats, log scale)",
        xaxis_type="log",
        yaxis_type="log",
        xaxis=dict(tickvals=ticks, ticktext=[short_number(t) for t in ticks], minor=dict(showgrid=False)),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def _round_trip_title(path: Any) -> str:
    """Short enough for two side by side on a phone: "Leapfrog: error 2.1e-8"."""
    if path.result is None or path.divergence:
        return f"{path.integrator}: diverged"
    return f"{path.integrator}: error {short_number(path.result.theta_error)}"


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
            (path.forward, "forward", dict(color=PATH_COLOR, width=3)),
            (path.backward, "back (p flipped)", dict(color="#ffb000", width=2, dash="dash")),
        )
    ]
    if path.forward:
        start = dict(size=11, color="white", symbol="circle", line=dict(width=2, color="black"))
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
        fig.add_trace(levels_trace(name), row=1, col=col)
        for trace in _round_trip_traces(path, legend=col == 1):
            fig.add_trace(trace, row=1, col=col)
    _landscape_axes(fig, name)
    images = [landscape_image(name, xref=f"x{c}" if c > 1 else "x", yref=f"y{c}" if c > 1 else "y")
              for c in range(1, len(result.paths) + 1)]
    fig.update_layout(**{**LAYOUT, "height": 460}, legend=dict(orientation="h", y=-0.12), images=images)
    fig.update_annotations(font_size=12)
    return fig

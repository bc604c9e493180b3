"""Plotly figures of the playground's and the lab's results (drawing only, no computation).

Every function takes a result object of the library — :class:`hamopt.playground.Trajectory`,
:class:`~hamopt.playground.DriftScan`, :class:`~hamopt.playground.ReversibilityResult`,
:class:`hamopt.web.results.RunSeries` or a results table — and returns a
``plotly.graph_objects.Figure``. The only numbers computed here are those a plot needs to be
drawn: the landscape on a grid (by the landscape's own ``value``), absolute values for log axes,
and the fitted line ``10^(intercept + slope · log10 x)`` of a :class:`~hamopt.diagnostics.SlopeFit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..landscapes import LANDSCAPES, Landscape

__all__ = [
    "contour_figure",
    "delta_h_figure",
    "drift_scan_figure",
    "energy_figure",
    "message_figure",
    "results_ablation_figure",
    "results_cap_figure",
    "results_drift_figure",
    "results_reversibility_figure",
    "reversibility_figure",
    "run_energy_figure",
]

# contour grid points per axis: 61 keeps a redraw cheap in the browser (the 121² grid cost
# ≈ 0.3 s more per redraw on a 2-core machine); Ackley's unit-period ripples need more
GRID = 61
GRID_FOR = {"ackley": 121}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=40), height=380)
# "none" skips plotly's per-figure deep copy of a template (≈15 ms a figure); the style is set here
_AXIS = dict(
    gridcolor="#e5e5e5",
    zerolinecolor="#cccccc",
    linecolor="#888888",
    showline=True,
    ticks="outside",
)
_BASE = dict(
    template="none",
    paper_bgcolor="white",
    plot_bgcolor="white",
    font=dict(size=12),
    xaxis=_AXIS,
    yaxis=_AXIS,
)


def _figure(*traces: Any) -> go.Figure:
    """A figure with the page's plain style and ``traces``."""
    return go.Figure(data=list(traces), layout=_BASE)


def _subplots(**kw: Any) -> go.Figure:
    fig = make_subplots(figure=go.Figure(layout=dict(template="none")), **kw)
    fig.update_layout(paper_bgcolor="white", plot_bgcolor="white", font=dict(size=12))
    fig.update_xaxes(**_AXIS)
    fig.update_yaxes(**_AXIS)
    return fig


def _abs(values: Sequence[float | None]) -> np.ndarray:
    """|v| for a log axis; zeros, None and non-finite values become gaps (NaN)."""
    a = np.abs(np.array([np.nan if v is None else v for v in values], dtype=np.float64))
    a[~np.isfinite(a) | (a == 0.0)] = np.nan
    return a


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


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


def _axes(fig: go.Figure, name: str, **kw: Any) -> None:
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    fig.update_xaxes(range=[x0, x1], title="x", **kw)
    fig.update_yaxes(range=[y0, y1], title="y", **kw)


def message_figure(text: str, height: int = 300) -> go.Figure:
    """An empty figure that shows ``text`` (used for invalid input and missing files)."""
    fig = _figure()
    fig.add_annotation(
        text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14)
    )
    fig.update_layout(
        **{**LAYOUT, "height": height}, xaxis=dict(visible=False), yaxis=dict(visible=False)
    )
    return fig


def _title(traj: Any) -> str:
    c = traj.config
    head = (
        f"{traj.optimizer_label} on {LANDSCAPES[c.landscape].label}: "
        f"{traj.step_label}={c.step_size:g}, {c.steps} steps"
    )
    if traj.diverged:
        return f"{head} — DIVERGED at step {traj.diverged_at}"
    return head


def contour_figure(traj: Any) -> go.Figure:
    """The landscape with the trajectory θ_0 … θ_T; a diverged run ends in a red cross."""
    name = traj.config.landscape
    fig = _figure(_contour(name))
    pts = np.array(traj.theta, dtype=np.float64).reshape(-1, 2)
    xs, ys = pts[:, 0], pts[:, 1]
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
    fig.add_trace(
        go.Scatter(
            x=xs[:1],
            y=ys[:1],
            mode="markers",
            marker=dict(size=11, color="#ff7f0e", symbol="circle"),
            name="start",
        )
    )
    end_style = (
        dict(size=14, color="red", symbol="x", line=dict(width=2))
        if traj.diverged
        else dict(size=11, color="black", symbol="star")
    )
    fig.add_trace(
        go.Scatter(
            x=xs[-1:],
            y=ys[-1:],
            mode="markers",
            marker=end_style,
            name="diverged" if traj.diverged else "end",
        )
    )
    fig.update_layout(
        **{**LAYOUT, "height": 440},
        title=dict(text=_title(traj), font=dict(size=13)),
        legend=dict(orientation="h", y=-0.15),
    )
    _axes(fig, name)
    return fig


def energy_figure(traj: Any) -> go.Figure:
    """H, K and L at (θ_t, p_t) on batch B_t over the steps."""
    steps = np.arange(len(traj.hamiltonian))
    fig = _figure()
    for label, series, color in (
        ("H", traj.hamiltonian, COLORS[0]),
        ("K", traj.kinetic, COLORS[1]),
        ("L", traj.loss, COLORS[2]),
    ):
        fig.add_trace(
            go.Scatter(x=steps, y=_arr(series), mode="lines", name=label, line=dict(color=color))
        )
    title = f"energy: H = K + L (cap engaged {traj.cap_engagements}×)"
    if traj.diverged:
        title += f" — diverged at step {traj.diverged_at}"
    fig.update_layout(
        **LAYOUT, title=dict(text=title, font=dict(size=13)), xaxis_title="step", yaxis_title="nats"
    )
    return fig


def delta_h_figure(traj: Any) -> go.Figure:
    """|ΔH^int_t| per step and, on a noisy landscape, |ΔH^traj_t| and |δ_t| (log scale)."""
    steps = np.arange(len(traj.delta_h_int))
    fig = _figure()
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=_abs(traj.delta_h_int),
            mode="lines",
            name="|ΔH^int| same batch",
            line=dict(color=COLORS[0]),
        )
    )
    if traj.noisy:
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=_abs(traj.delta_h_traj),
                mode="lines",
                name="|ΔH^traj| cross batch",
                line=dict(color=COLORS[1]),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=_abs(traj.resampling),
                mode="lines",
                name="|δ| resampling",
                line=dict(color="#999", dash="dot"),
            )
        )
        title = f"|ΔH| per step — tail median: int {traj.drift_int:.3g}, traj {traj.drift_traj:.3g}"
    else:
        title = f"|ΔH| per step — tail median {traj.drift_int:.3g}"
    fig.update_layout(
        **LAYOUT,
        title=dict(text=title, font=dict(size=13)),
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
    fig = _figure()
    xs_ok = [s for s, d in zip(scan.step_sizes, scan.diverged, strict=True) if not d]
    series = [("|ΔH^int|", scan.drift_int, scan.fit_int, COLORS[0])]
    if scan.noisy:
        series.append(("|ΔH^traj|", scan.drift_traj, scan.fit_traj, COLORS[1]))
    series.append(("|H−H0|", scan.energy_error, scan.fit_error, COLORS[2]))
    for name, ys, fit, color in series:
        y_ok = [y for y, d in zip(ys, scan.diverged, strict=True) if not d]
        fig.add_trace(
            go.Scatter(
                x=xs_ok,
                y=y_ok,
                mode="markers",
                marker=dict(size=9, color=color),
                name=_fit_label(name, fit),
            )
        )
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
    fig.update_layout(
        **LAYOUT,
        title=dict(
            text=f"drift vs {scan.step_label} (tail median over the last 20 % of steps)",
            font=dict(size=13),
        ),
        xaxis_title=scan.step_label,
        yaxis_title="drift (nats)",
        xaxis_type="log",
        yaxis_type="log",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def reversibility_figure(result: Any) -> go.Figure:
    """Leapfrog and Euler side by side: forward path, return path after the flip, the start."""
    name = result.config.landscape
    titles = []
    for path in result.paths:
        if path.result is None or path.divergence:
            titles.append(f"{path.integrator}: diverged")
        else:
            titles.append(f"{path.integrator}: ‖θ_back−θ_0‖/‖θ_0‖ = {path.result.theta_error:.2e}")
    fig = _subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)
    for col, path in enumerate(result.paths, start=1):
        fig.add_trace(_contour(name, showscale=False), row=1, col=col)
        for pts, label, style in (
            (path.forward, "forward", dict(color="white", width=3)),
            (path.backward, "back (p flipped)", dict(color="#ff7f0e", width=2, dash="dash")),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines",
                    line=style,
                    name=label,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        if path.forward:
            x0, y0 = path.forward[0]
            fig.add_trace(
                go.Scatter(
                    x=[x0],
                    y=[y0],
                    mode="markers",
                    marker=dict(size=11, color="black", symbol="circle-open", line=dict(width=2)),
                    name="θ_0",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        if path.backward:
            xb, yb = path.backward[-1]
            fig.add_trace(
                go.Scatter(
                    x=[xb],
                    y=[yb],
                    mode="markers",
                    marker=dict(size=10, color="red", symbol="x"),
                    name="θ_back",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    fig.update_xaxes(range=[x0, x1])
    fig.update_yaxes(range=[y0, y1])
    fig.update_layout(**{**LAYOUT, "height": 460}, legend=dict(orientation="h", y=-0.12))
    return fig


# ---------------------------------------------------------------------- lab results
def _group_label(row: Any, keys: Sequence[str]) -> str:
    return " / ".join(str(row[k]) for k in keys if k in row and str(row[k]) not in ("", "nan"))


def results_drift_figure(drift: Any, table: Any | None, column: str = "drift_int") -> go.Figure:
    """drift.csv: drift vs step size per (optimizer, band), log-log; legends carry Table 1's
    slope and CI."""
    if column not in drift.columns:
        return message_figure(f"drift.csv has no column {column!r}")
    df = drift
    if "status" in df.columns:
        df = df[df["status"].astype(str) != "failed"]
    keys = [k for k in ("optimizer", "band", "mode", "ablation") if k in df.columns]
    fig = _figure()
    groups = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for i, (key, part) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        label = " / ".join(str(k) for k in key if str(k) != "nan") or "runs"
        if (
            table is not None
            and {"optimizer", "band", "drift", "slope"} <= set(table.columns)
            and len(key) >= 2
        ):
            match = table[
                (table["optimizer"] == key[0])
                & (table["band"].astype(str) == str(key[1]))
                & (table["drift"].astype(str).isin([column, column.removeprefix("drift_")]))
            ]
            if len(match):
                r = match.iloc[0]
                label += f" — slope {r['slope']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        y = [abs(v) if math.isfinite(v) and v != 0 else None for v in part[column].astype(float)]
        hover = part["run_id"].astype(str).tolist() if "run_id" in part.columns else None
        fig.add_trace(
            go.Scatter(
                x=part["step_size"].astype(float).tolist(),
                y=y,
                mode="markers",
                marker=dict(size=8, color=COLORS[i % len(COLORS)]),
                name=label,
                text=hover,
            )
        )
    fig.update_layout(
        **{**LAYOUT, "height": 440},
        title=dict(text=f"{column} vs step size (one point per run)", font=dict(size=13)),
        xaxis_title="step size (dt or lr)",
        yaxis_title=f"{column} (nats)",
        xaxis_type="log",
        yaxis_type="log",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def results_reversibility_figure(rev: Any) -> go.Figure:
    """reversibility.csv: round-trip θ error vs N per (integrator, dtype), log scale."""
    need = {"integrator", "steps", "theta_error"}
    if not need <= set(rev.columns):
        return message_figure(
            f"reversibility.csv needs columns {sorted(need)}; it has {list(rev.columns)}"
        )
    keys = [k for k in ("integrator", "dtype", "dt") if k in rev.columns]
    fig = _figure()
    for i, (key, part) in enumerate(rev.groupby(keys, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        part = part.sort_values("steps")
        fig.add_trace(
            go.Scatter(
                x=part["steps"].tolist(),
                y=_abs(part["theta_error"].astype(float).tolist()),
                mode="lines+markers",
                name=" / ".join(map(str, key)),
                line=dict(color=COLORS[i % len(COLORS)]),
            )
        )
    fig.update_layout(
        **LAYOUT,
        title=dict(text="round trip ‖θ_back − θ_0‖ / ‖θ_0‖", font=dict(size=13)),
        xaxis_title="steps N each way",
        yaxis_title="relative error",
        yaxis_type="log",
    )
    return fig


def results_ablation_figure(abl: Any) -> go.Figure:
    """ablations.csv: largest |difference| of each ablation's per-step series from the default's
    (log scale; an ablation identical to the default is listed in the title, not drawn)."""
    cols = [
        c
        for c in ("max_abs_diff_hamiltonian", "max_abs_diff_delta_h_int", "max_abs_diff_loss")
        if c in abl.columns
    ]
    if "ablation" not in abl.columns or not cols:
        return message_figure(
            "ablations.csv has no ablation / max_abs_diff_* columns; see the table"
        )
    if len(abl) == 0:
        return message_figure("no memory-ablation runs in this directory")
    label = abl["ablation"].astype(str)
    if "seed" in abl.columns:
        label = label + " (seed " + abl["seed"].astype(str) + ")"
    if "step_size" in abl.columns:
        label = label + " @ " + abl["step_size"].astype(str)
    fig = _figure()
    for i, col in enumerate(cols):
        fig.add_trace(
            go.Bar(
                x=label.tolist(),
                y=_abs(abl[col].astype(float).tolist()),
                name=col.removeprefix("max_abs_diff_"),
                marker_color=COLORS[i % len(COLORS)],
            )
        )
    values = abl[cols[0]].astype(float)
    same = sorted(set(label[values == 0.0]))
    title = "memory ablations: max |series − default series|"
    if same:
        title += f" — identical to default: {', '.join(same)}"
    fig.update_layout(
        **LAYOUT,
        title=dict(text=title, font=dict(size=13)),
        yaxis_type="log",
        barmode="group",
        yaxis_title="max |difference|",
    )
    return fig


def results_cap_figure(cap: Any) -> go.Figure:
    """cap.csv: cap engagement rate vs step size per optimizer (and band)."""
    rate = next((c for c in ("cap_rate", "engagement_rate", "rate") if c in cap.columns), None)
    if rate is None or "step_size" not in cap.columns:
        return message_figure("cap.csv has no step_size / cap_rate columns to plot; see the table")
    keys = [k for k in ("optimizer", "band") if k in cap.columns]
    fig = _figure()
    groups = cap.groupby(keys, sort=True) if keys else [((), cap)]
    for i, (key, part) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        part = part.sort_values("step_size")
        fig.add_trace(
            go.Scatter(
                x=part["step_size"].tolist(),
                y=(100 * part[rate].astype(float)).tolist(),
                mode="lines+markers",
                name=" / ".join(map(str, key)) or "runs",
                line=dict(color=COLORS[i % len(COLORS)]),
            )
        )
    fig.update_layout(
        **LAYOUT,
        title=dict(text="energy-cap engagement", font=dict(size=13)),
        xaxis_title="step size",
        yaxis_title="steps with the cap engaged (%)",
        xaxis_type="log",
    )
    return fig


def run_energy_figure(run: Any) -> go.Figure:
    """One stored run: L, K, H over the steps (top) and |ΔH^int|, |ΔH^traj|, |δ| (bottom, log)."""
    cols = run.columns
    steps = cols.get("step") or list(range(len(next(iter(cols.values()), []))))
    fig = _subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("energy", "|ΔH| per step"),
    )
    for i, name in enumerate(("hamiltonian", "kinetic", "loss")):
        if name in cols:
            fig.add_trace(
                go.Scatter(
                    x=steps, y=cols[name], mode="lines", name=name, line=dict(color=COLORS[i])
                ),
                row=1,
                col=1,
            )
    for i, name in enumerate(("delta_h_int", "delta_h_traj", "resampling")):
        if name in cols:
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=_abs(cols[name]),
                    mode="lines",
                    name=f"|{name}|",
                    line=dict(color=COLORS[3 + i]),
                ),
                row=2,
                col=1,
            )
    fig.update_yaxes(type="log", row=2, col=1)
    m = run.manifest
    bits = [run.run_id] + [
        f"{k}={m[k]}" for k in ("optimizer", "mode", "step_size", "seed", "status") if k in m
    ]
    fig.update_layout(
        **{**LAYOUT, "height": 560},
        title=dict(text=", ".join(map(str, bits)), font=dict(size=13)),
        xaxis2_title="step",
    )
    return fig

"""Plotly figures of a lab results directory: the drift, reversibility, cap and ablation tables and
one stored run's energy series (drawing only).

Each function takes a table read by :class:`hamopt.web.results.ResultsDir` (a pandas DataFrame)
or a :class:`~hamopt.web.results.RunSeries` and returns a ``plotly.graph_objects.Figure``; a table
without the columns a plot needs gives a figure that says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import plotly.graph_objects as go

from .plot_style import (
    COLORS,
    figure,
    finish_layout,
    identical_series,
    line_trace,
    log_magnitudes,
    message_figure,
    short_number,
    subplots,
)

__all__ = [
    "DRIFT_LABELS",
    "SERIES_LABELS",
    "results_ablation_figure",
    "results_cap_figure",
    "results_drift_figure",
    "results_reversibility_figure",
    "run_energy_figure",
]


# how a stored step column is named on a plot
SERIES_LABELS = {
    "hamiltonian": "H",
    "kinetic": "K",
    "loss": "L",
    "delta_h_int": "|ΔH<sup>int</sup>|",
    "delta_h_traj": "|ΔH<sup>traj</sup>|",
    "resampling": "|δ|",
}


# the drift columns of drift.csv as the page names them
DRIFT_LABELS = {
    "drift_int": "|ΔH<sup>int</sup>|",
    "drift_traj": "|ΔH<sup>traj</sup>|",
    "drift_resampling": "|δ|",
}


def _groups(
    df: Any, keys: Sequence[str], *, dropna: bool = True
) -> Iterator[tuple[int, tuple, Any]]:
    """(index, key tuple, rows) per group of ``df`` by ``keys``, sorted; one group if no keys."""
    groups = df.groupby(keys, dropna=dropna, sort=True) if keys else [((), df)]
    for i, (key, part) in enumerate(groups):
        yield i, key if isinstance(key, tuple) else (key,), part


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _slope_legend(table: Any | None, key: tuple, column: str) -> str:
    """`` — slope s [lo, hi]`` from Table 1 for (optimizer, band) = key[:2] and ``column``."""
    if (
        table is None
        or not {"optimizer", "band", "drift", "slope"} <= set(table.columns)
        or len(key) < 2
    ):
        return ""
    match = table[
        (table["optimizer"] == key[0])
        & (table["band"].astype(str) == str(key[1]))
        & (table["drift"].astype(str).isin([column, column.removeprefix("drift_")]))
    ]
    if not len(match):
        return ""
    r = match.iloc[0]
    # on its own legend line: a phone-wide legend cuts one long line off at the right
    return f":<br>slope {r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"


def results_drift_figure(drift: Any, table: Any | None, column: str = "drift_int") -> go.Figure:
    """drift.csv: drift vs step size per (optimizer, band), log-log; legends carry Table 1's
    slope and CI."""
    if column not in drift.columns:
        return message_figure(f"drift.csv has no column {column!r}")
    df = drift
    if "status" in df.columns:
        df = df[df["status"].astype(str) != "failed"]
    keys = [k for k in ("optimizer", "band", "mode", "ablation") if k in df.columns]
    fig = figure()
    for i, key, part in _groups(df, keys, dropna=False):
        label = " / ".join(str(k) for k in key if str(k) != "nan") or "runs"
        label += _slope_legend(table, key, column)
        y = [abs(v) if math.isfinite(v) and v != 0 else None for v in part[column].astype(float)]
        hover = part["run_id"].astype(str).tolist() if "run_id" in part.columns else None
        fig.add_trace(
            go.Scatter(
                x=part["step_size"].astype(float).tolist(),
                y=y,
                mode="markers",
                marker=dict(size=8, color=_color(i)),
                name=label,
                text=hover,
            )
        )
    what = DRIFT_LABELS.get(column, column)
    # one legend row (two lines) per group below the x-axis title, the figure taller by as much:
    # nothing is cut off when a phone's width leaves room for one entry per row. Log ticks at
    # 1, 2 and 5 per decade: every digit crowds a narrow axis.
    finish_layout(
        fig,
        f"drift {what} vs step size (one point per run)",
        height=380 + 40 * len(fig.data),
        xaxis_title="step size (dt or lr)",
        yaxis_title=f"{what} (nats)",
        xaxis=dict(type="log", dtick="D2"),
        yaxis=dict(type="log", dtick="D2"),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0, font=dict(size=11)),
        margin=dict(l=60, r=20, t=50, b=80 + 40 * len(fig.data)),
    )
    return fig


def _group_lines(df: Any, keys: Sequence[str], x: str, y: Callable[[Any], Any]) -> go.Figure:
    """One line with markers per group of ``df`` by ``keys``, sorted by ``x``; ``y(rows)`` gives
    the values."""
    fig = figure()
    for i, key, part in _groups(df, keys):
        part = part.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=part[x].tolist(),
                y=y(part),
                mode="lines+markers",
                name=" / ".join(map(str, key)) or "runs",
                line=dict(color=_color(i)),
            )
        )
    return fig


def results_reversibility_figure(rev: Any) -> go.Figure:
    """reversibility.csv: round-trip θ error vs N per (integrator, dtype), log scale."""
    need = {"integrator", "steps", "theta_error"}
    if not need <= set(rev.columns):
        return message_figure(
            f"reversibility.csv needs columns {sorted(need)}; it has {list(rev.columns)}"
        )
    keys = [k for k in ("integrator", "dtype") if k in rev.columns]
    fig = _group_lines(
        rev, keys, "steps", lambda part: log_magnitudes(part["theta_error"].astype(float).tolist())
    )
    _name_coinciding(fig)
    dt = f" (dt = {short_number(float(rev['dt'].iloc[0]))})" if "dt" in rev.columns and len(rev) else ""
    finish_layout(
        fig,
        "round trip ‖θ_back − θ_0‖ / ‖θ_0‖" + dt,
        xaxis_title="steps N each way",
        yaxis_title="relative error",
        yaxis_type="log",
    )
    return fig


def _name_coinciding(fig: go.Figure) -> None:
    """A trace drawn exactly on an earlier one is named so ("= euler / float64") and drawn dotted
    over a wider first one, so both stay visible."""
    for i, later in enumerate(fig.data):
        for earlier in fig.data[:i]:
            if list(earlier.x) == list(later.x) and identical_series(earlier.y, later.y):
                later.name = f"{later.name} (= {earlier.name})"
                later.line.dash = "dot"
                earlier.line.width = 5
                break


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
    values = abl[cols].astype(float)
    if (values.abs().max().max() == 0.0) and len(values):
        names = ", ".join(sorted(set(abl["ablation"].astype(str))))
        return message_figure(f"{names}: identical to default, max |Δ| = 0 in every series")
    label = abl["ablation"].astype(str)
    if "seed" in abl.columns:
        label = label + " (seed " + abl["seed"].astype(str) + ")"
    if "step_size" in abl.columns:
        label = label + " @ " + abl["step_size"].astype(str)
    fig = figure()
    for i, col in enumerate(cols):
        fig.add_trace(
            go.Bar(
                x=label.tolist(),
                y=log_magnitudes(abl[col].astype(float).tolist()),
                name=col.removeprefix("max_abs_diff_"),
                marker_color=_color(i),
            )
        )
    values = abl[cols[0]].astype(float)
    same = sorted(set(label[values == 0.0]))
    title = "memory ablations: max |series − default series|"
    if same:
        title += f" — identical to default: {', '.join(same)}"
    finish_layout(fig, title, yaxis_type="log", barmode="group", yaxis_title="max |difference|")
    return fig


def results_cap_figure(cap: Any) -> go.Figure:
    """cap.csv: cap engagement rate vs step size per optimizer (and band)."""
    rate = next((c for c in ("cap_rate", "engagement_rate", "rate") if c in cap.columns), None)
    if rate is None or "step_size" not in cap.columns:
        return message_figure("cap.csv has no step_size / cap_rate columns to plot; see the table")
    keys = [k for k in ("optimizer", "band") if k in cap.columns]
    fig = _group_lines(
        cap, keys, "step_size", lambda part: (100 * part[rate].astype(float)).tolist()
    )
    finish_layout(
        fig,
        "energy-cap engagement",
        xaxis_title="step size",
        yaxis_title="steps with the cap engaged (%)",
        xaxis=dict(type="log", dtick="D2"),
    )
    return fig


def run_energy_figure(run: Any) -> go.Figure:
    """One stored run: L, K, H over the steps (top) and |ΔH^int|, |ΔH^traj|, |δ| (bottom, log)."""
    cols = run.columns
    steps = cols.get("step") or list(range(len(next(iter(cols.values()), []))))
    fig = subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("energy", "|ΔH| per step"),
    )
    same = "hamiltonian" in cols and "loss" in cols and identical_series(
        [float("nan") if v is None else v for v in cols["hamiltonian"]],
        [float("nan") if v is None else v for v in cols["loss"]],
    )
    for i, name in enumerate(("hamiltonian", "kinetic", "loss")):
        if name in cols:
            label = "H (= L: K is 0)" if same and name == "hamiltonian" else SERIES_LABELS[name]
            style = {"hamiltonian": {"width": 5}, "loss": {"dash": "dot"}}.get(name, {}) if same else {}
            fig.add_trace(line_trace(steps, cols[name], label, color=COLORS[i], **style), row=1, col=1)
    for i, name in enumerate(("delta_h_int", "delta_h_traj", "resampling")):
        if name in cols:
            trace = line_trace(steps, log_magnitudes(cols[name]), SERIES_LABELS[name], color=COLORS[3 + i])
            fig.add_trace(trace, row=2, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    m = run.manifest
    bits = [run.run_id] + [
        f"{k}={short_number(m[k]) if isinstance(m[k], float) else m[k]}"
        for k in ("optimizer", "mode", "step_size", "seed", "status")
        if k in m
    ]
    finish_layout(fig, ", ".join(map(str, bits)), height=560, xaxis2_title="step")
    return fig

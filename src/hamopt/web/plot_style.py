"""The page's plain plotly style and the small drawing helpers every figure of the page shares.

The only numbers computed here are those a plot needs: absolute values for a log axis (zeros and
non-finite values become gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "AXIS_STYLE",
    "COLORS",
    "LAYOUT",
    "as_array",
    "figure",
    "finish_layout",
    "identical_series",
    "line_trace",
    "light_figure",
    "log_magnitudes",
    "message_figure",
    "short_number",
    "subplots",
    "wrapped_title",
]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=40), height=380)
# "none" skips plotly's per-figure deep copy of a template (≈15 ms a figure); the style is set here
AXIS_STYLE = dict(
    gridcolor="#e5e5e5",
    zerolinecolor="#cccccc",
    linecolor="#888888",
    showline=True,
    ticks="outside",
)
_BASE_LAYOUT = dict(
    template="none",
    paper_bgcolor="white",
    plot_bgcolor="white",
    font=dict(size=12),
    xaxis=AXIS_STYLE,
    yaxis=AXIS_STYLE,
)


def figure(*traces: Any) -> go.Figure:
    """A figure with the page's plain style and ``traces``."""
    return go.Figure(data=list(traces), layout=_BASE_LAYOUT)


def light_figure(traces: Sequence[dict[str, Any]], title: str, *, height: int | None = None,
                 xaxis: dict[str, Any] | None = None, yaxis: dict[str, Any] | None = None,
                 **layout: Any) -> go.Figure:
    """What :func:`figure` then :func:`finish_layout` build, from plain trace and layout dicts and
    without plotly's property validation (≈ 20 ms a figure): for the figures redrawn on every
    change. Their tests rebuild them with validation (``go.Figure(fig.to_dict())``)."""
    full = {
        **_BASE_LAYOUT,
        **LAYOUT,
        **({"height": height} if height is not None else {}),
        "title": dict(text=wrapped_title(title), font=dict(size=13)),
        "xaxis": {**AXIS_STYLE, **(xaxis or {})},
        "yaxis": {**AXIS_STYLE, **(yaxis or {})},
        **layout,
    }
    return go.Figure(data=list(traces), layout=full, _validate=False)


def subplots(**kw: Any) -> go.Figure:
    """``plotly.subplots.make_subplots(**kw)`` in the page's plain style."""
    fig = make_subplots(figure=go.Figure(layout=dict(template="none")), **kw)
    fig.update_layout(paper_bgcolor="white", plot_bgcolor="white", font=dict(size=12))
    fig.update_xaxes(**AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    return fig


# characters per title line: what a phone-wide plot (≈ 330 px) shows at 13 pt
TITLE_LINE = 46


def wrapped_title(title: str, width: int = TITLE_LINE) -> str:
    """``title`` with ``<br>`` line breaks after ", ", "; ", ": " or before " — ", as close under
    ``width`` characters a line as the separators allow (the first one after it when none comes
    before); lines already broken with ``<br>`` are wrapped each on their own."""
    seps = (", ", "; ", ": ", " — ")
    lines = []
    for line in title.split("<br>"):
        while len(line) > width:
            before = [(line.rfind(sep, 0, width), sep) for sep in seps]
            after = [(line.find(sep, width), sep) for sep in seps]
            cut, sep = max(before)
            if cut <= 0:
                found = [c for c in after if c[0] > 0]
                if not found:
                    break
                cut, sep = min(found)
            keep = cut + (0 if sep == " — " else 1)
            lines.append(line[:keep].rstrip())
            line = line[cut + len(sep):].lstrip()
            if sep == " — ":
                line = "— " + line
        lines.append(line)
    return "<br>".join(lines)


def finish_layout(fig: go.Figure, title: str, *, height: int | None = None, **layout: Any) -> None:
    """The page's margins and height (``height`` and a ``margin`` in ``layout`` override them), a
    13-pt ``title`` (:func:`wrapped_title`) and ``layout``."""
    size = LAYOUT if height is None else {**LAYOUT, "height": height}
    size = {**size, **({"margin": layout.pop("margin")} if "margin" in layout else {})}
    fig.update_layout(**size, title=dict(text=wrapped_title(title), font=dict(size=13)), **layout)


def line_trace(x: Any, y: Any, name: str, **line: Any) -> go.Scatter:
    """A plain line named ``name`` (``line``: its plotly line style). A plain line with no markers
    is the cheapest trace for the browser to redraw."""
    return go.Scatter(x=x, y=y, mode="lines", name=name, line=line)


def log_magnitudes(values: Sequence[float | None]) -> np.ndarray:
    """|v| for a log axis; zeros, None and non-finite values become gaps (NaN)."""
    a = np.abs(as_array(values))
    a[~np.isfinite(a) | (a == 0.0)] = np.nan
    return a


def as_array(values: Sequence[float | None]) -> np.ndarray:
    """``values`` as float64 with None as NaN (a gap in a line)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def message_figure(text: str, height: int = 300) -> go.Figure:
    """An empty figure that shows ``text`` (used for invalid input and missing files)."""
    fig = figure()
    fig.add_annotation(
        text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14)
    )
    fig.update_layout(
        **{**LAYOUT, "height": height}, xaxis=dict(visible=False), yaxis=dict(visible=False)
    )
    return fig


def identical_series(a: Any, b: Any) -> bool:
    """Whether two series would be drawn on top of each other (equal to 1e-12 relative, NaN = NaN)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        return False
    scale = max(float(np.nanmax(np.abs(a), initial=0.0)), 1e-300)
    return bool(np.allclose(a, b, rtol=0.0, atol=1e-12 * scale, equal_nan=True))


def short_number(value: float, digits: int = 2) -> str:
    """A number as a person writes it: 0.05, 1e9, 2.1e-8, 1.75 (no "1000000000.0", no "e+09")."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == 0 or 1e-4 <= abs(value) < 1e5:
        return f"{value:.{digits + 2}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"

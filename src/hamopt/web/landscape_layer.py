r"""The landscape under a playground path, drawn cheaply: a PNG of the landscape placed on the plot's
axes, its level lines as one line trace, and a colour bar.

A plotly ``Contour`` trace makes the browser compute and draw every level on every redraw (≈ 0.5–
1.3 s per redraw on a busy 2-core machine, measured with ``Plotly.newPlot``); the same picture as
a layout image plus one polyline costs ≈ 0.1 s. Everything here depends only on the landscape, so
it is computed once per landscape and cached: the grid (the landscape's own ``value`` on an n × n
mesh over its bounds, ``log10(1 + L)`` for steep ones), the image, the level lines (``contourpy``
marching squares at evenly spaced levels).
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..landscapes import LANDSCAPES, Landscape

__all__ = [
    "GRID",
    "GRID_FOR",
    "LEVELS",
    "colorbar_trace",
    "grid",
    "image",
    "landscape_image",
    "level_lines",
    "levels_trace",
]

# grid points per axis; Ackley's unit-period ripples need more
GRID = 121
GRID_FOR = {"ackley": 241}
LEVELS = 16
COLORSCALE = "Viridis"


@lru_cache(maxsize=16)
def grid(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(xs, ys, z, log): the noise-free landscape on an n × n mesh over its bounds (z[i, j] at
    (xs[j], ys[i]); ``log10(1 + L)`` if ``log``)."""
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
    return xs.numpy(), ys.numpy(), z.numpy(), cls.log_contours


@lru_cache(maxsize=16)
def image(name: str) -> str:
    """The landscape coloured with Viridis as a ``data:image/png`` URI (top row = largest y)."""
    import matplotlib
    from PIL import Image

    _, _, z, _ = grid(name)
    span = float(z.max() - z.min()) or 1.0
    rgba = matplotlib.colormaps["viridis"]((z[::-1] - z.min()) / span)
    picture = Image.fromarray((255 * rgba[:, :, :3]).astype(np.uint8))
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@lru_cache(maxsize=16)
def level_lines(name: str) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """x and y of every level line, lines separated by None (one trace draws them all)."""
    import contourpy

    xs, ys, z, _ = grid(name)
    generator = contourpy.contour_generator(xs, ys, z)
    x_out: list[float | None] = []
    y_out: list[float | None] = []
    for level in np.linspace(float(z.min()), float(z.max()), LEVELS + 2)[1:-1]:
        for line in generator.lines(level):
            x_out += np.round(line[:, 0], 4).tolist() + [None]
            y_out += np.round(line[:, 1], 4).tolist() + [None]
    return tuple(x_out), tuple(y_out)


def landscape_image(name: str, *, xref: str = "x", yref: str = "y") -> dict[str, Any]:
    """The layout image that fills the axes ``xref``/``yref`` with the landscape."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    return dict(source=image(name), xref=xref, yref=yref, x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
                sizing="stretch", layer="below", opacity=0.85)


def levels_trace(name: str, **kw: Any) -> go.Scatter:
    """The level lines as one thin, translucent white polyline (no hover, no legend entry)."""
    x, y = level_lines(name)
    return go.Scatter(x=x, y=y, mode="lines", line=dict(color="rgba(255,255,255,0.45)", width=1),
                      hoverinfo="skip", showlegend=False, name="levels", **kw)


def colorbar_trace(name: str) -> go.Scatter:
    """An invisible two-point trace whose only job is the colour bar of the landscape image."""
    _, _, z, log = grid(name)
    (x0, _), (y0, _) = LANDSCAPES[name].cls.bounds
    return go.Scatter(
        x=[x0, x0], y=[y0, y0], mode="markers", hoverinfo="skip", showlegend=False, name="L",
        marker=dict(size=1, opacity=0, color=[float(z.min()), float(z.max())], colorscale=COLORSCALE,
                    showscale=True, colorbar=dict(title="log10(1+L)" if log else "L", len=0.8, thickness=12)),
    )

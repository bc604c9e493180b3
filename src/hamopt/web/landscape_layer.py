r"""The landscape under a playground path, drawn cheaply: a PNG of the landscape placed on the plot's
axes, its level lines (one line trace, or drawn into the picture), and a colour bar.

A plotly ``Contour`` trace makes the browser compute and draw every level on every redraw (≈ 0.5–
1.3 s per redraw on a busy 2-core machine, measured with ``Plotly.newPlot``); the same picture as
a layout image plus one polyline costs ≈ 0.1 s. Everything here depends only on the landscape, so
it is computed once per landscape and cached: the grid (the landscape's own ``value`` on an n × n
mesh over its bounds, ``log10(1 + L)`` for steep ones), the image, the level lines (``contourpy``
marching squares at evenly spaced levels). The playground's path plot, redrawn on every change,
takes the picture with the level lines already in it (:func:`lined_image`): then a redraw only
draws the path and its two markers, not thousands of level-line points.
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
    "lined_image",
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


# the lined picture: pixels (a wide plot's data area) and the supersampling of its lines
LINED_SIZE = (800, 400)
SUPERSAMPLE = 2


@lru_cache(maxsize=16)
def lined_image(name: str) -> str:
    """:func:`image` with the :func:`level_lines` drawn in (thin, translucent white, smoothed by
    supersampling), :data:`LINED_SIZE` pixels, as a ``data:image/png`` URI."""
    from PIL import Image, ImageDraw

    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    width, height = (SUPERSAMPLE * n for n in LINED_SIZE)
    head = "data:image/png;base64,"
    base = Image.open(io.BytesIO(base64.b64decode(image(name)[len(head):]))).convert("RGB")
    base = base.resize((width, height), Image.Resampling.BICUBIC)
    lines = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(lines)
    xs, ys = level_lines(name)
    run: list[tuple[float, float]] = []
    for x, y in [*zip(xs, ys, strict=True), (None, None)]:
        if x is None or y is None:
            if len(run) > 1:
                draw.line(run, fill=(255, 255, 255, 115), width=SUPERSAMPLE, joint="curve")
            run = []
            continue
        run.append(((x - x0) / (x1 - x0) * (width - 1), (y1 - y) / (y1 - y0) * (height - 1)))
    picture = Image.alpha_composite(base.convert("RGBA"), lines).convert("RGB")
    picture = picture.resize(LINED_SIZE, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.quantize(colors=256).save(buf, format="PNG", optimize=True)
    return head + base64.b64encode(buf.getvalue()).decode("ascii")


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


def landscape_image(name: str, *, xref: str = "x", yref: str = "y", lined: bool = False) -> dict[str, Any]:
    """The layout image that fills the axes ``xref``/``yref`` with the landscape (with its level
    lines drawn in if ``lined``)."""
    (x0, x1), (y0, y1) = LANDSCAPES[name].cls.bounds
    return dict(source=lined_image(name) if lined else image(name), xref=xref, yref=yref, x=x0, y=y1,
                sizex=x1 - x0, sizey=y1 - y0, sizing="stretch", layer="below", opacity=0.85)


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

"""Redraw the playground's plots in place: the figures travel as one JSON text and the browser
hands each to ``Plotly.react`` on the plot already on the page.

Gradio's ``gr.Plot`` builds a new plotly chart for every new value (the old chart first redraws
the new figure, then is thrown away and a fresh one draws it again and resizes): four full
drawings per plot per change. Here the three playground plots are drawn once by ``gr.Plot`` (a
placeholder on page load) and from then on updated with one ``Plotly.react`` each, which keeps
the chart, its size and its event handlers and redraws only what changed.

``PUSH_JS`` is the client-side function of a ``.then(None, js=...)`` step; it takes the text
:func:`figures_payload` wrote into a hidden textbox (empty: keep the plots as they are).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MAX_POINTS", "PUSH_JS", "decimated", "figures_payload"]

# points per series sent to the browser: more than a plot a few hundred pixels wide can show
MAX_POINTS = 1000


def decimated(n: int, limit: int = MAX_POINTS) -> tuple[np.ndarray, int]:
    """Indices ``0, k, 2k, …, n − 1`` that keep at most about ``limit`` of ``n`` points (always
    the first and the last), and the stride ``k`` (1: every point)."""
    if n <= limit:
        return np.arange(n), 1
    stride = math.ceil(n / limit)
    idx = np.arange(0, n, stride)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx, stride


def figures_payload(figures: dict[str, Any] | None) -> str:
    """``{element id: figure}`` as the JSON text :data:`PUSH_JS` reads ("" for None: keep the
    plots)."""
    if figures is None:
        return ""
    return "{" + ",".join(f'"{key}":{fig.to_json()}' for key, fig in figures.items()) + "}"


# Gradio's own plotly wrapper sets autosize, a responsive chart, and a top margin of ≥ 100 px
# under a shown label; the same here, so a pushed figure sits exactly where gr.Plot put one.
PUSH_JS = """
(payload) => {
  if (!payload || !window.Plotly) return;
  const figures = JSON.parse(payload);
  for (const [id, fig] of Object.entries(figures)) {
    const chart = document.querySelector(`#${id} .js-plotly-plot`);
    if (!chart) continue;
    const layout = fig.layout || {};
    layout.autosize = true;
    layout.margin = layout.margin || {};
    if (layout.title) layout.margin.t = Math.max(100, layout.margin.t || 0);
    layout.margin.autoexpand = true;
    window.Plotly.react(chart, fig.data, layout, {...(fig.config || {}), responsive: true});
  }
}
"""

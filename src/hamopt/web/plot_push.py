"""Redraw the playground's plots in place: the figures travel as one JSON text and the browser
hands each to ``Plotly.react`` on the plot already on the page.

Gradio's ``gr.Plot`` builds a new plotly chart for every new value (the old chart first redraws
the new figure, then is thrown away and a fresh one draws it again and resizes): four full
drawings per plot per change. Here the three playground plots are drawn once by ``gr.Plot`` (a
placeholder on page load) and from then on updated with one ``Plotly.react`` each, which keeps
the chart, its size and its event handlers and redraws only what changed.

``PUSH_JS`` is the client-side function of a ``.then(None, js=...)`` step; it takes the text
:func:`figures_payload` wrote into a hidden textbox: the figures (null: keep the plots as they
are) and the element ids of the input boxes to mark as invalid. It sets the mark class on those
boxes and clears it on the other ``markable`` ones, so a change sends no per-box updates.
"""

from __future__ import annotations

import json
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


def figures_payload(figures: dict[str, Any] | None, *, invalid: tuple[str, ...] = (),
                    markable: tuple[str, ...] = (), mark_class: str = "") -> str:
    """The JSON text :data:`PUSH_JS` reads: ``{element id: figure}`` (None: keep the plots), the
    ids of the boxes to mark with ``mark_class`` and of every box that may carry it."""
    drawn = "null" if figures is None else (
        "{" + ",".join(f'"{key}":{fig.to_json()}' for key, fig in figures.items()) + "}")
    marks = json.dumps({"invalid": list(invalid), "markable": list(markable), "mark_class": mark_class})
    return f'{{"figures":{drawn},"marks":{marks}}}'


# Gradio's own plotly wrapper sets autosize, a responsive chart, and a top margin of ≥ 100 px
# under a shown label; the same here, so a pushed figure sits exactly where gr.Plot put one.
# The first figure (the trajectory, the one a control visibly moves) is drawn at once; each further
# one after the browser had a frame to paint it, so the path shows without waiting for the other
# plots' drawing (≈ 40-60 ms each); a newer payload stops an older one's remaining drawing.
PUSH_JS = """
async (payload) => {
  if (!payload) return;
  const {figures, marks} = JSON.parse(payload);
  for (const id of marks.markable) {
    document.getElementById(id)?.classList.toggle(marks.mark_class, marks.invalid.includes(id));
  }
  if (!figures || !window.Plotly) return;
  // a newer payload that arrives while this one waits for a frame takes over: older figures
  // never overwrite newer ones
  const generation = window.__hamoptPushGeneration = (window.__hamoptPushGeneration || 0) + 1;
  let first = true;
  for (const [id, fig] of Object.entries(figures)) {
    if (!first) await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
    if (generation !== window.__hamoptPushGeneration) return;
    first = false;
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

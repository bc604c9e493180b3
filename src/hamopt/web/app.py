"""The Gradio page of ``hamopt demo``: a thin shell over :mod:`hamopt.playground` and
:mod:`hamopt.web.results`, built from three tabs.

* **Playground** (:mod:`hamopt.web.playground_tab`) — landscape, optimiser and hyperparameters;
  every change re-runs :func:`~hamopt.playground.run_trajectory` and redraws the path on the
  landscape (a cached image with level lines, :mod:`hamopt.web.landscape_layer`), H/K/L over the
  steps and |ΔH| per step (same-batch and cross-batch on the noisy quadratic). One button runs
  :func:`~hamopt.playground.drift_scan` and shows the fitted slope with its 95 % interval.

Every recompute shows a busy timer on the plots it will redraw; a tab runs one request at a time
and, while one runs, keeps only the latest change (superseded requests are dropped). Bad input
marks the offending box and leaves the last plots in place.
* **Reversibility** (:mod:`hamopt.web.reversibility_tab`) —
  :func:`~hamopt.playground.reversibility`: Leapfrog and Euler side by side.
* **Results** (:mod:`hamopt.web.results_tab`) — a lab results directory (``--results``): Table 1,
  interactive drift, reversibility and cap plots, the static figures, and any run's energy series.

The handlers (``playground_view`` …, importable from here) are plain functions of the control
values that return the markdown and figures to show; they never raise: invalid input becomes a
visible message and a diverging run is drawn as diverged.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import playground as pg
from ..landscapes import LANDSCAPES
from . import landscape_layer
from .controls import FIELD_LABELS, LANDSCAPE_CHOICES, OPTIMIZER_CHOICES
from .playground_tab import (
    CONTROL_NAMES,
    HYPER_FIELDS,
    INVALID_CLASS,
    SHORT_NAMES,
    drift_scan_view,
    playground_tab,
    playground_view,
    suggest_and_run,
    suggestion_view,
)
from .results import ResultsDir
from .results_tab import csv_view, results_tab, results_view, run_view
from .reversibility_tab import landscape_and_reversibility, reversibility_tab, reversibility_view

__all__ = [
    "CONTROL_NAMES",
    "FIELD_LABELS",
    "HYPER_FIELDS",
    "LANDSCAPE_CHOICES",
    "OPTIMIZER_CHOICES",
    "SHORT_NAMES",
    "build_app",
    "csv_view",
    "drift_scan_view",
    "landscape_and_reversibility",
    "playground_view",
    "results_view",
    "reversibility_view",
    "run_view",
    "suggest_and_run",
    "suggestion_view",
]


# the page's own rules: a box named by an invalid-input message is marked; table headers never
# break inside a word (a wide table scrolls in its own box instead); plots never push the page wider
PAGE_CSS = f"""
.{INVALID_CLASS} input, .{INVALID_CLASS} textarea {{
  outline: 2px solid #d62728 !important; background: #fff0f0 !important; }}
#rs-table th, #rs-table th *, #rs-csv-table th, #rs-csv-table th * {{
  white-space: nowrap !important; word-break: keep-all !important; overflow-wrap: normal !important; }}
.js-plotly-plot, .plot-container {{ max-width: 100%; }}
#rv-status th, #pg-status th {{ white-space: nowrap; }}
#rv-status table, #pg-status table {{ display: block; overflow-x: auto; max-width: 100%; }}
"""


def build_app(results: str | Path | None = None) -> gr.Blocks:
    """The page; ``results`` is the lab results directory the browser may read (nothing else)."""
    root = ResultsDir(results) if results is not None else None
    pg.run_trajectory(
        pg.PlaygroundConfig(steps=1)
    )  # pay torch's one-time imports before the first visitor
    for name in LANDSCAPES:  # and every landscape's image and level lines (cached)
        landscape_layer.image(name)
        landscape_layer.level_lines(name)
        landscape_layer.lined_image(name)
    with gr.Blocks(title="hamopt demo", analytics_enabled=False) as app:
        gr.HTML(f"<style>{PAGE_CSS}</style>", padding=False)
        gr.Markdown("# hamopt — Hamiltonian optimisers, interactively")
        playground_tab(app)
        reversibility_tab(app)
        results_tab(app, root)
    return app

"""The Gradio page of ``hamopt demo``: a thin shell over :mod:`hamopt.playground` and
:mod:`hamopt.web.results`, built from three tabs.

* **Playground** (:mod:`hamopt.web.playground_tab`) — landscape, optimiser and hyperparameters;
  every change re-runs :func:`~hamopt.playground.run_trajectory` and redraws the path on the
  contour plot, H/K/L over the steps and |ΔH| per step (same-batch and cross-batch on the noisy
  quadratic). One button runs :func:`~hamopt.playground.drift_scan` and shows the fitted slope
  with its 95 % interval.
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
from .controls import FIELD_LABELS, LANDSCAPE_CHOICES, OPTIMIZER_CHOICES
from .playground_tab import (
    CONTROL_NAMES,
    HYPER_FIELDS,
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


def build_app(results: str | Path | None = None) -> gr.Blocks:
    """The page; ``results`` is the lab results directory the browser may read (nothing else)."""
    root = ResultsDir(results) if results is not None else None
    pg.run_trajectory(
        pg.PlaygroundConfig(steps=1)
    )  # pay torch's one-time imports before the first visitor
    with gr.Blocks(title="hamopt demo", analytics_enabled=False) as app:
        gr.Markdown("# hamopt — Hamiltonian optimisers, interactively")
        playground_tab(app)
        reversibility_tab(app)
        results_tab(app, root)
    return app

"""The page's plotly figures in one namespace (drawing only, no computation).

:mod:`hamopt.web.playground_figures` draws the playground's results (path on the landscape,
H/K/L, |ΔH| per step, drift scan, round trips), :mod:`hamopt.web.lab_figures` a lab results
directory's tables and runs, both in the style of :mod:`hamopt.web.plot_style`.
"""

from __future__ import annotations

from .lab_figures import (
    results_ablation_figure,
    results_cap_figure,
    results_drift_figure,
    results_reversibility_figure,
    run_energy_figure,
)
from .playground_figures import (
    contour_figure,
    delta_h_figure,
    drift_scan_figure,
    energy_figure,
    reversibility_figure,
)
from .plot_style import message_figure

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

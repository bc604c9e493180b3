"""Hybrid in the 2-D playground: offered, run, and drawn one colour per phase."""

from dataclasses import replace

import pytest

from hamopt.playground import OPTIMIZERS, run_trajectory, suggested_config
from hamopt.playground.phases import phase_spans


def test_hybrid_is_offered_and_its_phases_split_the_path():
    assert "hybrid" in OPTIMIZERS
    config = replace(suggested_config("double_well", "hybrid"), steps=40, gamma=0.1)
    tr = run_trajectory(config)
    assert tr.steps_run == 40 and not tr.diverged and tr.loss[-1] < tr.loss[0]
    spans = phase_spans(tr)
    assert [(s.label, s.start, s.stop) for s in spans] == [("leapfrog", 0, 20), ("adamw", 20, 40)]


def test_single_optimiser_has_one_span():
    tr = run_trajectory(replace(suggested_config("quadratic", "adamw"), steps=10))
    assert [(s.start, s.stop) for s in phase_spans(tr)] == [(0, 10)]


def test_contour_figure_draws_each_phase_in_its_own_colour():
    pytest.importorskip("plotly")
    from hamopt.web.playground_figures import contour_figure

    fig = contour_figure(run_trajectory(replace(suggested_config("quadratic", "hybrid"), steps=12)))
    paths = [t for t in fig.data if str(t.name).startswith("phase")]
    assert [t.name for t in paths] == ["phase 0: leapfrog", "phase 1: adamw"]
    assert paths[0].line.color != paths[1].line.color
    assert paths[0].x[-1] == paths[1].x[0]  # the second phase starts where the first ended

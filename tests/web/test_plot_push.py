"""The playground's in-place redraw: the JSON text the page pushes to Plotly.react, and the
thinning of long runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from hamopt.web import playground_tab as P  # noqa: E402
from hamopt.web.plot_push import MAX_POINTS, decimated  # noqa: E402

from .test_app import controls  # noqa: E402


def test_push_carries_the_three_figures_and_nothing_on_bad_input():
    status, payload = P.playground_push(*controls())
    pushed = json.loads(payload)
    figures, marks = pushed["figures"], pushed["marks"]
    assert list(figures) == ["pg-contour", "pg-energy", "pg-delta"]
    assert "dt=0.05" in figures["pg-contour"]["layout"]["title"]["text"]
    assert figures["pg-contour"]["data"][0]["name"] == "path"
    assert "Leapfrog" in status and marks["invalid"] == []
    assert marks["mark_class"] == P.INVALID_CLASS and len(marks["markable"]) == len(P.MARKED_BOXES)
    assert "pg-step-size" in marks["markable"] and "pg-x0" in marks["markable"]
    status, payload = P.playground_push(*controls(step_size=1e9))
    pushed = json.loads(payload)
    assert pushed["figures"] is None and "got 1e9" in status
    assert pushed["marks"]["invalid"] == ["pg-step-size"]
    assert json.loads(P.playground_push(*controls(x0=None))[1])["marks"]["invalid"] == ["pg-x0", "pg-y0"]


def test_suggest_and_push_sends_the_suggested_run():
    out = P.suggest_and_push(*controls(landscape="rosenbrock"))
    status, payload = out[-2:]
    assert "dt = 0.002" in status
    assert "Rosenbrock" in json.loads(payload)["figures"]["pg-contour"]["layout"]["title"]["text"]


@pytest.mark.parametrize("n", [1, 2, MAX_POINTS, MAX_POINTS + 1, 5001])
def test_decimated_keeps_the_ends_and_at_most_about_the_limit(n):
    idx, stride = decimated(n)
    assert idx[0] == 0 and idx[-1] == n - 1
    assert len(idx) <= MAX_POINTS + 1 and np.all(np.diff(idx) >= 1)
    assert (stride == 1) == (n <= MAX_POINTS) and (stride > 1 or len(idx) == n)


def test_long_runs_are_drawn_thinned_and_say_so():
    _, contour, energy, delta = P.playground_view(*controls(steps=3000, step_size=0.01))
    assert len(contour.data[0].x) <= MAX_POINTS + 1 and contour.data[0].x[-1] == contour.data[-1].x[0]
    assert len(energy.data[0].x) <= MAX_POINTS + 1 and energy.data[0].x[-1] == 3000
    assert "(1 step in 4 drawn)" in energy.layout.title.text  # 3001 points
    assert "(1 step in 3 drawn)" in delta.layout.title.text  # 3000 steps


@pytest.mark.parametrize(
    "change",
    [{}, {"landscape": "noisy_quadratic"}, {"optimizer": "hybrid", "step_size": 0.01},
     {"step_size": 2.0, "steps": 500}, {"optimizer": "adamw", "step_size": 0.01}],
    ids=["leapfrog", "noisy", "hybrid", "diverged", "adamw"],
)
def test_light_figures_pass_plotly_validation(change):
    """The playground's figures are built without plotly's checks; rebuilt with them, they are
    accepted as they are (a misspelt property would raise here)."""
    import plotly.graph_objects as go

    _, *figures = P.playground_view(*controls(**change))
    for fig in figures:
        checked = go.Figure(fig.to_dict()).to_plotly_json()
        light = fig.to_plotly_json()
        # the template "none" is expanded by the checked build, kept as its name by the light one
        assert light["layout"].pop("template") == "none" and checked["layout"].pop("template")
        assert checked == light


def test_long_titles_wrap_for_a_phone_wide_plot():
    from hamopt.web.plot_style import TITLE_LINE, wrapped_title

    title = "run leapfrog, optimizer=leapfrog, mode=exact, step_size=0.02, seed=0, band=low"
    lines = wrapped_title(title).split("<br>")
    assert len(lines) == 2 and all(len(line) <= TITLE_LINE for line in lines)
    assert " ".join(lines) == title
    assert wrapped_title("energy: H = K + L") == "energy: H = K + L"
    dash = wrapped_title("rerun (seed 0) @ 0.04: max |series − default series| — identical to default: rerun")
    assert dash.split("<br>")[-1].startswith("— identical")

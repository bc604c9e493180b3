"""What the page tells a person: bad input marks its box and keeps the last plot, numbers read
as written, identical series are named, the landscape is drawn cheaply, surprises are explained."""

from __future__ import annotations

import math

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("plotly")

from hamopt.web import playground_tab as P  # noqa: E402
from hamopt.web import reversibility_tab as R  # noqa: E402
from hamopt.web.controls import readable_numbers  # noqa: E402
from hamopt.web.landscape_layer import image, lined_image  # noqa: E402
from hamopt.web.plot_style import identical_series, short_number  # noqa: E402

from .test_app import controls  # noqa: E402


def test_bad_input_keeps_the_plots_and_marks_only_its_box():
    out = P.playground_event(*controls(step_size=1e9))
    status, plots, boxes = out[0], out[1:4], out[4:]
    assert "got 1e9" in status and "1000000000" not in status
    assert all(p is gr.skip() or p == gr.skip() for p in plots)
    marked = [name for name, u in zip(P.MARKED_BOXES, boxes, strict=True) if u["elem_classes"]]
    assert marked == ["step_size"]
    out = P.playground_event(*controls(x0=None))
    assert [n for n, u in zip(P.MARKED_BOXES, out[4:], strict=True) if u["elem_classes"]] == ["x0", "y0"]
    # a good run draws and clears every mark
    out = P.playground_event(*controls())
    assert out[1].layout.title.text.startswith("Leapfrog")
    assert not any(u["elem_classes"] for u in out[4:])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("got 1000000000.0", "got 1e9"),
        ("got 1e-09", "got 1e-9"),
        ("got 0.7045522469452635", "got 0.704552"),
        ("must be in 1 … 20000, got 99999", "must be in 1 … 20000, got 99999"),
        ("in (0, 10], got -1.0", "in (0, 10], got -1"),
    ],
)
def test_numbers_in_messages_read_as_written(text, want):
    assert readable_numbers(text) == want


def test_short_number_and_identical_series():
    assert [short_number(v) for v in (1e9, 2.1e-8, 1.75, 0.05, 0.7045522469452635)] == [
        "1e9", "2.1e-8", "1.75", "0.05", "0.7046"]
    a = np.array([1.0, 2.0, math.nan])
    assert identical_series(a, a.copy()) and not identical_series(a, a + 1e-6)


def test_landscape_is_an_image_with_level_lines_not_a_contour_trace():
    _, contour, energy, _ = P.playground_view(*controls())
    assert not any(t.type == "contour" for t in contour.data)
    # the level lines are drawn into the cached picture: the redrawn figure carries only the path,
    # the colour bar and the two markers
    assert contour.layout.images[0].source == lined_image("quadratic") != image("quadratic")
    assert [t.name for t in contour.data] == ["path", "L", "start", "end"]
    assert contour.data[0].line.color != "white"  # visible in the white legend
    assert "γ=0" in contour.layout.title.text and "cap engaged" not in energy.layout.title.text


def test_h_equal_to_l_is_named_and_both_stay_visible():
    for name in ("adamw", "leapfrog"):
        _, _, energy, _ = P.playground_view(*controls(optimizer=name, step_size=0.01))
        h, _, loss = energy.data
        same = identical_series(h.y, loss.y)
        assert (h.name == "H (= L: K is 0)") is same, name
        if same:
            assert h.line.width > 2 and loss.line.dash == "dot"


def test_an_unexpected_round_trip_error_is_explained_with_its_growth(monkeypatch):
    args = ("double_well", 0.02, 40, 1.0, 0.1, -1.6, 0.8, 0)
    text, _ = R.reversibility_view(*args)
    assert "Why Leapfrog misses" not in text  # rounding level: nothing to explain
    monkeypatch.setattr(R, "UNEXPECTED_ERROR", -1.0)
    text, fig = R.reversibility_view(*args)
    assert "Why Leapfrog misses θ_0 here" in text and "chaotic" in text
    assert "N = 2:" in text and "N = 10:" in text and "N = 40:" in text
    assert all(len(a.text) <= 28 for a in fig.layout.annotations)  # titles fit side by side on a phone

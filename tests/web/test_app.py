"""Page handlers (without a browser) and the ``hamopt demo`` command's argument checks."""

from __future__ import annotations

import argparse
import json
import math

import pytest

pytest.importorskip("gradio")
pytest.importorskip("plotly")

from hamopt.cli import build_parser  # noqa: E402
from hamopt.cli.demo import check_args, is_loopback  # noqa: E402
from hamopt.errors import OptionError  # noqa: E402
from hamopt.web import app as A  # noqa: E402

from .resultsdir import write_results_dir  # noqa: E402

# the playground controls in page order
NAMES = list(A.CONTROL_NAMES)
GOOD = ["quadratic", "leapfrog", 0.05, 0.0, 1.0, 0, 0.9, 0.0, 100, 0.1, 2.5, 1.2, 0, 1.0, -0.1, 0.0]


def controls(**changes):
    values = dict(zip(NAMES, GOOD, strict=True))
    values.update(changes)
    return [values[n] for n in NAMES]


def test_playground_view_draws_the_run():
    status, contour, energy, delta = A.playground_view(*controls())
    assert "**Leapfrog** dt = 0.05" in status and "100 steps" in status
    (path,) = [t for t in contour.data if t.name == "path"]
    assert len(path.x) == 101 and path.x[0] == 2.5 and path.y[0] == 1.2
    assert "dt=0.05" in contour.layout.title.text
    assert [t.name for t in energy.data] == ["H", "K", "L"]
    assert delta.layout.yaxis.type == "log"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"step_size": 0.0}, "dt / lr (step size): must be finite and in (0, 10]"),
        ({"step_size": None}, "dt / lr (step size): must be a number"),
        ({"step_size": float("nan")}, "dt / lr (step size)"),
        ({"steps": 10**6}, "steps: must be a whole number in [1, 5000]"),
        ({"cap": 0.5}, "energy cap α"),
        ({"x0": None}, "start: give both x and y"),
    ],
)
def test_bad_input_gives_a_visible_message(change, needle):
    status, contour, _, _ = A.playground_view(*controls(**change))
    assert status.startswith("**Invalid input**") and needle in status
    assert needle in contour.layout.annotations[0].text


def test_divergence_is_drawn_not_raised():
    status, contour, energy, _ = A.playground_view(*controls(step_size=2.0, steps=500))
    assert "Diverged at step" in status
    assert "DIVERGED" in contour.layout.title.text
    end = contour.data[-1]
    assert end.name.startswith("diverged")
    # the cross lies inside the frame, even when the path left the landscape's bounds
    (x0, x1), (y0, y1) = contour.layout.xaxis.range, contour.layout.yaxis.range
    assert x0 <= end.x[0] <= x1 and y0 <= end.y[0] <= y1
    assert all(math.isfinite(v) for v in energy.data[0].y)


def test_ecd_optimizers_run_when_present():
    import hamopt

    if not hasattr(hamopt, "ECDSep"):
        pytest.skip("this build has no ECD optimisers")
    for name in ("ecdsep", "bbi", "ecdq1"):
        status, contour, _, _ = A.playground_view(*controls(optimizer=name, step_size=0.01))
        assert "lr = 0.01" in status and "Invalid" not in status, status
    status, *_ = A.playground_view(*controls(optimizer="ecdsep", step_size=0.01, eta=0.5))
    assert "Invalid input" in status and "eta" in status  # ECDSep's own check (η ≥ 1), shown


def test_suggestions_show_only_the_controls_an_optimizer_reads():
    updates = A.suggestion_view("rosenbrock", "sgd_momentum")
    assert updates[0]["value"] == 5e-4 and updates[0]["label"].startswith("lr")
    shown = {n for n, u in zip(A.HYPER_FIELDS, updates[4:], strict=True) if u["visible"]}
    assert shown == {"momentum", "weight_decay"}
    shown = {
        n
        for n, u in zip(A.HYPER_FIELDS, A.suggestion_view("quadratic", "leapfrog")[4:], strict=True)
        if u["visible"]
    }
    assert shown == {"gamma", "mass", "cap"}
    noisy = A.suggestion_view("noisy_quadratic", "leapfrog")[4:]
    shown = {n for n, u in zip(A.HYPER_FIELDS, noisy, strict=True) if u["visible"]}
    assert shown == {"gamma", "mass", "cap", "noise"}


def test_noisy_landscape_shows_both_energy_changes():
    _, _, _, delta = A.playground_view(*controls(landscape="noisy_quadratic"))
    names = [t.name for t in delta.data]
    assert any("ΔH<sup>int</sup>" in n for n in names) and any("ΔH<sup>traj</sup>" in n for n in names)


def test_drift_scan_view_reports_slope_and_interval():
    md, fig = A.drift_scan_view(*controls(step_size=0.08, steps=300))
    assert "slope **3.0" in md or "slope **2.9" in md
    assert "95 % CI [" in md
    assert fig.layout.xaxis.type == "log"


def test_reversibility_view_side_by_side():
    md, fig = A.reversibility_view("double_well", 0.02, 100, 1.0, 0.1, -1.6, 0.8, 0)
    assert "| Leapfrog |" in md and "| Euler |" in md
    assert len(fig.layout.annotations) == 2  # the two subplot titles
    md, _ = A.reversibility_view("double_well", -0.02, 100, 1.0, 0.1, -1.6, 0.8, 0)
    assert "Invalid input" in md


def test_results_views_and_guard(tmp_path):
    from hamopt.web.results import ResultsDir

    root = ResultsDir(write_results_dir(tmp_path / "res", steps=40))
    out = A.results_view(root, ".", "drift_int")
    status, table, drift_fig, rev_fig, cap_fig, abl_fig, csvs, gallery, runs = out
    assert "identical to default: rerun (seed 0) @ 0.04" in abl_fig.layout.title.text
    assert [t.name for t in abl_fig.data] == ["hamiltonian", "loss"]
    assert "6 runs" in status and "1 figures" in status
    assert csvs["choices"] == [
        "ablations.csv",
        "cap.csv",
        "drift.csv",
        "reversibility.csv",
        "table.csv",
    ]
    assert csvs["value"] == "cap.csv"
    _, cap = A.csv_view(root, ".", "cap.csv")
    assert list(cap.columns) == ["optimizer", "band", "step_size", "cap_rate"]
    for bad in ("../x.csv", "/etc/passwd", "runs/../../secret.csv"):
        assert "Refused" in A.csv_view(root, ".", bad)[0]
    assert len(table) == 4
    assert any("slope" in t.name for t in drift_fig.data)
    assert len(gallery) == 1
    assert runs["choices"] and runs["value"] == sorted(runs["choices"])[0]
    status, fig, manifest = A.run_view(root, ".", runs["value"])
    assert json.loads(manifest)["run_id"] == runs["value"]
    assert len(fig.data) >= 4
    for bad in ("..", "/etc", "../.."):
        assert "refused" in A.results_view(root, bad, "drift_int")[0]
    assert "Refused" in A.run_view(root, ".", "../../etc")[0]
    assert "no results directory" in A.results_view(None, ".", "drift_int")[0]


def test_demo_command_arguments(tmp_path):
    args = build_parser().parse_args(["demo", "--port", "0"])
    with pytest.raises(OptionError, match="--port must be in 1..65535"):
        check_args(args)
    args = build_parser().parse_args(["demo", "--results", str(tmp_path / "absent")])
    with pytest.raises(OptionError, match="is not a directory"):
        check_args(args)
    args = build_parser().parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.port == 7860
    check_args(args)
    with pytest.warns(UserWarning, match="binding 0.0.0.0"):
        check_args(argparse.Namespace(host="0.0.0.0", port=7860, results=None))
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_a_new_landscape_runs_once_with_the_suggested_settings():
    out = A.suggest_and_run(*controls(landscape="rosenbrock", step_size=0.05, x0=2.5, y0=1.2))
    n = 4 + len(A.HYPER_FIELDS)
    updates, (status, contour, _, _) = out[:n], out[n:]
    assert (
        updates[0]["value"] == 0.002 and updates[2]["value"] == -1.2 and updates[3]["value"] == 1.0
    )
    assert "dt = 0.002" in status and "Diverged" not in status
    assert contour.data[0].name == "path" and contour.data[0].x[0] == -1.2
    x0, y0, md, _ = A.landscape_and_reversibility("himmelblau", 0.005, 50, 1.0, 0.1, -1.6, 0.8, 0)
    assert (x0["value"], y0["value"]) == (-0.5, 0.5) and "| Leapfrog |" in md


# the page's element ids in page order (depth-first through the layout): the browser test and
# bookmarked selectors rely on them
PAGE_ELEMENT_IDS = [
    *("pg-landscape", "pg-optimizer", "pg-step-size", "pg-gamma", "pg-mass", "pg-cap"),
    *("pg-momentum", "pg-wd", "pg-eta", "pg-f0", "pg-nu", "pg-steps", "pg-noise", "pg-x0"),
    *("pg-y0", "pg-seed", "pg-scan", "pg-status", "pg-contour", "pg-energy", "pg-delta"),
    *("pg-scan-status", "pg-scan-plot"),
    *("rv-landscape", "rv-dt", "rv-steps", "rv-mass", "rv-noise", "rv-x0", "rv-y0", "rv-seed"),
    *("rv-status", "rv-plot"),
    *("rs-path", "rs-column", "rs-load", "rs-status", "rs-table", "rs-drift", "rs-rev", "rs-cap"),
    *("rs-ablations", "rs-csv", "rs-csv-status", "rs-csv-table", "rs-gallery", "rs-run"),
    *("rs-run-status", "rs-run-plot", "rs-manifest"),
]


def _page_components():
    config = A.build_app().get_config_file()
    by_id = {c["id"]: c for c in config["components"]}
    order = []

    def walk(node):
        order.append(by_id[node["id"]])
        for child in node.get("children", []):
            walk(child)

    for child in config["layout"]["children"]:
        walk(child)
    return order


def test_page_layout_keeps_its_element_ids_and_initial_visibility():
    components = _page_components()
    elem_ids = [c["props"]["elem_id"] for c in components if c["props"].get("elem_id")]
    assert elem_ids == PAGE_ELEMENT_IDS
    assert [c["props"]["label"] for c in components if c["type"] == "tabitem"] == [
        "Playground",
        "Reversibility",
        "Results",
    ]
    # the hyperparameter boxes shown at first are those a new choice of the default pair shows
    visible = {c["props"].get("elem_id"): c["props"].get("visible") for c in components}
    updates = A.suggestion_view("quadratic", "leapfrog")[4:]
    elem_of = {"weight_decay": "pg-wd"}
    for name, update in zip(A.HYPER_FIELDS, updates, strict=True):
        elem_id = elem_of.get(name, f"pg-{name.replace('_', '-')}")
        assert visible[elem_id] is update["visible"], name


def test_figures_import_without_gradio_and_keep_their_names():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hamopt.web import controls, figures, results\n"
        "assert 'gradio' not in sys.modules\n"
        "assert all(callable(getattr(figures, n)) for n in figures.__all__)\n"
        "print(len(figures.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "11"
    assert all(hasattr(A, name) for name in A.__all__)

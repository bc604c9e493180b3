"""The stability monitor in the lab: spec field, recorded series, bad values, unchanged runs."""

from __future__ import annotations

import math

import pytest

from hamopt.errors import SpecError
from hamopt.experiments.runner import run_sweep
from hamopt.experiments.spec import parse_spec, spec_hash
from hamopt.experiments.store import RunStore

from .tiny import tiny_dict, tiny_spec

OPTIMIZERS = [
    {"name": "leapfrog-exact", "type": "leapfrog", "mode": "exact", "band": "band",
     "stability_fractions": [0.2], "hyper": {"cap": None}},
    {"name": "adamw", "type": "adamw", "band": "band", "step_sizes": [0.003]},
    {"name": "sgd-momentum", "type": "sgd", "band": "band", "stability_fractions": [0.2, 2.0]},
]


def _small(**changes):
    d = tiny_dict(optimizers=OPTIMIZERS, seeds=[0], ablations=None, reversibility=None, steps=10)
    d.update(changes)
    return parse_spec(d)


def _series(out):
    store = RunStore(out)
    return {r.run_id: (r.manifest, store.read_steps(r.run_id).to_pydict()) for r in store.runs()}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("stability")
    on = _small(stability={"every": 4, "iters": 15})
    off = _small()
    run_sweep(on, root / "on", progress=False, log=lambda s: None)
    run_sweep(off, root / "off", progress=False, log=lambda s: None)
    return _series(root / "on"), _series(root / "off"), root


def test_monitor_records_every_k_steps_and_null_elsewhere(sweeps):
    on, _, _ = sweeps
    assert len(on) == 4
    for run_id, (manifest, cols) in on.items():
        n = len(cols["step"])
        measured = [t for t in range(n) if cols["lambda_max"][t] is not None]
        expected = [t for t in (0, 4, 8) if t < n]
        if manifest["type"] == "adamw":
            expected = expected[1:]  # no preconditioner before Adam's first step
        if manifest["status"] == "diverged":  # a diverging run stops early, or its curvature goes non-finite
            assert set(measured) <= set(expected)
        else:
            assert measured == expected, run_id
        for t in measured:
            lam, thr, ratio = (cols[c][t] for c in ("lambda_max", "threshold", "sharpness_ratio"))
            assert thr > 0 and ratio == pytest.approx(lam / thr, rel=1e-12)
        for t in set(range(n)) - set(measured):
            assert cols["threshold"][t] is None and cols["sharpness_ratio"][t] is None


def test_threshold_is_the_optimizers_own(sweeps):
    on, _, _ = sweeps
    for _, (manifest, cols) in on.items():
        thr = next(v for v in cols["threshold"] if v is not None)
        s = manifest["step_size"]
        if manifest["type"] == "sgd":
            assert thr == pytest.approx(3.8 / s, rel=1e-9)
        elif manifest["type"] == "adamw":
            assert thr == pytest.approx(38.0 / s, rel=1e-9)
        else:
            a = math.exp(-1e-3 * s / 2)
            assert thr == pytest.approx(4 * (1 + a * a) / ((1 + a) * s * s), rel=1e-9)


def test_a_step_beyond_the_limit_starts_above_ratio_one(sweeps):
    on, _, _ = sweeps
    ratios = {m["step_size"]: c["sharpness_ratio"][0] for m, c in on.values() if m["type"] == "sgd"}
    small, large = sorted(ratios)
    # fractions 0.2 and 2.0 of the calibrated limit in h = √lr: lr and so the ratio at the same
    # initial state differ by (2.0/0.2)²
    assert ratios[large] / ratios[small] == pytest.approx(100.0, rel=1e-3)
    assert ratios[small] < 1.0 < ratios[large]


def test_the_monitor_does_not_change_the_run(sweeps):
    on, off, _ = sweeps
    assert on.keys() == off.keys()
    for key in on:
        a, b = on[key][1], off[key][1]
        for col in ("loss", "loss_after", "grad_norm", "delta_h_int", "kinetic"):
            assert a[col] == b[col], (key, col)
        assert "lambda_max" not in b


def test_spec_hash_without_the_monitor_is_unchanged():
    assert spec_hash(tiny_spec()) == "7321d868a86f1b94af334ffc4be0d3616f5587675a8f16247f3a6b060b1032bb"
    assert spec_hash(_small(stability={"every": 4})) != spec_hash(_small())


@pytest.mark.parametrize(
    ("stability", "match"),
    [
        ({"every": 0}, r"stability\.every"),
        ({"every": 11}, r"stability\.every must be in 1\.\.10"),
        ({"every": 2, "iters": 0}, r"stability\.iters"),
        ({"every": 2, "tol": 1.5}, r"stability\.tol"),
        ({"every": 2, "batch_size": 10_000}, r"stability\.batch_size: must be in 1\.\.400"),
        ({"every": 2, "bogus": 1}, r"stability\.bogus"),
        ({"iters": 5}, r"stability\.every"),
        ({"every": True}, r"stability\.every"),
    ],
)
def test_bad_stability_values_name_the_field(stability, match):
    with pytest.raises(SpecError, match=match):
        _small(stability=stability)


def test_stability_quick_preset():
    from hamopt.experiments.presets import PRESETS, load_preset

    assert "stability-quick" in PRESETS
    spec = load_preset("stability-quick")
    assert spec.stability is not None and spec.stability.every == 10
    assert spec.dataset.name == "digits" and spec.model.name == "mlp"
    assert {o.type for o in spec.optimizers} == {"leapfrog", "sgd", "adamw"}
    for o in spec.optimizers:
        if o.stability_fractions is not None:  # across the limit measured at initialisation
            assert min(o.stability_fractions) < 1.0 < max(o.stability_fractions)
        if o.type == "leapfrog":
            assert o.hyper["cap"] is None  # the energy cap would hold a diverging run back


def test_report_and_web_page_show_the_ratio(sweeps, tmp_path_factory):
    import shutil

    from hamopt.report import write_report
    from hamopt.report.stability_figures import STABILITY_FIGURE
    from hamopt.web.results import ResultsDir
    from hamopt.web.stability_figures import run_figure

    root = sweeps[2]
    out = tmp_path_factory.mktemp("report") / "on"
    shutil.copytree(root / "on", out)
    files = write_report(out)
    assert (out / "figures" / f"{STABILITY_FIGURE}.png").stat().st_size > 10_000
    assert f"<figure id='{STABILITY_FIGURE}'>" in files.html.read_text(encoding="utf-8")
    import csv

    rows = list(csv.DictReader((out / "stability.csv").open(encoding="utf-8")))
    assert len(rows) == 4 and all(int(r["measurements"]) >= 2 for r in rows)
    assert {r["optimizer"] for r in rows} == {"leapfrog-exact", "adamw", "sgd-momentum"}
    big = next(r for r in rows if r["optimizer"] == "sgd-momentum" and float(r["ratio_first"]) > 1)
    assert big["first_step_above_1"] == "0"
    # the web page: a run with the monitor gets the ratio panel, a run without keeps the energy figure
    rd = ResultsDir(out.parent)
    run_id = next(iter(sweeps[0]))
    fig = run_figure(rd.sub("on"), rd.sub("on").run(run_id))
    assert any(t.name == "ratio" for t in fig.data)
    rd_off = ResultsDir(root / "off")
    fig = run_figure(rd_off, rd_off.run(run_id))
    assert not any(t.name == "ratio" for t in fig.data)


def test_sweep_without_the_monitor_gets_no_stability_figure(sweeps):
    from hamopt.experiments.analysis import analyse
    from hamopt.report.stability_figures import write_stability_figures

    off = sweeps[2] / "off"
    assert write_stability_figures(off, analyse(off)) == {}
    assert not (off / "stability.csv").exists()

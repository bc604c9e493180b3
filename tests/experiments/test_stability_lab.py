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
    return _series(root / "on"), _series(root / "off")


def test_monitor_records_every_k_steps_and_null_elsewhere(sweeps):
    on, _ = sweeps
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
    on, _ = sweeps
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
    on, _ = sweeps
    ratios = {m["step_size"]: c["sharpness_ratio"][0] for m, c in on.values() if m["type"] == "sgd"}
    small, large = sorted(ratios)
    # fractions 0.2 and 2.0 of the calibrated limit in h = √lr: lr and so the ratio at the same
    # initial state differ by (2.0/0.2)²
    assert ratios[large] / ratios[small] == pytest.approx(100.0, rel=1e-3)
    assert ratios[small] < 1.0 < ratios[large]


def test_the_monitor_does_not_change_the_run(sweeps):
    on, off = sweeps
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

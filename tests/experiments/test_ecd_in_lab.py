"""The ECD optimisers (ecdsep, bbi, ecdq1) in the dynamics lab: spec, runner, analysis, report."""

import inspect
import json
import math

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hamopt.experiments import runner as R
from hamopt.experiments.analysis import read_csv
from hamopt.experiments.spec import (
    _HYPER,
    ECD_TYPES,
    SpecError,
    ecd_class,
    parse_spec,
    spec_hash,
    spec_to_yaml,
)
from hamopt.experiments.store import STEP_COLUMNS, RunStore
from hamopt.report import write_report

from .tiny import tiny_dict

ECD_OPTIMIZERS = [
    {"name": "ecdsep", "type": "ecdsep", "band": "band", "step_sizes": [0.05, 0.1],
     "hyper": {"eta": 2.0}},
    # small thresholds so that both kinds of bounce happen within 15 steps
    {"name": "bbi", "type": "bbi", "band": "band", "step_sizes": [0.05, 0.1],
     "hyper": {"threshold0": 5, "threshold": 4}},
    {"name": "ecdq1", "type": "ecdq1", "band": "band", "step_sizes": [0.05, 0.1],
     "hyper": {"eta": 10.0}},
]
# every column of a closed record (the runner closes the last step with one extra forward pass)
COMPLETE = ("loss", "loss_after", "kinetic_before", "kinetic", "hamiltonian_before", "hamiltonian",
            "delta_h_int", "delta_h_traj", "resampling", "grad_norm")


def ecd_dict(optimizers=None, **changes):
    d = tiny_dict(steps=15, optimizers=optimizers or ECD_OPTIMIZERS, **changes)
    d.pop("ablations")
    d.pop("reversibility")
    return d


def _steps(out, run_id):
    return pq.read_table(out / "runs" / run_id / "steps.parquet").to_pydict()


def _quiet(_):
    return None


@pytest.fixture(scope="module")
def ecd_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("ecd") / "sweep"
    spec = parse_spec(ecd_dict())
    summary = R.run_sweep(spec, out, progress=False, log=_quiet)
    return spec, out, summary


# ---------------------------------------------------------------------- spec
@pytest.mark.parametrize("type_", ECD_TYPES)
def test_hyper_model_mirrors_the_optimizer_signature(type_):
    sig = inspect.signature(ecd_class(type_).__init__)
    # capturable, like process_group, says how a step runs (device tensors, no host sync), not
    # what it computes: lab runs do not set it
    own = {n: p.default for n, p in sig.parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("seed", "process_group", "capturable")}
    fields = _HYPER[type_].model_fields
    assert set(fields) == set(own)
    for name, default in own.items():
        if default is inspect.Parameter.empty:
            assert fields[name].is_required(), name
        else:
            assert not fields[name].is_required() and fields[name].default == default, name


def test_valid_ecd_spec_fills_the_optimizers_defaults():
    spec = parse_spec(ecd_dict())
    sep, bbi, q1 = spec.optimizers
    assert sep.run_mode == bbi.run_mode == q1.run_mode == "baseline" and sep.mode is None
    assert sep.hyper == {"eta": 2.0, "F0": 0.0, "nu": 1e-5, "s": 1.0, "deltaEn": 0.0,
                         "weight_decay": 0.0, "consEn": True, "eps1": 1e-10, "eps2": 1e-40,
                         "foreach": None, "fused": False}
    assert bbi.hyper["threshold0"] == 5 and bbi.hyper["momentum_init"] == "global"
    assert q1.hyper["F0"] == -1.0 and q1.hyper["projection"] == "global"
    # the normalised spec reads back to the same spec
    again = parse_spec(yaml.safe_load(spec_to_yaml(spec)))
    assert spec_hash(again) == spec_hash(spec)
    # fused=False is the default and leaves the hash as before the option; fused=True changes it
    fused = ecd_dict([{**ECD_OPTIMIZERS[0], "hyper": {"eta": 2.0, "fused": True}}])
    plain = ecd_dict([{**ECD_OPTIMIZERS[0], "hyper": {"eta": 2.0}}])
    assert parse_spec(fused).optimizers[0].hyper["fused"] is True
    assert spec_hash(parse_spec(fused)) != spec_hash(parse_spec(plain))
    # the value the optimiser keeps is the one recorded: ECDSep with s != 1 holds deltaEn = 1
    d = ecd_dict([{**ECD_OPTIMIZERS[0], "hyper": {"eta": 2.0, "s": 0.5}}])
    assert parse_spec(d).optimizers[0].hyper["deltaEn"] == 1.0


@pytest.mark.parametrize(
    "entry, pattern",
    [
        ({"type": "ecdsep", "hyper": {}}, r"optimizers\[0\]: hyper\.eta: required key is missing"),
        ({"type": "ecdq1", "hyper": {"nu": 0.1}}, r"optimizers\[0\]: hyper\.eta: required key"),
        ({"type": "ecdsep", "hyper": {"eta": 2.0, "etaa": 3}},
         r"optimizers\[0\]: hyper\.etaa: unknown key"),
        ({"type": "bbi", "hyper": {"v0": 0.0, "momentum": 0.9}},
         r"optimizers\[0\]: hyper\.momentum: unknown key"),
        ({"type": "ecdsep", "hyper": {"eta": 2.0}, "mode": "exact"},
         r"optimizers\[0\]: mode applies only to leapfrog/euler, not to type 'ecdsep'"),
        ({"type": "ecdq1", "hyper": {"eta": 2.0}, "mode": "streaming"}, r"optimizers\[0\]: mode"),
        ({"type": "bbi", "stability_fractions": [0.1], "step_sizes": None},
         r"optimizers\[0\]: stability_fractions is defined for .* not 'bbi'.*give step_sizes"),
        ({"type": "ecdsep", "hyper": {"eta": 0.5}}, r"optimizers\[0\]: hyper\.eta must be .*>= 1"),
        ({"type": "ecdq1", "hyper": {"eta": 0.0}}, r"optimizers\[0\]: hyper\.eta must be .*> 0"),
        ({"type": "ecdsep", "hyper": {"eta": 2.0, "nu": -1.0}}, r"hyper\.nu must be .*>= 0"),
        ({"type": "ecdsep", "hyper": {"eta": math.inf}}, r"hyper\.eta: Input should be a finite"),
        ({"type": "bbi", "hyper": {"threshold0": 0}}, r"hyper\.threshold0 must be an int >= 1"),
        ({"type": "bbi", "hyper": {"momentum_init": "local"}}, r"hyper\.momentum_init must be one of"),
        ({"type": "ecdq1", "hyper": {"eta": 1.0, "projection": "x"}}, r"hyper\.projection must be"),
        ({"type": "ecdsep", "hyper": {"eta": 2.0, "s": 0.5, "deltaEn": 0.3}}, r"hyper\.s=0\.5.*deltaEn"),
        ({"type": "ecdsep", "hyper": {"eta": 2.0, "seed": 1}},
         r"optimizers\[0\]: hyper\.seed is not a hyper-parameter.*run's own seed"),
    ],
)
def test_bad_ecd_entries_name_the_key(entry, pattern):
    base = {"name": "ecd", "band": "band", "step_sizes": [0.1]}
    o = {k: v for k, v in {**base, **entry}.items() if v is not None}
    with pytest.raises(SpecError, match=pattern):
        parse_spec(ecd_dict([o]))


# ---------------------------------------------------------------------- optimiser of a run
@pytest.mark.parametrize("index", range(3))
def test_make_optimizer_builds_the_ecd_optimizer_with_the_runs_seed(index):
    spec = parse_spec(ecd_dict())
    o = spec.optimizers[index]
    cfg = R.RunConfig("r", o.name, o.type, o.run_mode, o.band, 0.1, 7, "default", dict(o.hyper))
    opt = R.DriftStudy(spec).build_optimizer(cfg, [torch.zeros(3, requires_grad=True)])
    assert type(opt) is ecd_class(o.type) and opt.defaults["lr"] == 0.1
    assert opt.global_state["seed"] == R.optimizer_seed(7) != R.optimizer_seed(8)
    for key, value in o.hyper.items():
        assert opt.defaults[key] == value, key


# ---------------------------------------------------------------------- the sweep
def test_ecd_runs_complete_with_full_finite_records(ecd_sweep):
    spec, out, summary = ecd_sweep
    # 3 optimisers x 2 step sizes x 2 seeds
    assert summary.planned == 12 and summary.completed == 12 and summary.failed == 0
    runs = list(RunStore(out).runs())
    assert sorted({r.manifest["type"] for r in runs}) == sorted(ECD_TYPES)
    bounced = {t: 0 for t in ECD_TYPES}
    for r in runs:
        c = _steps(out, r.run_id)
        m = r.manifest
        assert list(c) == list(STEP_COLUMNS) and c["step"] == list(range(spec.steps))
        for col in COMPLETE:
            assert all(v is not None and math.isfinite(v) for v in c[col]), (r.run_id, col)
        assert not any(c["cap_engaged"])
        n = spec.steps
        for t in range(n):
            assert c["delta_h_int"][t] == pytest.approx(
                c["hamiltonian"][t] - c["hamiltonian_before"][t], abs=1e-12)
            assert c["delta_h_traj"][t] == pytest.approx(
                c["delta_h_int"][t] + c["resampling"][t], abs=1e-12)
            if t + 1 < n:
                assert c["resampling"][t] == pytest.approx(c["loss"][t + 1] - c["loss_after"][t],
                                                           abs=1e-12)
                assert c["kinetic_before"][t + 1] == c["kinetic"][t]
        assert c["kinetic_before"][0] == 0.0 and all(k >= 0 for k in c["kinetic"])
        # the manifest: status, the optimiser's full config, its seed and energy convention
        o = next(o for o in spec.optimizers if o.name == m["optimizer"])
        assert m["status"] == "completed" and m["mode"] == "baseline" and m["type"] == o.type
        assert m["config"]["hyper"] == o.hyper and m["config"]["type"] == o.type
        assert m["optimizer_seed"] == R.optimizer_seed(m["seed"])
        assert m["energy_convention"]["name"] == o.type
        assert m["energy_convention"]["displacement_form"] is True
        assert m["ecd"]["steps"] == spec.steps and m["ecd"]["skipped_steps"] == 0
        bounced[o.type] += m["ecd"]["bounces"]
    assert all(b > 0 for b in bounced.values()), bounced  # the seeded generator was exercised


def test_ecd_rerun_skips_and_a_fresh_run_is_bit_identical(ecd_sweep, tmp_path):
    spec, out, _ = ecd_sweep
    again = R.run_sweep(spec, out, progress=False, log=_quiet)
    assert again.skipped == 12 and again.completed == 0 and not again.outcomes
    one_seed = parse_spec(ecd_dict(seeds=[1]))
    fresh = R.run_sweep(one_seed, tmp_path / "again", progress=False, log=_quiet)
    assert fresh.completed == 6
    for o in fresh.outcomes:
        assert _steps(out, o.run_id) == _steps(tmp_path / "again", o.run_id)  # every float equal


@pytest.mark.parametrize("entry", [
    {"type": "ecdsep", "hyper": {"eta": 2.0, "F0": 100.0}},
    {"type": "bbi", "hyper": {"v0": 100.0}},
    {"type": "ecdq1", "hyper": {"eta": 10.0, "F0": 100.0}},
])
def test_skipped_steps_do_not_break_the_run(entry, tmp_path):
    # loss < F0 (BBI: v0) on every step: the optimiser skips them all, θ never moves
    o = {"name": "skip", "band": "band", "step_sizes": [0.1], **entry}
    spec = parse_spec(ecd_dict([o], seeds=[0]))
    summary = R.run_sweep(spec, tmp_path / "s", progress=False, log=_quiet)
    assert summary.completed == 1
    (run,) = RunStore(tmp_path / "s").runs()
    c = _steps(tmp_path / "s", run.run_id)
    assert len(c["step"]) == spec.steps
    for col in COMPLETE:
        assert all(v is not None and math.isfinite(v) for v in c[col]), col
    assert c["loss_after"] == c["loss"] and set(c["kinetic"]) == {0.0}
    assert set(c["delta_h_int"]) == {0.0}
    assert run.manifest["ecd"]["skipped_steps"] == spec.steps


def test_analysis_and_report_cover_the_ecd_optimizers(ecd_sweep):
    spec, out, _ = ecd_sweep
    files = write_report(out)
    table = read_csv(out / "table.csv")
    for name in ("ecdsep", "bbi", "ecdq1"):
        rows = {r["drift"]: r for r in table if r["optimizer"] == name and r["band"] == "band"}
        assert set(rows) == {"int", "traj", "resampling"}, name
        for r in rows.values():
            assert r["n"] == 4 and math.isfinite(r["slope"]) and r["ci_low"] <= r["slope"] <= r["ci_high"]
    drift = read_csv(out / "drift.csv")
    assert sorted({d["type"] for d in drift}) == sorted(ECD_TYPES)
    assert {d["optimizer"] for d in read_csv(out / "timing.csv")} == {"ecdsep", "bbi", "ecdq1"}
    page = files.html.read_text(encoding="utf-8")
    assert all(name in page for name in ("ecdsep", "bbi", "ecdq1"))
    assert json.loads((out / "runs" / drift[0]["run_id"] / "manifest.json").read_text())["rows"] == 15

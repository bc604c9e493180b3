"""``replicas`` in the lab: a batched sweep stores what the serial sweep stores, and resumes."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hamopt.experiments.runner import DriftStudy, run_sweep
from hamopt.experiments.spec import parse_spec
from hamopt.replicas.lab import batch_size_for, replica_batches

from ..experiments.tiny import tiny_dict

EXTRA = [{"name": "leapfrog-huge", "type": "leapfrog", "mode": "exact", "band": "wide", "step_sizes": [0.05, 10.0],
          "hyper": {"cap": None, "mass": "identity"}},
         {"name": "euler-streaming", "type": "euler", "mode": "streaming", "band": "band", "step_sizes": [0.01]},
         {"name": "ecdsep", "type": "ecdsep", "band": "band", "step_sizes": [0.01, 0.03], "hyper": {"eta": 2.0}},
         {"name": "bbi", "type": "bbi", "band": "band", "step_sizes": [0.01]}]


def spec(**changes):
    d = tiny_dict(dtype="float64", steps=10, reversibility=None, **changes)
    d["optimizers"] = d["optimizers"] + EXTRA
    return parse_spec(d)


def sweep(out, log=lambda s: None, **changes):
    """The sweep with a divergence factor of 20, so that the dt = 10 runs explode within 10 steps."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DriftStudy, "divergence_factor", 20.0)
        return run_sweep(spec(**changes), out, progress=False, log=log)


def series(out):
    frames = {}
    for d in sorted((out / "runs").iterdir()):
        frames[d.name] = (json.loads((d / "manifest.json").read_text()),
                          pd.read_parquet(d / "steps.parquet"))
    return frames


def assert_same_store(a, b, rtol=1e-9, skip=()):
    sa, sb = series(a), series(b)
    assert sorted(sa) == sorted(sb)
    for run_id, (ma, fa) in sa.items():
        mb, fb = sb[run_id]
        for key in ("status", "diverged_at_step", "divergence_reason", "spec_hash", "config", "cap_engagements",
                    "energy_convention", "hamiltonian", "family", "optimizer_seed", "ecd"):
            if key in skip:
                continue
            assert ma.get(key) == mb.get(key) or key == "hamiltonian" and math.isclose(
                ma[key]["H0"], mb[key]["H0"], rel_tol=rtol), (run_id, key, ma.get(key), mb.get(key))
        assert list(fa.columns) == list(fb.columns) and len(fa) == len(fb), run_id
        for col in fa.columns:
            if fa[col].dtype.kind != "f":
                assert fa[col].tolist() == fb[col].tolist(), (run_id, col)
                continue
            scale = max(fa[col].abs().max(skipna=True), 1e-300) if fa[col].notna().any() else 1.0
            assert (fa[col].isna() == fb[col].isna()).all(), (run_id, col)
            diff = (fa[col] - fb[col]).abs().max(skipna=True)
            assert not diff > rtol * scale, (run_id, col, diff, scale)
    ta = pd.read_csv(a / "table.csv") if (a / "table.csv").exists() else None
    tb = pd.read_csv(b / "table.csv") if (b / "table.csv").exists() else None
    if ta is not None:
        # the matched-progress readings choose steps by comparing a run's smoothed losses with a
        # window edge set by another run's loss: a last-bit difference can move a step across it
        # (see docs/replicas.md), so they are left out here; every tail fit is compared
        matched = [c for c in ta.columns if "isoloss" in c or "per_loss" in c]
        pd.testing.assert_frame_equal(ta.drop(columns=matched), tb.drop(columns=matched), rtol=1e-6)
        # the memory ablations compare the default run with its ablated twins bit for bit
        pd.testing.assert_frame_equal(pd.read_csv(a / "ablations.csv"), pd.read_csv(b / "ablations.csv"))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "sweep"
    summary = sweep(out)
    from hamopt.experiments.analysis import analyse, write_analysis

    write_analysis(out, analyse(out))
    return out, summary


def test_a_batched_sweep_stores_what_the_serial_sweep_stores(serial, tmp_path):
    from hamopt.experiments.analysis import analyse, write_analysis

    out_serial, summary_serial = serial
    out = tmp_path / "batched"
    messages = []
    summary = sweep(out, messages.append, replicas="auto")
    assert any(m.startswith("replicas:") for m in messages), messages
    assert (summary.completed, summary.diverged, summary.failed) == (
        summary_serial.completed, summary_serial.diverged, summary_serial.failed)
    assert summary.diverged >= 1  # the dt = 10 runs
    write_analysis(out, analyse(out))
    assert_same_store(out_serial, out)
    manifest = json.loads(next((out / "runs").glob("leapfrog-exact_band_*seed1_default/manifest.json")).read_text())
    assert manifest["replica_batch"]["size"] > 1


def test_resume_mid_batch_redoes_only_the_runs_not_committed(serial, tmp_path):
    out_serial, _ = serial
    out = tmp_path / "resumed"
    sweep(out, replicas=3)
    runs = sorted((out / "runs").iterdir())
    for d in runs[::3]:  # a batch stopped with some of its replicas committed and others not
        (d / "manifest.json").unlink()
    kept = {d.name: (d / "steps.parquet").stat().st_mtime_ns for d in runs if (d / "manifest.json").exists()}
    summary = sweep(out, replicas="auto")
    assert summary.skipped == len(kept)
    assert {d.name: (d / "steps.parquet").stat().st_mtime_ns for d in runs if d.name in kept} == kept
    from hamopt.experiments.analysis import analyse, write_analysis

    write_analysis(out, analyse(out))
    assert_same_store(out_serial, out)


def test_the_spec_hash_does_not_depend_on_replicas(tmp_path):
    from hamopt.experiments.spec import spec_hash

    assert spec_hash(spec()) == spec_hash(spec(replicas="auto")) == spec_hash(spec(replicas=4))


def test_batches_group_compatible_runs_only():
    from hamopt.experiments.drift_setup import plan_runs, resolve_step_sizes

    s = spec(replicas="auto")
    steps = resolve_step_sizes(s, {"lambda_preconditioned": 4.0, "lambda_hessian": 4.0, "dt_limit": 1.0})
    plan = plan_runs(s, steps)
    batches = replica_batches(s, plan)
    assert sorted(c.run_id for b in batches for c in b) == sorted(c.run_id for c in plan)
    for b in batches:
        assert len({(c.type, c.mode, json.dumps(c.hyper, sort_keys=True), c.ablation) for c in b}) == 1
        if len(b) > 1:
            assert b[0].ablation == "default"
    assert all(len(b) == 1 for b in batches if b[0].ablation != "default")
    partner = [c for c in plan if c.ablation != "default"][0]
    alone = [b for b in batches if any(c.run_id == partner.run_id.replace(partner.ablation, "default") for c in b)]
    assert len(alone) == 1 and len(alone[0]) == 1  # the ablations' reference runs alone, bit for bit
    assert [len(b) for b in replica_batches(spec(), plan)] == [1] * len(plan)
    assert batch_size_for("auto", 50) == 17 and batch_size_for("auto", 24) == 24 and batch_size_for(5, 50) == 5


def test_bad_replicas_are_refused_naming_the_field():
    with pytest.raises(Exception, match="replicas"):
        spec(replicas=0)
    with pytest.raises(Exception, match="replicas"):
        spec(replicas="many")


def test_batches_shared_out_to_worker_processes_store_what_the_serial_sweep_stores(serial, tmp_path):
    from hamopt.experiments.analysis import analyse, write_analysis
    from hamopt.experiments.engine import run_study

    out_serial, summary_serial = serial
    d = tiny_dict(dtype="float64", steps=10, replicas="auto", workers=2)
    d["optimizers"] = d["optimizers"] + EXTRA
    study = DriftStudy(parse_spec(d))
    study.divergence_factor = 20.0  # on the instance: the spawned workers get it with the study
    out, messages = tmp_path / "pooled", []
    summary = run_study(study, out, progress=False, log=messages.append)
    assert any("2 worker processes" in m for m in messages), messages
    assert any(m.startswith("reversibility:") for m in messages), messages  # done by a worker
    assert (summary.completed, summary.diverged, summary.failed) == (
        summary_serial.completed, summary_serial.diverged, summary_serial.failed)
    assert len(pd.read_csv(out / "reversibility.csv")) > 0
    write_analysis(out, analyse(out))
    assert_same_store(out_serial, out, skip=("spec_hash",))  # this spec adds the reversibility table

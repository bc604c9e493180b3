import json
import math

import pyarrow.parquet as pq
import pytest

from hamopt.energy import EnergyTracker
from hamopt.errors import NonFiniteError
from hamopt.experiments import runner as R
from hamopt.experiments.store import STEP_COLUMNS, RunStore

from .tiny import tiny_spec


def _steps(out, run_id):
    return pq.read_table(out / "runs" / run_id / "steps.parquet").to_pydict()


def test_sweep_writes_every_run_with_its_record(tiny_sweep):
    spec, out, summary = tiny_sweep
    # 4 optimisers x 2 step sizes x 2 seeds + thrash and scramble for one configuration
    assert summary.planned == 18 and summary.completed == 18 and summary.failed == 0
    store = RunStore(out)
    runs = list(store.runs())
    assert len(runs) == 18
    for r in runs:
        cols = _steps(out, r.run_id)
        assert list(cols) == list(STEP_COLUMNS)
        assert cols["step"] == list(range(spec.steps))
        assert set(cols["run_id"]) == {r.run_id}
        m = r.manifest
        assert m["status"] == "completed" and m["rows"] == spec.steps
        assert m["versions"]["torch"] and m["seed"] in (0, 1) and m["dtype"] == "float32"
        assert m["config"]["step_size"] == m["step_size"] > 0
    assert (out / "spec.yaml").exists() and (out / "spec.hash").exists()
    assert (out / "reversibility.csv").read_text().count("\n") == 1 + 2 * 2 * 2


def test_energy_identities_per_mode(tiny_sweep):
    _, out, _ = tiny_sweep
    for rid in [r.run_id for r in RunStore(out).runs() if r.manifest["ablation"] == "default"]:
        c = _steps(out, rid)
        mode = json.loads((out / "runs" / rid / "manifest.json").read_text())["mode"]
        n = len(c["step"])
        for t in range(n - 1):
            # ΔH^traj = ΔH^int + δ, δ = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1})
            assert c["resampling"][t] == pytest.approx(
                c["loss"][t + 1] - c["loss_after"][t], abs=1e-12
            )
            assert c["delta_h_traj"][t] == pytest.approx(
                c["delta_h_int"][t] + c["resampling"][t], abs=1e-9
            )
            if not c["cap_engaged"][t]:  # kinetic/hamiltonian are after the cap, ΔH^int before it
                assert c["delta_h_int"][t] == pytest.approx(
                    c["hamiltonian"][t] - c["hamiltonian_before"][t], abs=1e-9
                )
            else:
                assert c["delta_h_int"][t] > c["hamiltonian"][t] - c["hamiltonian_before"][t]
        assert c["resampling"][-1] is not None  # closed with one extra forward pass
        if mode == "streaming":
            assert c["delta_h_int"][-1] is None and c["delta_h_traj"][-1] is None
        else:
            assert c["delta_h_traj"][-1] == pytest.approx(
                c["delta_h_int"][-1] + c["resampling"][-1]
            )
            assert all(math.isfinite(v) for v in c["delta_h_int"])


def test_same_spec_gives_bit_identical_series(tiny_sweep, tmp_path):
    spec, out, _ = tiny_sweep
    small = tiny_spec(
        optimizers=[o.model_dump(mode="json") for o in spec.optimizers[:2]],
        seeds=[0],
        ablations=None,
        reversibility=None,
    )
    summary = R.run_sweep(small, tmp_path / "again", progress=False, log=lambda s: None)
    assert summary.completed == 4
    for o in summary.outcomes:
        a, b = _steps(out, o.run_id), _steps(tmp_path / "again", o.run_id)
        assert a == b  # exact equality of every float, None included


def test_rerun_skips_finished_runs_and_redoes_killed_one(tmp_path):
    spec = tiny_spec(
        optimizers=[tiny_spec().optimizers[2].model_dump(mode="json")],
        ablations=None,
        reversibility=None,
    )
    out = tmp_path / "s"
    first = R.run_sweep(spec, out, progress=False, log=lambda s: None)
    assert first.completed == 4
    again = R.run_sweep(spec, out, progress=False, log=lambda s: None)
    assert again.skipped == 4 and again.completed == 0
    # a run killed in flight: steps written, manifest (the commit mark) missing, a stray temp file
    victim = first.outcomes[1].run_id
    (out / "runs" / victim / "manifest.json").unlink()
    (out / "runs" / victim / ".steps.parquet.abc.tmp").write_bytes(b"partial")
    before = _steps(out, first.outcomes[0].run_id)
    third = R.run_sweep(spec, out, progress=False, log=lambda s: None)
    assert third.skipped == 3 and [o.run_id for o in third.outcomes] == [victim]
    assert len(_steps(out, victim)["step"]) == spec.steps  # no duplicated rows
    assert _steps(out, first.outcomes[0].run_id) == before
    assert not list((out / "runs" / victim).glob("*.tmp"))


def test_diverged_and_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    spec = tiny_spec(
        optimizers=[
            tiny_spec().optimizers[2].model_dump(mode="json"),
            tiny_spec().optimizers[3].model_dump(mode="json"),
        ],
        seeds=[0],
        ablations=None,
        reversibility=None,
    )
    real_step = EnergyTracker.step

    def step(self, batch_loss):
        if type(self.optimizer).__name__ == "AdamW" and len(self.records) == 5:
            raise NonFiniteError("loss", 5, float("nan"))
        return real_step(self, batch_loss)

    real_make = R.DriftStudy.build_optimizer

    def make(self, cfg, params):
        if cfg.run_id == failing[0]:
            raise RuntimeError("boom")
        return real_make(self, cfg, params)

    failing = [None]
    monkeypatch.setattr(EnergyTracker, "step", step)
    monkeypatch.setattr(R.DriftStudy, "build_optimizer", make)
    steps = R.resolve_step_sizes(spec, R.calibrate(spec, R.load_data(spec)))
    failing[0] = R.plan_runs(spec, steps)[-1].run_id
    summary = R.run_sweep(spec, tmp_path / "d", progress=False, log=lambda s: None)
    by_status = {o.run_id: o for o in summary.outcomes}
    diverged = [o for o in summary.outcomes if o.status == "diverged"]
    assert len(diverged) == 2 and all(o.diverged_at_step == 5 and o.rows == 5 for o in diverged)
    assert by_status[failing[0]].status == "failed" and "boom" in by_status[failing[0]].error
    assert summary.completed == 1
    man = json.loads((tmp_path / "d" / "runs" / diverged[0].run_id / "manifest.json").read_text())
    assert man["status_text"] == "diverged at step 5"
    assert len(_steps(tmp_path / "d", diverged[0].run_id)["step"]) == 5
    # diverged runs are final: a rerun skips them, the failed one is retried
    monkeypatch.setattr(R.DriftStudy, "build_optimizer", real_make)
    again = R.run_sweep(spec, tmp_path / "d", progress=False, log=lambda s: None)
    assert [o.run_id for o in again.outcomes] == [failing[0]] and again.completed == 1


def test_parallel_workers_give_the_same_series(tiny_sweep, tmp_path):
    spec, out, _ = tiny_sweep
    small = tiny_spec(
        optimizers=[o.model_dump(mode="json") for o in spec.optimizers[1:3]],
        seeds=[0],  # the calibration (hence the step sizes) uses the first seed
        ablations=None,
        reversibility=None,
        workers=2,
    )
    summary = R.run_sweep(small, tmp_path / "par", progress=False, log=lambda s: None)
    assert summary.completed == 4 and [o.run_id for o in summary.outcomes] == [
        c.run_id for c in R.plan_runs(small, R.resolve_step_sizes(small, json.loads(
            (tmp_path / "par" / "calibration.json").read_text())))
    ]
    for o in summary.outcomes:
        assert _steps(out, o.run_id) == _steps(tmp_path / "par", o.run_id)

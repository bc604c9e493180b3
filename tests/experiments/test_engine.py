"""The run engine on its own (a scripted study) and the divergence rule inside the drift study."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from hamopt.errors import NonFiniteError
from hamopt.experiments.engine import DIVERGENCE_FACTOR, Study, StudyRun, execute, run_study
from hamopt.experiments.runner import DriftStudy
from hamopt.experiments.store import RunStore

from .tiny import tiny_spec


class ScriptedRun(StudyRun):
    def __init__(self, losses):
        self.losses = losses
        self.seen: list[float] = []
        self.finished = False

    def step(self, t):
        v = self.losses[t]
        if isinstance(v, Exception):
            raise v
        self.seen.append(v)
        return v

    def finish(self):
        self.finished = True

    def rows(self):
        return {"step": list(range(len(self.seen))), "loss": list(self.seen)}


class Cfg:
    def __init__(self, run_id, losses):
        self.run_id = run_id
        self.losses = losses


class ScriptedStudy(Study):
    """Runs whose losses are given in advance (an exception raises at that step)."""

    def __init__(self, scripts, steps=4):
        self.scripts = scripts
        self.steps = steps
        self.started: list[str] = []

    def identity(self):
        return "h" * 64, "name: scripted\n"

    def schema(self):
        return pa.schema([("step", pa.int64()), ("loss", pa.float64())])

    def plan(self, store, log):
        return [Cfg(rid, losses) for rid, losses in self.scripts.items()]

    def start(self, cfg):
        self.started.append(cfg.run_id)
        return ScriptedRun(cfg.losses)

    def run_manifest(self, cfg, run):
        return {"finished": bool(run and run.finished)}


def test_divergence_factor_is_a_documented_constant():
    assert DIVERGENCE_FACTOR == 1e3
    assert "divergence_factor" in (Study.__doc__ or "")


@pytest.mark.parametrize(
    ("losses", "status", "at", "rows"),
    [
        ([2.0, 3.0, 1.5, 1.0], "completed", None, 4),
        ([2.0, 3.0, 2001.0, 1.0], "diverged", 2, 3),  # above 1e3 x the initial loss
        ([2.0, 1999.0, 1.0, 1.0], "completed", None, 4),  # just under the limit
        ([2.0, float("inf"), 1.0, 1.0], "diverged", 1, 2),  # non-finite loss reported
        ([2.0, NonFiniteError("gradient", 1, math.nan), 1.0, 1.0], "diverged", 1, 1),
        ([2.0, RuntimeError("boom"), 1.0, 1.0], "failed", None, 1),
    ],
)
def test_each_run_outcome(losses, status, at, rows):
    study = ScriptedStudy({"r": losses})
    out_rows, man = execute(study, Cfg("r", losses))
    assert man["status"] == status and man["diverged_at_step"] == at
    assert len(out_rows["step"]) == rows
    assert man["finished"] == (status == "completed")
    assert man["divergence_factor"] == DIVERGENCE_FACTOR
    if status == "diverged":
        assert man["status_text"] == f"diverged at step {at}" and man["divergence_reason"]
    if status == "failed":
        assert "boom" in man["error"]


def test_resume_retries_failed_runs_and_keeps_final_ones(tmp_path):
    boom = RuntimeError("boom")
    scripts = {"ok": [1.0] * 4, "big": [1.0, 5e3, 1.0, 1.0], "bad": [1.0, boom, 1.0, 1.0]}
    first = run_study(ScriptedStudy(scripts), tmp_path, progress=False, log=lambda s: None)
    assert (first.completed, first.diverged, first.failed) == (1, 1, 1)
    assert RunStore(tmp_path).planned() == ["ok", "big", "bad"]
    scripts["bad"] = [1.0] * 4
    study = ScriptedStudy(scripts)
    again = run_study(study, tmp_path, progress=False, log=lambda s: None)
    assert study.started == ["bad"] and again.skipped == 2 and again.completed == 1
    with pytest.raises(Exception, match="different spec"):
        other = ScriptedStudy(scripts)
        other.identity = lambda: ("x" * 64, "name: other\n")
        run_study(other, tmp_path, progress=False, log=lambda s: None)


def test_exploding_drift_run_is_diverged_and_left_out_of_the_fits(tmp_path):
    from hamopt.experiments.analysis import analyse

    spec = tiny_spec(
        optimizers=[{"name": "sgd-momentum", "type": "sgd", "band": "band",
                     "step_sizes": [0.01, 0.02, 10.0]}],
        seeds=[0], ablations=None, reversibility=None,
    )
    study = DriftStudy(spec)
    study.divergence_factor = 5.0  # lr 10 passes 5 x its initial loss within the 12 steps
    summary = run_study(study, tmp_path, progress=False, log=lambda s: None)
    (bad,) = [o for o in summary.outcomes if o.status == "diverged"]
    assert "_10_" in bad.run_id and bad.rows == bad.diverged_at_step + 1 < spec.steps
    man = json.loads((tmp_path / "runs" / bad.run_id / "manifest.json").read_text())
    assert man["divergence_factor"] == 5.0 and "x initial loss" in man["divergence_reason"]
    a = analyse(tmp_path)
    assert {r["n"] for r in a.table} == {2}  # the two completed step sizes only
    assert {"run_id": bad.run_id, "status": "diverged"} in a.excluded

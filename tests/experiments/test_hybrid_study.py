"""The hybrid-schedule study: a shortened hybrid-quick on the run engine, its store, report, CLI,
equal gradient evaluations and the refusal of bad presets."""

import json

import pytest
import yaml

from hamopt.cli import main
from hamopt.experiments.hybrid_report import is_hybrid_dir
from hamopt.experiments.hybrid_study import (
    EVALS_PER_ROUND,
    load_preset,
    method_phases,
    plan_runs,
    resolve_preset,
    run_preset,
)
from hamopt.experiments.spec import SpecError
from hamopt.experiments.store import RunStore

SHORT = dict(budget=8, seeds=[0, 1], grid=[1.0], methods=["adamw", "leapfrog", "leapfrog>adamw"])


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid") / "short"
    summary = run_preset("hybrid-quick", out, **SHORT)
    return out, summary


def test_budget_is_split_into_phase_steps_by_gradient_evaluations():
    preset = resolve_preset("hybrid-quick")
    assert preset.steps == preset.budget // EVALS_PER_ROUND
    phases = method_phases(preset, "leapfrog>adamw")
    # half of 400 evaluations as exact Leapfrog steps (2 each), the rest AdamW
    assert phases[0]["steps"] == 100 and "steps" not in phases[1] and "budget" not in phases[0]
    three = method_phases(preset, "leapfrog>adamw>leapfrog")
    assert [p.get("steps") for p in three] == [80, 160, None]
    runs = plan_runs(preset)
    assert len(runs) == len(preset.seeds) * len(preset.methods) * len(preset.grid)


def test_short_study_runs_on_the_engine_at_equal_gradient_evaluations(short_run):
    out, summary = short_run
    assert summary.runs == 6 and summary.failed == 0
    store = RunStore(out)
    for run in store.runs():
        man = run.manifest
        assert man["status"] == "completed" and man["evals_done"] == 8
        rows = store.read_steps(run.run_id).to_pydict()
        assert rows["evals"][-1] == 8
        if man["method"] == "leapfrog":
            assert len(rows["step"]) == 4  # exact Leapfrog: 2 evaluations per step
        if man["method"] == "leapfrog>adamw":
            assert rows["phase"] == [0, 0, 1, 1, 1, 1] and rows["switched"].index(True) == 1
            assert man["switch_steps"] == [2]
    table = summary.analysis["table"]
    assert [r["method"] for r in table] == ["adamw", "leapfrog", "leapfrog>adamw"]
    assert all(r["n"] == 2 and r["test_loss_ci_low"] <= r["test_loss"] <= r["test_loss_ci_high"] for r in table)
    phases = {(p["method"], p["phase"]): p for p in summary.analysis["phases"]}
    assert phases[("leapfrog>adamw", 1)]["label"] == "adamw"
    assert phases[("leapfrog>adamw", 0)]["switch_delta_h"] is not None
    assert "best hybrid, leapfrog>adamw" in summary.analysis["verdict"]["sentence"]
    for name in ("report.html", "table.csv", "grid.csv", "phases.csv", "curves.png", "energy.png"):
        assert (out / name).is_file()


def test_rerun_skips_finished_runs_and_report_cli_reads_the_directory(short_run, capsys):
    out, _ = short_run
    again = run_preset("hybrid-quick", out, **SHORT)
    assert again.skipped == 6 and again.ran == 0
    assert is_hybrid_dir(out)
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "leapfrog>adamw" in text and "report.html" in text


def test_other_preset_in_the_same_directory_is_refused(short_run):
    out, _ = short_run
    with pytest.raises(Exception, match="spec"):
        run_preset("hybrid-quick", out, **{**SHORT, "budget": 12})


def test_print_spec_and_presets_load(capsys):
    assert main(["reproduce", "--preset", "hybrid-cpu", "--print-spec"]) == 0
    text = capsys.readouterr().out
    assert yaml.safe_load(text)["name"] == "hybrid-cpu"
    for name in ("hybrid-quick", "hybrid-cpu"):
        preset = load_preset(name)
        assert len(preset.seeds) >= 3 and {"adamw", "sgd-momentum", "leapfrog"} <= set(preset.methods)
        assert any(len(p) > 1 for p in preset.methods.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budget": 2}, "budget: must be an integer >= 4"),
        ({"grid": [0.0]}, "grid: must be a non-empty list of factors > 0"),
        ({"methods": ["adamx"]}, "methods: unknown method 'adamx'"),
        ({"device": "cuda:7"}, "device: 'cuda:7' is not available"),
    ],
)
def test_bad_overrides_are_refused_before_any_compute(change, message, tmp_path):
    with pytest.raises(SpecError, match=message):
        run_preset("hybrid-quick", tmp_path / "o", **change)
    assert not (tmp_path / "o").exists()


def test_bad_phase_in_a_preset_is_refused_naming_method_phase_and_field(tmp_path):
    preset = load_preset("hybrid-quick")
    bad = dict(preset.methods)
    bad["leapfrog>adamw"] = [dict(bad["leapfrog>adamw"][0]), {"family": "adamw", "lr": -1.0}]
    from dataclasses import replace

    with pytest.raises(SpecError, match=r"methods\.leapfrog>adamw: phases\[1\]\.lr: must be a finite number > 0"):
        resolve_preset(replace(preset, methods=bad))
    bad["leapfrog>adamw"] = [{"family": "leapfrog", "lr": 0.5, "budget": 1.5}, {"family": "adamw", "lr": 1e-3}]
    with pytest.raises(SpecError, match=r"methods\.leapfrog>adamw\[0\]\.budget"):
        resolve_preset(replace(preset, methods=bad))


def test_manifest_records_the_phases_and_hybrid_family(short_run):
    out, _ = short_run
    man = json.loads((out / "runs" / "leapfrog-adamw__x1__s0" / "manifest.json").read_text())
    assert man["family"] == "hybrid" and man["hybrid"]["phases"][0]["family"] == "leapfrog"
    assert man["phases"][0]["steps"] == 2 and man["final"]["evals"] == 8

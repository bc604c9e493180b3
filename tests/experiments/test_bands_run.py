"""``hamopt bands`` end to end on a tiny problem: files, budget, resume, refusals."""

import copy
import csv
import json

import pytest
import yaml

from hamopt.cli import main
from hamopt.experiments.bands import run_bands
from hamopt.experiments.bands_output import BAND_COLUMNS
from hamopt.experiments.bands_spec import load_bands_preset, parse_bands_spec, with_budget
from hamopt.experiments.store import RunStore, SpecMismatchError

TINY_BANDS = {
    "name": "tiny-bands",
    "dataset": {"name": "digits", "train_size": 400, "test_size": 100},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "batch_size": 16,
    "steps": 16,
    "seeds": [0, 1],
    "threads": 1,
    "calibration": {"iterations": 5},
    "optimizers": [
        {"name": "leapfrog-exact", "type": "leapfrog", "mode": "exact"},
        {"name": "sgd-momentum", "type": "sgd", "hyper": {"momentum": 0.9}},
    ],
    "bands": {"initial": {"low": 0.2, "high": 3.0, "count": 4}, "rounds": 2, "budget": 10},
}


def _spec(**bands):
    d = copy.deepcopy(TINY_BANDS)
    d["bands"].update(bands)
    return parse_bands_spec(d, source="tiny")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("bands") / "out"
    spec = _spec()
    return spec, out, run_bands(spec, out, progress=False, log=lambda s: None)


def test_search_writes_its_files_and_respects_the_budget(searched):
    spec, out, result = searched
    for name in ("bands.csv", "bands_local.csv", "bands.md", "bands.png", "limits.json", "spec.hash"):
        assert (out / name).is_file()
    with open(out / "bands.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == BAND_COLUMNS
    assert {r["reading"] for r in rows} == {"tail", "isoloss", "per_loss"}
    runs = [r for r in RunStore(out).runs() if r.manifest]
    for o in spec.optimizer_names():
        mine = [r for r in runs if r.manifest["optimizer"] == o]
        assert 8 <= len(mine) <= spec.search.budget  # initial grid 4 x 2 seeds, at most the budget
    assert result.runs_run == len(runs) and result.runs_reused == 0
    limits = json.loads((out / "limits.json").read_text())
    assert set(limits) == {"leapfrog-exact", "sgd-momentum"}
    assert "Regime rule" in (out / "bands.md").read_text()


def test_rerun_reuses_every_run(searched):
    spec, out, first = searched
    table = (out / "bands.csv").read_text()
    again = run_bands(spec, out, progress=False, log=lambda s: None)
    assert again.runs_run == 0 and again.runs_reused == first.runs_run
    assert (out / "bands.csv").read_text() == table


def test_a_larger_budget_extends_the_same_store(searched, tmp_path):
    spec, out, first = searched
    import shutil

    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    more = run_bands(with_budget(spec, 14), copy_dir, progress=False, log=lambda s: None)
    assert more.runs_reused == first.runs_run
    assert all(s["runs"] <= 14 for s in more.optimizers)


def test_another_spec_is_refused_on_the_same_directory(searched):
    _, out, _ = searched
    other = copy.deepcopy(TINY_BANDS)
    other["steps"] = 21
    with pytest.raises(SpecMismatchError):
        run_bands(parse_bands_spec(other), out, progress=False, log=lambda s: None)


def test_presets_parse():
    for name in ("bands-quick", "bands-cpu"):
        spec = load_bands_preset(name)
        assert {o.type for o in spec.experiment.optimizers} == {"leapfrog", "adamw", "sgd"}


def _cli(tmp_path, capsys, data, *extra):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    code = main(["bands", str(path), "--out", str(tmp_path / "o"), "--no-progress", *extra])
    return code, capsys.readouterr().err


def _with(**changes):
    d = copy.deepcopy(TINY_BANDS)
    for key, value in changes.items():
        if value is None:
            d.pop(key)
        else:
            d[key] = value
    return d


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        (_with(bands=None), (), "bands: required key is missing"),
        (_with(bands={"window": 4}), (), "bands.window: must be odd"),
        (_with(bands={"initial": {"low": 1.0, "high": 0.5, "count": 4}}), (), "initial.low must be below"),
        (_with(bands={"initial": [0.1, 0.2]}), (), "bands.initial: must list 3..64 fractions"),
        (_with(bands={"budget": 4}), (), "bands.budget: must be at least the initial grid's runs"),
        (_with(bands={"rounds": -1}), (), "bands.rounds: must be an integer in [0, 20]"),
        (_with(bands={"flat_tol": 0.5}), (), "bands.flat_tol: unknown key"),
        (_with(optimizers=[{"name": "sgd", "type": "sgd", "step_sizes": [0.1]}]), (),
         "optimizers[0].step_sizes: a band search places the step sizes itself"),
        (_with(optimizers=[{"name": "sgd", "type": "sgd", "hyper": {"momentum": 0.0}}]), (), "needs momentum > 0"),
        (_with(optimizers=[{"name": "e", "type": "ecdsep", "hyper": {"eta": 1.0}}]), (),
         "has no stability limit"),
        (_with(reversibility={"steps": [1]}), (), "reversibility: not used by a band search"),
        (TINY_BANDS, ("--optimizer", "adamw"), "--optimizer: 'adamw' names no optimiser"),
        (TINY_BANDS, ("--budget", "5"), "bands.budget: must be at least"),
        (TINY_BANDS, ("--workers", "0"), "--workers must be in 1..64"),
        ("- a list\n", (), "must be a mapping"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, data, extra, message):
    code, err = _cli(tmp_path, capsys, data, *extra)
    assert code == 2
    assert err.startswith("hamopt bands: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "runs").exists()


def test_cli_end_to_end_on_one_optimiser(tmp_path, capsys):
    data = copy.deepcopy(TINY_BANDS)
    data["bands"].update(rounds=0, budget=8)
    code, _ = _cli(tmp_path, capsys, data, "--optimizer", "sgd-momentum")
    assert code == 0
    runs = [r.manifest["optimizer"] for r in RunStore(tmp_path / "o").runs()]
    assert runs and set(runs) == {"sgd-momentum"} and len(runs) == 8

"""symbreak-cpu: the tuned grid with SOAP, and a shortened copy end to end (tuning, choice on the
validation loss, evaluation on the seeds, gaps to AdamW, downstream scores, state bytes, saved
models, head analysis and its link from the report)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

from hamopt.experiments.spec import SpecError
from hamopt.experiments.symbreak import PRESETS, plan_runs, resolve_preset, run_preset

SMALL = dict(n_layer=1, n_head=2, width=16, context=16)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def short_cpu(**kw):
    """The CI copy of symbreak-cpu: the same protocol on a one-layer model for a few steps."""
    base = replace(
        PRESETS["symbreak-cpu"], model_overrides=SMALL, steps=4, batch_size=2, context=16,
        eval_every=2, val_windows=4, test_windows=8, seeds=(0, 1), workers=1,
        optimizers=("adamw", "soap", "sgd-momentum"),
        grid={"adamw": {"lr": [1e-3, 3e-2]}, "soap": {"lr": [3e-3]}, "sgd-momentum": {"lr": [0.05]}},
    )
    return replace(base, **kw)


def test_the_cpu_preset_tunes_five_optimisers_per_variant():
    p = PRESETS["symbreak-cpu"]
    tune = plan_runs(p, stage="tune")
    assert {c.optimizer for c in tune} == {"adamw", "soap", "sgd-momentum", "ecdq1", "leapfrog"}
    assert len(tune) == 5 * 2 * 4 and {c.seed for c in tune} == {p.tune_seed}
    assert p.tune_seed not in p.seeds and len(p.seeds) >= 3 and p.types["soap"] == "soap"
    chosen = {f"{o}/{v}": {"lr": p.grid[o]["lr"][0]} for o in p.optimizers for v in p.variants}
    runs = plan_runs(p, stage="eval", chosen=chosen)
    assert len(runs) == 5 * 2 * len(p.seeds) and all(c.hyper["lr"] == c.grid_point["lr"] for c in runs)
    assert len({c.run_id for c in tune + runs}) == len(tune) + len(runs)


def test_the_shortened_copy_tunes_evaluates_and_analyses_heads(tmp_path, capsys):
    from hamopt.cli import main

    summary = run_preset(short_cpu(), tmp_path)
    assert summary.failed == 0 and summary.runs == 8 + 12
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    adamw = [c for c in tuning["candidates"] if c["pair"] == "adamw/bq+bv"]
    best = min(adamw, key=lambda c: c["val_loss"])
    assert tuning["chosen"]["adamw/bq+bv"] == best["point"] and len(adamw) == 2
    man = json.loads((tmp_path / "runs" / "soap__bq-bv__s1" / "manifest.json").read_text())
    assert man["stage"] == "eval" and man["hyper"]["lr"] == 3e-3 and man["test_loss"] > 0
    assert man["state_bytes_per_parameter"] > 8  # SOAP keeps Kronecker factors besides Adam's moments
    assert 0 <= man["downstream"]["bracket_accuracy"] <= 1 and man["downstream"]["keywords"] > 0
    sgd = json.loads((tmp_path / "runs" / "sgd-momentum__symmetric__s0" / "manifest.json").read_text())
    assert sgd["state_bytes_per_parameter"] == 4.0  # one float32 momentum buffer
    gaps = {(r["optimizer"], r["variant"]): r for r in csv.DictReader((tmp_path / "gaps.csv").open())}
    assert float(gaps[("adamw", "bq+bv")]["gap"]) == 0.0
    soap = gaps[("soap", "bq+bv")]
    expected = [json.loads((tmp_path / "runs" / f"{o}__bq-bv__s{s}" / "manifest.json").read_text())
                ["test_loss"] for s in (0, 1) for o in ("soap", "adamw")]
    assert float(soap["gap"]) == pytest.approx((expected[0] - expected[1] + expected[2] - expected[3]) / 2)
    assert soap["narrowing"] != "" and gaps[("soap", "symmetric")]["narrowing"] == ""
    assert (tmp_path / "runs" / "adamw__bq-bv__s0" / "model.pt").exists()
    assert not list((tmp_path / "tune" / "runs").glob("*/model.pt"))  # tuning runs keep no model
    assert main(["heads", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "significant cells" in out
    for name in ("heads.csv", "heads_summary.csv", "heads.png", "heads.html", "heads.txt"):
        assert (tmp_path / name).stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "heads.csv").open()))
    assert len(rows) == 3 * 2 * 2 * 11  # optimisers x seeds x heads x classes (one layer)
    assert all(r["reference_run"].endswith("__symmetric__s" + r["seed"]) for r in rows)
    assert 'href="heads.html"' in (tmp_path / "report.html").read_text()
    again = run_preset(short_cpu(), tmp_path)
    assert again.ran == 0 and again.skipped == 20


def test_heads_refuses_a_directory_without_models(tmp_path, capsys):
    from hamopt.cli import main

    assert main(["heads", str(tmp_path)]) == 2
    assert "no spec.yaml" in capsys.readouterr().err


def test_bad_tuning_fields_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(SpecError, match="tune_seed=0 must differ from the seeds"):
        resolve_preset(short_cpu(tune_seed=0))
    with pytest.raises(SpecError, match="tune_seed: a preset with a grid needs an integer"):
        resolve_preset(short_cpu(tune_seed=None))
    with pytest.raises(SpecError, match=r"optimizers.adamw.grid.lr: must be a non-empty list"):
        resolve_preset(short_cpu(grid={"adamw": {"lr": []}}))
    with pytest.raises(SpecError, match="optimizers.lion.grid"):
        resolve_preset(short_cpu(grid={"lion": {"lr": [1.0]}}))
    with pytest.raises(SpecError, match="test_windows=100000"):
        run_preset(short_cpu(test_windows=100_000), tmp_path / "x")
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").rglob("manifest.json"))


def test_a_missing_soap_package_is_named_with_its_install_line(monkeypatch):
    from hamopt import families

    monkeypatch.setattr(families, "names", lambda: ("adamw", "sgd"))
    with pytest.raises(SpecError, match=r"optimizers.soap: type 'soap' is not a registered.*pip install"):
        resolve_preset(short_cpu())

"""The symbreak study on a very small grid: store layout, table, report, resume, determinism."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

from hamopt.experiments.spec import SpecError
from hamopt.experiments.symbreak import PRESETS, RunConfig, execute_run, plan_runs, run_preset

SMALL = dict(n_layer=1, n_head=2, width=16, context=16)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_preset(**kw):
    base = replace(
        PRESETS["symbreak-tiny"],
        model_overrides=SMALL,
        steps=6,
        batch_size=2,
        context=16,
        eval_every=3,
        val_windows=4,
        seeds=(0,),
    )
    return replace(base, **kw)


def test_the_tiny_preset_is_the_full_grid():
    plan = plan_runs(PRESETS["symbreak-tiny"])
    assert len(plan) == 4 * 2 * 3
    assert {c.optimizer for c in plan} == {"adamw", "sgd-momentum", "ecdq1", "leapfrog"}
    assert {c.variant for c in plan} == {"symmetric", "bq+bv"}
    assert len({c.run_id for c in plan}) == len(plan)


def test_small_grid_writes_store_table_and_report(tmp_path):
    summary = run_preset(small_preset(), tmp_path)
    assert summary.runs == 8 and summary.ran == 8 and summary.failed == 0 == summary.diverged
    for cfg in plan_runs(small_preset()):
        d = tmp_path / "runs" / cfg.run_id
        man = json.loads((d / "manifest.json").read_text())
        assert man["status"] == "completed" and man["rows"] == 6
        assert len(man["data"]["sha256"]) == 64 and man["seed"] == 0
        assert (d / "steps.parquet").stat().st_size > 0
    for name in ("table.csv", "report.html", "curves.png", "charges.png"):
        assert (tmp_path / name).exists()
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 8
    by = {(r["optimizer"], r["variant"]): r for r in rows}
    # Momentum dynamics of the symmetric model keep the charges at zero (to float32 rounding);
    # the fixed random biases create them.
    for opt in ("sgd-momentum", "leapfrog"):
        sym, broken = (
            float(by[(opt, "symmetric")]["j_qk_rel"]),
            float(by[(opt, "bq+bv")]["j_qk_rel"]),
        )
        assert by[(opt, "symmetric")]["noether_source"] == "momentum"
        assert sym < 1e-4 < broken
    assert by[("adamw", "symmetric")]["noether_source"] == "displacement"
    again = run_preset(small_preset(), tmp_path)
    assert again.ran == 0 and again.skipped == 8


def test_a_run_is_deterministic():
    preset = small_preset(steps=3)
    cfg = RunConfig("r", preset.name, "leapfrog", "bq+bv", 1, dict(preset.hyper["leapfrog"]))
    a, man_a = execute_run(cfg, preset)
    b, _ = execute_run(cfg, preset)
    assert man_a["status"] == "completed"
    for col in a:
        if col != "wall_s":
            assert a[col] == b[col], col


def test_bad_preset_arguments(tmp_path):
    with pytest.raises(SpecError, match="preset"):
        run_preset("symbreak-huge", tmp_path)
    with pytest.raises(SpecError, match="steps"):
        run_preset(small_preset(), tmp_path, steps=0)
    with pytest.raises(SpecError, match="workers"):
        run_preset(small_preset(), tmp_path, workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="CUDA is not available"):
            run_preset("symbreak-124m", tmp_path, device=None)
    for device in ("gpu", "xla"):  # not a device torch can use here: refused like a drift spec's
        with pytest.raises(SpecError, match=f"device: '{device}' is not available"):
            run_preset(small_preset(), tmp_path, device=device)
    with pytest.raises(SpecError, match="optimizers"):
        plan_runs(small_preset(optimizers=("lion",)))
    with pytest.raises(SpecError, match="data_dir is required"):
        run_preset(small_preset(data="shards"), tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_shard_preset_needs_a_data_directory(tmp_path):
    preset = replace(
        PRESETS["symbreak-124m"],
        device="cpu",
        model_overrides=dict(SMALL, vocab_size=64),
        steps=2,
        batch_size=2,
        context=16,
        eval_every=1,
        val_windows=2,
        seeds=(0,),
        optimizers=("adamw",),
        variants=("bq+bv",),
    )
    cfg = plan_runs(preset)[0]
    _, man = execute_run(cfg, preset)
    assert man["status"] == "failed" and "data_dir is required" in man["error"]
    from hamopt.data.text import write_token_shard

    g = torch.Generator().manual_seed(0)
    write_token_shard(tmp_path / "train_000.bin", torch.randint(0, 64, (500,), generator=g))
    write_token_shard(tmp_path / "val_000.bin", torch.randint(0, 64, (200,), generator=g))
    rows, man = execute_run(cfg, preset, data_dir=tmp_path)
    assert man["status"] == "completed", man["error"]
    assert man["data"]["corpus"] == "shards" and len(rows["step"]) == 2


def _two_runs(**kw):
    return small_preset(**{"steps": 3, "optimizers": ("adamw", "leapfrog"),
                           "variants": ("bq+bv",), **kw})


def test_resume_retries_failed_and_killed_runs_only(tmp_path, monkeypatch):
    from hamopt.experiments.symbreak import SymbreakStudy

    real = SymbreakStudy.build_optimizer

    def flaky(self, cfg, params):
        if cfg.optimizer == "leapfrog":
            raise RuntimeError("boom")
        return real(self, cfg, params)

    monkeypatch.setattr(SymbreakStudy, "build_optimizer", flaky)
    first = run_preset(_two_runs(), tmp_path)
    assert first.ran == 2 and first.failed == 1
    adamw, leapfrog = (c.run_id for c in plan_runs(_two_runs()))
    man = json.loads((tmp_path / "runs" / leapfrog / "manifest.json").read_text())
    assert man["status"] == "failed" and "boom" in man["error"]
    monkeypatch.setattr(SymbreakStudy, "build_optimizer", real)
    kept = (tmp_path / "runs" / adamw / "steps.parquet").read_bytes()
    again = run_preset(_two_runs(), tmp_path)
    assert again.ran == 1 and again.skipped == 1 and again.failed == 0
    assert (tmp_path / "runs" / adamw / "steps.parquet").read_bytes() == kept
    # a run killed in flight (no manifest, the commit mark) is redone alone
    (tmp_path / "runs" / adamw / "manifest.json").unlink()
    third = run_preset(_two_runs(), tmp_path)
    assert third.ran == 1 and third.skipped == 1
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [int(r["n"]) for r in rows] == [1, 1]


def test_another_preset_is_refused_in_the_same_directory(tmp_path):
    from hamopt.experiments.store import SpecMismatchError

    run_preset(_two_runs(optimizers=("adamw",)), tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(SpecMismatchError, match="different spec"):
        run_preset(_two_runs(optimizers=("adamw",), steps=4), tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files
    # threads and workers do not change results, so they do not change the spec hash
    again = run_preset(_two_runs(optimizers=("adamw",)), tmp_path, threads=2)
    assert again.ran == 0 and again.skipped == 1


def test_an_exploding_loss_is_a_diverged_run(tmp_path):
    preset = _two_runs(optimizers=("sgd-momentum",),
                       hyper=dict(PRESETS["symbreak-tiny"].hyper, **{"sgd-momentum": {"lr": 1e4}}))
    summary = run_preset(preset, tmp_path)
    assert summary.diverged == 1 and summary.failed == 0
    (run_id,) = (c.run_id for c in plan_runs(preset))
    man = json.loads((tmp_path / "runs" / run_id / "manifest.json").read_text())
    assert man["status"] == "diverged" and man["final_val_loss"] is None
    assert summary.table[0]["n"] == 0  # kept out of the table's means


def test_the_study_travels_to_a_worker_process_intact():
    """Worker processes get the study pickled (the drift study's parallel test runs real workers;
    spawning GPT workers here would cost more than the check is worth)."""
    import pickle

    from hamopt.experiments.engine import execute
    from hamopt.experiments.symbreak import SymbreakStudy

    study = SymbreakStudy(_two_runs(optimizers=("adamw",), workers=2))
    copy = pickle.loads(pickle.dumps(study))
    assert copy.workers == 2 and copy.identity() == study.identity()
    cfg = plan_runs(study.preset)[0]
    (a, _), (b, _) = execute(study, cfg), execute(copy, cfg)
    assert {k: v for k, v in a.items() if k != "wall_s"} == {
        k: v for k, v in b.items() if k != "wall_s"}


def test_hamopt_report_rewrites_a_symbreak_directory(tmp_path, capsys):
    from hamopt.cli import main
    from hamopt.experiments.symbreak_report import stored_preset_name

    run_preset(small_preset(steps=2, optimizers=("leapfrog",), variants=("symmetric",)), tmp_path)
    (tmp_path / "report.html").unlink()
    capsys.readouterr()
    assert stored_preset_name(tmp_path) == "symbreak-tiny"
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "leapfrog" in out and "symmetric" in out
    assert (tmp_path / "report.html").is_file()
    assert stored_preset_name(tmp_path / "absent") is None


def test_a_damaged_run_is_named_in_the_report_not_fatal(tmp_path):
    from hamopt.experiments.symbreak import analyse

    preset = small_preset(steps=2, optimizers=("leapfrog",))
    run_preset(preset, tmp_path)
    damaged = sorted((tmp_path / "runs").iterdir())[0]
    (damaged / "steps.parquet").write_bytes(b"not parquet")
    table = analyse(tmp_path, preset_name=preset.name)
    assert sum(row["n"] for row in table) == 1  # the other run is still in the table
    assert damaged.name in (tmp_path / "report.html").read_text(encoding="utf-8")

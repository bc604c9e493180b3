import yaml

from hamopt.cli import main

from .tiny import tiny_dict


def _write_spec(path, **changes):
    d = tiny_dict(**changes)
    d["optimizers"] = d["optimizers"][2:3]
    d["seeds"] = [0]
    d.pop("ablations")
    d.pop("reversibility")
    path.write_text(yaml.safe_dump(d))
    return path


def test_sweep_command_runs_then_skips(tmp_path, capsys):
    spec = _write_spec(tmp_path / "s.yaml")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "2 runs planned, 0 already done, 2 completed" in captured.err
    assert (
        "adamw" in captured.out
        and (out / "table.csv").exists()
        and (out / "catalog.duckdb").exists()
    )
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert "2 already done" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert "report:" in capsys.readouterr().out and (out / "report.html").exists()


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    d = tiny_dict(batch_sise=3)
    bad.write_text(yaml.safe_dump(d))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "batch_sise: unknown key" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()

    spec = _write_spec(tmp_path / "s.yaml")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    other = _write_spec(tmp_path / "other.yaml", steps=14)
    assert main(["sweep", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "different spec" in capsys.readouterr().err

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "hamopt sweep" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.yaml"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_reproduce_refuses_cuda_without_a_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert main(["reproduce", "--preset", "paper", "--out", str(tmp_path / "p")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_reproduce_help_shows_the_default_preset(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--help"])
    assert exit_.value.code == 0
    assert "(default: quick)" in " ".join(capsys.readouterr().out.split())


def test_print_spec_needs_no_out_for_any_preset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--print-spec"]) == 0  # the default preset
    assert "name: quick" in capsys.readouterr().out
    assert main(["reproduce", "--preset", "quick", "--print-spec"]) == 0
    assert "name: quick" in capsys.readouterr().out
    assert main(["reproduce", "--preset", "symbreak-tiny", "--print-spec"]) == 0
    text = capsys.readouterr().out
    assert "name: symbreak-tiny" in text and yaml.safe_load(text)["steps"] == 120
    assert not list(tmp_path.iterdir())


def test_reproduce_user_errors_are_one_line(tmp_path, capsys):
    for argv, message in (
        (["reproduce", "--no-progress"], "--out is required"),
        (["reproduce", "--preset", "symbreak-tiny"], "--out is required"),
        (["reproduce", "--preset", "symbreak-tiny", "--out", str(tmp_path / "o"), "--workers", "0"],
         "--workers must be in 1..64"),
        (["reproduce", "--preset", "symbreak-tiny", "--out", str(tmp_path / "o"),
          "--data-root", str(tmp_path)], "data_dir applies only to shard presets"),
        (["reproduce", "--preset", "symbreak-124m", "--out", str(tmp_path / "o"), "--device",
          "cpu"], "data_dir is required"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_symbreak_preset_honours_threads_device_and_no_progress(tmp_path, capsys, monkeypatch):
    import json
    from dataclasses import replace

    from hamopt.experiments import symbreak

    real = symbreak.load_preset

    def small(name):
        return replace(real(name), model_overrides=dict(n_layer=1, n_head=2, width=16, context=16),
                       steps=3, batch_size=2, context=16, eval_every=3, val_windows=2, seeds=(0,),
                       optimizers=("adamw",), variants=("bq+bv",), threads=1)

    monkeypatch.setattr(symbreak, "load_preset", small)
    out = tmp_path / "sb"
    argv = ["reproduce", "--preset", "symbreak-tiny", "--out", str(out), "--threads", "2",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "step/s" not in captured.err and "sweep:" not in captured.err  # no progress bar
    assert "1 runs (1 run now" in captured.out
    (run,) = (out / "runs").iterdir()
    man = json.loads((run / "manifest.json").read_text())
    assert man["threads"] == 2 and man["device"] == "cpu" and man["status"] == "completed"
    assert main(argv) == 0 and "1 kept" in capsys.readouterr().out

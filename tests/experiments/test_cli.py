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

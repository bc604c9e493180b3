import pytest

from hamopt.cli import build_parser, main
from hamopt.experiments.quickdemo import format_table, run


def test_quickdemo_trains_every_optimiser_and_prints_a_table(capsys):
    assert main(["quickdemo", "--steps", "30"]) == 0
    out = capsys.readouterr().out
    for name in ("leapfrog (exact)", "leapfrog (streaming)", "euler", "sgd-momentum", "adamw"):
        assert name in out


def test_quickdemo_rows_are_real_training():
    rows = run(steps=40, seed=1)
    assert len(rows) == 5
    for row in rows:
        assert 0.0 < row.final_loss < 2.3  # below the untrained 10-class loss ln 10 ≈ 2.30
        assert row.test_accuracy > 0.5 and row.steps == 40
    exact, streaming = rows[0], rows[1]
    # on a full batch both Leapfrog modes visit the same positions (see docs/leapfrog.md)
    assert exact.final_loss == pytest.approx(streaming.final_loss, rel=1e-4)
    assert "tail |dH|" in format_table(rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps must be in 1..100000, got 0"),
        (["--steps", "100001"], "--steps must be in 1..100000"),
        (["--seed", "-1"], "--seed must be in 0..2147483647, got -1"),
        (["--seed", str(2**31)], "--seed must be in 0..2147483647"),
    ],
)
def test_quickdemo_rejects_out_of_range_options_in_one_line(argv, message, capsys):
    assert main(["quickdemo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hamopt quickdemo: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_argparse_errors_stay_argparse_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["quickdemo", "--seed", "abc"])
    assert info.value.code == 2 and "invalid int value" in capsys.readouterr().err


def test_every_command_is_registered():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"quickdemo", "sweep", "reproduce", "report", "demo"} <= set(choices)

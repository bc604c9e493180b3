"""The gap to AdamW and its narrowing by the biases at every validation point."""

import pytest

from hamopt.experiments.symbreak_budget import budget_rows, plot_budget


def _run(opt, variant, seed, vals, status="completed"):
    man = {"optimizer": opt, "variant": variant, "seed": seed, "status": status, "stage": "eval"}
    steps = list(range(len(vals) * 2))
    val = [v for x in vals for v in (x, None)]
    return man, {"step": steps, "val_loss": val}


def test_paired_gap_and_narrowing_per_step():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.1), (2, 0.2)):
        runs += [
            _run("adamw", "symmetric", seed, [3.0 + shift, 2.0 + shift]),
            _run("adamw", "bq+bv", seed, [3.0 + shift, 2.0 + shift]),
            # SGD: 0.5 worse than AdamW symmetric, 0.2 (+0.01 seed) worse with biases
            _run("sgd", "symmetric", seed, [3.5 + shift, 2.5 + shift]),
            _run("sgd", "bq+bv", seed, [3.2 + shift + 0.01 * seed, 2.2 + shift]),
        ]
    runs.append(_run("sgd", "bq+bv", 3, [0.0, 0.0], status="diverged"))  # ignored
    rows = budget_rows(runs, ["adamw", "sgd"])
    assert [(r["optimizer"], r["variant"], r["step"]) for r in rows] == [
        ("sgd", "symmetric", 0), ("sgd", "symmetric", 2), ("sgd", "bq+bv", 0), ("sgd", "bq+bv", 2)]
    sym0, _, bias0, bias2 = rows
    assert sym0["gap"] == pytest.approx(0.5) and sym0["narrowing"] is None and sym0["n"] == 3
    assert bias0["gap"] == pytest.approx(0.21)
    assert bias0["narrowing"] == pytest.approx(0.29)
    assert bias0["narrowing_ci_low"] < 0.29 < bias0["narrowing_ci_high"]
    assert bias2["narrowing"] == pytest.approx(0.3)
    assert bias2["narrowing_ci_low"] == pytest.approx(0.3)  # no spread across seeds


def test_plot(tmp_path):
    runs = [_run(o, v, s, [2.0 + s, 1.0]) for o in ("adamw", "sgd") for v in ("symmetric", "bq+bv")
            for s in (0, 1)]
    rows = budget_rows(runs, ["adamw", "sgd"])
    assert plot_budget(rows, tmp_path / "g.png") and (tmp_path / "g.png").stat().st_size > 1000
    assert not plot_budget([], tmp_path / "none.png")

"""Drift at matched training progress on synthetic series: common range, iso-loss windows."""

import math

import numpy as np
import pytest

from hamopt.diagnostics.isoloss import (
    LossRange,
    add_readings,
    common_loss_range,
    group_readings,
    iso_loss_drift,
    per_loss_drift,
    smoothed_loss,
)


def _linear(start, stop, steps=100):
    return list(np.linspace(start, stop, steps))


def test_smoothing_is_a_centred_mean_that_skips_gaps():
    s = smoothed_loss([1.0, 3.0, None, 5.0, float("nan")], window=3)
    assert list(s) == [2.0, 2.0, 4.0, 5.0, 5.0]
    assert list(smoothed_loss([1.0, 3.0, 5.0], window=2)) == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="window"):
        smoothed_loss([1.0], window=0)


def test_common_range_is_what_every_run_covers():
    fast, slow = np.array(_linear(2.3, 0.2)), np.array(_linear(2.0, 1.0))
    rng = common_loss_range([fast, slow], fraction=0.25)
    assert (rng.lo, rng.hi) == pytest.approx((1.0, 2.0))
    assert rng.window == pytest.approx((1.0, 1.25))
    assert common_loss_range([np.array(_linear(2, 1.5)), np.array(_linear(1.4, 0.5))]) is None
    assert common_loss_range([np.array([np.nan, np.nan])]) is None
    with pytest.raises(ValueError, match="fraction"):
        common_loss_range([fast], fraction=0.0)


def test_iso_loss_window_picks_the_steps_at_matched_loss():
    loss = np.array(_linear(2.0, 0.0, 101))  # loss 2 - t/50
    delta = [float(t) for t in range(101)]  # |ΔH_t| = t marks the step
    rng = LossRange(0.5, 1.5, 0.5)  # window [0.5, 1.0] = steps 50..75
    assert iso_loss_drift(delta, loss, rng) == pytest.approx(62.5)
    # Σ t over steps 25..75 (loss in [0.5, 1.5]) per unit of loss range
    assert per_loss_drift(delta, loss, rng) == pytest.approx(sum(range(25, 76)) / 1.0)
    assert math.isnan(iso_loss_drift(delta, loss, LossRange(0.5, 0.52, 1.0)))  # one step only


def test_matched_loss_removes_the_progress_confound():
    """Drift that depends only on the loss reached (not on the step size) grows at fixed step
    but is the same at matched loss."""
    steps = 200
    runs = {}
    for k, speed in enumerate((0.01, 0.02, 0.04)):
        loss = [2.0 * math.exp(-speed * t) + 0.1 for t in range(steps)]
        runs[k] = (loss, {"traj": [0.1 * v for v in loss]})  # drift proportional to the loss
    out = group_readings(runs, fraction=0.2)
    tail = [np.median(np.abs(runs[k][1]["traj"][-40:])) for k in runs]
    assert tail[0] > 2 * tail[2]  # the fixed-step tail sees the faster run's lower loss
    iso = [out[k]["isoloss_traj"] for k in runs]
    assert max(iso) / min(iso) < 1.1
    assert out[0]["isoloss_low"] == pytest.approx(max(min(smoothed_loss(r[0])) for r in runs.values()))


def test_add_readings_groups_rows_and_blanks_the_rest():
    series = {"a": (_linear(2.0, 0.5), {"int": [1.0] * 100}), "b": (_linear(2.0, 1.0), {"int": [2.0] * 100}),
              "c": (_linear(2.0, 0.1), {"int": [3.0] * 100})}
    rows = [{"id": "a", "g": 1}, {"id": "b", "g": 1}, {"id": "c", "g": None}]
    add_readings(rows, lambda r: series[r["id"]], group_of=lambda r: r["g"], kinds=("int",))
    assert rows[0]["isoloss_int"] == 1.0 and rows[1]["isoloss_int"] == 2.0
    assert rows[0]["isoloss_low"] == pytest.approx(1.0, abs=0.02)
    assert math.isnan(rows[2]["isoloss_int"]) and math.isnan(rows[2]["per_loss_int"])


def test_table_one_gets_the_matched_readings_next_to_the_tail_slope():
    """Synthetic runs whose drift depends on the loss reached only: the tail slope is negative
    (larger steps train further), the iso-loss slope is about 0."""
    from hamopt.experiments.analysis import RunData, drift_rows, slope_rows

    runs = []
    for seed in (0, 1, 2):
        for step in (0.1, 0.2, 0.4):
            loss = [2.0 * math.exp(-step * 0.1 * t) + 0.1 + 0.001 * seed for t in range(200)]
            cols = {"step": list(range(200)), "loss": loss, "cap_engaged": [False] * 200}
            for c in ("delta_h_int", "delta_h_traj", "resampling"):
                cols[c] = [0.1 * v for v in loss]
            manifest = {"optimizer": "sgd-momentum", "mode": "baseline", "band": "band", "step_size": step,
                        "seed": seed, "ablation": "default", "status": "completed", "type": "sgd"}
            runs.append(RunData(f"r{seed}{step}", manifest, cols))
    table = {t["drift"]: t for t in slope_rows(drift_rows(runs), bootstrap=0)}
    traj = table["traj"]
    assert traj["ci_high"] < 0  # the fixed-step confound
    assert traj["n_isoloss"] == 9 and abs(traj["slope_isoloss"]) < 0.1
    assert traj["n_per_loss"] == 9 and math.isfinite(traj["slope_per_loss"])

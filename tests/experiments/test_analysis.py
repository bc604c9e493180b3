import math

import pytest

from hamopt.experiments.analysis import (
    TABLE_COLUMNS,
    analyse,
    cap_rows,
    decomposition_rows,
    slope_rows,
    write_analysis,
)


def _drift(opt, step, seed, d_int, d_res, cap=0.0, status="completed", ablation="default"):
    return {
        "run_id": f"{opt}-{step}-{seed}-{ablation}",
        "optimizer": opt,
        "mode": "exact",
        "band": "band",
        "step_size": step,
        "seed": seed,
        "ablation": ablation,
        "drift_int": d_int,
        "drift_traj": d_int + d_res,
        "drift_resampling": d_res,
        "cap_rate": cap,
        "status": status,
        "type": "leapfrog",
    }


def test_slopes_recover_known_powers_and_decomposition_names_the_dominant_part():
    rows = []
    for seed, noise in ((0, 1.0), (1, 1.05), (2, 0.95)):
        for s in (0.1, 0.2, 0.4, 0.8):
            rows.append(
                _drift("lf", s, seed, d_int=1e-6 * noise * s**2, d_res=0.02 * noise * s**0.1)
            )
    rows.append(_drift("lf", 1.6, 0, float("nan"), float("nan"), status="diverged"))
    table = {(t["optimizer"], t["drift"]): t for t in slope_rows(rows, bootstrap=200)}
    t_int = table[("lf", "int")]
    assert t_int["n"] == 12 and t_int["slope"] == pytest.approx(2.0, abs=1e-9)
    assert (
        t_int["ci_low"] <= 2.0 <= t_int["ci_high"]
        and t_int["boot_low"] <= 2.0 <= t_int["boot_high"]
    )
    assert table[("lf", "resampling")]["slope"] == pytest.approx(0.1, abs=1e-9)
    # the trajectory drift is all resampling: its slope follows δ, not the integrator
    dec = decomposition_rows(rows, list(table.values()))[0]
    assert dec["traj_follows"] == "resampling"
    assert 3.5 < dec["log10_ratio"] < 5.5


def test_bootstrap_interval_is_the_one_fitting_every_resample_gives_to_the_last_bit():
    import numpy as np

    from hamopt.diagnostics import fit_loglog_slope

    rows = [_drift("lf", s, seed, d_int=1e-6 * (1 + 0.07 * seed * s) * s**2, d_res=0.01 * (1 + seed) * s**0.3)
            for seed in (0, 1, 2, 3) for s in (0.1, 0.2, 0.4, 0.8)]
    table = slope_rows(rows, bootstrap=300, seed=7)
    rng = np.random.default_rng(7)  # every resample refitted from scratch, as before the fits were shared
    for t in table:
        by_seed = {s: [(r["step_size"], r[f"drift_{t['drift']}"]) for r in rows if r["seed"] == s] for s in range(4)}
        boots = []
        for _ in range(300):
            pick = rng.choice(4, size=4, replace=True)
            sample = [p for i in pick for p in by_seed[int(i)]]
            if len({p[0] for p in sample}) >= 2:
                boots.append(fit_loglog_slope([p[0] for p in sample], [p[1] for p in sample]).slope)
        low, high = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
        assert (t["boot_low"], t["boot_high"]) == (low, high), t["drift"]


def test_cap_mean_and_interval_per_step():
    rows = [_drift("lf", 0.1, s, 1e-3, 1e-3, cap=c) for s, c in enumerate((0.0, 0.1, 0.2))]
    (row,) = cap_rows(rows)
    assert row["cap_rate"] == pytest.approx(0.1) and row["n"] == 3
    assert row["ci_low"] < 0.1 < row["ci_high"]


def test_analysis_of_a_real_sweep(tiny_sweep):
    _, out, _ = tiny_sweep
    a = analyse(out)
    write_analysis(out, a)
    assert len(a.drift) == 18
    header = (out / "table.csv").read_text().splitlines()[0].split(",")
    assert header == TABLE_COLUMNS
    assert {(t["optimizer"], t["drift"]) for t in a.table} == {
        (o, k)
        for o in ("leapfrog-exact", "leapfrog-streaming", "adamw", "sgd-momentum")
        for k in ("int", "traj", "resampling")
    }
    for t in a.table:
        assert t["n"] == 4 and math.isfinite(t["slope"]) and 0 <= t["r2"] <= 1
    kinds = {(r["ablation"]) for r in a.ablations}
    assert kinds == {"thrash", "scramble"}
    for r in a.ablations:
        assert r["max_abs_diff_hamiltonian"] >= 0 and r["steps_compared"] == 12
    assert {r["integrator"] for r in a.reversibility} == {"leapfrog", "euler"}
    lf = [r for r in a.reversibility if r["integrator"] == "leapfrog" and r["dtype"] == "float64"]
    eu = [r for r in a.reversibility if r["integrator"] == "euler" and r["dtype"] == "float64"]
    assert max(r["theta_error"] for r in lf) < 1e-10 < min(r["theta_error"] for r in eu)
    drift_header = (out / "drift.csv").read_text().splitlines()[0].split(",")
    assert drift_header[:12] == [
        "run_id",
        "optimizer",
        "mode",
        "band",
        "step_size",
        "seed",
        "ablation",
        "drift_int",
        "drift_traj",
        "drift_resampling",
        "cap_rate",
        "status",
    ]


def test_catalog_queries_steps_and_runs(tiny_sweep):
    from hamopt.experiments.catalog import connect

    _, out, _ = tiny_sweep
    con = connect(out, persist=False)
    (n,) = con.execute("SELECT count(*) FROM steps").fetchone()
    assert n == 18 * 12
    rows = con.execute(
        "SELECT optimizer, count(DISTINCT run_id) FROM steps JOIN runs USING (run_id) "
        "WHERE ablation = 'default' GROUP BY optimizer ORDER BY optimizer"
    ).fetchall()
    assert rows == [
        ("adamw", 4),
        ("leapfrog-exact", 4),
        ("leapfrog-streaming", 4),
        ("sgd-momentum", 4),
    ]
    (status,) = con.execute("SELECT DISTINCT status FROM runs").fetchone()
    assert status == "completed"

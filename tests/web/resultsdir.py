"""Write a small lab results directory from real playground runs (for the results-browser tests)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hamopt.diagnostics import fit_loglog_slope
from hamopt.playground import PlaygroundConfig, reversibility, run_trajectory

STEP_SIZES = {"leapfrog": (0.02, 0.04, 0.08), "sgd_momentum": (0.005, 0.01, 0.02)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_results_dir(root: Path, steps: int = 60) -> Path:
    """table.csv, drift.csv, cap.csv, reversibility.csv, runs/*/{manifest.json,steps.parquet},
    figures/*.png."""
    root.mkdir(parents=True, exist_ok=True)
    base = PlaygroundConfig(landscape="noisy_quadratic", noise=0.05, steps=steps)
    drift_rows, table_rows, cap_rows = [], [], []
    for opt, sizes in STEP_SIZES.items():
        for s in sizes:
            cfg = replace(base, optimizer=opt, step_size=s)
            tr = run_trajectory(cfg)
            run_id = f"{opt}-s{s:g}-seed0"
            run_dir = root / "runs" / run_id
            run_dir.mkdir(parents=True)
            n = tr.steps_run
            table = pa.table(
                {
                    "step": list(range(n)),
                    "loss": list(tr.loss[:n]),
                    "loss_after": [None] * n,
                    "kinetic": list(tr.kinetic[:n]),
                    "hamiltonian": list(tr.hamiltonian[:n]),
                    "delta_h_int": list(tr.delta_h_int),
                    "delta_h_traj": list(tr.delta_h_traj),
                    "resampling": list(tr.resampling),
                    "cap_engaged": [0.0] * n,
                    "grad_norm": [0.0] * n,
                }
            )
            pq.write_table(table, run_dir / "steps.parquet")
            (run_dir / "manifest.json").write_text(
                json.dumps(
                    {
                        "run_id": run_id,
                        "optimizer": opt,
                        "mode": "exact",
                        "step_size": s,
                        "seed": 0,
                        "status": "completed",
                    }
                )
            )
            drift_rows.append(
                {
                    "run_id": run_id,
                    "optimizer": opt,
                    "mode": "exact",
                    "band": "low",
                    "step_size": s,
                    "seed": 0,
                    "ablation": "default",
                    "drift_int": tr.drift_int,
                    "drift_traj": tr.drift_traj,
                    "drift_resampling": tr.drift_resampling,
                    "cap_rate": tr.cap_engagements / n,
                    "status": "completed",
                }
            )
            cap_rows.append(
                {
                    "optimizer": opt,
                    "band": "low",
                    "step_size": s,
                    "cap_rate": tr.cap_engagements / n,
                }
            )
        for drift in ("drift_int", "drift_traj"):
            mine = [r for r in drift_rows if r["optimizer"] == opt]
            fit = fit_loglog_slope([r["step_size"] for r in mine], [r[drift] for r in mine])
            table_rows.append(
                {
                    "optimizer": opt,
                    "band": "low",
                    "drift": drift,
                    "n": fit.n,
                    "slope": fit.slope,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "r2": fit.r2,
                    "boot_low": "",
                    "boot_high": "",
                }
            )
    _write_csv(root / "drift.csv", drift_rows)
    _write_csv(root / "table.csv", table_rows)
    _write_csv(root / "cap.csv", cap_rows)
    # "ablations": the default run against a rerun (identical) and against other mini-batches
    default = run_trajectory(replace(base, optimizer="leapfrog", step_size=0.04))
    others = {"rerun": default.config, "reseeded": replace(default.config, seed=1)}
    abl_rows = []
    for name, cfg in others.items():
        other = run_trajectory(cfg)
        abl_rows.append(
            {
                "optimizer": "leapfrog",
                "band": "low",
                "step_size": 0.04,
                "seed": 0,
                "ablation": name,
                "max_abs_diff_hamiltonian": max(
                    abs(a - b) for a, b in zip(default.hamiltonian, other.hamiltonian, strict=True)
                ),
                "max_abs_diff_loss": max(
                    abs(a - b) for a, b in zip(default.loss, other.loss, strict=True)
                ),
            }
        )
    _write_csv(root / "ablations.csv", abl_rows)
    rev_rows = []
    for n in (10, 40):
        res = reversibility(PlaygroundConfig(landscape="quadratic", step_size=0.05, steps=n))
        for path in res.paths:
            rt = path.result
            rev_rows.append(
                {
                    "integrator": rt.integrator.lower(),
                    "dtype": rt.dtype,
                    "steps": rt.steps,
                    "dt": rt.dt,
                    "theta_error": rt.theta_error,
                    "momentum_error": rt.momentum_error,
                }
            )
    _write_csv(root / "reversibility.csv", rev_rows)
    (root / "figures").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "figures" / "drift.png")
    return root

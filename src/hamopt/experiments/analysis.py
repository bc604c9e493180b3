r"""Analysis of a sweep directory (spec §6): drift per run, scaling fits, cap, ablations.

* **drift per run** — ``median |x_t|`` over the tail ``t ∈ [0.8 T, T]`` for each of ΔH^int,
  ΔH^traj and the resampling term δ (:func:`hamopt.diagnostics.tail_median_abs`), plus the
  cap-engagement rate → ``drift.csv``.
* **scaling** — per optimiser, band and drift kind: OLS of ``log10 drift`` on ``log10 step size``
  with **one point per (step size, seed)** over the completed ``default`` runs (diverged runs
  have no tail and are left out and counted), slope with its 95 % t-interval (n − 2 degrees of
  freedom), R², n, and a percentile bootstrap interval over seeds (resample the seeds with
  replacement, refit on all their points) → ``table.csv``.
* **matched training progress** — next to the fixed-step tail median, each completed default
  run's drift at matched training loss (:mod:`hamopt.diagnostics.isoloss`): the iso-loss median
  over the steps whose smoothed loss lies in the lowest ``tail_fraction`` of the loss range that
  every run of its (optimizer, band, seed) group covers, and the drift per unit of loss decrease
  over that whole range → ``drift.csv`` (``isoloss_*``, ``per_loss_*``); their slopes (OLS with a
  95 % t-interval, no bootstrap) sit next to the tail slope in ``table.csv``
  (``slope_isoloss``…, ``slope_per_loss``…).
* **decomposition** — per optimiser and band: how far apart the integrator and resampling drifts
  are (median ratio over runs), and whether the trajectory slope follows the integrator's or the
  resampling term's → ``decomposition.csv``.
* **cap** — engagement rate per step size: mean over seeds with a 95 % t-interval → ``cap.csv``.
* **ablations** — for each non-default ablation run, the largest absolute difference of its
  per-step energy series (H, ΔH^int, L) from the default run of the same configuration →
  ``ablations.csv``.
* **timing** — wall time per step by optimiser and mode → ``timing.csv``.
* **accounting** — the planned runs set against the directory
  (:meth:`~hamopt.experiments.store.RunStore.accounting`): runs the plan lists but the directory
  lacks, and runs whose manifest or steps are damaged, are named rather than silently counted out.

A ``diverged`` run (loss or gradient non-finite, or training loss above
:data:`~hamopt.experiments.engine.DIVERGENCE_FACTOR` × its initial loss) is left out of the fits.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnostics import fit_loglog_slope, tail_median_abs
from ..diagnostics.ablations import max_abs_difference
from ..diagnostics.cap import engagement_rate, mean_ci
from ..diagnostics.isoloss import add_readings
from .store import CorruptRunError, RunAccounting, RunStore, write_csv

__all__ = [
    "DRIFT_COLUMNS",
    "DRIFT_KINDS",
    "TABLE_COLUMNS",
    "Analysis",
    "analyse",
    "load_runs",
    "slope_rows",
    "write_analysis",
]

DRIFT_KINDS = ("int", "traj", "resampling")
_SERIES = {"int": "delta_h_int", "traj": "delta_h_traj", "resampling": "resampling"}
DRIFT_COLUMNS = [
    "run_id", "optimizer", "mode", "band", "step_size", "seed", "ablation", "drift_int",
    "drift_traj", "drift_resampling", "cap_rate", "status", "steps", "wall_time_s", "type",
    *(f"{r}_{k}" for r in ("isoloss", "per_loss") for k in ("int", "traj", "resampling")),
    "isoloss_low", "isoloss_high",
]
MATCHED_READINGS = ("isoloss", "per_loss")
TABLE_COLUMNS = [
    "optimizer",
    "band",
    "drift",
    "n",
    "slope",
    "ci_low",
    "ci_high",
    "r2",
    "boot_low",
    "boot_high",
    *(f"{c}_{r}" for r in MATCHED_READINGS for c in ("n", "slope", "ci_low", "ci_high")),
]
CAP_COLUMNS = ["optimizer", "band", "step_size", "n", "cap_rate", "ci_low", "ci_high"]
ABLATION_COLUMNS = [
    "optimizer", "band", "step_size", "seed", "ablation", "max_abs_diff_hamiltonian",
    "max_abs_diff_delta_h_int", "max_abs_diff_loss", "identical", "steps_compared", "drift_int",
    "drift_int_default",
]
DECOMP_COLUMNS = [
    "optimizer", "band", "runs", "median_ratio_resampling_to_int", "log10_ratio", "slope_int",
    "slope_traj", "slope_resampling", "traj_follows",
]
TIMING_COLUMNS = ["optimizer", "mode", "runs", "ms_per_step"]


@dataclass(frozen=True)
class RunData:
    """One stored run: manifest and its step columns (lists)."""

    run_id: str
    manifest: dict[str, Any]
    columns: dict[str, list[Any]]


@dataclass(frozen=True)
class Analysis:
    """All derived tables of a sweep directory (lists of dict rows, CSV-ready)."""

    drift: list[dict[str, Any]]
    table: list[dict[str, Any]]
    decomposition: list[dict[str, Any]]
    cap: list[dict[str, Any]]
    ablations: list[dict[str, Any]]
    reversibility: list[dict[str, Any]]
    timing: list[dict[str, Any]]
    excluded: list[dict[str, Any]]
    accounting: RunAccounting | None = None


def load_runs(out: str | Path, *, skip_damaged: bool = False) -> list[RunData]:
    """Every finished run (completed, diverged or failed) with its steps. A run whose Parquet is
    damaged raises :class:`~hamopt.experiments.store.CorruptRunError` naming it, or with
    ``skip_damaged`` is left out (:meth:`RunStore.accounting` names it)."""
    store = RunStore(out)
    if not store.runs_dir.is_dir():
        raise FileNotFoundError(
            f"{out} has no runs/ directory: run `hamopt sweep SPEC --out {out}` first"
        )
    runs = []
    for r in store.runs():
        if r.manifest is None:
            continue  # in flight, killed or damaged: not a result
        try:
            table = store.read_steps(r.run_id)
        except CorruptRunError:
            if skip_damaged:
                continue
            raise
        runs.append(RunData(r.run_id, r.manifest, table.to_pydict()))
    return runs


def drift_rows(runs: Sequence[RunData], tail_fraction: float = 0.2) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        m = r.manifest
        n = len(r.columns["step"])
        row = {
            "run_id": r.run_id,
            "optimizer": m["optimizer"],
            "mode": m["mode"],
            "band": m["band"],
            "step_size": m["step_size"],
            "seed": m["seed"],
            "ablation": m["ablation"],
            "status": m["status"],
            "steps": n,
            "wall_time_s": m.get("wall_time_s"),
            "type": m.get("type"),
        }
        for kind, col in _SERIES.items():
            row[f"drift_{kind}"] = (
                tail_median_abs(r.columns[col], tail_fraction=tail_fraction) if n else float("nan")
            )
        row["cap_rate"] = engagement_rate(r.columns["cap_engaged"]) if n else float("nan")
        rows.append(row)
    columns = {r.run_id: r.columns for r in runs}
    add_readings(
        rows,
        lambda row: (columns[row["run_id"]]["loss"],
                     {k: columns[row["run_id"]][c] for k, c in _SERIES.items()}),
        group_of=lambda row: (row["optimizer"], row["band"], row["seed"])
        if row["ablation"] == "default" and row["status"] == "completed" and row["steps"] else None,
        kinds=DRIFT_KINDS,
        fraction=tail_fraction,
    )
    return rows


def _fit(points: list[tuple[float, float]]) -> Any:
    xs = [p[0] for p in points]
    if len(points) < 2 or len(set(xs)) < 2:
        return None
    return fit_loglog_slope(xs, [p[1] for p in points])


def _usable(v: Any) -> bool:
    return v is not None and isinstance(v, float) and math.isfinite(v) and v > 0


def slope_rows(
    drift: Sequence[dict[str, Any]], *, bootstrap: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """``table.csv`` rows: one per (optimizer, band, drift kind) over completed default runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in drift:
        if d["ablation"] == "default" and d["status"] == "completed":
            groups[(d["optimizer"], d["band"])].append(d)
    out = []
    rng = np.random.default_rng(seed)
    for (opt, band), rows in groups.items():
        for kind in DRIFT_KINDS:
            pts = [
                (r["step_size"], r[f"drift_{kind}"], r["seed"])
                for r in rows
                if _usable(r[f"drift_{kind}"])
            ]
            fit = _fit([(p[0], p[1]) for p in pts])
            row = {"optimizer": opt, "band": band, "drift": kind, "n": len(pts)}
            if fit is None:
                row.update(
                    slope=float("nan"), ci_low=float("nan"), ci_high=float("nan"), r2=float("nan")
                )
            else:
                row.update(slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high, r2=fit.r2)
            seeds = sorted({p[2] for p in pts})
            boots = []
            if fit is not None and bootstrap > 0 and len(seeds) >= 2:
                by_seed = {s: [(p[0], p[1]) for p in pts if p[2] == s] for s in seeds}
                # a resample is a sequence of seeds: with few seeds most repeat (3 seeds: 27
                # sequences for 1000 resamples), so each sequence is fitted once, on the same
                # points in the same order as always (the same slope to the last bit)
                fitted: dict[tuple[int, ...], float | None] = {}
                for _ in range(bootstrap):
                    pick = tuple(rng.choice(len(seeds), size=len(seeds), replace=True).tolist())
                    if pick not in fitted:
                        f = _fit([pt for i in pick for pt in by_seed[seeds[i]]])
                        fitted[pick] = None if f is None else f.slope
                    if fitted[pick] is not None:
                        boots.append(fitted[pick])
            if boots:
                row["boot_low"], row["boot_high"] = (
                    float(v) for v in np.percentile(boots, [2.5, 97.5])
                )
            else:
                row["boot_low"] = row["boot_high"] = float("nan")
            for reading in MATCHED_READINGS:
                matched = [(r["step_size"], r.get(f"{reading}_{kind}")) for r in rows]
                matched = [(x, y) for x, y in matched if _usable(y)]
                f = _fit(matched)
                row[f"n_{reading}"] = len(matched)
                row[f"slope_{reading}"], row[f"ci_low_{reading}"], row[f"ci_high_{reading}"] = (
                    (float("nan"),) * 3 if f is None else (f.slope, f.ci_low, f.ci_high))
            out.append(row)
    return out


def decomposition_rows(
    drift: Sequence[dict[str, Any]], table: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    slopes = {(t["optimizer"], t["band"], t["drift"]): t["slope"] for t in table}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in drift:
        if d["ablation"] == "default" and d["status"] == "completed":
            groups[(d["optimizer"], d["band"])].append(d)
    out = []
    for (opt, band), rows in groups.items():
        ratios = [
            r["drift_resampling"] / r["drift_int"]
            for r in rows
            if _usable(r["drift_int"]) and _usable(r["drift_resampling"])
        ]
        med = float(np.median(ratios)) if ratios else float("nan")
        s_int, s_traj, s_res = (slopes.get((opt, band, k), float("nan")) for k in DRIFT_KINDS)
        follows = "undetermined"
        if all(math.isfinite(v) for v in (s_int, s_traj, s_res)):
            follows = "resampling" if abs(s_traj - s_res) < abs(s_traj - s_int) else "integrator"
        out.append(
            {
                "optimizer": opt,
                "band": band,
                "runs": len(rows),
                "median_ratio_resampling_to_int": med,
                "log10_ratio": math.log10(med) if med > 0 and math.isfinite(med) else float("nan"),
                "slope_int": s_int,
                "slope_traj": s_traj,
                "slope_resampling": s_res,
                "traj_follows": follows,
            }
        )
    return out


def cap_rows(drift: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for d in drift:
        if d["ablation"] == "default" and d["status"] in ("completed", "diverged"):
            groups[(d["optimizer"], d["band"], d["step_size"])].append(d["cap_rate"])
    out = []
    for (opt, band, step), rates in sorted(groups.items()):
        ci = mean_ci(rates)
        out.append(
            {
                "optimizer": opt,
                "band": band,
                "step_size": step,
                "n": ci.n,
                "cap_rate": ci.mean,
                "ci_low": ci.ci_low,
                "ci_high": ci.ci_high,
            }
        )
    return out


def ablation_rows(runs: Sequence[RunData], drift: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {}
    for r in runs:
        m = r.manifest
        by_key[(m["optimizer"], m["band"], m["step_size"], m["seed"], m["ablation"])] = r
    dmap = {d["run_id"]: d for d in drift}
    out = []
    for (opt, band, step, seed, abl), r in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        if abl == "default":
            continue
        ref = by_key.get((opt, band, step, seed, "default"))
        if ref is None:
            continue
        dh = max_abs_difference(r.columns["hamiltonian"], ref.columns["hamiltonian"])
        di = max_abs_difference(r.columns["delta_h_int"], ref.columns["delta_h_int"])
        dl = max_abs_difference(r.columns["loss"], ref.columns["loss"])
        out.append(
            {
                "optimizer": opt,
                "band": band,
                "step_size": step,
                "seed": seed,
                "ablation": abl,
                "max_abs_diff_hamiltonian": dh.max_abs,
                "max_abs_diff_delta_h_int": di.max_abs,
                "max_abs_diff_loss": dl.max_abs,
                "identical": dh.identical and di.identical and dl.identical,
                "steps_compared": dh.steps_compared,
                "drift_int": dmap[r.run_id]["drift_int"],
                "drift_int_default": dmap[ref.run_id]["drift_int"],
            }
        )
    return out


def timing_rows(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in runs:
        m = r.manifest
        n = len(r.columns["step"])
        if m["ablation"] == "default" and m["status"] == "completed" and n:
            groups[(m["optimizer"], m["mode"])].append(1000.0 * m["wall_time_s"] / n)
    return [
        {"optimizer": o, "mode": md, "runs": len(v), "ms_per_step": float(np.median(v))}
        for (o, md), v in sorted(groups.items())
    ]


def read_csv(path: Path) -> list[dict[str, Any]]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for k, v in row.items():
            with contextlib.suppress(ValueError, AttributeError):
                row[k] = int(v) if v.lstrip("-").isdigit() else float(v)
    return rows


def _replan(meta: dict[str, Any]) -> list[str] | None:
    """The run ids a stored ``spec.yaml`` plans (for directories written before ``plan.json``
    was kept); None when the stored spec no longer parses."""
    from .drift_setup import plan_runs
    from .spec import SpecError, parse_spec

    extras = ("resolved_step_sizes", "spec_hash", "stability_calibration")
    steps = meta.get("resolved_step_sizes")
    if not steps:
        return None
    try:
        spec = parse_spec({k: v for k, v in meta.items() if k not in extras})
        return [c.run_id for c in plan_runs(spec, steps)]
    except (SpecError, KeyError, TypeError, IndexError, StopIteration):
        return None


def analyse(
    out: str | Path, *, tail_fraction: float | None = None, bootstrap: int | None = None
) -> Analysis:
    """Compute every table of a sweep directory (reads the spec for tail fraction and bootstrap)."""
    import yaml

    root = Path(out)
    store = RunStore(root)
    spec_text = store.read_text("spec.yaml")
    meta = yaml.safe_load(spec_text) if spec_text else {}
    tail = tail_fraction if tail_fraction is not None else float(meta.get("tail_fraction", 0.2))
    boots = bootstrap if bootstrap is not None else int(meta.get("bootstrap", 1000))
    runs = load_runs(root, skip_damaged=True)
    if not runs:
        raise FileNotFoundError(
            f"{root} holds no finished runs: run `hamopt sweep SPEC --out {root}` first"
        )
    drift = drift_rows(runs, tail)
    table = slope_rows(drift, bootstrap=boots)
    excluded = [
        {"run_id": d["run_id"], "status": d["status"]}
        for d in drift
        if d["ablation"] == "default" and d["status"] != "completed"
    ]
    accounting = store.accounting(_replan(meta), verified={r.run_id for r in runs})
    excluded += [{"run_id": rid, "status": "missing"} for rid in accounting.missing]
    excluded += [{"run_id": rid, "status": f"damaged: {why}"} for rid, why in accounting.damaged]
    return Analysis(
        drift,
        table,
        decomposition_rows(drift, table),
        cap_rows(drift),
        ablation_rows(runs, drift),
        read_csv(root / "reversibility.csv"),
        timing_rows(runs),
        excluded,
        accounting,
    )


def write_analysis(out: str | Path, analysis: Analysis) -> None:
    root = Path(out)
    write_csv(root / "drift.csv", analysis.drift, DRIFT_COLUMNS)
    write_csv(root / "table.csv", analysis.table, TABLE_COLUMNS)
    write_csv(root / "decomposition.csv", analysis.decomposition, DECOMP_COLUMNS)
    write_csv(root / "cap.csv", analysis.cap, CAP_COLUMNS)
    write_csv(root / "ablations.csv", analysis.ablations, ABLATION_COLUMNS)
    write_csv(root / "timing.csv", analysis.timing, TIMING_COLUMNS)

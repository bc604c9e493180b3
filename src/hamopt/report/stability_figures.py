r"""The stability monitor in the report: sharpness ratio over training next to the drift.

For a sweep run with ``stability: {every: k}`` (:mod:`hamopt.diagnostics.stability_monitor`),
:func:`write_stability_figures` writes

* ``stability.csv`` — one row per default run: the measured ratio ``λ_max(P⁻¹H)/threshold`` first,
  at its maximum, last, the median over the run's tail (the last fifth of its measurements), the
  first measured step where it exceeded 1, the step the run ended (diverged runs end early), and
  the training loss at the first step and its median over the last fifth of the steps (did the
  run still train?);
* ``figures/fig6_stability.png`` — one column per optimiser: the drift ``|ΔH^traj|`` per step
  (top, running median over ``k`` steps) and the ratio at every measurement (bottom, log scale,
  the line ratio = 1 dashed, ratios below 10⁻⁴ off the axis), one colour per step size; ○ marks
  where a run's ratio first crossed 1; a diverged run is dashed, with a dotted line at that
  crossing in the drift panel and × where it ended.

A sweep without the monitor gets neither (an empty dict).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["STABILITY_FIGURE", "stability_rows", "write_stability_figures"]

STABILITY_FIGURE = "fig6_stability"
CAPTION = ("Stability monitor — top: drift |ΔH^traj| per step (running median); bottom: the sharpness "
           "ratio λ_max(P⁻¹H)/threshold at each measurement, stable below the dashed line at 1. "
           "○: where a run's ratio first crossed 1; dashed runs diverged (× where they ended).")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _monitored(store: Any, analysis: Any) -> bool:
    """Whether the sweep's steps have the monitor's column, from the Parquet schema of one run
    (every run of a sweep has its spec's schema; the schema is read without the data)."""
    import pyarrow.parquet as pq

    from ..experiments.store import STEPS_NAME

    for d in analysis.drift:
        path = store.run_dir(d["run_id"]) / STEPS_NAME
        try:
            return "sharpness_ratio" in pq.read_schema(path).names
        except Exception:  # noqa: BLE001 - a damaged file: try the next run
            continue
    return False


def _runs(out: Path, analysis: Any) -> list[tuple[dict[str, Any], dict[str, list[Any]]]]:
    from ..experiments.store import CorruptRunError, RunStore

    store = RunStore(out)
    if not _monitored(store, analysis):
        return []
    runs = []
    for d in analysis.drift:
        if d["ablation"] != "default":
            continue
        try:
            cols = store.read_steps(d["run_id"]).to_pydict()
        except CorruptRunError:
            continue
        if "sharpness_ratio" in cols:
            runs.append((d, cols))
    return runs


def stability_rows(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]]) -> list[dict[str, Any]]:
    """One summary row per run (see the module docstring)."""
    rows = []
    for d, cols in runs:
        measured = [(s, r) for s, r in zip(cols["step"], cols["sharpness_ratio"]) if _finite(r)]
        ratios = [r for _, r in measured]
        tail = ratios[len(ratios) - max(1, len(ratios) // 5):] if ratios else []
        crossing = next((s for s, r in measured if r > 1.0), None)
        losses = [v for v in cols["loss"] if _finite(v)]
        loss_tail = losses[len(losses) - max(1, len(losses) // 5):]
        rows.append({
            "optimizer": d["optimizer"], "band": d["band"], "step_size": d["step_size"], "seed": d["seed"],
            "status": d["status"], "measurements": len(ratios),
            "ratio_first": ratios[0] if ratios else None,
            "ratio_max": max(ratios) if ratios else None,
            "ratio_last": ratios[-1] if ratios else None,
            "ratio_tail_median": statistics.median(tail) if tail else None,
            "first_step_above_1": crossing,
            "last_step": cols["step"][-1] if cols["step"] else None,
            "loss_first": losses[0] if losses else None,
            "loss_tail_median": statistics.median(loss_tail) if loss_tail else None,
        })
    return sorted(rows, key=lambda r: (r["optimizer"], r["band"], r["step_size"], r["seed"]))


def _running_median(values: list[Any], width: int) -> list[float]:
    mags = [abs(v) if _finite(v) and v != 0 else math.nan for v in values]
    out = []
    for i in range(len(mags)):
        window = [m for m in mags[max(0, i - width + 1): i + 1] if not math.isnan(m)]
        out.append(statistics.median(window) if window else math.nan)
    return out


def _plot(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]], path: Path) -> None:
    from .figures import _plt

    plt = _plt()
    by_opt: dict[str, list[tuple[dict[str, Any], dict[str, list[Any]]]]] = defaultdict(list)
    for d, cols in runs:
        by_opt[d["optimizer"]].append((d, cols))
    names = sorted(by_opt)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.0), squeeze=False, sharex="col")
    cmap = plt.get_cmap("viridis")
    for j, name in enumerate(names):
        group = sorted(by_opt[name], key=lambda rc: (rc[0]["step_size"], rc[0]["seed"]))
        sizes = sorted({d["step_size"] for d, _ in group})
        top, bottom = axes[0][j], axes[1][j]
        for d, cols in group:
            color = cmap(sizes.index(d["step_size"]) / max(1, len(sizes) - 1) * 0.9)
            style = "--" if d["status"] == "diverged" else "-"
            label = f"{d['step_size']:.4g}" + (" (diverged)" if d["status"] == "diverged" else "")
            measured = [(s, r) for s, r in zip(cols["step"], cols["sharpness_ratio"]) if _finite(r) and r > 0]
            every = measured[1][0] - measured[0][0] if len(measured) > 1 else 1
            top.plot(cols["step"], _running_median(cols["delta_h_traj"], every), style, color=color, lw=1)
            if measured:
                bottom.plot(*zip(*measured), style, color=color, lw=1.2, marker=".", ms=3, label=label)
            cross = next(((s, r) for s, r in measured if r > 1.0), None)
            if cross is not None:
                bottom.plot(*cross, "o", mfc="none", color=color, ms=8)
            if d["status"] == "diverged":
                if cross is not None:
                    top.axvline(cross[0], color=color, ls=":", lw=1)
                if measured:
                    bottom.plot(cols["step"][-1], measured[-1][1], "x", color=color, ms=8)
        bottom.axhline(1.0, color="k", ls="--", lw=1)
        top.set_yscale("log")
        bottom.set_yscale("log")
        low, high = bottom.get_ylim()
        bottom.set_ylim(max(low, 1e-4), max(high, 2.0))
        top.set_title(name, fontsize=9)
        top.set_ylabel("|ΔH^traj| (running median)")
        bottom.set_ylabel("λ_max(P⁻¹H) / threshold")
        bottom.set_xlabel("step")
        bottom.legend(fontsize=6, title="step size", title_fontsize=6)
    fig.suptitle("Stability monitor: sharpness ratio over training next to the drift", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_stability_figures(out: str | Path, analysis: Any) -> dict[str, Path]:
    """Write ``stability.csv`` and ``figures/fig6_stability.png`` for a sweep with the monitor on;
    return ``{name: path}`` of the figure (empty without the monitor)."""
    from ..experiments.store import write_csv

    out = Path(out)
    runs = _runs(out, analysis)
    if not runs:
        return {}
    write_csv(out / "stability.csv", stability_rows(runs))
    path = out / "figures" / f"{STABILITY_FIGURE}.png"
    path.parent.mkdir(exist_ok=True)
    _plot(runs, path)
    return {STABILITY_FIGURE: path}

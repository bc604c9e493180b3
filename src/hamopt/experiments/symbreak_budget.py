r"""Does claim 1's answer depend on the training budget? The gap and its narrowing over the steps.

The final comparison (:mod:`.symbreak_gaps`) is at one budget. A run that has not converged could
rank the optimisers differently later, so this module repeats the paired comparison at every
validation point ``t`` (every ``eval_every`` steps) of the evaluated runs, on the validation
loss ``V(optimiser, variant, seed, t)`` the runs recorded:

* ``gap(t) = V(opt, variant, seed, t) − V(AdamW, variant, seed, t)``, paired by seed;
* ``narrowing(t) = gap_symmetric(t) − gap_biased(t)``, paired by seed (positive: the biases
  narrowed the gap at that budget);

each as the mean over seeds with a 95 % t-interval (:func:`hamopt.diagnostics.cap.mean_ci`).
If ``narrowing(t)`` has settled over the last part of training, the answer to claim 1 does not
hinge on where the runs stopped, even where the loss itself is still falling. Written to
``OUT/gaps_by_step.csv`` and drawn in ``OUT/gaps_by_step.png``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .symbreak_gaps import REFERENCE, _put

__all__ = ["BUDGET_COLUMNS", "budget_rows", "plot_budget"]

BUDGET_COLUMNS = ["optimizer", "variant", "step", "n", "gap", "gap_ci_low", "gap_ci_high",
                  "narrowing", "narrowing_ci_low", "narrowing_ci_high"]


def _curves(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]]
            ) -> dict[tuple[str, str], dict[int, dict[int, float]]]:
    """``(optimiser, variant) → seed → {step: validation loss}`` of the completed evaluated runs."""
    out: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(dict)
    for man, cols in runs:
        if man["status"] != "completed" or man.get("stage", "eval") != "eval":
            continue
        out[(man["optimizer"], man["variant"])][man["seed"]] = {
            int(s): float(v) for s, v in zip(cols["step"], cols["val_loss"], strict=True)
            if v is not None}
    return out


def _gap(curves: dict[tuple[str, str], dict[int, dict[int, float]]], opt: str, variant: str,
         step: int) -> dict[int, float]:
    mine, ref = curves.get((opt, variant), {}), curves.get((REFERENCE, variant), {})
    return {s: mine[s][step] - ref[s][step] for s in sorted(set(mine) & set(ref))
            if step in mine[s] and step in ref[s]}


def budget_rows(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
                order: list[str]) -> list[dict[str, Any]]:
    """One row per (optimiser ≠ AdamW, variant, validation step): gap and narrowing (module
    docstring); ``narrowing`` is ``None`` on symmetric rows."""
    curves = _curves(runs)
    rank = {o: i for i, o in enumerate(order)}
    rows = []
    for opt, variant in sorted(curves, key=lambda k: (rank.get(k[0], 99), k[1] != "symmetric", k[1])):
        if opt == REFERENCE:
            continue
        steps = sorted(set().union(*(c.keys() for c in curves[(opt, variant)].values())))
        for step in steps:
            gap = _gap(curves, opt, variant, step)
            if not gap:
                continue
            row: dict[str, Any] = {"optimizer": opt, "variant": variant, "step": step, "n": len(gap)}
            _put(row, "gap", list(gap.values()))
            if variant == "symmetric":
                row["narrowing"] = row["narrowing_ci_low"] = row["narrowing_ci_high"] = None
            else:
                sym = _gap(curves, opt, "symmetric", step)
                _put(row, "narrowing", [sym[s] - gap[s] for s in sorted(set(sym) & set(gap))])
            rows.append(row)
    return rows


def plot_budget(rows: list[dict[str, Any]], path: Path) -> bool:
    """``gap(t)`` per optimiser and variant (left) and ``narrowing(t)`` with its interval (right);
    False when there is nothing to draw or matplotlib is missing."""
    if not rows:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the lab extra
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    opts = list(dict.fromkeys(r["optimizer"] for r in rows))
    for i, opt in enumerate(opts):
        for variant, style in (("symmetric", "--"), ("bq+bv", "-")):
            pts = [r for r in rows if r["optimizer"] == opt and r["variant"] == variant]
            if pts:
                left.plot([r["step"] for r in pts], [r["gap"] for r in pts], style, color=f"C{i}",
                          label=f"{opt} ({variant})")
        pts = [r for r in rows if r["optimizer"] == opt and r["narrowing"] is not None]
        if pts:
            x = [r["step"] for r in pts]
            right.plot(x, [r["narrowing"] for r in pts], color=f"C{i}", label=opt)
            lo = [r["narrowing_ci_low"] for r in pts]
            hi = [r["narrowing_ci_high"] for r in pts]
            if all(v is not None for v in lo + hi):
                right.fill_between(x, lo, hi, color=f"C{i}", alpha=0.15)
    for ax in (left, right):
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_xlabel("step")
    left.set_ylabel("validation loss − AdamW's (nats per token)")
    left.set_title("gap to AdamW, paired by seed (dashed: symmetric)")
    right.set_ylabel("gap(symmetric) − gap(bq+bv)")
    right.set_title("narrowing of the gap by the biases (95 % CI)")
    left.legend(fontsize=7, ncol=2)
    right.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

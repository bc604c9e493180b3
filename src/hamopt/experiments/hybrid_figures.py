r"""Figures of the hybrid-schedule study: ``curves.png`` (test loss and accuracy against gradient
evaluations, each method at its chosen factor, mean over seeds with the seeds' range) and
``energy.png`` (per method, first seed: ``H`` under each phase's convention and ``|ΔH^int|``
per step, coloured by phase, switch steps marked)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["PHASE_COLOURS", "write_figures"]

PHASE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _chosen_runs(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
                 table: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], dict[str, list[Any]]]]]:
    chosen = {(r["method"], r["factor"]) for r in table}
    out: dict[str, list[Any]] = defaultdict(list)
    for man, cols in runs:
        if man["status"] == "completed" and (man["method"], float(man["factor"])) in chosen:
            out[man["method"]].append((man, cols))
    for members in out.values():
        members.sort(key=lambda mc: mc[0]["seed"])
    return out


def _curve(cols: dict[str, list[Any]], key: str) -> dict[int, float]:
    return {e: v for e, v in zip(cols["evals"], cols[key], strict=True) if v is not None}


def write_figures(root: Path, runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
                  table: list[dict[str, Any]]) -> list[str]:
    """Write ``curves.png`` and ``energy.png`` into ``root``; return the names written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the lab extra
        return []
    chosen = _chosen_runs(runs, table)
    if not chosen:
        return []
    methods = [r["method"] for r in table if r["method"] in chosen]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, method in enumerate(methods):
        for ax, key in zip(axes, ("test_loss", "test_acc"), strict=True):
            curves = [_curve(cols, key) for _, cols in chosen[method]]
            evals = sorted(set.intersection(*(set(c) for c in curves)))
            if not evals:
                continue
            mean = [sum(c[e] for c in curves) / len(curves) for e in evals]
            ax.plot(evals, mean, color=f"C{i}", lw=1.5, label=method)
            ax.fill_between(evals, [min(c[e] for c in curves) for e in evals],
                            [max(c[e] for c in curves) for e in evals], color=f"C{i}", alpha=0.15, lw=0)
    axes[0].set_ylabel("test loss (nats)")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_xlabel("gradient evaluations")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(root / "curves.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(methods), 2, figsize=(11, 2.3 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        man, cols = chosen[method][0]
        labels = [p["family"] for p in man.get("phases") or []]
        for col, (key, title) in enumerate((("hamiltonian", "H = K + L"), ("delta_h_int", "|ΔH^int| per step"))):
            ax = axes[row][col]
            points: dict[int, list[tuple[int, float]]] = defaultdict(list)
            for e, ph, sw, v in zip(cols["evals"], cols["phase"], cols["switched"], cols[key], strict=True):
                if sw:
                    ax.axvline(e, color="k", lw=0.8, ls="--")
                if v is None or not math.isfinite(v) or (col == 1 and v == 0):
                    continue
                points[ph].append((e, abs(v) if col == 1 else v))
            for ph, pts in sorted(points.items()):
                name = labels[ph] if ph < len(labels) else ""
                ax.plot(*zip(*pts, strict=True), ".", ms=2.5, color=PHASE_COLOURS[ph % len(PHASE_COLOURS)],
                        label=f"phase {ph}: {name}")
            if col == 1:
                ax.set_yscale("log")
            ax.set_title(f"{method} (seed {man['seed']}): {title}", fontsize=9)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7, markerscale=3)
        axes[row][0].set_ylabel("nats")
    for ax in axes[-1]:
        ax.set_xlabel("gradient evaluations")
    fig.tight_layout()
    fig.savefig(root / "energy.png", dpi=100)
    plt.close(fig)
    return ["curves.png", "energy.png"]

r"""PNG figures of a sweep (matplotlib, Agg backend), mirroring the study's figures.

* ``fig1a_band.png`` — drift vs step size in the reference band, log–log, one colour per
  optimiser; panels ΔH^int and ΔH^traj; points are (step size, seed), lines the mean over seeds.
* ``fig1b_wide.png`` — the same for the wide Leapfrog band(s), with the band runs for reference.
* ``fig2_reversibility.png`` — round-trip error ‖θ_back − θ_0‖/‖θ_0‖ vs N, Leapfrog vs Euler,
  float32 and float64.
* ``fig3_cap.png`` — cap engagement rate vs step size, mean over seeds with 95 % t-interval.
* ``fig4_decomposition.png`` — per optimiser and band: tail drift of ΔH^int, ΔH^traj and δ vs step.
* ``fig5_ablations.png`` — the ablation runs' energy series and |difference| from the default's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import families

__all__ = ["write_figures"]

_KIND_LABEL = {
    "int": "ΔH^int (integrator, same batch)",
    "traj": "ΔH^traj (trajectory, across batches)",
    "resampling": "δ (mini-batch resampling)",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _drift_panel(
    ax: Any,
    rows: Sequence[dict[str, Any]],
    kind: str,
    colors: dict[str, Any],
    linestyle: str = "-",
    suffix: str = "",
) -> None:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["optimizer"], r["band"])].append(r)
    for (opt, band), rs in sorted(groups.items()):
        pts = [(r["step_size"], r[f"drift_{kind}"]) for r in rs if _pos(r[f"drift_{kind}"])]
        if not pts:
            continue
        c = colors[opt]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=c, alpha=0.6)
        by_step: dict[float, list[float]] = defaultdict(list)
        for x, y in pts:
            by_step[x].append(math.log10(y))
        xs = sorted(by_step)
        ax.plot(
            xs,
            [10 ** (sum(by_step[x]) / len(by_step[x])) for x in xs],
            color=c,
            ls=linestyle,
            label=f"{opt} ({band}){suffix}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size (dt for Leapfrog, lr for baselines)")
    ax.set_ylabel("tail median |·| (nats)")
    ax.set_title(_KIND_LABEL[kind])


def _colors(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    plt = _plt()
    names = sorted({r["optimizer"] for r in rows})
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _default_completed(drift: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in drift if d["ablation"] == "default" and d["status"] == "completed"]


def fig_band(
    drift: Sequence[dict[str, Any]],
    path: Path,
    *,
    bands: Sequence[str],
    title: str,
    reference: Sequence[str] = (),
) -> None:
    plt = _plt()
    rows = _default_completed(drift)
    colors = _colors(rows)
    main = [r for r in rows if r["band"] in bands]
    ref = [
        r
        for r in rows
        if r["band"] in reference and r["optimizer"] in {m["optimizer"] for m in main}
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, ("int", "traj")):
        _drift_panel(ax, main, kind, colors)
        if ref:
            _drift_panel(ax, ref, kind, colors, linestyle=":", suffix=" ref")
        if not main:
            ax.text(0.5, 0.5, "no runs in this band", ha="center", transform=ax.transAxes)
        else:
            _legend(ax)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_reversibility(rev: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rev:
        groups[(r["integrator"], r["dtype"])].append(r)
    styles = {families.LEAPFROG.name: "-", families.EULER.name: "--"}
    marks = {"float32": "o", "float64": "s"}
    for ax, col, label in zip(
        axes, ("theta_error", "momentum_error"), ("‖θ_back − θ_0‖ / ‖θ_0‖", "momentum error")
    ):
        for (integ, dt), rs in sorted(groups.items()):
            rs = sorted(rs, key=lambda r: r["steps"])
            ys = [max(r[col], 1e-300) for r in rs]
            ax.plot(
                [r["steps"] for r in rs],
                ys,
                ls=styles.get(integ, "-"),
                marker=marks.get(dt, "o"),
                label=f"{integ} {dt}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (steps each way)")
        ax.set_ylabel(label)
        if groups:
            _legend(ax)
        else:
            ax.text(
                0.5, 0.5, "no reversibility study in this spec", ha="center", transform=ax.transAxes
            )
    fig.suptitle(
        "Fig. 2 — reversibility: N steps, flip p, N steps, flip p (γ = 0, no cap, one batch)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _has_energy_cap(type_name: str | None) -> bool:
    """Whether the family of a run type has an energy cap (False for a type not registered here)."""
    try:
        return families.get(type_name or "").has_energy_cap
    except families.UnknownFamilyError:
        return False


def fig_cap(
    cap: Sequence[dict[str, Any]], path: Path, types: dict[str, str | None] | None = None
) -> None:
    """Cap engagement per (spec entry, band); ``types`` maps a spec entry to its family type.
    Entries whose family has no energy cap are left out unless they engaged at all."""
    plt = _plt()
    types = types or {}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in cap:
        groups[(r["optimizer"], r["band"])].append(r)
    for (opt, band), rs in sorted(groups.items()):
        if not _has_energy_cap(types.get(opt)) and all(r["cap_rate"] == 0 for r in rs):
            continue  # families without an energy cap
        rs = sorted(rs, key=lambda r: r["step_size"])
        xs = [r["step_size"] for r in rs]
        ys = [100 * r["cap_rate"] for r in rs]
        lo = [100 * (r["cap_rate"] - r["ci_low"]) if math.isfinite(r["ci_low"]) else 0 for r in rs]
        hi = [
            100 * (r["ci_high"] - r["cap_rate"]) if math.isfinite(r["ci_high"]) else 0 for r in rs
        ]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{opt} ({band})")
    ax.set_xscale("log")
    ax.set_xlabel("step size")
    ax.set_ylabel("cap engagement (% of steps)")
    ax.set_title("Fig. 3 — energy-cap engagement, mean over seeds ± 95% t-interval")
    if groups:
        _legend(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_decomposition(drift: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    rows = _default_completed(drift)
    keys = sorted({(r["optimizer"], r["band"]) for r in rows})
    n = max(1, len(keys))
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    colors = {"int": "tab:blue", "traj": "tab:red", "resampling": "tab:green"}
    for ax, key in zip(axes.flat, keys):
        rs = [r for r in rows if (r["optimizer"], r["band"]) == key]
        for kind in ("int", "traj", "resampling"):
            by_step: dict[float, list[float]] = defaultdict(list)
            for r in rs:
                if _pos(r[f"drift_{kind}"]):
                    by_step[r["step_size"]].append(math.log10(r[f"drift_{kind}"]))
            xs = sorted(by_step)
            if xs:
                ax.plot(
                    xs,
                    [10 ** (sum(by_step[x]) / len(by_step[x])) for x in xs],
                    marker="o",
                    color=colors[kind],
                    label={"int": "ΔH^int", "traj": "ΔH^traj", "resampling": "δ"}[kind],
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{key[0]} ({key[1]})", fontsize=9)
        ax.set_xlabel("step size")
        _legend(ax)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(
        "Drift decomposition: ΔH^traj = ΔH^int + δ (tail medians, geometric mean over seeds)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_ablations(series: dict[str, dict[str, list[Any]]], path: Path) -> None:
    """``series``: ablation name → step columns of its run (same config, same seed)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    ref = series.get("default")
    for name, cols in sorted(series.items()):
        h = [v if v is not None else float("nan") for v in cols["hamiltonian"]]
        axes[0].plot(
            cols["step"], h, label=name, lw=1.0, ls={"default": "-", "thrash": "--"}.get(name, ":")
        )
        if ref is not None and name != "default":
            n = min(len(h), len(ref["hamiltonian"]))
            d = [
                abs(a - b) if a is not None and b is not None else float("nan")
                for a, b in zip(cols["hamiltonian"][:n], ref["hamiltonian"][:n])
            ]
            d = [max(v, 1e-20) for v in d]
            axes[1].plot(cols["step"][:n], d, label=f"|{name} − default|")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("H after the step (nats)")
    axes[0].set_title("energy series per ablation")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("|ΔH series difference| (floor 1e-20 = identical)")
    axes[1].set_title("difference from default")
    for ax in axes:
        if ax.lines:
            _legend(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_figures(
    out: Path, analysis: Any, ablation_series: dict[str, dict[str, list[Any]]]
) -> dict[str, Path]:
    """Write every figure into ``out/figures``; return name → path."""
    figdir = Path(out) / "figures"
    figdir.mkdir(exist_ok=True)
    bands = sorted({d["band"] for d in analysis.drift})
    wide = [b for b in bands if b != "band"] if "band" in bands else []
    paths = {
        "fig1a_band": figdir / "fig1a_band.png",
        "fig1b_wide": figdir / "fig1b_wide.png",
        "fig2_reversibility": figdir / "fig2_reversibility.png",
        "fig3_cap": figdir / "fig3_cap.png",
        "fig4_decomposition": figdir / "fig4_decomposition.png",
        "fig5_ablations": figdir / "fig5_ablations.png",
    }
    fig_band(
        analysis.drift,
        paths["fig1a_band"],
        bands=["band"] if "band" in bands else bands,
        title="Fig. 1a — drift vs step size in the reference band",
    )
    fig_band(
        analysis.drift,
        paths["fig1b_wide"],
        bands=wide,
        reference=["band"],
        title="Fig. 1b — drift vs step size, wide sweep (dotted: reference band)",
    )
    fig_reversibility(analysis.reversibility, paths["fig2_reversibility"])
    fig_cap(analysis.cap, paths["fig3_cap"], {d["optimizer"]: d.get("type") for d in analysis.drift})
    fig_decomposition(analysis.drift, paths["fig4_decomposition"])
    fig_ablations(ablation_series, paths["fig5_ablations"])
    return paths

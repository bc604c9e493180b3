r"""PNG figures of a sweep (matplotlib, Agg backend), mirroring the study's figures.

Step sizes are drawn in units of each optimiser's own stability limit where the spec placed the
band that way (``dt / dt_c`` for Leapfrog, ``√(lr / lr_c)`` for SGD; the absolute step size on
the top axis), and as the step size itself otherwise (AdamW), one panel per optimiser, so no
optimiser's band is squeezed into a corner of another's axis.

* ``fig1a_band.png`` — drift vs step size in the reference band, one panel per optimiser: ΔH^int
  and ΔH^traj; points are (step size, seed), lines the geometric mean over seeds; the legend carries
  Table 1's slope and 95 % CI.
* ``fig1b_wide.png`` — the same for the wide band(s), with the entry's reference band dotted.
* ``fig2_reversibility.png`` — round-trip error ‖θ_back − θ_0‖/‖θ_0‖ vs N, Leapfrog vs Euler,
  float32 (open markers) and float64 (filled); coinciding series are named in the panel.
* ``fig3_cap.png`` — cap engagement rate vs step size, mean over seeds with 95 % t-interval.
* ``fig4_decomposition.png`` — per optimiser and band: tail drift of ΔH^int, ΔH^traj and δ, with
  each part's slope in the legend and the median ratio δ / ΔH^int in the panel.
* ``fig5_ablations.png`` — the ablation runs' energy series and |difference| from the default's
  ("identical: max |Δ| = 0" when there is none).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import families
from .context import ReportContext, StepAxis

__all__ = ["figure_jobs", "write_figures"]

_KIND_LABEL = {"int": "ΔH$^{int}$", "traj": "ΔH$^{traj}$", "resampling": "δ"}
_KIND_COLOR = {"int": "tab:blue", "traj": "tab:red", "resampling": "tab:green"}
_Y_LABEL = "drift: tail median |·| (nats)"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _legend(ax: Any, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **kw)


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _default_completed(drift: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in drift if d["ablation"] == "default" and d["status"] == "completed"]


def _axis(context: ReportContext | None, name: str, band: str) -> StepAxis:
    axis = context.axis(name, band) if context is not None else None
    return axis or StepAxis(name, band, "", "step size", ())


def _grid(n: int, cols: int, width: float, height: float) -> tuple[Any, list[Any]]:
    plt = _plt()
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:max(n, 1)]


def _ticks(ax: Any, xs: Sequence[float]) -> None:
    """Log x axis with ticks at the step sizes drawn, written plainly."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ticks = sorted(set(xs))
    if ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels([f"{t:.3g}" for t in ticks], rotation=30 if len(ticks) > 4 else 0)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())


def _absolute_axis(ax: Any, axis: StepAxis) -> None:
    """A top axis with the absolute step size of a relative entry."""
    if not (axis.relative and axis.limit):
        return
    import numpy as np

    power = 1 if axis.step_label == "dt" else 2
    limit = axis.limit
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda f: np.power(np.abs(f), power) * limit, lambda s: np.power(np.abs(s) / limit, 1 / power)),
    )
    top.set_xlabel(f"{axis.step_label} (absolute)", fontsize=8)
    from matplotlib.ticker import FixedLocator, NullLocator

    top.xaxis.set_major_locator(FixedLocator(list(axis.step_sizes)))
    top.set_xticklabels([f"{s:.3g}" for s in axis.step_sizes], fontsize=7)
    top.xaxis.set_minor_locator(NullLocator())


def _slopes(table: Sequence[dict[str, Any]] | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(t["optimizer"], t["band"], t["drift"]): t for t in table or []}


def _slope_text(row: dict[str, Any] | None) -> str:
    if row is None or not math.isfinite(row.get("slope", math.nan)):
        return ""
    lo, hi = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f": slope {row['slope']:+.2f}{ci}"


def _series(ax: Any, rows: Sequence[dict[str, Any]], kind: str, axis: StepAxis, *, label: str,
            linestyle: str = "-", points: bool = True) -> list[float]:
    """Seed points and the geometric mean over seeds of ``drift_<kind>`` on ``axis``; returns the
    x positions drawn."""
    pts = [(axis.position(r["step_size"]), r[f"drift_{kind}"]) for r in rows if _pos(r[f"drift_{kind}"])]
    if not pts:
        return []
    color = _KIND_COLOR[kind]
    if points:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=color, alpha=0.5)
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, y in pts:
        by_x[x].append(math.log10(y))
    xs = sorted(by_x)
    ax.plot(xs, [10 ** (sum(by_x[x]) / len(by_x[x])) for x in xs], color=color, ls=linestyle,
            marker="o" if points else None, ms=3, label=label)
    return xs


def fig_band(
    drift: Sequence[dict[str, Any]],
    path: Path,
    *,
    bands: Sequence[str],
    title: str,
    reference: Sequence[str] = (),
    context: ReportContext | None = None,
    table: Sequence[dict[str, Any]] | None = None,
    kinds: Sequence[str] = ("int", "traj"),
) -> None:
    """One panel per (spec entry, band in ``bands``): the ``kinds`` of drift vs step size on the
    entry's own axis; the entry's ``reference`` bands dotted."""
    plt = _plt()
    rows = _default_completed(drift)
    slopes = _slopes(table)
    keys = sorted({(r["optimizer"], r["band"]) for r in rows if r["band"] in bands})
    fig, axes = _grid(len(keys), 2, 5.6, 3.9)
    for ax, (name, band) in zip(axes, keys):
        axis = _axis(context, name, band)
        xs: list[float] = []
        for kind in kinds:
            part = [r for r in rows if (r["optimizer"], r["band"]) == (name, band)]
            label = _KIND_LABEL[kind] + _slope_text(slopes.get((name, band, kind)))
            xs += _series(ax, part, kind, axis, label=label)
            for ref in reference:
                ref_rows = [r for r in rows if (r["optimizer"], r["band"]) == (name, ref)]
                ref_axis = _axis(context, name, ref)
                if ref_rows and ref_axis.relative == axis.relative:
                    ref_name = "reference" if ref == "band" else ref
                    xs += _series(ax, ref_rows, kind, ref_axis, label=f"{_KIND_LABEL[kind]} ({ref_name} band)",
                                  linestyle=":", points=False)
        _ticks(ax, xs)
        ax.set_yscale("log")
        ax.set_xlabel(axis.unit)
        ax.set_ylabel(_Y_LABEL)
        ax.set_title(f"{name} ({band})", fontsize=10)
        _absolute_axis(ax, axis)
        _legend(ax, loc="best")
    if not keys:
        axes[0].text(0.5, 0.5, "no runs in this band", ha="center", transform=axes[0].transAxes)
        axes[0].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _same_series(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], col: str) -> bool:
    if len(a) != len(b) or not a:
        return False
    return all(math.isclose(x[col], y[col], rel_tol=1e-3, abs_tol=1e-300) for x, y in zip(a, b))


def fig_reversibility(rev: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rev:
        groups[(r["integrator"], r["dtype"])].append(r)
    for k in groups:
        groups[k].sort(key=lambda r: r["steps"])
    colors = {families.LEAPFROG.name: "tab:blue", families.EULER.name: "tab:red"}
    for ax, col, label in zip(
        axes, ("theta_error", "momentum_error"), ("‖θ_back − θ_0‖ / ‖θ_0‖", "momentum error")
    ):
        for (integ, dtype), rs in sorted(groups.items()):
            f32 = dtype == "float32"
            ax.plot([r["steps"] for r in rs], [r[col] if _pos(r[col]) else math.nan for r in rs],
                    ls="-" if f32 else "--", lw=1.2, color=colors.get(integ, "tab:gray"),
                    marker="o", ms=8 if f32 else 4, mfc="none" if f32 else None, label=f"{integ} {dtype}")
        notes = [
            f"{integ}: float32 and float64 coincide"
            for integ in sorted({k[0] for k in groups})
            if _same_series(groups.get((integ, "float32"), []), groups.get((integ, "float64"), []), col)
        ]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (steps each way)")
        ax.set_ylabel(label)
        if groups:
            _legend(ax, loc="upper left", title="\n".join(notes) or None, title_fontsize=7)
        else:
            ax.text(0.5, 0.5, "no reversibility study in this spec", ha="center", transform=ax.transAxes)
    dt = next((r["dt"] for r in rev), None)
    fig.suptitle("Fig. 2 — reversibility: N steps, flip p, N steps, flip p (γ = 0, no cap, one batch"
                 + (f", dt = {float(dt):.4g})" if dt is not None else ")"))
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
    cap: Sequence[dict[str, Any]], path: Path, types: dict[str, str | None] | None = None,
    context: ReportContext | None = None,
) -> None:
    """Cap engagement per (spec entry, band); ``types`` maps a spec entry to its family type.
    Entries whose family has no energy cap are left out unless they engaged at all."""
    plt = _plt()
    types = types or {}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in cap:
        if _has_energy_cap(types.get(r["optimizer"])) or r["cap_rate"] != 0:
            groups[(r["optimizer"], r["band"])].append(r)
    axes = {k: _axis(context, *k) for k in groups}
    relative = bool(groups) and all(a.relative for a in axes.values())
    xs_all: list[float] = []
    drawn: dict[tuple, str] = {}
    for i, ((opt, band), rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: r["step_size"])
        xs = [axes[(opt, band)].position(r["step_size"]) if relative else r["step_size"] for r in rs]
        xs_all += xs
        ys = [100 * r["cap_rate"] for r in rs]
        label = f"{opt} ({band})"
        twin = drawn.setdefault((tuple(xs), tuple(ys)), label)
        if twin != label:
            label += f" — same as {twin}, drawn under it"
        lo = [100 * (r["cap_rate"] - r["ci_low"]) if math.isfinite(r["ci_low"]) else 0 for r in rs]
        hi = [100 * (r["ci_high"] - r["cap_rate"]) if math.isfinite(r["ci_high"]) else 0 for r in rs]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=9 - 2 * min(i, 3), capsize=3, label=label)
    _ticks(ax, xs_all)
    ax.set_xlabel("dt / dt_c (fraction of the stability limit)" if relative else "step size")
    ax.set_ylabel("cap engagement (% of steps)")
    ax.set_title("Fig. 3 — energy-cap engagement, mean over seeds ± 95% t-interval")
    if groups:
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "no optimiser with an energy cap in this sweep", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_decomposition(
    drift: Sequence[dict[str, Any]], path: Path, *, context: ReportContext | None = None,
    table: Sequence[dict[str, Any]] | None = None, decomposition: Sequence[dict[str, Any]] | None = None,
) -> None:
    plt = _plt()
    rows = _default_completed(drift)
    slopes = _slopes(table)
    ratios = {(d["optimizer"], d["band"]): d["median_ratio_resampling_to_int"] for d in decomposition or []}
    keys = sorted({(r["optimizer"], r["band"]) for r in rows})
    fig, axes = _grid(len(keys), 3, 4.4, 3.6)
    for ax, key in zip(axes, keys):
        axis = _axis(context, *key)
        part = [r for r in rows if (r["optimizer"], r["band"]) == key]
        xs: list[float] = []
        for kind in ("int", "traj", "resampling"):
            label = _KIND_LABEL[kind] + _slope_text(slopes.get((*key, kind)))
            xs += _series(ax, part, kind, axis, label=label, points=False)
        ratio = ratios.get(key)
        title = f"{key[0]} ({key[1]})"
        if isinstance(ratio, float) and math.isfinite(ratio):
            title += f"\nmedian δ / ΔH$^{{int}}$ = {ratio:.3g}×"
        _ticks(ax, xs)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(axis.unit if axis.relative else f"{axis.step_label}", fontsize=8)
        ax.set_ylabel(_Y_LABEL, fontsize=8)
        _legend(ax, loc="upper left")
    if not keys:
        axes[0].text(0.5, 0.5, "no completed default runs", ha="center", transform=axes[0].transAxes)
    fig.suptitle("Fig. 4 — drift decomposition: ΔH$^{traj}$ = ΔH$^{int}$ + δ (tail medians, geometric mean over seeds)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_ablations(series: dict[str, dict[str, list[Any]]], path: Path) -> None:
    """``series``: ablation name → step columns of its run (same config, same seed)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    ref = series.get("default")
    widths = {"default": 3.0, "thrash": 1.6}
    worst: dict[str, float] = {}
    for name, cols in sorted(series.items()):
        h = [v if v is not None else float("nan") for v in cols["hamiltonian"]]
        axes[0].plot(cols["step"], h, label=name, lw=widths.get(name, 1.0),
                     ls={"default": "-", "thrash": "--"}.get(name, ":"))
        if ref is not None and name != "default":
            n = min(len(h), len(ref["hamiltonian"]))
            d = [abs(a - b) if a is not None and b is not None else float("nan")
                 for a, b in zip(cols["hamiltonian"][:n], ref["hamiltonian"][:n])]
            worst[name] = max((v for v in d if math.isfinite(v)), default=0.0)
            if worst[name] > 0:
                axes[1].plot(cols["step"][:n], [v if v > 0 else float("nan") for v in d],
                             label=f"|{name} − default| (max {worst[name]:.3g})")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("H after the step (nats)")
    axes[0].set_title("energy series per ablation (identical series overlap)")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("|H series difference| (nats)")
    axes[1].set_title("difference from default")
    same = [name for name, w in sorted(worst.items()) if w == 0]
    if axes[1].lines:
        axes[1].set_yscale("log")
    if same:
        axes[1].text(0.5, 0.5, "\n".join(f"{name}: identical: max |Δ| = 0" for name in same),
                     ha="center", va="center", transform=axes[1].transAxes, fontsize=11)
    if not series:
        axes[1].text(0.5, 0.5, "no ablation runs in this sweep", ha="center", transform=axes[1].transAxes)
    for ax in axes:
        if ax.lines:
            _legend(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def figure_jobs(
    out: Path, analysis: Any, ablation_series: dict[str, dict[str, list[Any]]],
    context: ReportContext | None = None,
) -> tuple[dict[str, Path], list[Callable[[], None]]]:
    """The figures of ``out/figures`` as name → path and the jobs that draw them, the costliest
    first (each job writes one file; :func:`hamopt.report.parallel.run_jobs` may share them out)."""
    figdir = Path(out) / "figures"
    figdir.mkdir(exist_ok=True)
    _plt()  # matplotlib imported and configured before any job (forked children inherit it)
    bands = sorted({d["band"] for d in analysis.drift})
    wide = [b for b in bands if b != "band"] if "band" in bands else []
    paths = {name: figdir / f"{name}.png" for name in (
        "fig1a_band", "fig1b_wide", "fig2_reversibility", "fig3_cap", "fig4_decomposition", "fig5_ablations")}
    types = {d["optimizer"]: d.get("type") for d in analysis.drift}
    jobs: list[Callable[[], None]] = [
        lambda: fig_decomposition(analysis.drift, paths["fig4_decomposition"], context=context,
                                  table=analysis.table, decomposition=analysis.decomposition),
        lambda: fig_band(analysis.drift, paths["fig1a_band"], bands=["band"] if "band" in bands else bands,
                         title="Fig. 1a — drift vs step size in the reference band", context=context,
                         table=analysis.table),
        lambda: fig_band(analysis.drift, paths["fig1b_wide"], bands=wide, reference=["band"],
                         title="Fig. 1b — drift vs step size, wide sweep (dotted: the reference band)",
                         context=context, table=analysis.table),
        lambda: fig_reversibility(analysis.reversibility, paths["fig2_reversibility"]),
        lambda: fig_cap(analysis.cap, paths["fig3_cap"], types, context),
        lambda: fig_ablations(ablation_series, paths["fig5_ablations"]),
    ]
    return paths, jobs


def write_figures(
    out: Path, analysis: Any, ablation_series: dict[str, dict[str, list[Any]]],
    context: ReportContext | None = None,
) -> dict[str, Path]:
    """Write every figure into ``out/figures``, one after the other; return name → path."""
    paths, jobs = figure_jobs(out, analysis, ablation_series, context)
    for job in jobs:
        job()
    return paths

r"""The files of a band search: ``bands.csv``, ``bands_local.csv``, ``bands.md`` and ``bands.png``.

* ``bands.csv`` — one row per (optimiser, reading, drift kind, band): the regime, its fraction
  and absolute step-size range, the number of local fits merged, one slope with its 95 % CI
  over all the band's points, the integrator and resampling slopes over the same points and the
  median resampling/integrator drift ratio (the split), and diverged runs for ``unstable``;
* ``bands_local.csv`` — every local fit (centre fraction, window, slope, CI, regime);
* ``bands.md`` — the rule, each optimiser's limit and grid, and the band tables;
* ``bands.png`` — per optimiser, the local slopes against the fraction of the limit with their
  CIs (tail reading of ΔH^traj and ΔH^int, iso-loss ΔH^traj dashed), regimes of the tail
  ΔH^traj shaded.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from .atomic import write_csv
from .bands_fit import REGIMES
from .store import atomic_write_text

__all__ = ["BAND_COLUMNS", "LOCAL_COLUMNS", "format_bands", "write_outputs"]

BAND_COLUMNS = [
    "optimizer", "type", "reading", "drift", "regime", "regime_text", "fraction_low", "fraction_high",
    "step_low", "step_high", "local_fits", "n", "slope", "ci_low", "ci_high", "slope_int",
    "slope_resampling", "resampling_to_int", "diverged",
]
LOCAL_COLUMNS = [
    "optimizer", "reading", "drift", "fraction", "step_size", "window_low", "window_high", "n",
    "slope", "ci_low", "ci_high", "regime",
]
READING_TEXT = {
    "tail": "fixed-step tail median",
    "isoloss": "iso-loss median (matched training loss)",
    "per_loss": "drift per unit of loss decrease",
}
_SHADE = {"positive": "#f4a582", "flat": "#bababa", "negative": "#92c5de", "unresolved": "#ffffff",
          "unstable": "#d6604d"}


def _num(v: Any, fmt: str = "+.2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _band_line(r: dict[str, Any]) -> str:
    span = f"{r['fraction_low']:.3g}–{r['fraction_high']:.3g}"
    steps = f"{r['step_low']:.3g}–{r['step_high']:.3g}"
    if r["regime"] == "unstable":
        return (f"| {r['drift']} | {r['regime_text']} | {span} | {steps} | {r['diverged']} of {r['n']} runs "
                "diverged | | | |")
    ci = f"{_num(r['slope'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
    return (f"| {r['drift']} | {r['regime_text']} | {span} | {steps} | {ci} (n={r['n']}, "
            f"{r['local_fits']} local) | {_num(r['slope_int'])} | {_num(r['slope_resampling'])} | "
            f"{_num(r['resampling_to_int'], '.3g')} |")


def format_bands(result: Any, *, readings: tuple[str, ...] = ("tail", "isoloss", "per_loss")) -> str:
    """The Markdown of ``bands.md`` (also what ``hamopt bands`` prints)."""
    lines = [f"# Band discovery: {result.out}", "", f"Regime rule: {result.rule}.", "",
             "Fractions are of each optimiser's stability limit at initialisation, in units of the "
             "Hamiltonian time step (dt = f·dt_c; lr = f²·lr_c). Slopes are d log drift / d log step "
             "size on the optimiser's own axis (dt or lr), local fits over neighbouring step sizes, "
             "one point per (step size, seed), 95 % t-intervals.", "",
             f"Wall time {result.wall_time_s:.1f} s; {result.runs_run} runs run now, "
             f"{result.runs_reused} reused from the store.", ""]
    for s in result.optimizers:
        lim = s["limit"]
        grid = ", ".join(f"{g['fraction']:g}" + ("†" if g["diverged"] else "") for g in s["grid"])
        lines += [f"## {s['optimizer']} ({s['type']})", "",
                  f"Limit: {lim['eigenvalue_name']} = {lim['eigenvalue']:.4g} → step-size limit "
                  f"{lim['limit']:.4g} ({lim['rule']}).", "",
                  f"Grid ({s['runs']} runs of a budget of {s['budget']}; † = some seed diverged): {grid}.", ""]
        for reading in readings:
            rows = [r for r in result.bands if r["optimizer"] == s["optimizer"] and r["reading"] == reading]
            lines += [f"**{READING_TEXT[reading]}**", "",
                      "| drift | regime | fraction of limit | step size | slope [95% CI] | slope ΔH^int "
                      "| slope resampling | resampling/int |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [_band_line(r) for r in rows] or ["| – | no local fits (too few stable step sizes) "
                                                       "| | | | | | |"]
            lines.append("")
    return "\n".join(lines)


def _spans(bands: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """Shaded spans of consecutive bands: each reaches to the log-midpoint of its neighbour's edge
    (a band of one local fit would otherwise be a line)."""
    bands = sorted(bands, key=lambda r: r["fraction_low"])
    cuts = [math.sqrt(a["fraction_high"] * b["fraction_low"]) for a, b in zip(bands, bands[1:])]
    out = []
    for i, r in enumerate(bands):
        low = cuts[i - 1] if i else r["fraction_low"] / (cuts[0] / bands[0]["fraction_high"] if cuts else 1.05)
        high = cuts[i] if i < len(cuts) else r["fraction_high"] * (r["fraction_low"] / cuts[-1] if cuts else 1.05)
        out.append((low, max(high, low * 1.02), r["regime"]))
    return out


def _figure(result: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["optimizer"] for s in result.optimizers]
    height = 0.9 + 2.6 * max(1, len(names))
    fig, axes = plt.subplots(len(names), 1, figsize=(7.5, height), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        shaded = [r for r in result.bands if r["optimizer"] == name and r["reading"] == "tail"
                  and (r["drift"] == "traj" or r["regime"] == "unstable")]
        shaded = list({(r["fraction_low"], r["regime"]): r for r in shaded}.values())
        for low, high, regime in _spans(shaded):
            ax.axvspan(low, high, color=_SHADE[regime], alpha=0.35, lw=0)
        for reading, kind, style, label in (("tail", "traj", "o-", "ΔH^traj (tail)"),
                                            ("tail", "int", "s-", "ΔH^int (tail)"),
                                            ("isoloss", "traj", "^--", "ΔH^traj (iso-loss)")):
            pts = [r for r in result.local if (r["optimizer"], r["reading"], r["drift"]) == (name, reading, kind)
                   and math.isfinite(r["slope"])]
            if not pts:
                continue
            x = [r["fraction"] for r in pts]
            y = [r["slope"] for r in pts]
            err = [[max(0.0, r["slope"] - r["ci_low"]) if math.isfinite(r["ci_low"]) else 0.0 for r in pts],
                   [max(0.0, r["ci_high"] - r["slope"]) if math.isfinite(r["ci_high"]) else 0.0 for r in pts]]
            ax.errorbar(x, y, yerr=err, fmt=style, ms=4, capsize=2, lw=1, label=label)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("local slope")
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("fraction of the stability limit (units of h)")
    handles = [matplotlib.patches.Patch(color=_SHADE[k], alpha=0.35, label=REGIMES[k]) for k in _SHADE]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.1, right=0.97, top=1 - 0.35 / height, bottom=0.8 / height, hspace=0.4)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


def write_outputs(result: Any, spec: Any) -> Any:
    """Write the four files into ``result.out``; return ``result`` with their paths."""
    root = Path(result.out)
    files = {"csv": root / "bands.csv", "local": root / "bands_local.csv", "md": root / "bands.md",
             "png": root / "bands.png"}
    write_csv(files["csv"], result.bands, BAND_COLUMNS)
    write_csv(files["local"], result.local, LOCAL_COLUMNS)
    atomic_write_text(files["md"], format_bands(result) + "\n")
    _figure(result, files["png"])
    return replace(result, files=files)

r"""The hybrid-schedule study's analysis: ``grid.csv``, ``table.csv``, ``phases.csv``,
``curves.png``, ``energy.png`` and ``report.html`` of a results directory, and the verdict.

* **Tuning.** For each method and grid factor, over the completed runs: the final validation,
  test loss and test accuracy, each as the mean over seeds with a 95 % t-interval (n − 1 degrees
  of freedom, :func:`hamopt.diagnostics.cap.mean_ci`). Each method's factor is the one with the
  lowest mean validation loss (``grid.csv`` has every factor, ``table.csv`` the chosen ones).
* **Verdict.** The best single optimiser and the best hybrid (each by validation loss) are
  compared on the test loss, paired by seed: the mean difference ``hybrid − single`` with its
  95 % t-interval. The hybrid *beat* the single optimiser when the whole interval lies below 0,
  *lost* when above, and otherwise the study did not resolve a difference (a null result).
* **Energy per phase** (chosen factor): per phase, the steps, the median ``|ΔH^int|`` per step
  (the drift measure of the drift study) and the mean kinetic energy and Hamiltonian under the
  phase's own convention, the steps that end a phase (whose ``ΔH`` holds the hand-over's jump)
  left out; the mean ``ΔH^int`` of those switch steps is its own column.
"""

from __future__ import annotations

import html
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..diagnostics.cap import mean_ci
from .atomic import atomic_write_text, write_csv

__all__ = ["analyse", "format_table", "is_hybrid_dir", "verdict"]

GRID_COLUMNS = ["method", "factor", "n", "val_loss", "test_loss", "test_loss_ci_low", "test_loss_ci_high",
                "test_acc", "test_acc_ci_low", "test_acc_ci_high", "evals", "ms_per_eval"]
PHASE_COLUMNS = ["method", "phase", "label", "steps", "median_abs_delta_h", "mean_kinetic", "mean_hamiltonian",
                 "switch_delta_h"]


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def is_hybrid_dir(out: str | Path) -> bool:
    """True when ``out`` holds a hybrid-schedule study (its stored spec says ``study: hybrid``)."""
    import yaml

    from .store import RunStore

    text = RunStore(out).read_text("spec.yaml") if Path(out).is_dir() else None
    try:
        meta = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return False
    return isinstance(meta, dict) and meta.get("study") == "hybrid"


def _load(root: Path) -> tuple[list[tuple[dict[str, Any], dict[str, list[Any]]]], Any, list[str]]:
    from .store import readable_runs

    out, store = readable_runs(root)
    import yaml

    meta = yaml.safe_load(store.read_text("spec.yaml") or "{}") or {}
    order = list(meta.get("methods", {}))
    order += sorted({m["method"] for m, _ in out} - set(order))
    return out, store.accounting(), order


def _ci(values: list[float]) -> tuple[float, float, float]:
    c = mean_ci(values)
    return c.mean, c.ci_low, c.ci_high


def _grid_rows(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]], order: list[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for man, _ in runs:
        groups[(man["method"], float(man["factor"]))].append(man)
    rows = []
    rank = {m: i for i, m in enumerate(order)}
    for (method, factor), members in sorted(groups.items(), key=lambda kv: (rank.get(kv[0][0], 99), kv[0][1])):
        done = [m for m in members if m["status"] == "completed" and m.get("final")]
        row: dict[str, Any] = {"method": method, "factor": factor, "n": len(done)}
        vals = [m["final"]["val_loss"] for m in done]
        row["val_loss"] = statistics.fmean(vals) if vals else None
        for key in ("test_loss", "test_acc"):
            row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = _ci([m["final"][key] for m in done])
        row["evals"] = statistics.fmean([m["evals_done"] for m in done]) if done else None
        walls = [m["wall_time_s"] / max(1, m["evals_done"]) for m in done]
        row["ms_per_eval"] = 1000 * statistics.fmean(walls) if walls else None
        row["seeds"] = {m["seed"]: m["final"] for m in done}
        row["phases"] = len(members[0].get("phases") or [])
        rows.append(row)
    return rows


def _chosen(grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for row in grid:
        if row["val_loss"] is None:
            continue
        cur = best.get(row["method"])
        if cur is None or row["val_loss"] < cur["val_loss"]:
            best[row["method"]] = row
    return [best[m] for m in dict.fromkeys(r["method"] for r in grid) if m in best]


def verdict(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The best hybrid against the best single optimiser (both by validation loss), paired by seed
    on the test loss and accuracy; ``sentence`` says it plainly."""
    singles = [r for r in table if r["phases"] == 1]
    hybrids = [r for r in table if r["phases"] > 1]
    if not singles or not hybrids:
        return {"sentence": "The directory lacks a single optimiser or a hybrid with completed runs: no comparison."}
    single = min(singles, key=lambda r: r["val_loss"])
    hybrid = min(hybrids, key=lambda r: r["val_loss"])
    seeds = sorted(set(single["seeds"]) & set(hybrid["seeds"]))
    d_loss = _ci([hybrid["seeds"][s]["test_loss"] - single["seeds"][s]["test_loss"] for s in seeds])
    d_acc = _ci([hybrid["seeds"][s]["test_acc"] - single["seeds"][s]["test_acc"] for s in seeds])
    beaten = [r["method"] for r in hybrids if r["test_loss"] < single["test_loss"]]
    if len(seeds) >= 2 and d_loss[2] < 0:
        outcome = "beat"
    elif len(seeds) >= 2 and d_loss[1] > 0:
        outcome = "lost to"
    else:
        outcome = "did not separate from"
    text = (
        f"The best hybrid, {hybrid['method']} (factor {hybrid['factor']:g}), {outcome} the best single "
        f"optimiser, {single['method']} (factor {single['factor']:g}), at equal gradient evaluations: test "
        f"loss {hybrid['test_loss']:.4f} vs {single['test_loss']:.4f}, difference {d_loss[0]:+.4f} "
        f"(95% CI [{d_loss[1]:+.4f}, {d_loss[2]:+.4f}], paired over {len(seeds)} seeds); test accuracy "
        f"{100 * hybrid['test_acc']:.2f}% vs {100 * single['test_acc']:.2f}%, difference "
        f"{100 * d_acc[0]:+.2f} points (95% CI [{100 * d_acc[1]:+.2f}, {100 * d_acc[2]:+.2f}])."
    )
    if outcome == "did not separate from":
        text += " No difference is resolved at this budget and number of seeds: a null result."
    if beaten:
        text += f" Hybrids with a lower mean test loss than {single['method']}: {', '.join(beaten)}."
    else:
        text += f" No hybrid reached a lower mean test loss than {single['method']}."
    return {"sentence": text, "outcome": outcome, "single": single["method"], "hybrid": hybrid["method"],
            "difference": d_loss, "accuracy_difference": d_acc, "seeds": seeds}


def _phase_rows(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
                table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen = {(r["method"], r["factor"]) for r in table}
    per: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[tuple[str, int], str] = {}
    for man, cols in runs:
        if man["status"] != "completed" or (man["method"], float(man["factor"])) not in chosen:
            continue
        for name, value in ((p["family"], i) for i, p in enumerate(man.get("phases") or [])):
            labels[(man["method"], value)] = name
        counts: dict[int, int] = defaultdict(int)
        for ph, sw, dh, k, h in zip(cols["phase"], cols["switched"], cols["delta_h_int"], cols["kinetic"],
                                    cols["hamiltonian"], strict=True):
            key = (man["method"], ph)
            counts[ph] += 1
            if sw:
                if dh is not None:
                    per[key]["switch"].append(dh)
                continue
            if dh is not None and math.isfinite(dh):
                per[key]["dh"].append(abs(dh))
            if k is not None:
                per[key]["k"].append(k)
            if h is not None:
                per[key]["h"].append(h)
        for ph, n in counts.items():
            per[(man["method"], ph)]["steps"].append(n)
    rows = []
    for (method, ph), d in sorted(per.items(), key=lambda kv: ([r["method"] for r in table].index(kv[0][0]), kv[0][1])):
        rows.append({
            "method": method, "phase": ph, "label": labels.get((method, ph), ""),
            "steps": statistics.fmean(d["steps"]) if d["steps"] else None,
            "median_abs_delta_h": statistics.median(d["dh"]) if d["dh"] else None,
            "mean_kinetic": statistics.fmean(d["k"]) if d["k"] else None,
            "mean_hamiltonian": statistics.fmean(d["h"]) if d["h"] else None,
            "switch_delta_h": statistics.fmean(d["switch"]) if d["switch"] else None,
        })
    return rows


def analyse(out: str | Path) -> dict[str, Any]:
    """Write the tables, figures and ``report.html`` of ``out``; return ``{grid, table, phases,
    verdict}``."""
    root = Path(out)
    runs, accounting, order = _load(root)
    grid = _grid_rows(runs, order)
    table = _chosen(grid)
    phases = _phase_rows(runs, table)
    result = verdict(table)
    write_csv(root / "grid.csv", [{k: r[k] for k in GRID_COLUMNS} for r in grid], GRID_COLUMNS)
    write_csv(root / "table.csv", [{k: r[k] for k in GRID_COLUMNS} for r in table], GRID_COLUMNS)
    write_csv(root / "phases.csv", phases, PHASE_COLUMNS)
    from .hybrid_figures import write_figures

    figures = write_figures(root, runs, table)
    _report(root, grid, table, phases, result, figures, runs, accounting)
    return {"grid": grid, "table": table, "phases": phases, "verdict": result}


def _html_table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(title)}</th>" for title, _, _ in cols)
    body = []
    for r in rows:
        cells = []
        for _, key, spec in cols:
            if key.endswith("+ci"):
                k = key[:-3]
                cells.append(f"{_fmt(r[k], spec)} [{_fmt(r[k + '_ci_low'], spec)}, {_fmt(r[k + '_ci_high'], spec)}]")
            else:
                v = r[key]
                cells.append(esc(str(v)) if isinstance(v, str) else _fmt(v, spec))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


_MAIN = [("method", "method", ""), ("factor", "factor", "g"), ("n", "n", "d"), ("val loss", "val_loss", ".4f"),
         ("test loss (95% CI)", "test_loss+ci", ".4f"), ("test accuracy (95% CI)", "test_acc+ci", ".4f"),
         ("grad evals", "evals", ".0f"), ("ms / grad eval", "ms_per_eval", ".1f")]
_PHASES = [("method", "method", ""), ("phase", "phase", "d"), ("family", "label", ""), ("steps", "steps", ".0f"),
           ("median |ΔH^int|", "median_abs_delta_h", ".3e"), ("mean K", "mean_kinetic", ".3e"),
           ("mean H", "mean_hamiltonian", ".4f"), ("ΔH at the switch", "switch_delta_h", ".3e")]


def _report(root: Path, grid: list[dict[str, Any]], table: list[dict[str, Any]], phases: list[dict[str, Any]],
            result: dict[str, Any], figures: list[str], runs: list[Any], accounting: Any) -> None:
    esc = html.escape
    statuses: dict[str, int] = defaultdict(int)
    for man, _ in runs:
        statuses[man["status"]] += 1
    wall = sum(man["wall_time_s"] for man, _ in runs)
    gaps = [f"{rid} (missing)" for rid in accounting.missing] + [f"{rid} ({why})" for rid, why in accounting.damaged]
    gaps_html = f"<p><b>Runs planned but not counted:</b> {esc(', '.join(gaps))}</p>" if gaps else ""
    imgs = "".join(f'<p><img src="{esc(f)}" alt="{esc(f)}" style="max-width:100%"></p>' for f in figures)
    preset = esc(str(runs[0][0].get("preset", ""))) if runs else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>hamopt hybrid report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style>
</head><body><h1>Hybrid schedules at equal gradient evaluations: {preset}</h1>
<p>{len(runs)} runs ({esc(', '.join(f'{v} {k}' for k, v in sorted(statuses.items())))}), total wall time
{wall:.0f} s. Every run spends the same number of gradient evaluations (an exact Leapfrog step costs 2).
Each method ran at every factor of the same grid (all its step sizes times the factor); its factor is the
one with the lowest mean validation loss. Test loss and accuracy: mean over seeds, 95% t-interval.</p>
<p><b>{esc(result['sentence'])}</b></p>{gaps_html}
<h2>Each method at its chosen factor</h2>{_html_table(table, _MAIN)}
<h2>Energy per phase (chosen factor, mean over seeds; switch steps left out)</h2>{_html_table(phases, _PHASES)}
<p>K and H of each phase are under that phase's energy convention (Leapfrog: ½Σ m‖p‖²; AdamW:
½·lr/(1−β1)·Σ m̂²/(√v̂+ε); SGD: ½·lr/(1−d)·‖b‖²), so they are not comparable across phases; the
velocity hand-over keeps θ̇ = M⁻¹p, and K jumps with the mass.</p>
{imgs}<h2>Every grid point</h2>{_html_table(grid, _MAIN)}
<p>Files: table.csv, grid.csv, phases.csv, runs/&lt;run_id&gt;/manifest.json and steps.parquet.</p>
</body></html>
"""
    atomic_write_text(root / "report.html", doc)


def format_table(analysis: dict[str, Any]) -> str:
    """The chosen-factor table, the energy per phase and the verdict as terminal text."""
    head = f"{'method':<26}{'factor':>7}{'n':>3}  {'val loss':>9}  {'test loss [95% CI]':<28}{'test acc [95% CI]':<26}"
    lines = [head, "-" * len(head)]
    for r in analysis["table"]:
        tl = f"{_fmt(r['test_loss'])} [{_fmt(r['test_loss_ci_low'])}, {_fmt(r['test_loss_ci_high'])}]"
        ta = f"{_fmt(r['test_acc'])} [{_fmt(r['test_acc_ci_low'])}, {_fmt(r['test_acc_ci_high'])}]"
        lines.append(f"{r['method']:<26}{r['factor']:>7g}{r['n']:>3}  {_fmt(r['val_loss']):>9}  {tl:<28}{ta:<26}")
    lines += ["", f"{'method':<26}{'phase':>6} {'family':<10}{'steps':>6}{'med|dH|':>11}{'mean K':>11}{'mean H':>9}"]
    for p in analysis["phases"]:
        lines.append(f"{p['method']:<26}{p['phase']:>6} {p['label']:<10}{_fmt(p['steps'], '.0f'):>6}"
                     f"{_fmt(p['median_abs_delta_h'], '.2e'):>11}{_fmt(p['mean_kinetic'], '.2e'):>11}"
                     f"{_fmt(p['mean_hamiltonian'], '.4f'):>9}")
    lines += ["", analysis["verdict"]["sentence"]]
    return "\n".join(lines)

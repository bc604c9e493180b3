r"""The symmetry-breaking study's analysis: ``table.csv``, ``curves.png``, ``charges.png`` and
``report.html`` of a results directory, and the table as terminal text.

Per (optimiser, variant), over the completed runs: the final validation loss and the tail medians
(last 20 % of the steps) of ``‖J_QK‖``, ``‖J_VO‖`` and their fractions, each as the mean over
seeds with a 95 % t-interval (n − 1 degrees of freedom). Tail medians and intervals are the
analysis module's own (:func:`hamopt.diagnostics.tail_median_abs`,
:func:`hamopt.diagnostics.cap.mean_ci`). Runs the plan lists but the directory lacks, or whose
files are damaged, are named in the report.

``gaps.csv`` and the report's first table answer claim 1 (:mod:`.symbreak_gaps`: the test loss,
the gap to AdamW paired by seed, how much the biases narrow it, the optimiser-state bytes per
parameter and the downstream scores); the report links the tuning record (``tuning.json``) and
the head analysis (``heads.html``, written by ``hamopt heads DIR``) when they exist.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..diagnostics import tail_median_abs
from ..diagnostics.cap import mean_ci
from .atomic import atomic_write_text, write_csv

__all__ = ["TABLE_COLUMNS", "analyse", "format_table", "gap_table", "stored_preset_name"]

TAIL_FRACTION = 0.2


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def _load(root: Path) -> tuple[list[tuple[dict[str, Any], dict[str, list[Any]]]], Any]:
    """The runs with a manifest and readable steps (and their step columns), and the store's run
    accounting, which names a run whose files are damaged."""
    from .store import readable_runs

    runs, store = readable_runs(root)
    return runs, store.accounting()


def stored_preset_name(out: str | Path) -> str | None:
    """The preset name when ``out`` holds a symmetry-breaking study (its stored ``spec.yaml`` is a
    preset: it lists ``variants`` and ``types``); None for any other directory."""
    import yaml

    from .store import RunStore

    text = RunStore(out).read_text("spec.yaml") if Path(out).is_dir() else None
    try:
        meta = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    if not isinstance(meta, dict) or "variants" not in meta or "types" not in meta:
        return None
    return str(meta.get("name", ""))


def _optimizer_order(root: Path, runs: list[tuple[dict[str, Any], Any]]) -> list[str]:
    """The optimisers in the order the stored preset lists them (then any others, sorted)."""
    import yaml

    from .store import RunStore

    text = RunStore(root).read_text("spec.yaml")
    listed = list((yaml.safe_load(text) or {}).get("optimizers", [])) if text else []
    return listed + sorted({m["optimizer"] for m, _ in runs} - set(listed))


def gap_table(out: str | Path) -> list[dict[str, Any]]:
    """The gap-to-AdamW rows (:func:`hamopt.experiments.symbreak_gaps.gap_rows`) of a study
    directory, optimisers in the preset's order."""
    from .symbreak_gaps import gap_rows

    runs, _ = _load(Path(out))
    return gap_rows(runs, _optimizer_order(Path(out), runs))


def _tail_median(values: Sequence[Any], fraction: float = TAIL_FRACTION) -> float | None:
    """The analysis module's tail median (charge norms are non-negative), None when empty."""
    v = tail_median_abs(values, tail_fraction=fraction)
    return v if math.isfinite(v) else None


TABLE_COLUMNS = [
    "optimizer",
    "variant",
    "n",
    "noether_source",
    "val_loss",
    "val_loss_ci_low",
    "val_loss_ci_high",
    "j_qk_norm",
    "j_qk_norm_ci_low",
    "j_qk_norm_ci_high",
    "j_vo_norm",
    "j_vo_norm_ci_low",
    "j_vo_norm_ci_high",
    "j_qk_rel",
    "j_vo_rel",
    "ms_per_step",
]


def analyse(out: str | Path, *, preset_name: str | None = None) -> list[dict[str, Any]]:
    """Aggregate the runs of ``out`` into ``table.csv``, the PNG figures and ``report.html``.

    Per (optimiser, variant): the final validation loss and the tail medians (last 20 % of the
    steps) of ``‖J_QK‖``, ``‖J_VO‖`` and their fractions, each as the mean over seeds with a 95 %
    t-interval (n − 1 degrees of freedom).
    """
    root = Path(out)
    runs, accounting = _load(root)
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, list[Any]]]]] = defaultdict(
        list
    )
    for man, cols in runs:
        groups[(man["optimizer"], man["variant"])].append((man, cols))
    table = []
    order = {o: i for i, o in enumerate(_optimizer_order(root, runs))}
    for (opt, variant), members in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])
    ):
        done = [(m, c) for m, c in members if m["status"] == "completed"]
        row: dict[str, Any] = {
            "optimizer": opt,
            "variant": variant,
            "n": len(done),
            "noether_source": members[0][0].get("noether_source"),
        }
        stats = {
            "val_loss": [m["final_val_loss"] for m, _ in done],
            "j_qk_norm": [_tail_median(c["j_qk_norm"]) for _, c in done],
            "j_vo_norm": [_tail_median(c["j_vo_norm"]) for _, c in done],
        }
        for key, values in stats.items():
            ci = mean_ci([v for v in values if v is not None])
            row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci.mean, ci.ci_low, ci.ci_high
        for key in ("j_qk_rel", "j_vo_rel"):
            vals = [_tail_median(c[key]) for _, c in done]
            vals = [v for v in vals if v is not None]
            row[key] = statistics.fmean(vals) if vals else None
        walls = [m["wall_time_s"] / max(1, m["steps_done"]) for m, _ in done]
        row["ms_per_step"] = 1000 * statistics.fmean(walls) if walls else None
        table.append(row)
    write_csv(root / "table.csv", table, TABLE_COLUMNS)
    from .symbreak_gaps import GAP_COLUMNS, gap_rows

    gaps = gap_rows(runs, _optimizer_order(root, runs))
    write_csv(root / "gaps.csv", [dict(g, chosen=json.dumps(g["chosen"])) for g in gaps],
              GAP_COLUMNS)
    from .symbreak_budget import BUDGET_COLUMNS, budget_rows, plot_budget

    budget = budget_rows(runs, _optimizer_order(root, runs))
    write_csv(root / "gaps_by_step.csv", budget, BUDGET_COLUMNS)
    figures = _figures(root, runs)
    if plot_budget(budget, root / "gaps_by_step.png"):
        figures.append("gaps_by_step.png")
    _report(root, table, runs, figures, preset_name, accounting, gaps)
    return table


def _figures(root: Path, runs: list[tuple[dict[str, Any], dict[str, list[Any]]]]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the lab extra
        return []
    colours = {o: f"C{i}" for i, o in enumerate(_optimizer_order(root, runs))}
    styles = {"symmetric": "-", "bq+bv": "--", "bq": ":"}
    names = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for man, cols in runs:
        pts = [(s, v) for s, v in zip(cols["step"], cols["val_loss"], strict=True) if v is not None]
        if man.get("final_val_loss") is not None:
            pts.append((man["steps_done"], man["final_val_loss"]))
        if not pts:
            continue
        key = (man["optimizer"], man["variant"])
        ax.plot(
            *zip(*pts, strict=True),
            styles.get(man["variant"], "-"),
            color=colours.get(man["optimizer"], "k"),
            alpha=0.8,
            lw=1.2,
            label=None if key in seen else f"{key[0]} / {key[1]}",
        )
        seen.add(key)
    starts = [v for _, cols in runs for v in cols["val_loss"][:1] if v is not None]
    if starts:  # a diverging run would squash the others: clip at 1.25 × the initial loss
        ax.set_ylim(top=1.25 * max(starts))
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats per token; clipped at 1.25 × initial)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(root / "curves.png", dpi=110)
    plt.close(fig)
    names.append("curves.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    seen = set()
    for man, cols in runs:
        key = (man["optimizer"], man["variant"])
        for ax, col in zip(axes, ("j_qk_norm", "j_vo_norm"), strict=True):
            pts = [
                (s, max(v, 1e-18))
                for s, v in zip(cols["step"], cols[col], strict=True)
                if v is not None
            ]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    styles.get(man["variant"], "-"),
                    color=colours.get(man["optimizer"], "k"),
                    alpha=0.7,
                    lw=1,
                    label=None if key in seen or col != "j_qk_norm" else f"{key[0]} / {key[1]}",
                )
        seen.add(key)
    for ax, title in zip(axes, ("‖J_QK‖ (all heads)", "‖J_VO‖ (all heads)"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(root / "charges.png", dpi=110)
    plt.close(fig)
    names.append("charges.png")
    return names


def _report(
    root: Path,
    table: list[dict[str, Any]],
    runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
    figures: list[str],
    preset_name: str | None,
    accounting: Any,
    gap_table: list[dict[str, Any]] | None = None,
) -> None:
    esc = html.escape
    n_runs = len(runs)
    statuses = defaultdict(int)
    for man, _ in runs:
        statuses[man["status"]] += 1
    wall = sum(man["wall_time_s"] for man, _ in runs)
    data = runs[0][0].get("data", {}) if runs else {}
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "optimiser",
            "variant",
            "n",
            "P from",
            "final val loss (95% CI)",
            "tail ‖J_QK‖ (95% CI)",
            "tail ‖J_VO‖ (95% CI)",
            "J_QK fraction",
            "J_VO fraction",
            "ms/step",
        )
    )
    head = f"<tr>{head}</tr>"
    body = []
    for r in table:

        def ci(key: str, spec: str, r: dict[str, Any] = r) -> str:
            low, high = _fmt(r[key + "_ci_low"], spec), _fmt(r[key + "_ci_high"], spec)
            return f"{_fmt(r[key], spec)} [{low}, {high}]"

        body.append(
            f"<tr><td>{esc(r['optimizer'])}</td><td>{esc(r['variant'])}</td><td>{r['n']}</td>"
            f"<td>{esc(str(r['noether_source']))}</td><td>{ci('val_loss', '.4f')}</td>"
            f"<td>{ci('j_qk_norm', '.3e')}</td><td>{ci('j_vo_norm', '.3e')}</td>"
            f"<td>{_fmt(r['j_qk_rel'], '.3e')}</td><td>{_fmt(r['j_vo_rel'], '.3e')}</td>"
            f"<td>{_fmt(r['ms_per_step'], '.0f')}</td></tr>"
        )
    imgs = "".join(
        f'<p><img src="{esc(f)}" alt="{esc(f)}" style="max-width:100%"></p>' for f in figures
    )
    status_line = ", ".join(f"{v} {k}" for k, v in sorted(statuses.items()))
    gaps = [f"{rid} (missing)" for rid in accounting.missing]
    gaps += [f"{rid} ({why})" for rid, why in accounting.damaged]
    gaps_html = (f"<p><b>Runs planned but not counted:</b> {esc(', '.join(gaps))}</p>"
                 if gaps else "")
    corpus = esc(f"{data.get('corpus', '')} sha256 {str(data.get('sha256', ''))[:16]}")
    source = esc(str(data.get("source", "")))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>hamopt symbreak report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
</style></head><body>
<h1>Symmetry-broken attention: {esc(preset_name or "")}</h1>
<p>{n_runs} runs ({esc(status_line)}), total wall time {wall:.0f} s.
Data: {corpus} ({source}). Loss in nats per token; validation
in eval mode (attention biases at their means).</p>
<p>Charges: ‖J‖ = sqrt(Σ over layers and heads of ‖J_h‖_F²), median over the last 20 % of the
steps, mean over seeds with a 95 % t-interval over completed runs (diverged runs, whose loss went
non-finite or above 10³ × its initial value, are left out); the fraction is ‖J‖ / (2‖X‖‖P‖) ∈ [0, 1].
P is the optimiser's momentum (Leapfrog: p; SGD-momentum: −√(lr/(1−d))·b) or the step's displacement
over h (AdamW, ECDq1).
For the symmetric model with momentum dynamics the charges start at zero and stay there up to
rounding; symmetry-breaking biases create and move them.</p>
{gaps_html}
{_gaps_section(root, gap_table or [])}
<h2>Charges</h2>
<table>{head}{"".join(body)}</table>
{imgs}
<p>Files: table.csv, runs/&lt;run_id&gt;/manifest.json, runs/&lt;run_id&gt;/steps.parquet.</p>
</body></html>
"""
    atomic_write_text(root / "report.html", doc)


def _gaps_section(root: Path, gaps: list[dict[str, Any]]) -> str:
    """Claim 1's table (test loss, paired gap to AdamW, narrowing, memory, downstream scores) and
    the links to the tuning record and the head analysis."""
    esc = html.escape

    def ci(r: dict[str, Any], key: str, spec: str = "+.4f") -> str:
        if r.get(key) is None:
            return "—"
        return f"{_fmt(r[key], spec)} [{_fmt(r[key + '_ci_low'], spec)}, {_fmt(r[key + '_ci_high'], spec)}]"

    cols = ("optimiser", "variant", "n", "chosen", "state B/param", "test loss (95% CI)",
            "gap to AdamW (paired)", "narrowing by biases (paired)", "bias effect on own loss",
            "val drop, last 20 %", "bracket acc.", "keyword compl.", "byte acc.")
    body = "".join(
        f"<tr><td>{esc(r['optimizer'])}</td><td>{esc(r['variant'])}</td><td>{r['n']}</td>"
        f"<td>{esc(json.dumps(r['chosen']) if r['chosen'] else '—')}</td>"
        f"<td>{_fmt(r['state_bytes_per_parameter'], '.1f')}</td><td>{ci(r, 'loss', '.4f')}</td>"
        f"<td>{ci(r, 'gap')}</td><td>{ci(r, 'narrowing')}</td><td>{ci(r, 'bias_effect')}</td>"
        f"<td>{_fmt(r['tail_drop'], '.4f')}</td><td>{ci(r, 'bracket_accuracy', '.3f')}</td>"
        f"<td>{ci(r, 'keyword_completion', '.3f')}</td><td>{ci(r, 'byte_accuracy', '.3f')}</td></tr>"
        for r in gaps)
    links = []
    if (root / "tuning.json").exists():
        links.append('<a href="tuning.json">tuning.json</a> (the grid, every tuning run\'s '
                     "validation loss and the choice; runs in tune/)")
    if (root / "gaps_by_step.csv").exists():
        links.append('<a href="gaps_by_step.csv">gaps_by_step.csv</a> (the same paired gap and '
                     "narrowing at every validation point: does the answer depend on the budget?)")
    if (root / "heads.html").exists():
        links.append('<a href="heads.html">head analysis</a> (heads.csv, heads.png; '
                     "<code>hamopt heads DIR</code>)")
    return f"""<h2>Claim 1: the gap to AdamW, with and without biases</h2>
<p>Loss: held-out test windows (the final validation loss where a preset has none), nats per
token. Gap = loss − AdamW's loss in the same variant, paired by seed; narrowing = gap(symmetric)
− gap(biased), paired by seed (positive: the biases narrowed the gap); bias effect = loss(biased)
− loss(symmetric) of the optimiser itself (negative: the biases helped). Mean over seeds with a
95 % t-interval. State B/param: bytes of optimiser state per parameter.</p>
<table><tr>{"".join(f"<th>{esc(c)}</th>" for c in cols)}</tr>{body}</table>
<p>{" · ".join(links)}</p>"""


def format_table(table: list[dict[str, Any]]) -> str:
    """The table as aligned text for the terminal."""
    head = (
        f"{'optimizer':<13}{'variant':<10}{'n':>2} {'val loss [95% CI]':<26}"
        f"{'tail |J_QK|':>12}{'tail |J_VO|':>12}{'QK frac':>10}{'VO frac':>10}{'ms/step':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in table:
        ci = f"{_fmt(r['val_loss'])} [{_fmt(r['val_loss_ci_low'])}, {_fmt(r['val_loss_ci_high'])}]"
        lines.append(
            f"{r['optimizer']:<13}{r['variant']:<10}{r['n']:>2} {ci:<26}"
            f"{_fmt(r['j_qk_norm'], '.3e'):>12}{_fmt(r['j_vo_norm'], '.3e'):>12}"
            f"{_fmt(r['j_qk_rel'], '.2e'):>10}{_fmt(r['j_vo_rel'], '.2e'):>10}"
            f"{_fmt(r['ms_per_step'], '.0f'):>9}"
        )
    return "\n".join(lines)

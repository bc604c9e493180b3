r"""``hamopt heads RUN_DIR``: the head analysis (:mod:`hamopt.diagnostics.heads`) of a
symmetry-breaking study's saved models, as tables, a heat map and a page.

``RUN_DIR`` is a study's results directory (every biased run with a saved ``model.pt``) or one
run's directory ``DIR/runs/<run_id>`` (that run alone). Each biased run is paired with the
symmetric run of the same optimiser and seed (the control; trained from the same initialisation
on the same batches). The tokens are the study's held-out test windows of the offline corpus
(its validation windows when it has none), classified by
:func:`hamopt.experiments.symbreak_metrics.token_classes`.

Files written to the study directory:

* ``heads.csv``: one row per (run, layer, head, class): ``boost``, ``effect``, ``cos``, ``z``,
  ``p``, ``significant`` and the same for the symmetric control (suffix ``_reference``);
* ``heads_summary.csv``: per (optimiser, layer, head, class), the means over seeds and the number
  of seeds in which the cell is significant (bias model and control);
* ``heads.txt``: the readable summary (what :func:`format_heads` prints);
* ``heads.png``: heat maps of the mean ``z`` per (layer·head, class), one column per optimiser,
  the biased models above and their symmetric controls below; a number in a cell is the count
  of seeds in which it is significant;
* ``heads.html``: the page, linked from the study's ``report.html``.
"""

from __future__ import annotations

import html
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .atomic import atomic_write_text, write_csv
from .symbreak_metrics import TOKEN_CLASSES, token_classes

__all__ = ["HEADS_FILES", "HeadsResult", "analyse_heads", "format_heads"]

HEADS_FILES = ("heads.csv", "heads_summary.csv", "heads.txt", "heads.png", "heads.html")
ROW_COLUMNS = ["run_id", "optimizer", "variant", "seed", "reference_run", "layer", "head", "class",
               "tokens", "boost", "effect", "cos", "z", "p", "significant", "boost_reference",
               "effect_reference", "cos_reference", "z_reference", "p_reference",
               "significant_reference"]
SUMMARY_COLUMNS = ["optimizer", "layer", "head", "class", "seeds", "boost", "cos", "z",
                   "significant_seeds", "z_reference", "significant_seeds_reference"]


class HeadsError(UserError, ValueError):
    """A directory the head analysis cannot read (the message says what it needs)."""


@dataclass(frozen=True)
class HeadsResult:
    out: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    cells_per_model: int
    text: str


def _study_root(path: Path) -> tuple[Path, str | None]:
    if (path / "manifest.json").exists() and path.parent.name == "runs":
        return path.parent.parent, path.name
    return path, None


def _inputs(root: Path, manifest: dict[str, Any]) -> list[Any]:
    """The study's test windows (validation windows when it has none), as input batches."""
    from types import SimpleNamespace

    import yaml

    from ..data.text import load_text_corpus, validation_batches
    from .symbreak_data import test_windows

    spec = yaml.safe_load((root / "spec.yaml").read_text(encoding="utf-8")) or {}
    if spec.get("data") != "stdlib":
        raise HeadsError(f"{root}: the head analysis reads the offline stdlib corpus; this study "
                         f"uses data={spec.get('data')!r}")
    corpus = load_text_corpus("stdlib")
    stored = (manifest.get("data") or {}).get("sha256")
    if stored and stored != corpus.manifest().get("sha256"):
        raise HeadsError(f"{root}: the corpus here (sha256 {corpus.manifest().get('sha256')}) is "
                         f"not the one the models were trained on (sha256 {stored})")
    preset = SimpleNamespace(**{k: spec.get(k) for k in ("context", "batch_size", "val_windows")},
                             test_windows=spec.get("test_windows") or 0)
    windows = test_windows(corpus.val, preset) or validation_batches(
        corpus.val, context=preset.context, batch_size=preset.batch_size,
        max_windows=preset.val_windows)
    return [x for x, _ in windows]


def analyse_heads(run_dir: str | Path) -> HeadsResult:
    """Analyse every biased run with a saved model in ``run_dir`` (see the module docstring) and
    write the files of :data:`HEADS_FILES`; returns the rows, the summary and the text."""
    from ..diagnostics.heads import amplification
    from .store import readable_runs
    from .symbreak_tuning import MODEL_FILE, load_model

    root, only = _study_root(Path(run_dir))
    if not (root / "spec.yaml").exists():
        raise HeadsError(f"{run_dir}: not a symmetry-breaking study directory (no spec.yaml)")
    runs, _ = readable_runs(root)
    saved = {m["run_id"]: m for m, _ in runs
             if m["status"] == "completed" and (root / "runs" / m["run_id"] / MODEL_FILE).exists()}
    targets = [m for m in saved.values() if m["variant"] != "symmetric"
               and (only is None or m["run_id"] == only)]
    if not targets:
        raise HeadsError(f"{run_dir}: no completed biased run with a saved {MODEL_FILE} (a study "
                         "keeps its models with save_models: true, as symbreak-cpu does)")
    inputs = _inputs(root, targets[0])
    per_row = [token_classes(bytes(row.tolist())) for x in inputs for row in x]
    import numpy as np

    classes = {c: np.concatenate([r[c] for r in per_row]) for c in TOKEN_CLASSES}
    rows: list[dict[str, Any]] = []
    for man in sorted(targets, key=lambda m: (m["optimizer"], m["seed"])):
        ref = next((m for m in saved.values() if m["variant"] == "symmetric"
                    and m["optimizer"] == man["optimizer"] and m["seed"] == man["seed"]), None)
        model = load_model(root / "runs" / man["run_id"] / MODEL_FILE)
        reference = None if ref is None else load_model(root / "runs" / ref["run_id"] / MODEL_FILE)
        for r in amplification(model, inputs, classes, reference=reference):
            rows.append({"run_id": man["run_id"], "optimizer": man["optimizer"],
                         "variant": man["variant"], "seed": man["seed"],
                         "reference_run": None if ref is None else ref["run_id"], **r})
    cells = len({(r["layer"], r["head"], r["class"]) for r in rows})
    summary = _summarise(rows)
    text = format_heads(summary, cells)
    write_csv(root / "heads.csv", rows, ROW_COLUMNS)
    write_csv(root / "heads_summary.csv", summary, SUMMARY_COLUMNS)
    atomic_write_text(root / "heads.txt", text + "\n")
    figure = _heatmap(root, summary)
    _page(root, summary, text, figure)
    return HeadsResult(root, rows, summary, cells, text)


def _mean(values: list[Any]) -> float:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(xs) if xs else math.nan


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["optimizer"], r["layer"], r["head"], r["class"])].append(r)
    order = {c: i for i, c in enumerate(TOKEN_CLASSES)}
    out = []
    for (opt, layer, head, cls), members in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], order.get(kv[0][3], 99))):
        has_ref = any(m.get("z_reference") is not None for m in members)
        out.append({
            "optimizer": opt, "layer": layer, "head": head, "class": cls, "seeds": len(members),
            "boost": _mean([m["boost"] for m in members]), "cos": _mean([m["cos"] for m in members]),
            "z": _mean([m["z"] for m in members]),
            "significant_seeds": sum(bool(m["significant"]) for m in members),
            "z_reference": _mean([m.get("z_reference") for m in members]) if has_ref else None,
            "significant_seeds_reference": (sum(bool(m.get("significant_reference"))
                                                for m in members) if has_ref else None),
        })
    return out


def format_heads(summary: list[dict[str, Any]], cells: int) -> str:
    """Per optimiser: significant cells (bias model vs symmetric control, summed over seeds) and
    the cells significant in most seeds, strongest first."""
    lines = [f"Head analysis: {cells} (layer, head, class) cells per model; significant = "
             f"one-sided p <= 0.05/{cells} (Bonferroni) under the random-direction null."]
    for opt in sorted({s["optimizer"] for s in summary}):
        mine = [s for s in summary if s["optimizer"] == opt]
        seeds = max(s["seeds"] for s in mine)
        hits = sum(s["significant_seeds"] for s in mine)
        ref = sum(s["significant_seeds_reference"] or 0 for s in mine)
        lines.append(f"\n{opt}: {hits} significant cells over {seeds} seeds (symmetric control "
                     f"along the same direction: {ref})")
        top = sorted((s for s in mine if s["significant_seeds"]),
                     key=lambda s: (-s["significant_seeds"], -s["z"]))[:8]
        for s in top:
            lines.append(f"  L{s['layer']}H{s['head']} {s['class']:<12} significant in "
                         f"{s['significant_seeds']}/{s['seeds']} seeds, mean z {s['z']:+.2f}, "
                         f"cos {s['cos']:+.2f}, logit boost {s['boost']:+.3f}"
                         + ("" if s["z_reference"] is None else
                            f" (control z {s['z_reference']:+.2f})"))
        if not top:
            lines.append("  no significant cell")
    return "\n".join(lines)


def _heatmap(root: Path, summary: list[dict[str, Any]]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:  # pragma: no cover - matplotlib is in the lab extra
        return None
    opts = sorted({s["optimizer"] for s in summary})
    heads = sorted({(s["layer"], s["head"]) for s in summary})
    classes = [c for c in TOKEN_CLASSES if any(s["class"] == c for s in summary)]
    has_ref = any(s["z_reference"] is not None for s in summary)
    rows_n = 2 if has_ref else 1
    fig, axes = plt.subplots(rows_n, len(opts), squeeze=False, constrained_layout=True,
                             figsize=(3.2 * len(opts) + 1.5, (0.3 * len(heads) + 1.8) * rows_n))
    image = None
    for j, opt in enumerate(opts):
        for i, (key, count_key, title) in enumerate(
                [("z", "significant_seeds", f"{opt}: biased"),
                 ("z_reference", "significant_seeds_reference", f"{opt}: control")][:rows_n]):
            grid = np.full((len(heads), len(classes)), np.nan)
            counts = np.zeros_like(grid)
            for s in summary:
                if s["optimizer"] == opt and s["class"] in classes and s[key] is not None:
                    a, b = heads.index((s["layer"], s["head"])), classes.index(s["class"])
                    grid[a, b], counts[a, b] = s[key], s[count_key] or 0
            ax = axes[i][j]
            image = ax.imshow(grid, cmap="RdBu_r", vmin=-4, vmax=4, aspect="auto")
            for a in range(len(heads)):
                for b in range(len(classes)):
                    if counts[a, b]:
                        ax.text(b, a, str(int(counts[a, b])), ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(classes)), classes, rotation=70, fontsize=7)
            ax.set_yticks(range(len(heads)), [f"L{h[0]}H{h[1]}" for h in heads], fontsize=7)
            ax.set_title(title, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="mean z = √d·cos (random direction: 0 ± 1)")
    fig.savefig(root / "heads.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "heads.png"


def _page(root: Path, summary: list[dict[str, Any]], text: str, figure: str | None) -> None:
    esc = html.escape
    cols = ["optimizer", "layer", "head", "class", "seeds", "boost", "cos", "z",
            "significant_seeds", "z_reference", "significant_seeds_reference"]

    def fmt(v: Any) -> str:
        return "—" if v is None else (f"{v:+.3f}" if isinstance(v, float) else str(v))

    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(s[c]))}</td>" for c in cols) + "</tr>"
                   for s in summary if s["significant_seeds"] or s["significant_seeds_reference"])
    img = f'<p><img src="{esc(figure)}" alt="head heat map" style="max-width:100%"></p>' if figure else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>hamopt head analysis</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
</style></head><body><h1>Head analysis: token classes along the query-bias direction</h1>
<pre>{esc(text)}</pre>{img}
<h2>Cells significant in at least one seed (bias model or control)</h2>
<table><tr>{"".join(f"<th>{esc(c)}</th>" for c in cols)}</tr>{body}</table>
<p>Files: heads.csv (every run, layer, head and class), heads_summary.csv. Method:
hamopt.diagnostics.heads; classes: hamopt.experiments.symbreak_metrics.</p></body></html>
"""
    atomic_write_text(root / "heads.html", doc)

r"""A self-contained ``report.html``: inline CSS, figures embedded as base64 PNG, no external links.

The page is an ordered list of sections (:data:`hamopt.report.sections.SECTIONS`), each a function
of one :class:`ReportPage` that returns its HTML; a new section is one more function in that list.
The helpers here keep every section readable on a phone and a desktop alike: wide tables scroll
inside their own box (the page itself never scrolls sideways), figures shrink to the column,
``code`` spans come from Markdown backticks and ``^x`` becomes a superscript.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stability_figures

__all__ = ["FIGURE_CAPTIONS", "ReportPage", "render_html"]

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:1.5em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45;overflow-wrap:break-word}
h1{font-size:1.5em;margin-bottom:.3em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse;font-size:.86em}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.held{background:#e3f4e1}.did-not-hold{background:#fbe4e1}.inconclusive{background:#fff4d6}
.not-tested{background:#f1f1f1}
.counts{font-size:1.15em;margin:.4em 0}.counts span{display:inline-block;padding:.1em .5em;margin:.1em .2em .1em 0;
border-radius:.3em}
.summary{background:#f7f9fc;border:1px solid #dde3ec;border-radius:.4em;padding:.6em 1em}
.summary ul{padding-left:1.2em;margin:.3em 0}
figure{margin:.8em 0}img{max-width:100%;height:auto;border:1px solid #eee}
code{background:#f5f5f5;padding:0 .25em;overflow-wrap:anywhere}.note{color:#555;font-size:.9em}
@media (max-width:600px){body{padding:0 .5em;font-size:15px}h1{font-size:1.25em}table{font-size:.8em}}
"""

# caption of each figure by its name in write_figures' dict; a figure without one is shown under
# "More figures" with its name as the caption
FIGURE_CAPTIONS = {
    "fig1a_band": "Fig. 1a — drift vs step size in the reference band, one panel per optimiser; x is the step "
    "size as a fraction of that optimiser's own stability limit where one was measured (AdamW: its lr). "
    "Points: one per step size and seed; lines: geometric mean over seeds; legends carry the fitted slopes.",
    "fig1b_wide": "Fig. 1b — the wide sweep, one panel per Leapfrog entry, in units of the stability limit; "
    "dotted: the reference band of the same entry.",
    "fig2_reversibility": "Fig. 2 — reversibility, Leapfrog vs first-order Euler, float32 (open markers) and "
    "float64 (filled); where two series coincide the panel says so.",
    "fig3_cap": "Fig. 3 — energy-cap engagement per step size (optimisers with an energy cap).",
    "fig4_decomposition": "Fig. 4 — drift decomposition per optimiser and band: ΔH^traj = ΔH^int + δ; legends "
    "carry each part's slope, the panel titles the median ratio δ / ΔH^int.",
    "fig5_ablations": "Fig. 5 — memory ablations: energy series and their difference from the default run.",
    "fig6_stability": stability_figures.CAPTION,
}


@dataclass(frozen=True)
class ReportPage:
    """Everything a section may draw on."""

    title: str
    meta: dict[str, Any]
    analysis: Any
    claims: Sequence[Any]
    figures: dict[str, Path]
    notes: Sequence[str]
    context: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits (scientific when tiny or huge), escaped text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return inline(str(v))


def inline(text: str) -> str:
    """Escaped text with Markdown backticks as ``<code>``."""
    out = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def superscripts(page: str) -> str:
    """``ΔH^int`` → ``ΔH<sup>int</sup>`` (also after dt, lr and 10) anywhere in ``page``."""
    return re.sub(r"(ΔH|dt|lr|10)\^(\w+)", r"\1<sup>\2</sup>", page)


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str | tuple[str, str]] | None = None,
    *,
    row_class: Any = None,
) -> str:
    """An HTML table in a horizontally scrolling box; ``columns``: keys or (key, header) pairs;
    ``row_class(row)``: a CSS class per row."""
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = [(c, c) if isinstance(c, str) else c for c in (columns or rows[0].keys())]
    head = "".join(f"<th>{inline(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            cls = " class='num'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{fmt(v)}</td>")
        cls = f" class='{row_class(r)}'" if row_class else ""
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def figure_html(page: ReportPage, name: str) -> str:
    """The figure ``name`` embedded with its caption, or "" when it was not drawn."""
    path = page.figures.get(name)
    if path is None or not Path(path).exists():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    caption = FIGURE_CAPTIONS.get(name, name)
    return (f"<figure id='{html.escape(name)}'><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption class='note'>{inline(caption)}</figcaption></figure>")


def render_html(
    *,
    title: str,
    meta: dict[str, Any],
    analysis: Any,
    claims: Sequence[Any],
    figures: dict[str, Path],
    notes: Sequence[str],
    context: Any = None,
) -> str:
    """The whole page: every section of :data:`~hamopt.report.sections.SECTIONS` in order."""
    from .context import ReportContext
    from .sections import SECTIONS

    page = ReportPage(title, meta, analysis, claims, figures, notes, context or ReportContext())
    body = superscripts("\n".join(section(page) for section in SECTIONS))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
"""

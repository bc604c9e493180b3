r"""A self-contained ``report.html``: inline CSS, figures embedded as base64 PNG, no external links."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import stability_figures

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.86em;margin:.6em 0}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.held{background:#e3f4e1}.did-not-hold{background:#fbe4e1}.not-tested{background:#f1f1f1}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code{background:#f5f5f5;padding:0 .25em}.note{color:#555;font-size:.9em}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cls = " class='num'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _decomposition_sentences(rows: Sequence[dict[str, Any]]) -> str:
    """One plain sentence per optimiser and band: how big δ is next to ΔH^int, whose slope ΔH^traj has."""
    out = []
    for r in rows:
        ratio = r["median_ratio_resampling_to_int"]
        if not (isinstance(ratio, float) and math.isfinite(ratio)):
            continue
        size = (f"δ is {ratio:.3g}× the integrator drift" if ratio >= 1
                else f"δ is {1 / ratio:.3g}× smaller than the integrator drift")
        slopes = (f"slopes: ΔH^int {_fmt(r['slope_int'])}, δ {_fmt(r['slope_resampling'])}, "
                  f"ΔH^traj {_fmt(r['slope_traj'])}")
        who = {"resampling": "the trajectory slope follows the resampling term",
               "integrator": "the trajectory slope follows the integrator"}.get(r["traj_follows"],
                                                                               "undetermined")
        out.append(f"<li><b>{html.escape(str(r['optimizer']))} ({html.escape(str(r['band']))})</b>: "
                   f"{size} (median over runs); {slopes}; {who}.</li>")
    return "".join(out)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def render_html(
    *,
    title: str,
    meta: dict[str, Any],
    analysis: Any,
    claims: Sequence[Any],
    figures: dict[str, Path],
    notes: Sequence[str],
) -> str:
    verdicts = [c.verdict for c in claims]
    n_held = verdicts.count("held")
    n_not = verdicts.count("did not hold")
    n_untested = verdicts.count("not tested")
    claim_rows = "".join(
        f"<tr class='{c.verdict.replace(' ', '-')}'><td>{html.escape(c.topic)}</td><td>{html.escape(c.study)}</td>"
        f"<td>{html.escape(c.measured)}</td><td><b>{html.escape(c.verdict)}</b></td>"
        f"<td class='note'>{html.escape(c.rule)}</td></tr>"
        for c in claims
    )
    meta_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in meta.items()
    )
    fig_caps = {
        "fig1a_band": "Fig. 1a — drift vs step size in the reference band (points: one per step size and seed).",
        "fig1b_wide": "Fig. 1b — the wide sweep; dotted lines repeat the reference band.",
        "fig2_reversibility": "Fig. 2 — reversibility, Leapfrog vs first-order Euler, float32 and float64.",
        "fig3_cap": "Fig. 3 — energy-cap engagement per step size.",
        "fig4_decomposition": "Drift decomposition per optimiser: which part of ΔH^traj is the integrator's.",
        "fig5_ablations": "Memory ablations: energy series and their difference from the default run.",
        "fig6_stability": stability_figures.CAPTION,
    }
    figs = "".join(
        f"<figure>{_img(p, k)}<figcaption class='note'>{html.escape(fig_caps.get(k, k))}</figcaption></figure>"
        for k, p in figures.items()
        if Path(p).exists()
    )
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    a = analysis
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{meta_rows}</table>

<h2>Claims of the reference study against this run</h2>
<p><b>{n_held} held, {n_not} did not hold, {n_untested} not tested</b> (each verdict follows the rule in the
last column, fixed before looking at the numbers).</p>
<table><thead><tr><th>claim</th><th>study reported</th><th>this run measured</th><th>verdict</th><th>rule</th></tr>
</thead><tbody>{claim_rows}</tbody></table>

<h2>Table 1 — drift scaling (OLS of log10 drift on log10 step size)</h2>
<p class='note'>One point per (step size, seed), completed default runs only; 95% t-interval with n − 2 degrees of
freedom; bootstrap: percentile interval over resampled seeds. drift = int (same batch), traj (across batches),
resampling (δ).</p>
{_table(a.table, ["optimizer", "band", "drift", "n", "slope", "ci_low", "ci_high", "r2", "boot_low", "boot_high"])}

<h2>Decomposition: integrator vs resampling</h2>
<p class='note'>ΔH^traj = ΔH^int + δ. <i>median_ratio_resampling_to_int</i> is the median over runs of
drift(δ)/drift(ΔH^int); <i>traj_follows</i> names the part whose slope the trajectory slope is closer to.</p>
{_table(a.decomposition)}
<ul>{_decomposition_sentences(a.decomposition)}</ul>

<h2>Figures</h2>
{figs}

<h2>Energy cap</h2>
{_table(a.cap)}

<h2>Reversibility</h2>
{_table(a.reversibility)}

<h2>Memory ablations</h2>
{_table(a.ablations)}

<h2>Time per step</h2>
{_table(a.timing)}

<h2>Runs left out of the fits</h2>
<p class='note'>Default runs that diverged or failed, and every planned run that is missing (never run, or
killed in flight) or damaged (manifest or steps unreadable; the next sweep redoes it).</p>
{_table(a.excluded) if a.excluded else
 "<p class='note'>none: every planned run is here and every default run completed</p>"}

<h2>Method notes</h2>
<ul>{notes_html}</ul>
</body></html>
"""

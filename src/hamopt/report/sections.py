r"""The report's sections in page order (:data:`SECTIONS`), each a function of one
:class:`~hamopt.report.html.ReportPage` returning HTML.

Summary first (what was run, verdict counts under the printed rule, the main finding, why this
band differs from the study's), then the claims, the drift scaling (Table 1, Fig. 1a/1b), the
decomposition (Fig. 4), the energy cap (Fig. 3), reversibility (Fig. 2), the memory ablations
(Fig. 5), time per step, any further figures, the runs left out, the setup and the method notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import families
from .claims import HELD, INCONCLUSIVE, NOT_HELD, NOT_TESTED
from .html import ReportPage, figure_html, fmt, inline, table
from .stability_figures import STABILITY_FIGURE
from .summary import slope_reading, summary_parts

__all__ = ["SECTIONS", "placed_figures"]

_KIND = {"int": "ΔH^int", "traj": "ΔH^traj", "resampling": "δ"}


def _ci(lo: Any, hi: Any) -> str:
    if not (isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:+.3f}, {hi:+.3f}]"


def _verdict_class(verdict: str) -> str:
    return verdict.replace(" ", "-")


def summary_section(page: ReportPage) -> str:
    parts = summary_parts(page.analysis, page.claims, page.context)
    verdicts = [c.verdict for c in page.claims]
    chips = "".join(
        f"<span class='{_verdict_class(v)}'><b>{verdicts.count(v)}</b> {v}</span>"
        for v in (HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTED)
        if v != NOT_TESTED or NOT_TESTED in verdicts
    )
    run = "".join(f"<li>{inline(line)}</li>" for line in parts["run"])
    finding = " ".join(inline(s) for s in parts["finding"])
    return f"""<section id="summary" class="summary"><h2 style="margin-top:.3em">Summary</h2>
<p><b>What was run.</b></p><ul>{run}</ul>
<p class="counts">Claims of the reference study: {chips}</p>
<p class="note"><b>Verdict rule</b> — {inline(parts['rule'])}</p>
<p><b>Main finding.</b> {finding}</p>
<p><b>Why this band differs from the study's.</b> {inline(parts['band'])}</p>
</section>"""


def claims_section(page: ReportPage) -> str:
    rows = [
        {"claim": c.topic, "study reported": c.study, "this run measured": c.measured,
         "verdict": c.verdict, "rule": c.rule}
        for c in page.claims
    ]
    return (
        "<h2 id='claims'>Claims of the reference study against this run</h2>"
        "<p class='note'>Each verdict follows the rule in the last column, fixed before looking at the numbers "
        "(general rule in the summary). Rows are coloured by verdict.</p>"
        + table(rows, row_class=lambda r: _verdict_class(r["verdict"]))
    )


def scaling_section(page: ReportPage) -> str:
    rows = [
        {**t, "drift": _KIND.get(t["drift"], t["drift"]), "ci": _ci(t["ci_low"], t["ci_high"]),
         "slope": f"{t['slope']:+.3f}" if math.isfinite(t["slope"]) else "n/a",
         "r2": f"{t['r2']:.2f}" if math.isfinite(t["r2"]) else "n/a",
         "boot": _ci(t["boot_low"], t["boot_high"]), "reading": slope_reading(t)}
        for t in page.analysis.table
    ]
    cols = [("optimizer", "optimiser"), ("band", "band"), ("drift", "drift"), ("n", "n"), ("slope", "slope"),
            ("ci", "95% CI"), ("r2", "R²"), ("boot", "bootstrap CI"), ("reading", "reading")]
    return (
        "<h2 id='scaling'>Drift scaling (Table 1): OLS of log10 drift on log10 step size</h2>"
        "<p class='note'>One point per (step size, seed), completed default runs only; 95% t-interval with n − 2 "
        "degrees of freedom; bootstrap: percentile interval over resampled seeds. ΔH^int: same batch "
        "(integrator); ΔH^traj: across batches; δ: mini-batch resampling. Reading: grows (CI above 0), falls "
        "(CI below 0), flat (CI contains 0 and stays below the flat margin), unresolved (too wide).</p>"
        + table(rows, cols)
        + figure_html(page, "fig1a_band")
        + figure_html(page, "fig1b_wide")
    )


def _decomposition_sentences(rows: list[dict[str, Any]]) -> str:
    """One plain sentence per optimiser and band: how big δ is next to ΔH^int, whose slope ΔH^traj has."""
    out = []
    for r in rows:
        ratio = r["median_ratio_resampling_to_int"]
        if not (isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0):
            continue
        size = (f"δ is {ratio:.3g}× the integrator drift ΔH^int" if ratio >= 1
                else f"δ is {1 / ratio:.3g}× smaller than the integrator drift ΔH^int")
        slopes = (f"slopes: ΔH^int {fmt(r['slope_int'])}, δ {fmt(r['slope_resampling'])}, "
                  f"ΔH^traj {fmt(r['slope_traj'])}")
        who = {"resampling": "the trajectory slope follows the resampling term δ",
               "integrator": "the trajectory slope follows the integrator term ΔH^int"}.get(
            r["traj_follows"], "which term the trajectory slope follows is undetermined")
        out.append(f"<li><b>{inline(str(r['optimizer']))} ({inline(str(r['band']))})</b>: "
                   f"{inline(size)} (median over runs); {inline(slopes)}; {inline(who)}.</li>")
    return "".join(out)


def decomposition_section(page: ReportPage) -> str:
    cols = [("optimizer", "optimiser"), ("band", "band"), ("runs", "runs"),
            ("median_ratio_resampling_to_int", "median δ / ΔH^int"), ("slope_int", "slope ΔH^int"),
            ("slope_resampling", "slope δ"), ("slope_traj", "slope ΔH^traj"),
            ("traj_follows", "ΔH^traj follows")]
    rows = page.analysis.decomposition
    return (
        "<h2 id='decomposition'>Decomposition: integrator vs mini-batch resampling</h2>"
        "<p class='note'>ΔH^traj = ΔH^int + δ. The ratio is the median over runs of drift(δ) / drift(ΔH^int); "
        "the last column names the part whose slope the trajectory slope is closer to.</p>"
        + table(rows, cols)
        + f"<ul>{_decomposition_sentences(rows)}</ul>"
        + figure_html(page, "fig4_decomposition")
    )


def _has_cap(type_name: str | None) -> bool:
    try:
        return families.get(type_name or "").has_energy_cap
    except families.UnknownFamilyError:
        return False


def _fraction(page: ReportPage, name: str, band: str, step: float) -> float | None:
    axis = page.context.axis(name, band) if page.context is not None else None
    return axis.position(step) if axis is not None and axis.relative else None


def cap_section(page: ReportPage) -> str:
    types = {d["optimizer"]: d.get("type") for d in page.analysis.drift}
    rows, without = [], set()
    for c in page.analysis.cap:
        if not _has_cap(types.get(c["optimizer"])) and c["cap_rate"] == 0:
            without.add(c["optimizer"])
            continue
        f = _fraction(page, c["optimizer"], c["band"], c["step_size"])
        rows.append({**c, "f": "—" if f is None else f"{f:.3g}", "rate": f"{100 * c['cap_rate']:.2f}%",
                     "ci": f"[{100 * c['ci_low']:.2f}%, {100 * c['ci_high']:.2f}%]"
                     if math.isfinite(c["ci_low"]) else "n/a"})
    cols = [("optimizer", "optimiser"), ("band", "band"), ("step_size", "step size"),
            ("f", "fraction of limit"), ("n", "seeds"), ("rate", "mean engagement"), ("ci", "95% CI")]
    note = (f"<p class='note'>Not listed (no energy cap): {inline(', '.join(sorted(without)))}.</p>"
            if without else "")
    return ("<h2 id='cap'>Energy cap</h2><p class='note'>Share of steps at which the energy cap rescaled the "
            "momentum, mean over seeds.</p>" + table(rows, cols) + note + figure_html(page, "fig3_cap"))


def reversibility_section(page: ReportPage) -> str:
    rows = page.analysis.reversibility
    cols = [c for c in ("integrator", "dtype", "dt", "steps", "theta_error", "momentum_error")
            if rows and c in rows[0]]
    labels = {"theta_error": "‖θ_back − θ_0‖ / ‖θ_0‖", "momentum_error": "momentum error",
              "steps": "N each way"}
    return ("<h2 id='reversibility'>Reversibility</h2><p class='note'>N steps forward, p ← −p, N steps back, "
            "p ← −p; γ = 0, no cap, exact mode, one fixed batch.</p>"
            + table(rows, [(c, labels.get(c, c)) for c in cols]) + figure_html(page, "fig2_reversibility"))


def ablations_section(page: ReportPage) -> str:
    rows = []
    for a in page.analysis.ablations:
        ident = str(a.get("identical")) in ("True", "true", "1")
        rows.append({**a, "identical": "identical: max |Δ| = 0" if ident else "differs"})
    cols = [("ablation", "ablation"), ("step_size", "step size"), ("seed", "seed"),
            ("max_abs_diff_hamiltonian", "max |ΔH series diff.|"),
            ("max_abs_diff_delta_h_int", "max |ΔH^int diff.|"), ("max_abs_diff_loss", "max |L diff.|"),
            ("identical", "vs default"), ("steps_compared", "steps")]
    return ("<h2 id='ablations'>Memory ablations</h2><p class='note'>Each ablation run against the default "
            "run of the same configuration and seed.</p>"
            + (table(rows, cols) if rows else "<p class='note'>no ablation runs in this sweep</p>")
            + figure_html(page, "fig5_ablations"))


def timing_section(page: ReportPage) -> str:
    cols = [("optimizer", "optimiser"), ("mode", "mode"), ("runs", "runs"), ("ms_per_step", "ms per step")]
    return "<h2 id='timing'>Time per step</h2>" + table(page.analysis.timing, cols)


def stability_section(page: ReportPage) -> str:
    """The sharpness ratio over training next to the drift (only for a sweep run with the monitor)."""
    fig = figure_html(page, STABILITY_FIGURE)
    if not fig:
        return ""
    return ("<h2 id='stability'>Stability: sharpness ratio over training</h2><p class='note'>ratio = "
            "λ_max(P⁻¹H) / the optimiser's threshold, measured every k steps on a fixed batch "
            "(<code>stability.csv</code>: first, maximum, last and tail-median ratio per run, and the first "
            "step it exceeded 1). Above 1 the linearised update grows; see docs/stability.md.</p>" + fig)


def placed_figures() -> set[str]:
    """The figures a section above places; the rest go under "More figures"."""
    return {"fig1a_band", "fig1b_wide", "fig2_reversibility", "fig3_cap", "fig4_decomposition",
            "fig5_ablations", STABILITY_FIGURE}


def more_figures_section(page: ReportPage) -> str:
    rest = [name for name in page.figures if name not in placed_figures()]
    figs = "".join(figure_html(page, name) for name in rest)
    return f"<h2 id='more-figures'>More figures</h2>{figs}" if figs else ""


def excluded_section(page: ReportPage) -> str:
    a = page.analysis
    body = (table(a.excluded) if a.excluded else
            "<p class='note'>none: every planned run is here and every default run completed</p>")
    return ("<h2 id='excluded'>Runs left out of the fits</h2><p class='note'>Default runs that diverged or "
            "failed, and every planned run that is missing (never run, or killed in flight) or damaged "
            "(manifest or steps unreadable; the next sweep redoes it).</p>" + body)


def setup_section(page: ReportPage) -> str:
    rows = "".join(f"<tr><th>{inline(k)}</th><td>{fmt(v)}</td></tr>" for k, v in page.meta.items())
    return f"<h2 id='setup'>Setup</h2><div class='scroll'><table>{rows}</table></div>"


def notes_section(page: ReportPage) -> str:
    items = "".join(f"<li>{inline(n)}</li>" for n in page.notes)
    return f"<h2 id='notes'>Method notes</h2><ul>{items}</ul>"


SECTIONS: list[Callable[[ReportPage], str]] = [
    summary_section,
    claims_section,
    scaling_section,
    decomposition_section,
    stability_section,
    cap_section,
    reversibility_section,
    ablations_section,
    timing_section,
    more_figures_section,
    excluded_section,
    setup_section,
    notes_section,
]

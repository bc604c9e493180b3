r"""The report's opening: what was run, the verdict counts, the main finding in plain sentences, and
why this run's band differs from the study's.

Everything here is read off the analysis tables and the stored spec; the only judgement is the
classification of a slope's 95 % interval (:func:`slope_reading`), with the margin of
:mod:`hamopt.report.claims` (:data:`~hamopt.report.claims.FLAT_MARGIN`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .claims import FLAT_MARGIN, VERDICT_RULE, verdict_counts
from .context import ReportContext

__all__ = ["STUDY_SETUP", "band_difference", "main_finding", "slope_reading", "what_was_run"]

STUDY_SETUP = ("ResNet-18 on CIFAR-10, batch 128, one epoch (≈ 400 steps), γ = 1e-3, cap α = 2, 3 seeds; "
               "Leapfrog dt 0.002–0.0035 (reference band) and 0.006–0.016 (wide band), AdamW lr 2e-4–6e-4")
_STUDY_DT = (0.002, 0.0035, 0.006, 0.016)
_KIND = {"int": "ΔH^int", "traj": "ΔH^traj", "resampling": "δ"}


def slope_reading(row: dict[str, Any]) -> str:
    """"grows" (95 % CI above 0), "falls" (below 0), "flat" (contains 0, below the flat margin),
    "unresolved" (contains 0 and reaches past the margin) or "no fit"."""
    lo, hi = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
    if not (isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo) and math.isfinite(hi)):
        return "no fit"
    if lo > 0:
        return "grows"
    if hi < 0:
        return "falls"
    return "flat" if hi < FLAT_MARGIN else "unresolved"


def _slope(row: dict[str, Any]) -> str:
    return f"{row['slope']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def main_finding(analysis: Any, band: str = "band") -> list[str]:
    """One to three plain sentences: where the trajectory drift's slope is flat or negative in
    ``band``, and whether that lives in the integrator term ΔH^int or in the resampling term δ."""
    table = {(t["optimizer"], t["drift"]): t for t in analysis.table if t["band"] == band}
    decomposition = {d["optimizer"]: d for d in analysis.decomposition if d["band"] == band}
    names = sorted({name for name, _ in table})
    if not names:
        return ["No optimiser has fitted slopes in the reference band, so there is no finding to report."]
    groups: dict[str, list[str]] = {}
    for name in names:
        traj = table.get((name, "traj"))
        if traj is not None:
            groups.setdefault(slope_reading(traj), []).append(name)
    out = []
    low = groups.get("falls", []) + groups.get("flat", [])
    if low:
        parts = []
        for name in low:
            traj, res, integ = table[(name, "traj")], table.get((name, "resampling")), table.get((name, "int"))
            dec = decomposition.get(name, {})
            ratio = dec.get("median_ratio_resampling_to_int", math.nan)
            size = f"; δ is {ratio:.2g}× ΔH^int" if isinstance(ratio, float) and math.isfinite(ratio) else ""
            where = dec.get("traj_follows")
            if where == "resampling" and res is not None:
                home = f"that lives in the mini-batch resampling term δ (slope {_slope(res)}{size})"
            elif where == "integrator" and integ is not None:
                home = f"that lives in the integrator term ΔH^int (slope {_slope(integ)}{size})"
            else:
                home = "which term it comes from is undetermined"
            reading = "falls" if name in groups.get("falls", []) else "is flat"
            parts.append(f"for {name} it {reading} (slope {_slope(traj)}), and {home}")
        out.append(f"In the reference band the trajectory drift ΔH^traj is flat or falling with the step size "
                   f"for {len(low)} of {len(names)} optimisers: {'; '.join(parts)}.")
    else:
        out.append("In the reference band no optimiser's trajectory drift ΔH^traj is clearly flat or falling "
                   "with the step size.")
    if groups.get("grows"):
        out.append(f"ΔH^traj grows for {_join(groups['grows'])}.")
    integ_groups: dict[str, list[str]] = {}
    for name in names:
        integ = table.get((name, "int"))
        if integ is not None:
            integ_groups.setdefault(slope_reading(integ), []).append(f"{name} {_slope(integ)}")
    bits = []
    for key, verb in (("grows", "grows"), ("falls", "falls"), ("flat", "is flat"), ("unresolved", "is unresolved")):
        if integ_groups.get(key):
            bits.append(f"{verb} for {_join(integ_groups[key])}")
    if bits:
        out.append("The integrator term ΔH^int (same batch, no resampling) " + "; ".join(bits) + ".")
    unresolved = groups.get("unresolved", [])
    if unresolved:
        out.append(f"For {_join(unresolved)} the ΔH^traj interval is too wide to say (inconclusive).")
    return out


def what_was_run(context: ReportContext) -> list[str]:
    """Lines: the problem, then each spec entry's band as fractions of its stability limit and as
    absolute step sizes."""
    lines = [f"Problem: {context.problem}." if context.spec else "Problem: no spec.yaml in this directory."]
    cal = context.calibration
    if cal and cal.get("dt_limit"):
        lines.append(
            f"Stability limit measured at initialisation: dt_c = {cal['dt_limit']:.4g} "
            f"(λ_max(M⁻¹H) = {cal.get('lambda_preconditioned', math.nan):.4g}, "
            f"λ_max(H) = {cal.get('lambda_hessian', math.nan):.4g})."
        )
    bands: dict[str, list[str]] = {}
    for (name, band), axis in sorted(context.axes.items()):
        if axis.step_sizes:
            bands.setdefault(f"{band}: {axis.describe()}", []).append(name)
    for text, names in bands.items():
        band, _, rest = text.partition(": ")
        label = "reference band" if band == "band" else f"{band} band"
        lines.append(f"{_join(names)} ({label}): {rest}.")
    return lines


def _differences(context: ReportContext) -> str:
    """"a different model (resnet20 instead of ResNet-18) on a 10000-image subset of CIFAR-10"."""
    ds, model = context.spec.get("dataset") or {}, context.spec.get("model") or {}
    name = str(model.get("name", "?"))
    what = ("the study's model" if name == "resnet18"
            else f"a different model ({name} instead of ResNet-18)")
    data = str(ds.get("name", "?"))
    if data == "cifar10":
        size = ds.get("train_size")
        subset = "subset" in str(ds.get("root") or "")
        where = (f"a {size}-image subset of CIFAR-10" if size
                 else "a subset of CIFAR-10" if subset else "CIFAR-10")
    else:
        where = f"a different data set ({data} instead of CIFAR-10)"
    return f"{what} on {where}"


def band_difference(context: ReportContext) -> str:
    """Why this run's band differs from the study's (model, data set, stability limit)."""
    cal = context.calibration or {}
    dt_c = cal.get("dt_limit")
    if not context.relative:
        return (f"The study ran {STUDY_SETUP}. This run gives its step sizes directly ({context.problem}); "
                "where the problem differs from the study's, the same step size sits at a different point "
                "of that problem's stability range, so slopes need not agree.")
    here = ""
    if dt_c:
        lo, hi = _STUDY_DT[0] / dt_c, _STUDY_DT[-1] / dt_c
        here = (f" Its measured Leapfrog limit is dt_c = {dt_c:.4g}, so the study's dt 0.002–0.016 would sit at "
                f"{lo:.2g}–{hi:.2g} of the limit here, far inside the stable range.")
    return (
        f"The study ran {STUDY_SETUP}. This run trains {_differences(context)} "
        f"({context.problem}), so its curvature — and with it the step size at which Leapfrog and SGD "
        f"turn unstable — differs.{here} The bands are therefore placed at the same fractions of this "
        "problem's own stability limit (reference band 0.1–0.175, wide band 0.3–0.8), keeping the "
        "study's ratios (×1.75 and ×2.67); AdamW keeps the study's learning rates (its step is "
        "normalised per coordinate). The study did not report ResNet-18's limit, so the exact fractions "
        "its band sat at are an assumption; the limit is measured at initialisation and usually grows "
        "during training, so late steps sit closer to it than the fraction says."
    )


def summary_parts(analysis: Any, claims: Sequence[Any], context: ReportContext) -> dict[str, Any]:
    """The summary's pieces for the page: run lines, verdict counts, the rule, the finding, the
    band explanation."""
    return {
        "run": what_was_run(context),
        "counts": verdict_counts(claims),
        "rule": VERDICT_RULE,
        "finding": main_finding(analysis),
        "band": band_difference(context),
    }

r"""The reference study's claims (spec §7) set beside what a sweep measured, with a verdict each.

Each claim has a rule fixed in advance (stated in the report next to the verdict):

* Leapfrog in the reference band, slope −0.080 with 95 % CI [−0.302, +0.143]: the study's reading
  is "no detectable growth of drift with dt" → **held** iff our 95 % CI contains 0.
* AdamW +0.218 [+0.118, +0.319] and SGD-momentum +0.777 [+0.767, +0.786]: "drift grows with the
  step size" → **held** iff our CI lies above 0.
* Leapfrog wide band +2.226: "steep growth" → **held** iff slope > 1 and the CI lies above 0.
* Drift falls across the band (0.0659 → 0.0564 nats from the smallest to the largest dt) →
  **held** iff the seed-mean drift at the largest band dt is below that at the smallest.
* Round trip 2.25e-8 (Leapfrog) vs 4.58e-2 (first order) → **held** iff, in float32 at the largest
  N, the Leapfrog error is below 1e-5 and Euler's is at least 1000× larger.
* Cap engagement ≈ 0 % inside the band → **held** iff every band step size's mean rate < 1 %.
* ``default`` and ``thrash`` identical → **held** iff the series are bit-identical.
* ``scramble`` disturbs the results → **held** iff its series differ from the default's at all.
* Overhead 2–3× from the second gradient → **held** iff exact/streaming Leapfrog time per step
  lies in [2, 3].

Next to the fixed-step tail slope, each slope claim states the slope at matched training
progress (``table.csv``'s iso-loss and per-unit-of-loss-decrease readings, see
:mod:`hamopt.diagnostics.isoloss`) and the verdict the same rule gives there
(:func:`matched_readings`); one more claim asks whether every negative tail slope stays negative
at matched training progress (:func:`negative_slopes_at_matched_progress`).

Slope claims are evaluated separately for each Leapfrog mode and for ΔH^int and ΔH^traj, since
the study's single number does not say which drift it measured; each row also says whether the
study's point estimate lies inside our interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import families

__all__ = ["Claim", "MatchedReading", "evaluate_claims", "matched_readings",
           "negative_slopes_at_matched_progress"]

HELD, NOT_HELD, NOT_TESTED = "held", "did not hold", "not tested"


@dataclass(frozen=True)
class Claim:
    """One claim of the study, what was measured, and the verdict under the stated rule."""

    topic: str
    study: str
    measured: str
    verdict: str
    rule: str


MATCHED = {"isoloss": "iso-loss", "per_loss": "per unit of loss decrease"}


@dataclass(frozen=True)
class MatchedReading:
    """A Table 1 slope read at matched training progress, judged by a claim's own rule."""

    reading: str
    n: int
    slope: float
    ci_low: float
    ci_high: float
    verdict: str

    def text(self) -> str:
        return (f"{MATCHED[self.reading]} {_f(self.slope)} [{_f(self.ci_low)}, {_f(self.ci_high)}] "
                f"(n = {self.n}): {self.verdict}")


def matched_readings(row: dict[str, Any], test: Any) -> tuple[MatchedReading, ...]:
    """The iso-loss and per-loss-decrease slopes of a ``table.csv`` row, each judged by ``test``
    (``(slope, lo, hi) -> bool``); ``not tested`` where the row has no interval for it."""
    out = []
    for reading in MATCHED:
        s, lo, hi = (row.get(f"{c}_{reading}", float("nan")) for c in ("slope", "ci_low", "ci_high"))
        finite = all(isinstance(v, float) and math.isfinite(v) for v in (s, lo, hi))
        verdict = (HELD if test(s, lo, hi) else NOT_HELD) if finite else NOT_TESTED
        out.append(MatchedReading(reading, int(row.get(f"n_{reading}") or 0), s, lo, hi, verdict))
    return tuple(out)


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _names(drift: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Spec entry name → (family type, mode) of the runs."""
    return {d["optimizer"]: (d.get("type") or "", d["mode"]) for d in drift}


def _of_family(names: dict[str, tuple[str, str]], optimizer: str, family: families.Family) -> bool:
    """Whether the runs of spec entry ``optimizer`` belong to ``family``."""
    return names.get(optimizer, ("", ""))[0] == family.name


def _slope_claims(
    analysis: Any,
    *,
    topic: str,
    study: str,
    family: families.Family,
    band: str,
    rule_name: str,
    point: float,
    test: Any,
) -> list[Claim]:
    names = _names(analysis.drift)
    rows = [
        t
        for t in analysis.table
        if t["band"] == band
        and t["drift"] in ("int", "traj")
        and _of_family(names, t["optimizer"], family)
    ]
    if not rows:
        return [
            Claim(
                topic, study, "no runs of this optimiser/band in this sweep", NOT_TESTED, rule_name
            )
        ]
    out = []
    for t in sorted(rows, key=lambda t: (t["optimizer"], t["drift"])):
        lo, hi, s = t["ci_low"], t["ci_high"], t["slope"]
        if not (math.isfinite(s) and math.isfinite(lo) and math.isfinite(hi)):
            out.append(
                Claim(
                    f"{topic} — {t['optimizer']}, ΔH^{t['drift']}",
                    study,
                    f"too few points for an interval (n = {t['n']})",
                    NOT_TESTED,
                    rule_name,
                )
            )
            continue
        inside = "inside" if lo <= point <= hi else "outside"
        measured = (
            f"slope {_f(s)}, 95% CI [{_f(lo)}, {_f(hi)}], bootstrap [{_f(t['boot_low'])}, "
            f"{_f(t['boot_high'])}], R² {_f(t['r2'], 2)}, n = {t['n']}; study's {point:+.3f} is {inside} our CI"
        )
        matched = "; ".join(m.text() for m in matched_readings(t, test))
        out.append(
            Claim(
                f"{topic} — {t['optimizer']}, ΔH^{t['drift']}",
                study,
                f"{measured}; at matched training progress: {matched}",
                HELD if test(s, lo, hi) else NOT_HELD,
                rule_name,
            )
        )
    return out


def evaluate_claims(analysis: Any) -> list[Claim]:
    claims: list[Claim] = []
    claims += _slope_claims(
        analysis,
        topic="Leapfrog, reference band: drift slope",
        study="−0.080, 95% CI [−0.302, +0.143] (contains 0)",
        family=families.LEAPFROG,
        band="band",
        rule_name="held iff our 95% CI contains 0",
        point=-0.080,
        test=lambda s, lo, hi: lo <= 0 <= hi,
    )
    claims += _slope_claims(
        analysis,
        topic="AdamW: drift slope",
        study="+0.218, 95% CI [+0.118, +0.319]",
        family=families.ADAMW,
        band="band",
        rule_name="held iff our 95% CI lies above 0",
        point=0.218,
        test=lambda s, lo, hi: lo > 0,
    )
    claims += _slope_claims(
        analysis,
        topic="SGD + momentum: drift slope",
        study="+0.777, 95% CI [+0.767, +0.786]",
        family=families.SGD,
        band="band",
        rule_name="held iff our 95% CI lies above 0",
        point=0.777,
        test=lambda s, lo, hi: lo > 0,
    )
    claims += _slope_claims(
        analysis,
        topic="Leapfrog, wide band: drift slope",
        study="+2.226 (no CI given)",
        family=families.LEAPFROG,
        band="wide",
        rule_name="held iff slope > 1 and our 95% CI lies above 0",
        point=2.226,
        test=lambda s, lo, hi: s > 1 and lo > 0,
    )
    claims += _band_trend(analysis)
    claims.append(negative_slopes_at_matched_progress(analysis))
    claims.append(_reversibility(analysis))
    claims.append(_cap(analysis))
    claims += _ablations(analysis)
    claims.append(_overhead(analysis))
    return claims


def _band_trend(analysis: Any) -> list[Claim]:
    study = "drift ≈ 0.0659 → 0.0564 nats from dt 0.002 to 0.0035 (falls)"
    rule = "held iff the seed-mean drift at the largest band dt is below that at the smallest"
    names = _names(analysis.drift)
    out = []
    for name in sorted(names):
        if not _of_family(names, name, families.LEAPFROG):
            continue
        rows = [
            d
            for d in analysis.drift
            if d["optimizer"] == name
            and d["band"] == "band"
            and d["ablation"] == "default"
            and d["status"] == "completed"
        ]
        if not rows:
            continue
        for kind in ("int", "traj"):
            steps = sorted({d["step_size"] for d in rows})
            mean = {
                s: _mean([d[f"drift_{kind}"] for d in rows if d["step_size"] == s]) for s in steps
            }
            lo, hi = mean[steps[0]], mean[steps[-1]]
            if len(steps) < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
                out.append(
                    Claim(
                        f"Leapfrog band trend — {name}, ΔH^{kind}",
                        study,
                        "not enough step sizes",
                        NOT_TESTED,
                        rule,
                    )
                )
                continue
            out.append(
                Claim(
                    f"Leapfrog band trend — {name}, ΔH^{kind}",
                    study,
                    f"{_f(lo, 4)} → {_f(hi, 4)} nats from dt {steps[0]:g} to {steps[-1]:g}",
                    HELD if hi < lo else NOT_HELD,
                    rule,
                )
            )
    return out or [Claim("Leapfrog band trend", study, "no Leapfrog band runs", NOT_TESTED, rule)]


def negative_slopes_at_matched_progress(analysis: Any) -> Claim:
    """Whether every tail slope whose CI lies below 0 (drift falling with the step size) keeps a
    CI below 0 at matched training progress (iso-loss and per unit of loss decrease)."""
    study = "drift falls with the step size (a negative slope) inside a band"
    rule = ("held iff every ΔH^int/ΔH^traj tail slope with its 95% CI below 0 also has its iso-loss "
            "CI below 0; the per-loss-decrease reading is reported beside it")
    below = [t for t in analysis.table if t["drift"] in ("int", "traj") and isinstance(t["ci_high"], float)
             and math.isfinite(t["ci_high"]) and t["ci_high"] < 0]
    if not below:
        return Claim("Negative slopes at matched progress", study, "no tail slope with its CI below 0",
                     NOT_TESTED, rule)
    parts, survives = [], []
    for t in sorted(below, key=lambda t: (t["optimizer"], t["band"], t["drift"])):
        readings = matched_readings(t, lambda s, lo, hi: hi < 0)
        survives.append(readings[0].verdict == HELD)
        parts.append(f"{t['optimizer']}/{t['band']} ΔH^{t['drift']} tail {_f(t['slope'])} → "
                     + ", ".join(m.text().replace(HELD, "still < 0").replace(NOT_HELD, "not < 0")
                                 for m in readings))
    verdict = HELD if all(survives) else NOT_HELD
    return Claim("Negative slopes at matched progress", study, "; ".join(parts), verdict, rule)


def _mean(xs: list[Any]) -> float:
    v = [x for x in xs if isinstance(x, float) and math.isfinite(x)]
    return sum(v) / len(v) if v else float("nan")


def _reversibility(analysis: Any) -> Claim:
    study = "normalised round-trip error 2.25e-8 (Leapfrog) vs 4.58e-2 (first order)"
    rule = "held iff in float32 at the largest N: Leapfrog < 1e-5 and Euler ≥ 1000× Leapfrog"
    rows = [r for r in analysis.reversibility if r.get("dtype") == "float32"]
    if not rows:
        return Claim(
            "Reversibility", study, "no float32 round trips in this sweep", NOT_TESTED, rule
        )
    n = max(r["steps"] for r in rows)
    lf = [r["theta_error"] for r in rows if r["integrator"] == families.LEAPFROG.name and r["steps"] == n]
    eu = [r["theta_error"] for r in rows if r["integrator"] == families.EULER.name and r["steps"] == n]
    if not lf or not eu:
        return Claim("Reversibility", study, "Leapfrog or Euler missing", NOT_TESTED, rule)
    measured = f"N = {n}, dt = {_f(float(rows[0]['dt']), 4)}: Leapfrog {lf[0]:.3g}, Euler {eu[0]:.3g} (float32)"
    f64 = [r for r in analysis.reversibility if r.get("dtype") == "float64" and r["steps"] == n]
    if f64:
        parts = ", ".join(f"{r['integrator']} {r['theta_error']:.3g}" for r in f64)
        measured += f"; float64: {parts}"
    ok = lf[0] < 1e-5 and eu[0] >= 1000 * max(lf[0], 1e-300)
    return Claim("Reversibility (round trip)", study, measured, HELD if ok else NOT_HELD, rule)


def _cap(analysis: Any) -> Claim:
    study = "cap engagement ≈ 0% inside the band"
    rule = "held iff the mean engagement rate is below 1% at every Leapfrog band step size"
    names = _names(analysis.drift)
    rows = [
        c
        for c in analysis.cap
        if c["band"] == "band" and _of_family(names, c["optimizer"], families.LEAPFROG)
    ]
    if not rows:
        return Claim("Energy cap in the band", study, "no Leapfrog band runs", NOT_TESTED, rule)
    worst = max(rows, key=lambda c: c["cap_rate"])
    measured = (
        f"largest mean rate {100 * worst['cap_rate']:.2f}% ({worst['optimizer']}, dt {worst['step_size']:g}); "
        f"{len(rows)} (optimiser, dt) cells"
    )
    return Claim(
        "Energy cap in the band",
        study,
        measured,
        HELD if worst["cap_rate"] < 0.01 else NOT_HELD,
        rule,
    )


def _ablations(analysis: Any) -> list[Claim]:
    out = []
    for name, study, rule, want_identical in (
        (
            "thrash",
            "`default` and `thrash` identical",
            "held iff bit-identical series (H, ΔH^int, L)",
            True,
        ),
        (
            "scramble",
            "`scramble` disturbs the fit",
            "held iff any per-step difference from default",
            False,
        ),
    ):
        rows = [a for a in analysis.ablations if a["ablation"] == name]
        if not rows:
            out.append(
                Claim(f"Memory ablation: {name}", study, "not run in this sweep", NOT_TESTED, rule)
            )
            continue
        ident = all(
            str(a["identical"]) in ("True", "true", "1") or a["identical"] is True for a in rows
        )
        worst = max(float(a["max_abs_diff_hamiltonian"]) for a in rows)
        measured = (
            f"max |ΔH series difference| = {worst:.3g} over {len(rows)} run(s); identical: {ident}"
        )
        ok = ident if want_identical else not ident
        out.append(
            Claim(f"Memory ablation: {name}", study, measured, HELD if ok else NOT_HELD, rule)
        )
    return out


def _overhead(analysis: Any) -> Claim:
    study = "overhead 2–3× (two gradients per step)"
    rule = "held iff exact/streaming Leapfrog wall time per step lies in [2, 3]"
    names = _names(analysis.drift)
    exact = [
        t["ms_per_step"]
        for t in analysis.timing
        if t["mode"] == "exact" and _of_family(names, t["optimizer"], families.LEAPFROG)
    ]
    stream = [
        t["ms_per_step"]
        for t in analysis.timing
        if t["mode"] == "streaming" and _of_family(names, t["optimizer"], families.LEAPFROG)
    ]
    if not exact or not stream:
        return Claim(
            "Exact-mode overhead", study, "needs Leapfrog runs in both modes", NOT_TESTED, rule
        )
    ratio = _mean(exact) / _mean(stream)
    measured = (
        f"{_mean(exact):.2f} ms/step exact vs {_mean(stream):.2f} ms/step streaming = {ratio:.2f}× "
        "(both with full energy bookkeeping; streaming adds one forward pass for δ)"
    )
    return Claim(
        "Exact-mode overhead", study, measured, HELD if 2 <= ratio <= 3 else NOT_HELD, rule
    )

r"""The reference study's claims (spec §7) set beside what a sweep measured, with a verdict each.

Three verdicts — **held**, **did not hold**, **inconclusive** — under rules fixed in advance and
printed in the report next to each verdict (:data:`VERDICT_RULE` is the general rule). A claim that
nothing in the sweep measures is marked *not tested* and counted apart.

**Slope claims.** Each claim is a region of slopes it allows; the verdict compares our 95 %
t-interval ``[lo, hi]`` with that region:

* *held* iff the whole interval lies inside the region;
* *did not hold* iff the whole interval lies outside it;
* *inconclusive* otherwise: the interval is wider than the difference it would need to resolve
  (it straddles the region's edge), so the data cannot tell.

The regions:

* Leapfrog, reference band, −0.080 [−0.302, +0.143], "no detectable growth": drift **flat or
  falling** = slope < :data:`FLAT_MARGIN` (+0.25). The margin is the smallest slope read as growth:
  about the smallest growth the study itself reports as growth (AdamW +0.218), so the study's own
  interval passes its own claim.
* AdamW +0.218 [+0.118, +0.319], SGD + momentum +0.777 [+0.767, +0.786], "drift grows with the
  step size": slope > 0.
* Leapfrog wide band +2.226, "steep growth": slope > :data:`STEEP_SLOPE` (1) **and** the study's
  +2.226 inside our interval; an interval that excludes +2.226 *did not hold* (a wide-band row is
  never "held" beside "the study's value lies outside our interval").

**Band trend** (0.0659 → 0.0564 nats from the smallest to the largest dt, "falls"): the difference
largest − smallest dt of the drift, paired by seed, with its 95 % t-interval; held iff it lies below
0, did not hold iff above 0, inconclusive if it contains 0 (one seed: the sign of the difference).

**Exact checks** (no sampling error to weigh): round trip (float32, largest N: Leapfrog < 1e-5 and
Euler ≥ 1000 × Leapfrog), cap engagement (< 1 % at every band step size), ``thrash`` bit-identical,
``scramble`` differs at all, exact/streaming time per step in [2, 3] — held or did not hold.

Slope claims are evaluated separately for each Leapfrog mode and for ΔH^int and ΔH^traj, since the
study's single number does not say which drift it measured.

Next to the fixed-step tail slope, each slope claim states the slope at matched training
progress (``table.csv``'s iso-loss and per-unit-of-loss-decrease readings, see
:mod:`hamopt.diagnostics.isoloss`) and the verdict the same region gives there
(:func:`matched_readings`); one more claim asks whether every negative tail slope stays negative
at matched training progress (:func:`negative_slopes_at_matched_progress`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import families

__all__ = [
    "FLAT_MARGIN",
    "HELD",
    "INCONCLUSIVE",
    "NOT_HELD",
    "NOT_TESTED",
    "STEEP_SLOPE",
    "VERDICTS",
    "VERDICT_RULE",
    "Claim",
    "MatchedReading",
    "SlopeRegion",
    "evaluate_claims",
    "matched_readings",
    "negative_slopes_at_matched_progress",
    "verdict_counts",
]

HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTED = "held", "did not hold", "inconclusive", "not tested"
VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE)
FLAT_MARGIN = 0.25
STEEP_SLOPE = 1.0
VERDICT_RULE = (
    "Fixed before looking at the numbers: a slope claim is a range of slopes. Held iff our whole 95% "
    "confidence interval lies inside that range; did not hold iff it lies wholly outside; inconclusive "
    "iff it straddles the range's edge — the interval is wider than the difference it would need to "
    f"resolve. \"Flat or falling\" means slope < +{FLAT_MARGIN:g} (the smallest slope read as growth); "
    f"\"grows\" means slope > 0; \"steep\" means slope > {STEEP_SLOPE:g} with the study's value inside our "
    "interval. Trends use the seed-paired difference's 95% interval the same way; exact checks "
    "(round trip, cap, ablations, overhead) are held or did not hold."
)


@dataclass(frozen=True)
class Claim:
    """One claim of the study, what was measured, and the verdict under the stated rule."""

    topic: str
    study: str
    measured: str
    verdict: str
    rule: str


@dataclass(frozen=True)
class SlopeRegion:
    """The slopes ``low < slope < high`` a claim allows; ``point``: a study value our interval
    must contain (None: the claim is about the range only)."""

    low: float = -math.inf
    high: float = math.inf
    point: float | None = None

    def verdict(self, ci_low: float, ci_high: float) -> str:
        """held / did not hold / inconclusive for our 95 % interval ``[ci_low, ci_high]``."""
        if self.point is not None and not ci_low <= self.point <= ci_high:
            return NOT_HELD
        if self.low < ci_low and ci_high < self.high:
            return HELD
        if ci_high <= self.low or ci_low >= self.high:
            return NOT_HELD
        return INCONCLUSIVE

    def describe(self) -> str:
        def num(v: float) -> str:
            return "0" if v == 0 else f"{v:+g}"

        if math.isinf(self.low):
            span = f"slope < {num(self.high)}"
        elif math.isinf(self.high):
            span = f"slope > {num(self.low)}"
        else:
            span = f"{num(self.low)} < slope < {num(self.high)}"
        held = f"held iff our 95% CI lies wholly in {span}"
        if self.point is not None:
            held += f" and contains {self.point:+.3f}"
            return f"{held}; did not hold iff it lies wholly outside or excludes {self.point:+.3f}; else inconclusive"
        return f"{held}; did not hold iff wholly outside; inconclusive iff it straddles the edge"


def verdict_counts(claims: Sequence[Claim]) -> str:
    """"8 held, 3 did not hold, 10 inconclusive" (and ", 2 not tested" when any)."""
    verdicts = [c.verdict for c in claims]
    text = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS)
    untested = verdicts.count(NOT_TESTED)
    return text + (f", {untested} not tested" if untested else "")


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


def matched_readings(row: dict[str, Any], judge: Callable[[float, float], str]) -> tuple[MatchedReading, ...]:
    """The iso-loss and per-loss-decrease slopes of a ``table.csv`` row, each judged by ``judge``
    (``(ci_low, ci_high) -> verdict``, a claim's own rule); ``not tested`` where the row has no
    interval for it."""
    out = []
    for reading in MATCHED:
        s, lo, hi = (row.get(f"{c}_{reading}", float("nan")) for c in ("slope", "ci_low", "ci_high"))
        finite = all(isinstance(v, float) and math.isfinite(v) for v in (s, lo, hi))
        verdict = judge(lo, hi) if finite else NOT_TESTED
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


def _where(point: float, lo: float, hi: float) -> str:
    if point < lo:
        return f"the study's {point:+.3f} lies below our CI"
    if point > hi:
        return f"the study's {point:+.3f} lies above our CI"
    return f"the study's {point:+.3f} lies inside our CI"


def _slope_claims(
    analysis: Any,
    *,
    topic: str,
    study: str,
    family: families.Family,
    band: str,
    region: SlopeRegion,
    point: float,
    kinds: Sequence[str] = ("int", "traj"),
    verdict: Callable[[float, float], str] | None = None,
) -> list[Claim]:
    """One claim per spec entry of ``family`` in ``band`` and drift kind: our slope's 95 % CI
    against ``region`` (or ``verdict(ci_low, ci_high)`` if given)."""
    names = _names(analysis.drift)
    rule = region.describe()
    judge = verdict or region.verdict
    rows = [
        t
        for t in analysis.table
        if t["band"] == band and t["drift"] in kinds and _of_family(names, t["optimizer"], family)
    ]
    if not rows:
        return [Claim(topic, study, "no runs of this optimiser/band in this sweep", NOT_TESTED, rule)]
    out = []
    for t in sorted(rows, key=lambda t: (t["optimizer"], t["drift"])):
        lo, hi, s = t["ci_low"], t["ci_high"], t["slope"]
        name = f"{topic} — {t['optimizer']}, ΔH^{t['drift']}"
        if not (math.isfinite(s) and math.isfinite(lo) and math.isfinite(hi)):
            out.append(Claim(name, study, f"too few points for an interval (n = {t['n']})", NOT_TESTED, rule))
            continue
        measured = (
            f"slope {s:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] (width {hi - lo:.2f}), bootstrap "
            f"[{_f(t['boot_low'])}, {_f(t['boot_high'])}], R² {_f(t['r2'], 2)}, n = {t['n']}; "
            f"{_where(point, lo, hi)}"
        )
        matched = "; ".join(m.text() for m in matched_readings(t, judge))
        measured = f"{measured}; at matched training progress: {matched}"
        out.append(Claim(name, study, measured, judge(lo, hi), rule))
    return out


def evaluate_claims(analysis: Any) -> list[Claim]:
    """Every claim of spec §7 against ``analysis`` (see the module docstring for the rules)."""
    claims: list[Claim] = []
    claims += _slope_claims(
        analysis,
        topic="Leapfrog, reference band: drift slope",
        study="−0.080, 95% CI [−0.302, +0.143]: no detectable growth (flat or falling)",
        family=families.LEAPFROG,
        band="band",
        region=SlopeRegion(high=FLAT_MARGIN),
        point=-0.080,
    )
    claims += _slope_claims(
        analysis,
        topic="AdamW: drift slope",
        study="+0.218, 95% CI [+0.118, +0.319]: drift grows with lr",
        family=families.ADAMW,
        band="band",
        region=SlopeRegion(low=0.0),
        point=0.218,
    )
    claims += _slope_claims(
        analysis,
        topic="SGD + momentum: drift slope",
        study="+0.777, 95% CI [+0.767, +0.786]: drift grows with lr",
        family=families.SGD,
        band="band",
        region=SlopeRegion(low=0.0),
        point=0.777,
    )
    claims += _slope_claims(
        analysis,
        topic="Leapfrog, wide band: drift slope",
        study="+2.226 (no CI given): steep growth",
        family=families.LEAPFROG,
        band="wide",
        region=SlopeRegion(low=STEEP_SLOPE, point=2.226),
        point=2.226,
    )
    claims += _band_trend(analysis)
    claims.append(negative_slopes_at_matched_progress(analysis))
    claims.append(_reversibility(analysis))
    claims.append(_cap(analysis))
    claims += _ablations(analysis)
    claims.append(_overhead(analysis))
    return claims


# Student's t 0.975 quantiles for 1 … 10 degrees of freedom (paired seed differences)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int]:
    """Mean of ``b[s] − a[s]`` over the seeds in both, its 95 % t-interval, and the seed count
    (one seed: the interval is the difference itself)."""
    diffs = [b[s] - a[s] for s in sorted(a.keys() & b.keys()) if math.isfinite(a[s] - b[s])]
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(diffs) / n
    if n == 1:
        return mean, mean, mean, 1
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _band_trend(analysis: Any) -> list[Claim]:
    study = "drift ≈ 0.0659 → 0.0564 nats from dt 0.002 to 0.0035 (falls)"
    rule = ("held iff the seed-paired difference (largest − smallest band dt) has its 95% CI below 0; "
            "did not hold iff above 0; inconclusive iff it contains 0")
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
        steps = sorted({d["step_size"] for d in rows})
        for kind in ("int", "traj"):
            topic = f"Leapfrog band trend — {name}, ΔH^{kind}"
            per_seed = {
                s: {d.get("seed", 0): float(d[f"drift_{kind}"]) for d in rows if d["step_size"] == s}
                for s in steps
            }
            mean, lo, hi, n = _paired_difference(per_seed[steps[0]], per_seed[steps[-1]])
            if len(steps) < 2 or n == 0:
                out.append(Claim(topic, study, "not enough step sizes", NOT_TESTED, rule))
                continue
            first = _mean(list(per_seed[steps[0]].values()))
            last = _mean(list(per_seed[steps[-1]].values()))
            verdict = HELD if hi < 0 else NOT_HELD if lo > 0 else INCONCLUSIVE
            measured = (
                f"{_f(first, 4)} → {_f(last, 4)} nats (seed means) from dt {steps[0]:.4g} to "
                f"{steps[-1]:.4g}; paired difference {mean:+.3g}"
                + (f", 95% CI [{lo:+.3g}, {hi:+.3g}] over {n} seeds" if n > 1 else " (one seed)")
            )
            out.append(Claim(topic, study, measured, verdict, rule))
    return out or [Claim("Leapfrog band trend", study, "no Leapfrog band runs", NOT_TESTED, rule)]


def negative_slopes_at_matched_progress(analysis: Any) -> Claim:
    """Whether every tail slope whose CI lies below 0 (drift falling with the step size) keeps a
    CI below 0 at matched training progress (iso-loss; per unit of loss decrease beside it)."""
    study = "drift falls with the step size (a negative slope) inside a band"
    rule = ("held iff every ΔH^int/ΔH^traj tail slope with its 95% CI below 0 also has its iso-loss CI below 0; "
            "did not hold iff any such iso-loss CI lies at or above 0; else (an iso-loss CI straddles 0 or is "
            "missing) inconclusive; the per-loss-decrease reading is reported beside it")
    below = [t for t in analysis.table if t["drift"] in ("int", "traj") and isinstance(t["ci_high"], float)
             and math.isfinite(t["ci_high"]) and t["ci_high"] < 0]
    if not below:
        return Claim("Negative slopes at matched progress", study, "no tail slope with its CI below 0",
                     NOT_TESTED, rule)
    negative = SlopeRegion(high=0.0)
    words = {HELD: "still < 0", NOT_HELD: "not < 0", INCONCLUSIVE: "CI straddles 0", NOT_TESTED: "no value"}
    parts, isoloss = [], []
    for t in sorted(below, key=lambda t: (t["optimizer"], t["band"], t["drift"])):
        readings = matched_readings(t, negative.verdict)
        isoloss.append(readings[0].verdict)
        parts.append(f"{t['optimizer']}/{t['band']} ΔH^{t['drift']} tail {_f(t['slope'])} → "
                     + ", ".join(m.text().rsplit(": ", 1)[0] + ": " + words[m.verdict] for m in readings))
    if all(v == HELD for v in isoloss):
        verdict = HELD
    elif NOT_HELD in isoloss:
        verdict = NOT_HELD
    else:
        verdict = INCONCLUSIVE
    return Claim("Negative slopes at matched progress", study, "; ".join(parts), verdict, rule)


def _mean(xs: list[Any]) -> float:
    v = [x for x in xs if isinstance(x, float) and math.isfinite(x)]
    return sum(v) / len(v) if v else float("nan")


def _reversibility(analysis: Any) -> Claim:
    study = "normalised round-trip error 2.25e-8 (Leapfrog) vs 4.58e-2 (first order)"
    rule = "held iff in float32 at the largest N: Leapfrog < 1e-5 and Euler ≥ 1000× Leapfrog"
    rows = [r for r in analysis.reversibility if r.get("dtype") == "float32"]
    if not rows:
        return Claim("Reversibility (round trip)", study, "no float32 round trips in this sweep", NOT_TESTED, rule)
    n = max(r["steps"] for r in rows)
    lf = [r["theta_error"] for r in rows if r["integrator"] == families.LEAPFROG.name and r["steps"] == n]
    eu = [r["theta_error"] for r in rows if r["integrator"] == families.EULER.name and r["steps"] == n]
    if not lf or not eu:
        return Claim("Reversibility (round trip)", study, "Leapfrog or Euler missing", NOT_TESTED, rule)
    measured = f"N = {n}, dt = {float(rows[0]['dt']):.4g}: Leapfrog {lf[0]:.3g}, Euler {eu[0]:.3g} (float32)"
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
        f"largest mean rate {100 * worst['cap_rate']:.2f}% ({worst['optimizer']}, dt {worst['step_size']:.4g}); "
        f"{len(rows)} (optimiser, dt) cells"
    )
    return Claim(
        "Energy cap in the band", study, measured, HELD if worst["cap_rate"] < 0.01 else NOT_HELD, rule
    )


def _ablations(analysis: Any) -> list[Claim]:
    out = []
    for name, study, rule, want_identical in (
        ("thrash", "`default` and `thrash` identical", "held iff bit-identical series (H, ΔH^int, L)", True),
        ("scramble", "`scramble` disturbs the fit", "held iff any per-step difference from default", False),
    ):
        rows = [a for a in analysis.ablations if a["ablation"] == name]
        if not rows:
            out.append(Claim(f"Memory ablation: {name}", study, "not run in this sweep", NOT_TESTED, rule))
            continue
        ident = all(
            str(a["identical"]) in ("True", "true", "1") or a["identical"] is True for a in rows
        )
        worst = max(float(a["max_abs_diff_hamiltonian"]) for a in rows)
        measured = (
            "identical: max |Δ| = 0" if worst == 0 and ident
            else f"max |H series difference| = {worst:.3g}"
        ) + f" over {len(rows)} run(s)"
        ok = ident if want_identical else not ident
        out.append(Claim(f"Memory ablation: {name}", study, measured, HELD if ok else NOT_HELD, rule))
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
        return Claim("Exact-mode overhead", study, "needs Leapfrog runs in both modes", NOT_TESTED, rule)
    ratio = _mean(exact) / _mean(stream)
    measured = (
        f"{_mean(exact):.2f} ms/step exact vs {_mean(stream):.2f} ms/step streaming = {ratio:.2f}× "
        "(both with full energy bookkeeping; streaming adds one forward pass for δ)"
    )
    return Claim("Exact-mode overhead", study, measured, HELD if 2 <= ratio <= 3 else NOT_HELD, rule)

"""Three verdicts under a rule fixed in advance: a wide interval is inconclusive, never "held"."""

import math
from types import SimpleNamespace

import pytest

from hamopt.report.claims import (
    FLAT_MARGIN,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_TESTED,
    SlopeRegion,
    evaluate_claims,
    verdict_counts,
)

FLAT = SlopeRegion(high=FLAT_MARGIN)
GROWS = SlopeRegion(low=0.0)
STEEP = SlopeRegion(low=1.0, point=2.226)


@pytest.mark.parametrize(
    ("region", "ci", "verdict"),
    [
        (FLAT, (-0.35, 3.55), INCONCLUSIVE),  # +1.60, CI [−0.35, +3.55]: wide, straddles the margin
        (FLAT, (-0.302, 0.143), HELD),  # the study's own interval passes its own claim
        (FLAT, (-1.39, -0.84), HELD),  # clearly falling
        (FLAT, (1.14, 1.40), NOT_HELD),  # clearly growing
        (GROWS, (0.118, 0.319), HELD),
        (GROWS, (-0.244, -0.006), NOT_HELD),
        (GROWS, (-0.03, 0.37), INCONCLUSIVE),
        (STEEP, (1.92, 2.84), HELD),
        (STEEP, (1.02, 1.82), NOT_HELD),  # steep, but the study's +2.226 lies outside
        (STEEP, (0.5, 3.0), INCONCLUSIVE),
        (STEEP, (-0.5, 0.9), NOT_HELD),
    ],
)
def test_slope_region_verdict(region, ci, verdict):
    assert region.verdict(*ci) == verdict


def _analysis(rows, drift=()):
    return SimpleNamespace(drift=list(drift), table=rows, cap=[], reversibility=[], ablations=[], timing=[])


def _row(name, band, kind, slope, lo, hi):
    return {"optimizer": name, "band": band, "drift": kind, "slope": slope, "ci_low": lo, "ci_high": hi,
            "boot_low": lo, "boot_high": hi, "r2": 0.25, "n": 12}


def _drift(name, type_name, band, steps_and_drifts):
    return [
        {"optimizer": name, "type": type_name, "mode": "exact", "band": band, "ablation": "default",
         "status": "completed", "step_size": s, "seed": seed, "drift_int": d, "drift_traj": d}
        for s, seed, d in steps_and_drifts
    ]


def test_a_wide_band_row_is_never_held_beside_a_study_value_outside_our_interval():
    drift = _drift("lf", "leapfrog", "wide", [(1.0, 0, 0.1), (2.0, 0, 0.5)])
    rows = [_row("lf", "wide", "int", 1.417, 1.017, 1.817), _row("lf", "wide", "traj", 2.1, 1.5, 2.7)]
    claims = [c for c in evaluate_claims(_analysis(rows, drift)) if c.topic.startswith("Leapfrog, wide band")]
    for c in claims:
        outside = "lies above our CI" in c.measured or "lies below our CI" in c.measured
        assert not (c.verdict == HELD and outside), c
    assert [c.verdict for c in claims] == [NOT_HELD, HELD]


def test_the_issue_example_is_inconclusive_and_counted_so():
    drift = _drift("lf", "leapfrog", "band", [(0.5, 0, 0.01), (0.8, 0, 0.02)])
    rows = [_row("lf", "band", "traj", 1.60, -0.35, 3.55), _row("lf", "band", "int", 1.2, 1.1, 1.4)]
    claims = evaluate_claims(_analysis(rows, drift))
    by_topic = {c.topic: c for c in claims}
    c = by_topic["Leapfrog, reference band: drift slope — lf, ΔH^traj"]
    assert c.verdict == INCONCLUSIVE and "straddles" in c.rule
    counts = verdict_counts(claims)
    assert counts.startswith(f"{sum(c.verdict == HELD for c in claims)} held, ")
    assert "inconclusive" in counts


def test_band_trend_uses_the_seed_paired_difference():
    # falls in every seed → held; mixed signs over seeds → inconclusive
    falls = _drift("lf", "leapfrog", "band", [(0.5, s, 0.07 + 0.001 * s) for s in range(3)]
                   + [(0.8, s, 0.05 + 0.001 * s) for s in range(3)])
    mixed = _drift("lf", "leapfrog", "band", [(0.5, 0, 0.07), (0.5, 1, 0.05), (0.5, 2, 0.06),
                                              (0.8, 0, 0.05), (0.8, 1, 0.07), (0.8, 2, 0.061)])
    for drift, want in ((falls, HELD), (mixed, INCONCLUSIVE)):
        claims = {c.topic: c for c in evaluate_claims(_analysis([], drift))}
        assert claims["Leapfrog band trend — lf, ΔH^int"].verdict == want


def test_not_tested_is_counted_apart_only_when_present():
    claims = evaluate_claims(_analysis([]))
    assert all(c.verdict == NOT_TESTED for c in claims)
    assert verdict_counts(claims) == f"0 held, 0 did not hold, 0 inconclusive, {len(claims)} not tested"
    assert math.isinf(FLAT.low)

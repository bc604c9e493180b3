"""The report's readings at matched training progress: data the claims use, and the verdict."""

import math
from types import SimpleNamespace

from hamopt.report.claims import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_TESTED,
    SlopeRegion,
    evaluate_claims,
    matched_readings,
    negative_slopes_at_matched_progress,
)

NAN = float("nan")


def _row(opt, drift, tail, iso, per):
    row = {"optimizer": opt, "band": "band", "drift": drift, "n": 12, "r2": 0.9, "boot_low": NAN,
           "boot_high": NAN}
    row.update(zip(("slope", "ci_low", "ci_high"), tail))
    for name, values in (("isoloss", iso), ("per_loss", per)):
        row.update({f"slope_{name}": values[0], f"ci_low_{name}": values[1], f"ci_high_{name}": values[2],
                    f"n_{name}": 12})
    return row


def test_matched_readings_judge_each_reading_by_the_claims_rule():
    row = _row("sgd", "traj", (-1.1, -1.3, -0.9), (0.2, -0.1, 0.5), (NAN, NAN, NAN))
    negative = SlopeRegion(high=0.0).verdict
    iso, per = matched_readings(row, negative)
    assert (iso.reading, iso.verdict, iso.slope) == ("isoloss", INCONCLUSIVE, 0.2)  # CI straddles 0
    assert per.verdict == NOT_TESTED and "per unit of loss decrease" in per.text()
    above = dict(row, ci_low_isoloss=0.1)
    assert matched_readings(above, negative)[0].verdict == NOT_HELD
    below = dict(row, slope_isoloss=-0.3, ci_low_isoloss=-0.5, ci_high_isoloss=-0.1)
    assert matched_readings(below, negative)[0].verdict == HELD


def test_negative_slope_claim_says_whether_it_survives_matched_progress():
    falls = _row("sgd", "traj", (-1.1, -1.3, -0.9), (-0.8, -1.0, -0.6), (0.1, -0.2, 0.4))
    flat = _row("sgd", "int", (0.1, -0.2, 0.4), (NAN,) * 3, (NAN,) * 3)
    claim = negative_slopes_at_matched_progress(SimpleNamespace(table=[falls, flat]))
    assert claim.verdict == HELD and "still < 0" in claim.measured and "CI straddles 0" in claim.measured
    gone = dict(falls, slope_isoloss=0.2, ci_low_isoloss=0.1, ci_high_isoloss=0.3)
    assert negative_slopes_at_matched_progress(SimpleNamespace(table=[gone])).verdict == NOT_HELD
    straddles = dict(falls, ci_high_isoloss=0.3)
    assert negative_slopes_at_matched_progress(SimpleNamespace(table=[straddles])).verdict == INCONCLUSIVE
    assert negative_slopes_at_matched_progress(SimpleNamespace(table=[flat])).verdict == NOT_TESTED


def test_slope_claims_carry_the_matched_readings():
    rows = [_row("sgd-momentum", k, (0.5, 0.2, 0.8), (0.3, 0.1, 0.5), (NAN,) * 3) for k in ("int", "traj")]
    drift = [{"optimizer": "sgd-momentum", "type": "sgd", "mode": "baseline", "band": "band",
              "ablation": "default", "status": "completed", "step_size": 0.1, "drift_int": 1.0,
              "drift_traj": 1.0}]
    analysis = SimpleNamespace(table=rows, drift=drift, reversibility=[], cap=[], ablations=[], timing=[])
    sgd = [c for c in evaluate_claims(analysis) if c.topic.startswith("SGD + momentum")]
    assert len(sgd) == 2 and all("iso-loss 0.300 [0.100, 0.500]" in c.measured and c.verdict == HELD for c in sgd)
    assert not math.isnan(rows[0]["slope_isoloss"])

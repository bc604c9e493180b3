"""Band discovery's pure rules: regime classification, local fits, refinement, band map."""

import math

import numpy as np
import pytest

from hamopt.experiments.bands_fit import (
    GridPoint,
    band_map,
    classify,
    fit_points,
    local_fits,
    propose_fractions,
)


@pytest.mark.parametrize(
    ("ci", "regime"),
    [
        ((0.8, 0.2, 1.4), "positive"),
        ((-0.8, -1.4, -0.2), "negative"),
        ((0.05, -0.3, 0.4), "flat"),
        ((0.05, -0.6, 0.7), "unresolved"),  # contains 0 but wider than the tolerance
        ((float("nan"),) * 3, "unresolved"),
        ((0.3, 0.1, 0.5), "positive"),  # excludes 0: the sign wins over the tolerance
    ],
)
def test_classify(ci, regime):
    assert classify(*ci, tolerance=0.5) == regime


def test_classify_refuses_a_non_positive_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        classify(0.0, -0.1, 0.1, tolerance=0.0)


def _grid(fractions, diverged=()):
    return [GridPoint(f, f * 10, 3, 3 if f in diverged else 0) for f in fractions]


def _peaked(members, peak=0.3, seeds=3):
    """drift ∝ s^+2 below the peak and s^-1 above it, a little seed noise."""
    rng = np.random.default_rng(0)
    pts = []
    for g in members:
        f = g.fraction
        base = (f / peak) ** 2 if f <= peak else (f / peak) ** -1
        pts += [(g.step_size, base * math.exp(rng.normal(0, 0.01))) for _ in range(seeds)]
    return pts


GRID = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.4]


def test_local_fits_follow_the_local_sign_and_skip_unstable_windows():
    grid = _grid(GRID, diverged=(2.4,))
    fits = local_fits(grid, _peaked, window=3, tolerance=0.5)
    assert [f.center for f in fits] == [0.1, 0.2, 0.4, 0.8]  # the window reaching 2.4 is left out
    assert fits[0].regime == "positive" and fits[0].slope == pytest.approx(2.0, abs=0.05)
    assert fits[-1].regime == "negative" and fits[-1].slope == pytest.approx(-1.0, abs=0.05)
    assert all(f.n == 9 for f in fits)


def test_refinement_bisects_in_log_step_size_where_the_sign_changes():
    grid = _grid(GRID, diverged=(2.4,))
    fits = local_fits(grid, _peaked, window=3, tolerance=0.5)
    signs = [math.copysign(1, f.slope) for f in fits]
    assert signs == [1, 1, -1, -1]
    new = propose_fractions(grid, [fits], min_ratio=1.05, refine_edge=False)
    assert new == [pytest.approx(math.sqrt(0.2 * 0.4), rel=1e-3)]
    with_edge = propose_fractions(grid, [fits], min_ratio=1.05, refine_edge=True)
    assert with_edge[1] == pytest.approx(math.sqrt(1.6 * 2.4), rel=1e-3)  # sign change first
    assert propose_fractions(grid, [fits], min_ratio=2.01, refine_edge=True) == []  # gaps too narrow


def test_refinement_converges_on_the_peak():
    fractions = [0.05, 0.1, 0.2, 0.4, 0.8]
    for _ in range(4):
        grid = _grid(fractions)
        new = propose_fractions(grid, [local_fits(grid, _peaked, window=3, tolerance=0.5)],
                                min_ratio=1.05, refine_edge=False)
        if not new:
            break
        fractions = sorted(fractions + new)
    near = [f for f in fractions if 0.2 < f < 0.4]
    assert near and min(abs(math.log(f / 0.3)) for f in near) < abs(math.log(0.2 / 0.3))


def test_band_map_merges_regimes_and_puts_the_unstable_sizes_last():
    grid = _grid(GRID, diverged=(2.4,))
    fits = local_fits(grid, _peaked, window=3, tolerance=0.5)
    bands = band_map(grid, fits, _peaked)
    assert [b.regime for b in bands] == ["positive", "unresolved", "negative", "unstable"]
    pos, mixed, neg, unstable = bands
    assert (pos.fraction_low, pos.fraction_high, pos.local_fits) == (0.1, 0.2, 2)
    assert (pos.step_low, pos.step_high) == (1.0, 2.0)
    assert pos.members == (0.05, 0.1, 0.2, 0.4) and pos.ci_low > 0 and pos.n == 12
    assert mixed.ci_low < 0 < mixed.ci_high  # the window straddling the peak
    assert neg.ci_high < 0 and neg.slope == pytest.approx(-1.0, abs=0.05)
    assert (unstable.fraction_low, unstable.diverged, unstable.n) == (2.4, 3, 3)


def test_fit_points_needs_two_distinct_step_sizes():
    assert math.isnan(fit_points([(1.0, 2.0), (1.0, 3.0)])[1])
    n, slope, lo, hi = fit_points([(1.0, 1.0), (2.0, 4.0), (4.0, 16.0), (4.0, 16.5)])
    assert n == 4 and slope == pytest.approx(2.0, abs=0.02) and lo < slope < hi


def test_window_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        local_fits(_grid([0.1, 0.2, 0.4, 0.8]), _peaked, window=4, tolerance=0.5)

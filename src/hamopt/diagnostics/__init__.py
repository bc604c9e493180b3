"""Dynamics diagnostics: drift statistics and scaling fits, reversibility round trips,
memory ablations, energy-cap statistics, Noether charges, the stability monitor (preconditioned
sharpness against the optimiser's threshold, Hutchinson trace)."""

from .ablations import Ablation, Scramble, Thrash, make_ablation, max_abs_difference
from .cap import MeanCI, engagement_rate, mean_ci
from .drift import SlopeFit, fit_loglog_slope, tail_median_abs
from .noether import HeadCharge, NoetherMonitor, NoetherRecord, noether_charges, rescale_charges
from .reversibility import RoundTrip, round_trip
from .stability import HessianTrace, Sharpness, hessian_trace, sharpness
from .thresholds import Threshold, threshold_for

__all__ = [
    "Ablation", "MeanCI", "Scramble", "Thrash", "engagement_rate", "make_ablation", "max_abs_difference",
    "mean_ci",
    "HeadCharge", "NoetherMonitor", "NoetherRecord", "RoundTrip", "SlopeFit", "fit_loglog_slope",
    "noether_charges", "rescale_charges", "round_trip", "tail_median_abs",
    "HessianTrace", "Sharpness", "Threshold", "hessian_trace", "sharpness", "threshold_for",
]

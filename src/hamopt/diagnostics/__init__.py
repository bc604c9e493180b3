"""Dynamics diagnostics: drift statistics and scaling fits, reversibility round trips."""

from .drift import SlopeFit, fit_loglog_slope, tail_median_abs
from .noether import HeadCharge, NoetherMonitor, NoetherRecord, noether_charges, rescale_charges
from .reversibility import RoundTrip, round_trip

__all__ = [
    "HeadCharge", "NoetherMonitor", "NoetherRecord", "RoundTrip", "SlopeFit", "fit_loglog_slope",
    "noether_charges", "rescale_charges", "round_trip", "tail_median_abs",
]

"""Dynamics diagnostics: drift statistics and scaling fits, reversibility round trips."""

from .drift import SlopeFit, fit_loglog_slope, tail_median_abs
from .reversibility import RoundTrip, round_trip

__all__ = ["RoundTrip", "SlopeFit", "fit_loglog_slope", "round_trip", "tail_median_abs"]

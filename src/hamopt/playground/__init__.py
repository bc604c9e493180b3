r"""The optimiser playground: run an optimiser on a 2-D landscape and measure its energy.

Three computations, each returning a frozen dataclass that the web page (or a notebook) draws:

* :func:`run_trajectory`: the path θ_0 … θ_T of one optimiser, the per-step L, K, H on the
  step's own batch, the integrator change ΔH^int_t, the trajectory change ΔH^traj_t and the
  resampling term δ_t (spec §6, as :class:`hamopt.energy.EnergyTracker` defines them; the run
  feeds the optimiser analytic gradients and reads its energy leanly, see
  :mod:`hamopt.playground.stepping`, and ``reference=True`` takes the tracker itself), the
  tail-median drifts (:func:`hamopt.diagnostics.tail_median_abs`) and, if it happened, the
  divergence step;
* :func:`drift_scan`: drift(dt) over a geometric grid of step sizes and the log-log slope with
  its 95 % t-interval (:func:`hamopt.diagnostics.fit_loglog_slope`);
* :func:`reversibility`: the momentum-flip round trip of Leapfrog and Euler
  (:func:`hamopt.diagnostics.round_trip`) with both paths.

The optimisers offered are the families of :mod:`hamopt.families` that carry a playground entry
(:class:`hamopt.families.PlaygroundEntry`). Every numeric input is checked in
:class:`PlaygroundConfig` before any compute; a bad value raises :class:`PlaygroundInputError`
naming the field and its allowed range. A run that leaves the landscape (``‖θ‖ > ESCAPE_RADIUS``,
``|H| > ENERGY_LIMIT``) or meets a non-finite loss or gradient is stopped and reported as
diverged with its step; it is never an exception.

Scaling to expect on a smooth quadratic with γ = 0 and the cap off: leapfrog conserves a
modified energy exactly, so ``H_t − H_0 = O(dt²)`` (bounded, no secular drift) and the per-step
change ``ΔH_t`` — which the spec's drift measures — is ``O(dt³)``: slope ≈ 3 for the drift,
≈ 2 for the energy error ``|H_t − H_0|``. Explicit Euler gains energy every step:
``ΔH_t = O(dt²)``.
"""

from .config import (
    DEFAULT_OPTIMIZER,
    ENERGY_LIMIT,
    ESCAPE_RADIUS,
    MAX_SCAN_POINTS,
    MAX_STEPS,
    OPTIMIZERS,
    OptimizerInfo,
    PlaygroundConfig,
    PlaygroundInputError,
    suggested_config,
)
from .roundtrip import ReversibilityPath, ReversibilityResult, reversibility
from .trajectory import DriftScan, Trajectory, drift_scan, run_trajectory, scan_step_sizes

__all__ = [
    "DEFAULT_OPTIMIZER",
    "ENERGY_LIMIT",
    "ESCAPE_RADIUS",
    "MAX_SCAN_POINTS",
    "MAX_STEPS",
    "OPTIMIZERS",
    "DriftScan",
    "OptimizerInfo",
    "PlaygroundConfig",
    "PlaygroundInputError",
    "ReversibilityPath",
    "ReversibilityResult",
    "Trajectory",
    "drift_scan",
    "reversibility",
    "run_trajectory",
    "scan_step_sizes",
    "suggested_config",
]

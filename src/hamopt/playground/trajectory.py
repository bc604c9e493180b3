r"""Playground runs: one trajectory with its energy series, and the drift scan over step sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..diagnostics import SlopeFit, fit_loglog_slope, tail_median_abs
from ..energy import conventions as C
from ..landscapes import Landscape
from .config import (
    MAX_SCAN_POINTS,
    PlaygroundConfig,
    PlaygroundInputError,
    _integer,
    _number,
)
from .reference import tracked_steps
from .stepping import fast_steps, reads_stats

__all__ = ["DriftScan", "Trajectory", "drift_scan", "run_trajectory", "scan_step_sizes"]


# ---------------------------------------------------------------------- trajectory
@dataclass(frozen=True)
class Trajectory:
    """One run. Series indexed by step; ``None`` where a quantity is not defined.

    ``theta[t]`` is θ_t (length T + 1, T = steps actually run). ``loss``, ``kinetic``,
    ``hamiltonian`` hold L, K, H at (θ_t, p_t) on batch B_t for t < T and, at index T, the
    state after the last step on B_{T−1}. ``delta_h_int[t]``, ``delta_h_traj[t]`` and
    ``resampling[t]`` are ΔH^int_t, ΔH^traj_t and δ_t (length T; the last ΔH^traj and δ need
    the batch B_T and are None; on deterministic landscapes δ = 0 and ΔH^traj = ΔH^int).
    """

    config: PlaygroundConfig
    theta: tuple[tuple[float, float], ...]
    loss: tuple[float, ...]
    kinetic: tuple[float, ...]
    hamiltonian: tuple[float, ...]
    delta_h_int: tuple[float | None, ...]
    delta_h_traj: tuple[float | None, ...]
    resampling: tuple[float | None, ...]
    cap_engagements: int
    diverged_at: int | None
    divergence: str | None
    drift_int: float
    drift_traj: float
    drift_resampling: float
    energy_error: float
    optimizer_label: str = ""
    step_label: str = "dt"
    noisy: bool = False

    @property
    def steps_run(self) -> int:
        return len(self.delta_h_int)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def _point(landscape: Landscape) -> tuple[float, float]:
    x, y = landscape.theta.detach().tolist()
    return float(x), float(y)


def run_trajectory(config: PlaygroundConfig, *, reference: bool = False) -> Trajectory:
    """Run ``config.steps`` steps of ``config.optimizer`` on ``config.landscape`` from rest.

    The optimiser gets analytic gradients and its energy is read with lean bookkeeping
    (:mod:`hamopt.playground.stepping`); ``reference=True`` takes the autograd closure and the
    :class:`~hamopt.energy.EnergyTracker` instead (:mod:`hamopt.playground.reference`), which
    gives the same trajectory and energies to float64 rounding, about twice as slowly.
    """
    landscape = config.landscape_module()
    info = config.info
    try:
        opt = info.build([landscape.theta], config)
    except (TypeError, ValueError) as exc:
        raise PlaygroundInputError(info.label, str(exc)) from exc
    fast = not reference and (reads_stats(opt) or not C.convention_for(opt).self_reported)
    run = fast_steps if fast else tracked_steps
    theta, records, diverged_at, divergence = run(config, landscape, opt)
    theta = theta[: len(records) + 1]
    loss = [r.loss for r in records]
    kinetic = [r.kinetic_before for r in records]
    ham = [r.hamiltonian_before for r in records]
    if records:
        loss.append(records[-1].loss_after)
        kinetic.append(records[-1].kinetic)
        ham.append(records[-1].hamiltonian)
    d_int = [r.delta_h_int for r in records]
    if landscape.noisy:
        d_traj = [r.delta_h_traj for r in records]
        resampling = [r.resampling for r in records]
    else:  # one fixed loss: no resampling, the trajectory change is the integrator change
        d_traj = list(d_int)
        resampling = [0.0 if r.delta_h_int is not None else None for r in records]
    h0 = ham[0] if ham else float("nan")
    return Trajectory(
        config=config,
        theta=tuple(theta),
        loss=tuple(float(v) for v in loss),
        kinetic=tuple(float(v) for v in kinetic),
        hamiltonian=tuple(float(v) for v in ham),
        delta_h_int=tuple(d_int),
        delta_h_traj=tuple(d_traj),
        resampling=tuple(resampling),
        cap_engagements=records[-1].cap_engagements if records else 0,
        diverged_at=diverged_at,
        divergence=divergence,
        drift_int=tail_median_abs(d_int) if d_int else float("nan"),
        drift_traj=tail_median_abs(d_traj) if d_traj else float("nan"),
        drift_resampling=tail_median_abs(resampling) if resampling else float("nan"),
        energy_error=tail_median_abs([h - h0 for h in ham]) if ham else float("nan"),
        optimizer_label=info.label,
        step_label=info.step_label,
        noisy=landscape.noisy,
    )


# ---------------------------------------------------------------------- drift scan
@dataclass(frozen=True)
class DriftScan:
    """drift(step size) for one optimiser and landscape, with log-log fits.

    ``fit_int``/``fit_traj``/``fit_error`` fit the tail-median |ΔH^int|, |ΔH^traj| and the
    energy error |H_t − H_0| on the step size, one point per step size (one seed), over the
    points that did not diverge; None where fewer than two such points exist (see ``fit_note``).
    """

    config: PlaygroundConfig
    step_sizes: tuple[float, ...]
    drift_int: tuple[float, ...]
    drift_traj: tuple[float, ...]
    energy_error: tuple[float, ...]
    diverged: tuple[bool, ...]
    fit_int: SlopeFit | None
    fit_traj: SlopeFit | None
    fit_error: SlopeFit | None
    fit_note: str = ""
    step_label: str = "dt"
    noisy: bool = False


def scan_step_sizes(step_size: float, points: int = 6, span: float = 4.0) -> tuple[float, ...]:
    """``points`` geometric step sizes from ``step_size / span`` up to ``step_size``."""
    if points < 2:
        raise PlaygroundInputError("points", f"must be in [2, {MAX_SCAN_POINTS}], got {points!r}")
    return tuple(step_size * span ** (k / (points - 1) - 1.0) for k in range(points))


def _fit(xs: Sequence[float], ys: Sequence[float]) -> SlopeFit | None:
    try:
        return fit_loglog_slope(xs, ys)
    except ValueError:
        return None


def drift_scan(
    config: PlaygroundConfig, step_sizes: Sequence[float] | None = None, *, points: int = 6
) -> DriftScan:
    """Run ``config`` at each step size (default :func:`scan_step_sizes`) and fit the slopes."""
    if step_sizes is None:
        _integer("points", points, 2, MAX_SCAN_POINTS)
        step_sizes = scan_step_sizes(config.step_size, points)
    sizes = tuple(_number("step_size", s, 0.0, 10.0, low_open=True) for s in step_sizes)
    if not 2 <= len(sizes) <= MAX_SCAN_POINTS:
        raise PlaygroundInputError(
            "step_sizes", f"need 2 to {MAX_SCAN_POINTS} values, got {len(sizes)}"
        )
    runs = [run_trajectory(replace(config, step_size=s)) for s in sizes]
    ok = [not r.diverged for r in runs]

    def keep(values: list[float]) -> tuple[list[float], list[float]]:
        pairs = [(s, v) for s, v, k in zip(sizes, values, ok, strict=True) if k]
        return [s for s, _ in pairs], [v for _, v in pairs]

    d_int = [r.drift_int for r in runs]
    d_traj = [r.drift_traj for r in runs]
    err = [r.energy_error for r in runs]
    fits = [_fit(*keep(values)) for values in (d_int, d_traj, err)]
    n_ok = sum(ok)
    note = ""
    if n_ok < len(sizes):
        note = (
            f"{len(sizes) - n_ok} of {len(sizes)} step sizes diverged and are left out of the fit"
        )
    if fits[0] is None:
        note = (note + "; " if note else "") + "fewer than two usable points: no fit"
    return DriftScan(
        config=config,
        step_sizes=sizes,
        drift_int=tuple(d_int),
        drift_traj=tuple(d_traj),
        energy_error=tuple(err),
        diverged=tuple(not k for k in ok),
        fit_int=fits[0],
        fit_traj=fits[1],
        fit_error=fits[2],
        fit_note=note,
        step_label=config.info.step_label,
        noisy=runs[0].noisy,
    )



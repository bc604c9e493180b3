r"""The optimiser playground: run an optimiser on a 2-D landscape and measure its energy.

Three computations, each returning a frozen dataclass that the web page (or a notebook) draws:

* :func:`run_trajectory`: the path θ_0 … θ_T of one optimiser, the per-step L, K, H on the
  step's own batch, the integrator change ΔH^int_t, the trajectory change ΔH^traj_t and the
  resampling term δ_t (spec §6, all from :class:`hamopt.energy.EnergyTracker`), the tail-median
  drifts (:func:`hamopt.diagnostics.tail_median_abs`) and, if it happened, the divergence step;
* :func:`drift_scan`: drift(dt) over a geometric grid of step sizes and the log-log slope with
  its 95 % t-interval (:func:`hamopt.diagnostics.fit_loglog_slope`);
* :func:`reversibility`: the momentum-flip round trip of Leapfrog and Euler
  (:func:`hamopt.diagnostics.round_trip`) with both paths.

Every numeric input is checked in :class:`PlaygroundConfig` before any compute; a bad value
raises :class:`PlaygroundInputError` naming the field and its allowed range. A run that leaves
the landscape (``‖θ‖ > ESCAPE_RADIUS``, ``|H| > ENERGY_LIMIT``) or meets a non-finite loss or
gradient is stopped and reported as diverged with its step; it is never an exception.

Scaling to expect on a smooth quadratic with γ = 0 and the cap off: leapfrog conserves a
modified energy exactly, so ``H_t − H_0 = O(dt²)`` (bounded, no secular drift) and the per-step
change ``ΔH_t`` — which the spec's drift measures — is ``O(dt³)``: slope ≈ 3 for the drift,
≈ 2 for the energy error ``|H_t − H_0|``. Explicit Euler gains energy every step:
``ΔH_t = O(dt²)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .diagnostics import RoundTrip, SlopeFit, fit_loglog_slope, round_trip, tail_median_abs
from .energy import EnergyTracker
from .errors import NonFiniteError
from .landscapes import LANDSCAPES, Landscape, make_landscape
from .optim import Euler, Leapfrog

__all__ = [
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

MAX_STEPS = 5000
MAX_SCAN_POINTS = 12
ESCAPE_RADIUS = 1e4
ENERGY_LIMIT = 1e12


class PlaygroundInputError(ValueError):
    """A playground input is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------------- optimisers
@dataclass(frozen=True)
class OptimizerInfo:
    """A playground optimiser: how to build it and which hyperparameters it reads.

    ``build(params, config)`` returns a registered ``torch.optim.Optimizer``; ``uses`` names the
    :class:`PlaygroundConfig` fields it reads besides ``step_size``; ``step_label`` is ``"dt"`` for
    the Hamiltonian integrators and ``"lr"`` for the baselines (spec §5).
    """

    name: str
    label: str
    step_label: str
    uses: tuple[str, ...]
    build: Callable[[list[torch.Tensor], PlaygroundConfig], torch.optim.Optimizer]
    hamiltonian: bool


def _inverse_mass(config: PlaygroundConfig) -> Callable[[torch.Tensor], float]:
    m = 1.0 / config.mass
    return lambda _tensor: m


def _build_hamiltonian(
    cls: type,
) -> Callable[[list[torch.Tensor], PlaygroundConfig], torch.optim.Optimizer]:
    def build(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
        return cls(
            params, lr=c.step_size, gamma=c.gamma, mass=_inverse_mass(c), cap=c.cap, mode="exact"
        )

    return build


def _build_sgd(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=c.step_size, momentum=c.momentum, weight_decay=c.weight_decay)


def _build_adamw(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=c.step_size, betas=(c.momentum, 0.999), weight_decay=c.weight_decay
    )


def _optimizers() -> dict[str, OptimizerInfo]:
    table = {
        "leapfrog": OptimizerInfo(
            "leapfrog",
            "Leapfrog",
            "dt",
            ("gamma", "mass", "cap"),
            _build_hamiltonian(Leapfrog),
            True,
        ),
        "euler": OptimizerInfo(
            "euler", "Euler", "dt", ("gamma", "mass", "cap"), _build_hamiltonian(Euler), True
        ),
        "sgd_momentum": OptimizerInfo(
            "sgd_momentum", "SGD-momentum", "lr", ("momentum", "weight_decay"), _build_sgd, False
        ),
        "adamw": OptimizerInfo(
            "adamw", "AdamW", "lr", ("momentum", "weight_decay"), _build_adamw, False
        ),
    }
    table.update(_ecd_optimizers())
    return table


def _ecd_optimizers() -> dict[str, OptimizerInfo]:
    """The energy-conserving-descent family (``hamopt.ECDSep``, ``BBI``, ``ECDq1``) when present."""
    import hamopt

    def ecdsep(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
        return hamopt.ECDSep(
            params,
            lr=c.step_size,
            eta=c.eta,
            F0=c.f0,
            nu=c.nu,
            weight_decay=c.weight_decay,
            seed=c.seed,
        )

    def bbi(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
        return hamopt.BBI(params, lr=c.step_size, v0=c.f0, weight_decay=c.weight_decay, seed=c.seed)

    def ecdq1(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
        return hamopt.ECDq1(
            params,
            lr=c.step_size,
            eta=c.eta,
            F0=c.f0,
            nu=c.nu,
            weight_decay=c.weight_decay,
            seed=c.seed,
        )

    table = {
        "ecdsep": ("ECDSep", ("eta", "f0", "nu", "weight_decay"), ecdsep),
        "bbi": ("BBI", ("f0", "weight_decay"), bbi),
        "ecdq1": ("ECDq1", ("eta", "f0", "nu", "weight_decay"), ecdq1),
    }
    return {
        name: OptimizerInfo(name, label, "lr", uses, build, False)
        for name, (label, uses, build) in table.items()
        if hasattr(hamopt, label)
    }


OPTIMIZERS: dict[str, OptimizerInfo] = _optimizers()


# ---------------------------------------------------------------------- configuration
def _number(
    fieldname: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if value is None or isinstance(value, bool):
        raise PlaygroundInputError(fieldname, f"must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PlaygroundInputError(fieldname, f"must be a number, got {value!r}") from None
    lo_ok = v > low if low_open else v >= low
    hi_ok = v < high if high_open else v <= high
    if not math.isfinite(v) or not (lo_ok and hi_ok):
        lo_b = "(" if low_open else "["
        hi_b = ")" if high_open else "]"
        raise PlaygroundInputError(
            fieldname, f"must be finite and in {lo_b}{low:g}, {high:g}{hi_b}, got {v!r}"
        )
    return v


def _integer(fieldname: str, value: Any, low: int, high: int) -> int:
    if value is None or isinstance(value, bool):
        raise PlaygroundInputError(
            fieldname, f"must be a whole number in [{low}, {high}], got {value!r}"
        )
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PlaygroundInputError(
            fieldname, f"must be a whole number in [{low}, {high}], got {value!r}"
        ) from None
    if not (math.isfinite(v) and v == int(v) and low <= v <= high):
        raise PlaygroundInputError(
            fieldname, f"must be a whole number in [{low}, {high}], got {value!r}"
        )
    return int(v)


@dataclass(frozen=True)
class PlaygroundConfig:
    """One playground run; every field is checked on construction.

    Attributes:
        landscape: a key of :data:`hamopt.landscapes.LANDSCAPES`.
        optimizer: a key of :data:`OPTIMIZERS`.
        step_size: dt (Leapfrog, Euler) or lr (baselines), in (0, 10].
        gamma: damping γ ∈ [0, 100] (Leapfrog, Euler).
        mass: the scalar mass M ∈ [1e-3, 1e3]; the integrators use the inverse mass 1/M.
        cap: energy cap α ∈ (1, 1e6], or None for no cap (Leapfrog, Euler).
        momentum: SGD momentum, AdamW β₁, in [0, 1).
        weight_decay: in [0, 10] (SGD-momentum, AdamW).
        steps: number of optimiser steps, 1 … MAX_STEPS.
        noise: σ ∈ [0, 10] of the noisy quadratic's per-batch shift.
        eta: η ∈ [1e-3, 1e4], the ECD measure concentration (ECDSep needs η ≥ 1).
        f0: the ECD loss floor F0 (BBI: v0) ∈ [−1e6, 1e6]; keep it below the landscape's minimum.
        nu: ν ∈ [0, 10], the ECD random-bounce size (0: deterministic).
        start: (x, y) start point, each coordinate finite with |·| ≤ 1000; p_0 = 0.
        seed: seed of the mini-batch generator (and of an ECD optimiser's), 0 … 2³² − 1.
    """

    landscape: str = "quadratic"
    optimizer: str = "leapfrog"
    step_size: float = 0.05
    gamma: float = 0.0
    mass: float = 1.0
    cap: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    steps: int = 300
    noise: float = 0.1
    start: tuple[float, float] | None = None
    seed: int = 0
    eta: float = 1.0
    f0: float = -0.1
    nu: float = 0.0

    def __post_init__(self) -> None:
        if self.landscape not in LANDSCAPES:
            raise PlaygroundInputError(
                "landscape", f"must be one of {', '.join(LANDSCAPES)}; got {self.landscape!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise PlaygroundInputError(
                "optimizer", f"must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("step_size", _number("step_size", self.step_size, 0.0, 10.0, low_open=True))
        set_("gamma", _number("gamma", self.gamma, 0.0, 100.0))
        set_("mass", _number("mass", self.mass, 1e-3, 1e3))
        if self.cap is not None:
            set_("cap", _number("cap", self.cap, 1.0, 1e6, low_open=True))
        set_("momentum", _number("momentum", self.momentum, 0.0, 1.0, high_open=True))
        set_("weight_decay", _number("weight_decay", self.weight_decay, 0.0, 10.0))
        set_("steps", _integer("steps", self.steps, 1, MAX_STEPS))
        set_("noise", _number("noise", self.noise, 0.0, 10.0))
        if self.start is None:
            set_("start", LANDSCAPES[self.landscape].cls.default_start)
        else:
            try:
                x, y = self.start
            except (TypeError, ValueError):
                raise PlaygroundInputError(
                    "start", f"must be a pair (x, y), got {self.start!r}"
                ) from None
            set_(
                "start",
                (_number("start x", x, -1000.0, 1000.0), _number("start y", y, -1000.0, 1000.0)),
            )
        set_("seed", _integer("seed", self.seed, 0, 2**32 - 1))
        set_("eta", _number("eta", self.eta, 1e-3, 1e4))
        set_("f0", _number("f0", self.f0, -1e6, 1e6))
        set_("nu", _number("nu", self.nu, 0.0, 10.0))

    @property
    def info(self) -> OptimizerInfo:
        return OPTIMIZERS[self.optimizer]

    def landscape_module(self) -> Landscape:
        """A fresh landscape at ``start`` with its own seeded batch generator."""
        return make_landscape(self.landscape, self.start, noise=self.noise, seed=self.seed)


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


def run_trajectory(config: PlaygroundConfig) -> Trajectory:
    """Run ``config.steps`` steps of ``config.optimizer`` on ``config.landscape`` from rest."""
    landscape = config.landscape_module()
    info = config.info
    try:
        opt = info.build([landscape.theta], config)
    except (TypeError, ValueError) as exc:
        raise PlaygroundInputError(info.label, str(exc)) from exc
    tracker = EnergyTracker(opt)
    theta = [_point(landscape)]
    diverged_at: int | None = None
    divergence: str | None = None
    for t in range(config.steps):
        batch = landscape.sample_batch()
        try:
            record = tracker.step(lambda b=batch: landscape.loss(b))
        except NonFiniteError as exc:
            diverged_at, divergence = t, str(exc)
            break
        point = _point(landscape)
        h = record.hamiltonian
        if not all(math.isfinite(v) for v in point) or math.hypot(*point) > ESCAPE_RADIUS:
            diverged_at, divergence = (
                t,
                f"θ left the landscape at step {t} (‖θ‖ > {ESCAPE_RADIUS:g})",
            )
        elif h is None or not math.isfinite(h) or abs(h) > ENERGY_LIMIT:
            diverged_at, divergence = (
                t,
                f"energy blew up at step {t} (|H| = {h!r} > {ENERGY_LIMIT:g})",
            )
        if diverged_at is not None:
            tracker.records.pop()
            break
        theta.append(point)
    records = tracker.records
    if records and diverged_at is None:
        # the last step's δ and ΔH^traj need L_{B_T}(θ_T): one forward pass on the next batch
        final_batch = landscape.sample_batch()
        if final_batch is not None:
            last = records[-1]
            with torch.no_grad():
                delta = float(landscape.loss(final_batch)) - float(last.loss_after)
            records[-1] = replace(last, resampling=delta, delta_h_traj=last.delta_h_int + delta)
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


# ---------------------------------------------------------------------- reversibility
@dataclass(frozen=True)
class ReversibilityPath:
    """One integrator's round trip: the forward path θ_0 … θ_N, the return path after the
    momentum flip, and :class:`~hamopt.diagnostics.RoundTrip` (None if the trip diverged)."""

    integrator: str
    forward: tuple[tuple[float, float], ...]
    backward: tuple[tuple[float, float], ...]
    result: RoundTrip | None
    divergence: str | None = None


@dataclass(frozen=True)
class ReversibilityResult:
    """Leapfrog and Euler round trips from the same start, step size, mass and batch."""

    config: PlaygroundConfig
    leapfrog: ReversibilityPath
    euler: ReversibilityPath

    @property
    def paths(self) -> tuple[ReversibilityPath, ReversibilityPath]:
        return self.leapfrog, self.euler


def _round_trip_path(cls: type, config: PlaygroundConfig) -> ReversibilityPath:
    landscape = config.landscape_module()
    batch = landscape.sample_batch()  # one fixed mini-batch for the whole trip (spec §6)
    visited: list[tuple[float, float]] = []

    def loss_fn() -> torch.Tensor:
        visited.append(_point(landscape))
        return landscape.loss(batch)

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return cls(
            params,
            lr=config.step_size,
            gamma=0.0,
            mass=_inverse_mass(config),
            cap=None,
            mode="exact",
        )

    n = config.steps
    result: RoundTrip | None = None
    divergence = None
    try:
        result = round_trip(make, [landscape.theta], loss_fn, steps=n)
        if not (math.isfinite(result.theta_error) and math.isfinite(result.momentum_error)):
            divergence = "the round-trip error is not finite"
    except NonFiniteError as exc:
        divergence = str(exc)
    # exact mode evaluates the loss twice per step, at θ_t then at θ_{t+1}
    forward = [visited[0]] + visited[1 : 2 * n : 2] if visited else []
    back = visited[2 * n :]
    backward = ([back[0]] + back[1::2]) if back else []
    finite = lambda pts: [p for p in pts if all(math.isfinite(c) for c in p)]  # noqa: E731
    return ReversibilityPath(
        cls.__name__, tuple(finite(forward)), tuple(finite(backward)), result, divergence
    )


def reversibility(config: PlaygroundConfig) -> ReversibilityResult:
    """Leapfrog and Euler round trips of ``config.steps`` steps (γ = 0, no cap, fixed batch)."""
    if config.start is not None and math.hypot(*config.start) == 0.0:
        raise PlaygroundInputError(
            "start", "must not be the origin: the round-trip error is relative to ‖θ_0‖"
        )
    return ReversibilityResult(
        config, _round_trip_path(Leapfrog, config), _round_trip_path(Euler, config)
    )


def suggested_config(landscape: str, optimizer: str = "leapfrog") -> PlaygroundConfig:
    """A configuration that shows something on ``landscape`` with ``optimizer`` (stable, moving)."""
    hamiltonian = {
        "quadratic": 0.05,
        "noisy_quadratic": 0.05,
        "rosenbrock": 0.002,
        "double_well": 0.05,
        "himmelblau": 0.005,
        "ackley": 0.02,
    }
    baseline = {
        "quadratic": 0.01,
        "noisy_quadratic": 0.01,
        "rosenbrock": 5e-4,
        "double_well": 0.01,
        "himmelblau": 0.002,
        "ackley": 0.01,
    }
    info = OPTIMIZERS.get(optimizer)
    if info is None:
        raise PlaygroundInputError(
            "optimizer", f"must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}"
        )
    if landscape not in LANDSCAPES:
        raise PlaygroundInputError(
            "landscape", f"must be one of {', '.join(LANDSCAPES)}; got {landscape!r}"
        )
    table = hamiltonian if info.hamiltonian else baseline
    if optimizer == "adamw":
        table = {k: 0.05 for k in table}
    elif optimizer in ("ecdsep", "bbi", "ecdq1"):
        table = {k: 0.01 for k in table}
    return PlaygroundConfig(
        landscape=landscape, optimizer=optimizer, step_size=table[landscape], steps=300
    )

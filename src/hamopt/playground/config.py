r"""Playground inputs: the optimiser table (from :mod:`hamopt.families`), the checked
:class:`PlaygroundConfig` and a suggested configuration per landscape and optimiser."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .. import families
from ..landscapes import LANDSCAPES, Landscape, make_landscape

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
    the Hamiltonian integrators and ``"lr"`` for the baselines (spec §5); ``suggested_step`` is one
    step size for every landscape, or None for the per-landscape tables.
    """

    name: str
    label: str
    step_label: str
    uses: tuple[str, ...]
    build: Callable[[list[torch.Tensor], PlaygroundConfig], torch.optim.Optimizer]
    hamiltonian: bool
    suggested_step: float | None = None


def _info(family: families.Family) -> OptimizerInfo:
    entry = family.playground
    assert entry is not None

    def build(params: list[torch.Tensor], c: PlaygroundConfig) -> torch.optim.Optimizer:
        hyper = {**family.defaults(), **entry.hyper(c)}
        mode = family.modes[0] if family.modes else None
        # torch's plain (not fused) kernels: the playground's numbers do not depend on the device
        return family.construct(params, c.step_size, hyper, seed=c.seed, mode=mode, fused=False)

    return OptimizerInfo(
        entry.key, entry.label, family.step_axis, entry.uses, build, family.integrator, entry.suggested_step
    )


class _Optimizers(Mapping[str, OptimizerInfo]):
    """The families with a playground entry, by playground key, in registration order (live)."""

    def _table(self) -> dict[str, OptimizerInfo]:
        table = {}
        for name in families.names():
            family = families.get(name)
            if family.playground is not None:
                table[family.playground.key] = _info(family)
        return table

    def __getitem__(self, key: str) -> OptimizerInfo:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def get(self, key: str, default: Any = None) -> Any:
        return self._table().get(key, default)


OPTIMIZERS: Mapping[str, OptimizerInfo] = _Optimizers()
DEFAULT_OPTIMIZER: str = families.LEAPFROG.playground.key if families.LEAPFROG.playground else ""


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
    optimizer: str = DEFAULT_OPTIMIZER
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


def suggested_config(landscape: str, optimizer: str = DEFAULT_OPTIMIZER) -> PlaygroundConfig:
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
    if info.suggested_step is not None:
        table = {k: info.suggested_step for k in table}
    return PlaygroundConfig(
        landscape=landscape, optimizer=optimizer, step_size=table[landscape], steps=300
    )

r"""The spec of a band search (``hamopt bands SPEC``): a lab spec whose optimisers carry no step
sizes, plus a ``bands:`` section that says how to search them.

The file is an experiment spec (:class:`~hamopt.experiments.spec.ExperimentSpec`: data set,
model, batch size, steps, seeds, optimisers with their hyper-parameters, dtype, device, threads,
workers, tail fraction, bootstrap, calibration) in which each optimiser names **no**
``step_sizes``/``stability_fractions`` (the search places them) and ``ablations``/
``reversibility`` are absent (they belong to ``hamopt sweep``), with one more section::

    bands:
      initial: {low: 0.05, high: 1.2, count: 8}   # log-spaced fractions of the stability limit
      # or initial: [0.05, 0.1, 0.2, 0.4, 0.8]
      rounds: 3            # refinement rounds after the initial grid
      budget: 36           # runs per optimiser, initial grid included (× seeds per step size)
      window: 3            # neighbouring step sizes in each local slope fit (odd, 3..9)
      flat_tolerance: 0.5  # slope ≈ 0 iff the whole 95 % CI lies in [−tol, +tol]
      min_ratio: 1.05      # never bisect two step sizes closer than this ratio
      refine_edge: true    # also bisect between the largest stable and smallest unstable size
      isoloss_fraction: 0.2  # the iso-loss window: the lowest 20 % of the runs' common loss range

A fraction ``f`` is in units of the Hamiltonian time step ``h`` (as ``stability_fractions``):
``dt = f · dt_c`` for Leapfrog/Euler, ``lr = f² · lr_c`` for SGD with momentum and for
Adam/AdamW (see :mod:`hamopt.experiments.bands_limit`), so ``f = 1`` is the linear stability
edge of every optimiser at initialisation.

The spec's identity (the store's spec hash) is the hash of its experiment part alone: the
``bands:`` section decides which runs are made, not what a run is, so a rerun with a larger
budget or another grid reuses every run the store already holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import SpecError
from .spec import ExperimentSpec, spec_dict, spec_hash
from .spec_load import _parse_yaml, describe_validation_error, parse_spec, read_spec_text
from .spec_parts import Checked, Int, Number

__all__ = [
    "BANDS_PRESETS",
    "BandSearch",
    "BandsSpec",
    "InitialGrid",
    "load_bands_preset",
    "load_bands_spec",
    "parse_bands_spec",
    "with_budget",
    "with_step_sizes",
]

BANDS_PRESETS = ("bands-quick", "bands-cpu")
PLACEHOLDER_STEP = 1.0  # validates an optimiser entry whose step sizes the search will place
MAX_STEP_SIZES = 64  # an optimiser entry of a lab spec lists at most this many step sizes


class InitialGrid(Checked):
    """``count`` fractions log-spaced from ``low`` to ``high`` (both included)."""

    low: Number = Field(gt=0.0, le=10.0)
    high: Number = Field(gt=0.0, le=10.0)
    count: Int = Field(ge=3, le=MAX_STEP_SIZES)

    @model_validator(mode="after")
    def _ordered(self) -> InitialGrid:
        if not self.low < self.high:
            raise ValueError(f"initial.low must be below initial.high, got {self.low} and {self.high}")
        return self

    def fractions(self) -> list[float]:
        a, b, n = math.log(self.low), math.log(self.high), self.count
        return [round_fraction(math.exp(a + (b - a) * i / (n - 1))) for i in range(n)]


def round_fraction(f: float) -> float:
    """A fraction rounded to four significant digits (grid points are compared after rounding)."""
    return float(f"{f:.4g}")


class BandSearch(Checked):
    """The ``bands:`` section (see the module docstring for each key)."""

    initial: InitialGrid | list[Number] = InitialGrid(low=0.05, high=1.2, count=8)
    rounds: Int = Field(3, ge=0, le=20)
    budget: Int = Field(36, ge=3, le=MAX_STEP_SIZES * 1000)
    window: Int = Field(3, ge=3, le=9)
    flat_tolerance: Number = Field(0.5, gt=0.0, le=10.0)
    min_ratio: Number = Field(1.05, gt=1.0, le=10.0)
    refine_edge: bool = True
    isoloss_fraction: Number = Field(0.2, gt=0.0, le=1.0)

    @field_validator("initial")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not 3 <= len(v) <= MAX_STEP_SIZES:
                raise ValueError(f"must list 3..{MAX_STEP_SIZES} fractions, got {len(v)}")
            bad = [x for x in v if not (math.isfinite(x) and 0.0 < x <= 10.0)]
            if bad:
                raise ValueError(f"each fraction must be in (0, 10], got {bad[0]!r}")
            rounded = sorted({round_fraction(x) for x in v})
            if len(rounded) != len(v):
                raise ValueError(f"fractions must be distinct (to four significant digits), got {v}")
            return rounded
        return v

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (the local fit is centred on its middle step size), got {v}")
        return v

    def initial_fractions(self) -> list[float]:
        return list(self.initial) if isinstance(self.initial, list) else self.initial.fractions()

    def rule(self) -> str:
        """The regime rule, as printed with every result."""
        tol = self.flat_tolerance
        return (
            "slope > 0 iff the 95% CI lies above 0; slope < 0 iff it lies below 0; slope ≈ 0 iff it "
            f"contains 0 and lies within [-{tol:g}, +{tol:g}]; unresolved otherwise (CI contains 0 "
            "but is wider); unstable: a step size at which any seed diverged"
        )


@dataclass(frozen=True)
class BandsSpec:
    """A band search: its experiment template (placeholder step sizes), the search, the hash."""

    experiment: ExperimentSpec
    search: BandSearch
    source: str

    @property
    def identity(self) -> str:
        """The store's spec hash: the experiment part only (see the module docstring)."""
        return spec_hash(self.experiment)

    def to_yaml(self) -> str:
        import yaml

        data = spec_dict(self.experiment)
        for o in data["optimizers"]:
            o.pop("step_sizes", None)
            o.pop("stability_fractions", None)
        data.pop("ablations", None)
        data.pop("reversibility", None)
        data["bands"] = self.search.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False)

    def optimizer_names(self) -> list[str]:
        return [o.name for o in self.experiment.optimizers]


def parse_bands_spec(data: Any, *, source: str = "spec") -> BandsSpec:
    """Validate parsed YAML into a :class:`BandsSpec`; a one-line :class:`SpecError` naming the
    field otherwise."""
    if not isinstance(data, dict):
        parse_spec(data, source=source)  # the lab's own message for an empty or non-mapping spec
    data = dict(data)
    if "bands" not in data:
        raise SpecError(f"{source}: bands: required key is missing (the band search: initial, rounds, "
                        "budget, window, flat_tolerance, min_ratio, refine_edge, isoloss_fraction)")
    raw = data.pop("bands")
    try:
        search = BandSearch.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        raise SpecError(
            f"{source}: invalid spec: {describe_validation_error(exc, 'bands.', model=BandSearch)}"
        ) from None
    for key in ("ablations", "reversibility"):
        if data.get(key) is not None:
            raise SpecError(f"{source}: {key}: not used by a band search (it belongs to hamopt sweep); "
                            "remove it")
    optimizers = data.get("optimizers")
    if isinstance(optimizers, list):
        placed = []
        for i, o in enumerate(optimizers):
            if isinstance(o, dict):
                for key in ("step_sizes", "stability_fractions"):
                    if key in o:
                        raise SpecError(f"{source}: optimizers[{i}].{key}: a band search places the "
                                        "step sizes itself (bands.initial and refinement); remove it")
                o = {**o, "step_sizes": [PLACEHOLDER_STEP]}
            placed.append(o)
        data["optimizers"] = placed
    experiment = parse_spec(data, source=source)
    cells = {o.name for o in experiment.optimizers}
    if len(cells) != len(experiment.optimizers):
        raise SpecError(f"{source}: optimizers: each name must appear once in a band search (one band "
                        f"per optimiser), got {[o.name for o in experiment.optimizers]}")
    _check_budget(experiment, search, source)
    return BandsSpec(experiment, search, source)


def _check_budget(experiment: ExperimentSpec, search: BandSearch, source: str) -> None:
    seeds = len(experiment.seeds)
    grid = len(search.initial_fractions())
    if search.budget < seeds * grid:
        raise SpecError(
            f"{source}: bands.budget: must be at least the initial grid's runs, "
            f"{grid} fractions × {seeds} seeds = {seeds * grid}; got {search.budget}"
        )
    if search.budget // seeds > MAX_STEP_SIZES:
        raise SpecError(f"{source}: bands.budget: at most {MAX_STEP_SIZES} step sizes per optimiser "
                        f"({MAX_STEP_SIZES * seeds} runs with {seeds} seeds); got {search.budget}")


def with_budget(spec: BandsSpec, budget: int, *, source: str = "--budget") -> BandsSpec:
    """``spec`` with another run budget per optimiser (checked like the spec's own)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or not 3 <= budget <= MAX_STEP_SIZES * 1000:
        raise SpecError(f"{source}: must be an integer in [3, {MAX_STEP_SIZES * 1000}], got {budget!r}")
    search = spec.search.model_copy(update={"budget": budget})
    _check_budget(spec.experiment, search, source)
    return BandsSpec(spec.experiment, search, spec.source)


def load_bands_spec(path: str | Path) -> BandsSpec:
    """Read and validate a band-search YAML file (the lab's file checks: UTF-8, no repeated keys)."""
    text = read_spec_text(path)
    return parse_bands_spec(_parse_yaml(text, str(path)), source=str(path))


def with_step_sizes(spec: BandsSpec, step_sizes: dict[str, list[float]]) -> ExperimentSpec:
    """The experiment spec with literal step sizes for the named optimisers (the others dropped)."""
    kept = [
        o.model_copy(update={"step_sizes": sorted(step_sizes[o.name])})
        for o in spec.experiment.optimizers
        if step_sizes.get(o.name)
    ]
    return spec.experiment.model_copy(update={"optimizers": kept})


def load_bands_preset(name: str) -> BandsSpec:
    """Built-in band search ``name`` (:data:`BANDS_PRESETS`), stored next to the lab's presets."""
    from importlib import resources

    if name not in BANDS_PRESETS:
        raise SpecError(f"band preset must be one of {', '.join(BANDS_PRESETS)}; got {name!r}")
    text = resources.files("hamopt.experiments").joinpath("presets", f"{name}.yaml").read_text("utf-8")
    return parse_bands_spec(_parse_yaml(text, f"preset {name!r}"), source=f"preset {name!r}")

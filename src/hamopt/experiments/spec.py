r"""The experiment spec of a dynamics-lab sweep: a YAML file validated by pydantic.

A spec names the dataset, the model, the batch size and number of steps, the optimisers (each
with its step sizes and fixed hyper-parameters), the seeds, the memory ablations, the
reversibility study, the dtype and the device. Unknown keys and out-of-range values are rejected
with a :class:`SpecError` that names the key (``optimizers[2].hyper.momentum``) and the allowed
range, before anything is computed.

Step sizes are given either literally (``step_sizes: [0.002, 0.0025]``) or as fractions of the
linear stability limit measured on the problem at initialisation (``stability_fractions``), in
units of the Hamiltonian time step ``h`` (``h = dt`` for Leapfrog/Euler, ``h = √lr`` for SGD
with momentum): ``dt = f · dt_c`` and ``lr = f² · lr_c`` (see :mod:`hamopt.experiments.calibrate`).

An optimiser's ``type`` is any family registered in :mod:`hamopt.families` (the built-ins and
any added with :func:`hamopt.families.register_optimizer`). Its ``hyper`` keys, their defaults and
their ranges are the family's (:meth:`hamopt.families.Family.validate_hyper` builds the optimiser
on a dummy parameter, so the spec accepts exactly what the optimiser accepts); ``mode`` applies
only to families with modes and ``stability_fractions`` only to families with a stability rule.
A seeded family's generator (the ECD bounces) is seeded from each run's own seed, so ``seed`` is
not a hyper-parameter.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import families
from ..families.hyper import (
    AdamHyper,
    BBIHyper,
    ECDHyper,
    ECDq1Hyper,
    ECDSepHyper,
    HamiltonianHyper,
    SGDHyper,
)

__all__ = [
    "ABLATIONS",
    "AblationSpec",
    "AdamHyper",
    "BBIHyper",
    "DatasetSpec",
    "ECDHyper",
    "ECDSepHyper",
    "ECDq1Hyper",
    "ECD_TYPES",
    "ExperimentSpec",
    "HamiltonianHyper",
    "ModelSpec",
    "OptimizerSpec",
    "ReversibilitySpec",
    "SGDHyper",
    "SpecError",
    "load_spec",
    "parse_spec",
    "spec_hash",
    "spec_to_yaml",
    "ecd_class",
]

ABLATIONS = ("default", "thrash", "scramble")


class SpecError(ValueError):
    """An experiment spec is invalid; the message names each offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------- optimisers
class _HyperModels(Mapping[str, type]):
    """The hyper schema of each registered optimiser family, by type (read from the registry)."""

    def __getitem__(self, name: str) -> type:
        try:
            return families.get(name).hyper_model
        except families.UnknownFamilyError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(families.names())

    def __len__(self) -> int:
        return len(families.names())


_HYPER: Mapping[str, type] = _HyperModels()

# the seeded (Energy Conserving Descent) built-in types, for callers that predate hamopt.families
ECD_TYPES = tuple(f.name for f in (families.ECDSEP, families.BBI_FAMILY, families.ECDQ1))


def ecd_class(type_: str) -> type:
    """The optimiser class of a spec type (``families.get(type_).optimizer_class``)."""
    return families.get(type_).optimizer_class


class OptimizerSpec(_Strict):
    """One optimiser of the sweep and its step-size band.

    ``name`` labels the optimiser in tables (``leapfrog-exact``); ``band`` labels the step-size
    band (``band``, ``wide``); the pair must be unique within a spec.
    """

    name: str = Field(min_length=1, max_length=40)
    type: str
    mode: str | None = None
    band: str = Field("default", min_length=1, max_length=40)
    step_sizes: list[float] | None = None
    stability_fractions: list[float] | None = None
    hyper: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        families.get(v)  # a clear error listing the registered types
        return v

    @field_validator("name", "band")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", v):
            raise ValueError(
                f"must be letters, digits, '.', '_', '+' or '-' (a file-name-safe label), got {v!r}"
            )
        return v

    @field_validator("step_sizes", "stability_fractions")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not 1 <= len(v) <= 64:
            raise ValueError(f"must list 1..64 values, got {len(v)}")
        for x in v:
            if not (math.isfinite(x) and 0.0 < x <= 10.0):
                raise ValueError(f"each value must be in (0, 10], got {x!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"values must be distinct, got {v}")
        return sorted(v)

    @model_validator(mode="after")
    def _consistent(self) -> OptimizerSpec:
        if (self.step_sizes is None) == (self.stability_fractions is None):
            raise ValueError("give exactly one of step_sizes or stability_fractions")
        family = families.get(self.type)
        object.__setattr__(self, "mode", family.check_mode(self.mode))
        if self.stability_fractions is not None and family.stability is None:
            raise ValueError(
                f"stability_fractions is defined for {', '.join(families.families_with_stability())} "
                f"(the families with a stability rule), not {self.type!r}; give step_sizes"
            )
        hyper = family.validate_hyper(self.hyper, mode=self.mode)
        if self.stability_fractions is not None:
            assert family.stability is not None
            family.stability.check(hyper)
        object.__setattr__(self, "hyper", hyper)
        return self

    @property
    def run_mode(self) -> str:
        """The family's mode (``exact``/``streaming``) where it has modes, ``baseline`` for the
        others (the ECD optimisers included: the tracker measures their energy like a baseline's)."""
        return self.mode or "baseline"


class DatasetSpec(_Strict):
    name: Literal["digits", "cifar10"]
    root: str | None = None
    download: bool = False
    train_size: int | None = Field(None, ge=1, le=10_000_000)
    test_size: int | None = Field(None, ge=1, le=10_000_000)
    augment: bool | None = None


class ModelSpec(_Strict):
    name: Literal["resnet18", "resnet20", "small_cnn", "mlp"]
    width: int | None = Field(None, ge=1, le=4096)
    depth: int | None = Field(None, ge=1, le=1000)
    channels_last: bool | None = None


class AblationSpec(_Strict):
    """Memory ablations (spec §6) for one optimiser entry at one or more of its step sizes."""

    names: list[Literal["default", "thrash", "scramble"]] = ["default", "thrash", "scramble"]
    optimizer: str = Field(min_length=1)
    band: str = "band"
    step_index: int = Field(-1, ge=-64, le=63)
    seeds: list[int] = [0]

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if "default" not in v:
            raise ValueError("must include 'default' (the reference series)")
        if len(set(v)) != len(v):
            raise ValueError(f"must be distinct, got {v}")
        return v


class ReversibilitySpec(_Strict):
    """Round trips (spec §6): Leapfrog vs Euler, γ = 0, no cap, one fixed batch, error vs N."""

    steps: list[int] = [1, 4, 16, 64]
    dtypes: list[Literal["float32", "float64"]] = ["float32", "float64"]
    dt: float | None = Field(None, gt=0.0, le=10.0)
    stability_fraction: float | None = Field(0.15, gt=0.0, le=10.0)
    batch_size: int | None = Field(None, ge=1, le=65536)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= n <= 100_000 for n in v):
            raise ValueError(f"each N must be in 1..100000, got {v}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _one_dt(self) -> ReversibilitySpec:
        if self.dt is not None:
            object.__setattr__(self, "stability_fraction", None)
        return self


class CalibrationSpec(_Strict):
    """Power iteration for the stability limit (used by ``stability_fractions``)."""

    iterations: int = Field(30, ge=2, le=1000)
    batch_size: int | None = Field(None, ge=1, le=65536)


class ExperimentSpec(_Strict):
    """A whole sweep: ``optimizers × step sizes × seeds`` (+ ablation runs), reversibility."""

    name: str = Field("sweep", min_length=1, max_length=80)
    dataset: DatasetSpec
    model: ModelSpec
    batch_size: int = Field(ge=1, le=65536)
    steps: int = Field(ge=5, le=10_000_000)
    optimizers: list[OptimizerSpec] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1, max_length=1000)
    ablations: AblationSpec | None = None
    reversibility: ReversibilitySpec | None = None
    calibration: CalibrationSpec = CalibrationSpec()
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    threads: int | None = Field(None, ge=1, le=1024)
    workers: int = Field(1, ge=1, le=64)
    tail_fraction: float = Field(0.2, gt=0.0, le=1.0)
    bootstrap: int = Field(1000, ge=0, le=100_000)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 or s > 2**31 - 1 for s in v):
            raise ValueError(f"each seed must be in 0..2147483647, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}")
        return v

    @model_validator(mode="after")
    def _cross(self) -> ExperimentSpec:
        keys = [(o.name, o.band) for o in self.optimizers]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(
                f"optimizers: (name, band) pairs must be unique, repeated: {sorted(dup)}"
            )
        if self.ablations is not None:
            a = self.ablations
            match = [o for o in self.optimizers if o.name == a.optimizer and o.band == a.band]
            if not match:
                raise ValueError(
                    f"ablations.optimizer/band {a.optimizer!r}/{a.band!r} names no entry of optimizers "
                    f"(have {keys})"
                )
            n = len(match[0].step_sizes or match[0].stability_fractions or [])
            if not -n <= a.step_index < n:
                raise ValueError(
                    f"ablations.step_index must be in {-n}..{n - 1}, got {a.step_index}"
                )
            if any(s < 0 for s in a.seeds) or not a.seeds:
                raise ValueError(
                    f"ablations.seeds must be non-negative and non-empty, got {a.seeds}"
                )
        return self


# ---------------------------------------------------------------------- loading
def _loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out and not out.endswith(".") else "") + str(part)
    return out or "(spec)"


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # drop pydantic's union/literal branch tags such as 'list[float]'
        loc = tuple(
            p
            for p in loc
            if not (isinstance(p, str) and ("[" in p or p in ("float", "int", "str")))
        )
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = _loc(loc, prefix)
        # a model-level error under a prefix ("hyper.") whose message starts with the key
        lines.append(f"{where}{msg}" if where.endswith(".") else f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


def parse_spec(data: Any, *, source: str = "spec") -> ExperimentSpec:
    """Validate a mapping (e.g. parsed YAML) into an :class:`ExperimentSpec`."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: the spec must be a mapping of keys to values, got {type(data).__name__}"
        )
    try:
        return ExperimentSpec(**data)
    except ValidationError as exc:
        raise SpecError(f"{source}: invalid spec: {_describe(exc)}") from None
    except TypeError as exc:
        raise SpecError(f"{source}: invalid spec: {exc}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a YAML spec file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {str(p)!r} does not exist or is not a file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    return parse_spec(data, source=str(p))


def spec_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The normalised spec (all defaults filled in) as plain JSON-compatible data."""
    return spec.model_dump(mode="json")


def spec_hash(spec: ExperimentSpec) -> str:
    """SHA-256 of the canonical JSON of the normalised spec, minus keys that do not change results:
    ``threads`` (recorded per run), ``workers``, ``dataset.root`` and ``dataset.download`` (where the data comes
    from, not what it is)."""
    data = spec_dict(spec)
    data.pop("threads", None)
    data.pop("workers", None)
    data["dataset"].pop("root", None)
    data["dataset"].pop("download", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def spec_to_yaml(spec: ExperimentSpec, extra: dict[str, Any] | None = None) -> str:
    import yaml

    data = spec_dict(spec)
    if extra:
        data.update(extra)
    return yaml.safe_dump(data, sort_keys=False)

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

The Energy Conserving Descent optimisers (types ``ecdsep``, ``bbi``, ``ecdq1``) take their step
sizes literally (``lr``); their ``hyper`` keys are exactly the optimiser's own keyword arguments
except ``seed``, which each run derives from its own seed. Their ranges are checked by
constructing the optimiser on a dummy parameter, so the spec accepts exactly what the optimiser
accepts. In the same way the model's and the data set's options are checked by the builder's and
the loader's own rules (:mod:`hamopt.experiments.spec_parts`).

Reading a file (UTF-8 only, no repeated keys) and the one-line error messages live in
:mod:`hamopt.experiments.spec_load`, with :func:`~hamopt.experiments.spec_load.check_runnable`,
which refuses a spec this machine cannot run (absent device, absent data) before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import SpecError
from .spec_load import describe_validation_error as _describe
from .spec_load import load_spec, parse_spec
from .spec_parts import (
    SEED_MAX,
    AblationSpec,
    CalibrationSpec,
    Checked,
    DatasetSpec,
    Int,
    ModelSpec,
    Number,
    ReversibilitySpec,
    check_seeds,
)

__all__ = [
    "ABLATIONS",
    "AblationSpec",
    "BBIHyper",
    "DatasetSpec",
    "ECDHyper",
    "ECDSepHyper",
    "ECDq1Hyper",
    "ECD_TYPES",
    "ExperimentSpec",
    "ModelSpec",
    "OptimizerSpec",
    "ReversibilitySpec",
    "SEED_MAX",
    "SpecError",
    "load_spec",
    "parse_spec",
    "spec_hash",
    "spec_to_yaml",
    "ecd_class",
]

ABLATIONS = ("default", "thrash", "scramble")
OPTIMIZER_TYPES = ("leapfrog", "euler", "sgd", "adamw", "adam", "ecdsep", "bbi", "ecdq1")
HAMILTONIAN_TYPES = ("leapfrog", "euler")
ECD_TYPES = ("ecdsep", "bbi", "ecdq1")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------- hyper-parameters per type
class HamiltonianHyper(_Strict):
    gamma: float = Field(1e-3, ge=0.0, le=1e3)
    cap: float | None = Field(2.0, gt=1.0, le=1e6)
    mass: Literal["fan_in", "identity"] = "fan_in"
    mass_clip: tuple[float, float] = (0.125, 8.0)

    @field_validator("mass_clip")
    @classmethod
    def _clip(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"must satisfy 0 < low <= high < inf, got {v}")
        return v


class SGDHyper(_Strict):
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    dampening: float = Field(0.0, ge=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    nesterov: bool = False


class AdamHyper(_Strict):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-2, ge=0.0, le=1.0)
    amsgrad: bool = False

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return v


def ecd_class(type_: str) -> type:
    """The optimiser class of an ECD spec type (``ecdsep`` → :class:`hamopt.optim.ECDSep`...)."""
    from ..optim import BBI, ECDq1, ECDSep

    return {"ecdsep": ECDSep, "bbi": BBI, "ecdq1": ECDq1}[type_]


class ECDHyper(_Strict):
    """Hyper-parameters of an Energy Conserving Descent optimiser: its own keyword arguments with
    its own defaults, less ``lr`` (the run's step size) and ``seed`` (derived from the run's seed).

    Pydantic checks only the types; the ranges are the optimiser's own: the model constructs the
    optimiser on a dummy parameter, so an out-of-range value is rejected with the optimiser's
    message (which names the key), and the values stored are the ones the optimiser keeps
    (e.g. ECDSep with ``s ≠ 1`` holds ``deltaEn = 1``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    spec_type: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _no_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise ValueError(
                "seed is not a hyper-parameter: each run seeds the optimiser's generator from the "
                "run's own seed (the spec's seeds), so a run is reproducible from its seed alone"
            )
        return data

    @model_validator(mode="after")
    def _accepted_by_optimizer(self) -> ECDHyper:
        import torch

        values = self.model_dump()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an argument the optimiser would ignore is an error here
            try:
                opt = ecd_class(self.spec_type)(
                    [torch.zeros(2, requires_grad=True)], lr=1.0, seed=0, **values
                )
            except (ValueError, TypeError) as exc:
                raise ValueError(str(exc)) from None
            except UserWarning as exc:  # ECDSep: s != 1 forces deltaEn = 1
                raise ValueError(f"{exc}; give deltaEn: 1 (or leave it out) with this s") from None
        for key in values:
            object.__setattr__(self, key, opt.defaults[key])
        return self


class ECDSepHyper(ECDHyper):
    """:class:`hamopt.optim.ECDSep`'s keyword arguments (``eta`` ≥ 1 required)."""

    spec_type: ClassVar[str] = "ecdsep"
    eta: float
    F0: float = 0.0
    nu: float = 1e-5
    s: float = 1.0
    deltaEn: float = 0.0
    weight_decay: float = 0.0
    consEn: bool = True
    eps1: float = 1e-10
    eps2: float = 1e-40
    foreach: bool | None = None


class BBIHyper(ECDHyper):
    """:class:`hamopt.optim.BBI`'s keyword arguments."""

    spec_type: ClassVar[str] = "bbi"
    v0: float = 0.0
    threshold0: int = 1000
    threshold: int = 3000
    n_fixed_bounces: int = 1
    deltaEn: float = 0.0
    weight_decay: float = 0.0
    consEn: bool = True
    eps1: float = 1e-10
    eps2: float = 1e-40
    momentum_init: str = "global"
    foreach: bool | None = None


class ECDq1Hyper(ECDHyper):
    """:class:`hamopt.optim.ECDq1`'s keyword arguments (``eta`` > 0 required)."""

    spec_type: ClassVar[str] = "ecdq1"
    eta: float
    F0: float = -1.0
    nu: float = 0.1
    weight_decay: float = 0.0
    consEn: bool = True
    eps1: float = 1e-10
    eps2: float = 1e-40
    projection: str = "global"
    foreach: bool | None = None


_HYPER = {
    "leapfrog": HamiltonianHyper,
    "euler": HamiltonianHyper,
    "sgd": SGDHyper,
    "adamw": AdamHyper,
    "adam": AdamHyper,
    "ecdsep": ECDSepHyper,
    "bbi": BBIHyper,
    "ecdq1": ECDq1Hyper,
}


class OptimizerSpec(_Strict):
    """One optimiser of the sweep and its step-size band.

    ``name`` labels the optimiser in tables (``leapfrog-exact``); ``band`` labels the step-size
    band (``band``, ``wide``); the pair must be unique within a spec.
    """

    name: str = Field(min_length=1, max_length=40)
    type: Literal["leapfrog", "euler", "sgd", "adamw", "adam", "ecdsep", "bbi", "ecdq1"]
    mode: Literal["exact", "streaming"] | None = None
    band: str = Field("default", min_length=1, max_length=40)
    step_sizes: list[float] | None = None
    stability_fractions: list[float] | None = None
    hyper: dict[str, Any] = Field(default_factory=dict)

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
        if self.type in HAMILTONIAN_TYPES:
            if self.mode is None:
                object.__setattr__(self, "mode", "exact")
        elif self.mode is not None:
            raise ValueError(
                f"mode applies only to leapfrog/euler, not to type {self.type!r}; remove mode"
            )
        if self.stability_fractions is not None and self.type not in ("leapfrog", "euler", "sgd"):
            why = (
                " (the ECD optimisers have no linear stability limit of the calibrated kind)"
                if self.type in ECD_TYPES
                else ""
            )
            raise ValueError(
                f"stability_fractions is defined for leapfrog, euler and sgd (momentum), not {self.type!r}"
                f"{why}; give step_sizes"
            )
        try:
            hyper = _HYPER[self.type](**self.hyper)
        except ValidationError as exc:
            raise ValueError(_describe(exc, prefix="hyper.")) from None
        if self.type == "sgd" and self.stability_fractions is not None and hyper.momentum == 0:
            raise ValueError(
                "stability_fractions for sgd needs momentum > 0 (the heavy-ball limit)"
            )
        object.__setattr__(self, "hyper", hyper.model_dump(mode="json"))
        return self

    @property
    def run_mode(self) -> str:
        """``exact``/``streaming`` for Leapfrog/Euler, ``baseline`` for the others (the ECD
        optimisers included: the tracker measures their energy like a baseline's)."""
        return self.mode or "baseline"


class ExperimentSpec(Checked):
    """A whole sweep: ``optimizers × step sizes × seeds`` (+ ablation runs), reversibility."""

    name: str = Field("sweep", min_length=1, max_length=80)
    dataset: DatasetSpec
    model: ModelSpec
    batch_size: Int = Field(ge=1, le=65536)
    steps: Int = Field(ge=5, le=10_000_000)
    optimizers: list[OptimizerSpec] = Field(min_length=1, max_length=256)
    seeds: list[Int] = Field(min_length=1, max_length=1000)
    ablations: AblationSpec | None = None
    reversibility: ReversibilitySpec | None = None
    calibration: CalibrationSpec = CalibrationSpec()
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    threads: Int | None = Field(None, ge=1, le=1024)
    workers: Int = Field(1, ge=1, le=64)
    tail_fraction: Number = Field(0.2, gt=0.0, le=1.0)
    bootstrap: Int = Field(1000, ge=0, le=100_000)

    @field_validator("name")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if not v.isprintable():
            raise ValueError(f"must be one line of printable text (no tabs or control characters), got {v!r}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return check_seeds(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d{1,3})?|mps", v):
            raise ValueError(f"must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}")
        return v

    @model_validator(mode="after")
    def _builders_accept(self) -> ExperimentSpec:
        """The data set's and the model builder's own checks, on this spec's options."""
        from ..data import DatasetOptionError, check_dataset_options
        from ..models import ModelOptionError, check_model_options

        d, m = self.dataset, self.model
        try:
            facts = check_dataset_options(
                d.name, root=d.root, download=d.download, train_size=d.train_size,
                test_size=d.test_size,
            )
        except DatasetOptionError as exc:
            raise ValueError(f"dataset.{exc.option}: {exc}") from None
        try:
            check_model_options(
                m.name, num_classes=facts.num_classes, input_shape=facts.input_shape,
                width=m.width, depth=m.depth, channels_last=m.channels_last,
            )
        except ModelOptionError as exc:
            option = "name" if exc.option == "input_shape" else exc.option
            context = "" if "input_shape" in str(exc) else f" (dataset {d.name!r}, input {facts.input_shape})"
            raise ValueError(f"model.{option}: {exc}{context}") from None
        rows = d.train_size or facts.max_train_size
        for field, size in (
            ("batch_size", self.batch_size),
            ("reversibility.batch_size", self.reversibility and self.reversibility.batch_size),
            ("calibration.batch_size", self.calibration.batch_size),
        ):
            if size is not None and size > rows:
                raise ValueError(
                    f"{field}: must be in 1..{rows} (the training rows of {d.name!r}"
                    f"{' kept by train_size' if d.train_size else ''}), got {size}"
                )
        return self

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
        return self


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

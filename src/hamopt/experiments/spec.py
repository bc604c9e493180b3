r"""The experiment spec of a dynamics-lab sweep: a YAML file validated by pydantic.

A spec names the dataset, the model, the batch size and number of steps, the optimisers (each
with its step sizes and fixed hyper-parameters), the seeds, the memory ablations, the
reversibility study, the dtype and the device. Unknown keys and out-of-range values are rejected
with a :class:`SpecError` that names the key (``optimizers[2].hyper.momentum``) and the allowed
range, before anything is computed.

Step sizes are given either literally (``step_sizes: [0.002, 0.0025]``) or as fractions of the
linear stability limit measured on the problem at initialisation (``stability_fractions``), in
units of the Hamiltonian time step ``h`` (``h = dt`` for Leapfrog/Euler, ``h = √(lr(1−d))`` for SGD
with momentum): ``dt = f · dt_c`` and ``lr = f² · lr_c`` (see :mod:`hamopt.experiments.calibrate`).

An optimiser's ``type`` is any family registered in :mod:`hamopt.families` (the built-ins and
any added with :func:`hamopt.families.register_optimizer`). Its ``hyper`` keys, their defaults and
their ranges are the family's (:meth:`hamopt.families.Family.validate_hyper` builds the optimiser
on a dummy parameter, so the spec accepts exactly what the optimiser accepts); ``mode`` applies
only to families with modes and ``stability_fractions`` only to families with a stability rule.
A seeded family's generator (the ECD bounces) is seeded from each run's own seed, so ``seed`` is
not a hyper-parameter.

``stability: {every: k}`` (off when absent) records the stability monitor's sharpness, threshold and
their ratio before every k-th step of every run (:class:`~hamopt.experiments.spec_parts.StabilitySpec`).

Reading a file (UTF-8 only, no repeated keys) and the one-line error messages live in
:mod:`hamopt.experiments.spec_load`, with :func:`~hamopt.experiments.spec_load.check_runnable`,
which refuses a spec this machine cannot run (absent device, absent data) before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import families
from ..errors import SpecError
from ..families.hyper import (
    AdamHyper,
    BBIHyper,
    ECDHyper,
    ECDq1Hyper,
    ECDSepHyper,
    HamiltonianHyper,
    SGDHyper,
)
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
    StabilitySpec,
    check_seeds,
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
    "SEED_MAX",
    "StabilitySpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "spec_hash",
    "spec_to_yaml",
    "ecd_class",
]

MAX_REPLICAS = 256
"""The most runs a spec's ``replicas`` may batch into one vectorised computation."""

ABLATIONS = ("default", "thrash", "scramble")


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
    step_sizes: list[Number] | None = None
    stability_fractions: list[Number] | None = None
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
    stability: StabilitySpec | None = None
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    threads: Int | None = Field(None, ge=1, le=1024)
    workers: Int = Field(1, ge=1, le=64)
    replicas: Literal["auto"] | Int | None = None
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

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: str | int | None) -> str | int | None:
        if isinstance(v, int) and not 1 <= v <= MAX_REPLICAS:
            raise ValueError(f"must be 'auto' or a number of replicas in 1..{MAX_REPLICAS}, got {v!r}")
        return v

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
            ("stability.batch_size", self.stability and self.stability.batch_size),
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
        if self.stability is not None and self.stability.every > self.steps:
            raise ValueError(
                f"stability.every must be in 1..{self.steps} (the spec's steps), got {self.stability.every}"
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
    ``threads`` (recorded per run), ``workers``, ``replicas`` (runs batched or not compute the same series),
    an ECD optimiser's ``fused: false`` (the default, so that specs from before the option keep their hash),
    ``dataset.root`` and ``dataset.download`` (where the data comes
    from, not what it is); an absent ``stability`` monitor leaves the hash as it was before the monitor existed."""
    data = spec_dict(spec)
    if data.get("stability") is None:
        data.pop("stability", None)
    data.pop("threads", None)
    data.pop("workers", None)
    data.pop("replicas", None)
    for opt in data.get("optimizers") or []:  # ECD's fused=False (the default) keeps older hashes
        hyper = opt.get("hyper")
        if opt.get("type") in ECD_TYPES and isinstance(hyper, dict) and hyper.get("fused") is False:
            hyper.pop("fused")
    data["dataset"].pop("root", None)
    data["dataset"].pop("download", None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def spec_to_yaml(spec: ExperimentSpec, extra: dict[str, Any] | None = None) -> str:
    import yaml

    data = spec_dict(spec)
    if data.get("stability") is None:
        data.pop("stability", None)
    if data.get("replicas") is None:
        data.pop("replicas", None)
    if extra:
        data.update(extra)
    return yaml.safe_dump(data, sort_keys=False)

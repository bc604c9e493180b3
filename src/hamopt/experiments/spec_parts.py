r"""The parts of an experiment spec other than its optimisers: data set, model, ablations,
reversibility, calibration, and the number types every part uses.

Integers must be YAML integers (not ``true``, ``"5"`` or ``5.0``); numbers must be finite
(``.nan`` and ``.inf`` are refused) and not ``true``/``false``. The ranges of the data set's and
the model's options are not repeated here: they are the loader's and the builder's own, checked
by :class:`~hamopt.experiments.spec.ExperimentSpec` through
:func:`hamopt.data.check_dataset_options` and :func:`hamopt.models.check_model_options`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator, model_validator

__all__ = [
    "SEED_MAX",
    "AblationSpec",
    "CalibrationSpec",
    "DatasetSpec",
    "Int",
    "ModelSpec",
    "Number",
    "ReversibilitySpec",
    "StabilitySpec",
    "check_seeds",
]

SEED_MAX = 2**31 - 1


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


# Integers are integers (not true/false, "5" or 5.0); numbers are finite and not true/false
# (YAML 1.1 reads 1e-3 as text, so a numeric string is still read as a number).
Int = Annotated[int, Strict()]
Number = Annotated[float, BeforeValidator(_not_bool)]


class Checked(BaseModel):
    """Base of the spec's parts: unknown keys, NaN and infinity are refused; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetSpec(Checked):
    """The data set; its ranges are :func:`hamopt.data.check_dataset_options`'s (checked by
    :class:`ExperimentSpec`), the presence of its data is checked per machine by
    :func:`~hamopt.experiments.spec_load.check_runnable`."""

    name: Literal["digits", "cifar10"]
    root: str | None = Field(None, min_length=1, max_length=4096)
    download: bool = False
    train_size: Int | None = None
    test_size: Int | None = None
    augment: bool | None = None


class ModelSpec(Checked):
    """The model; ``width``/``depth`` ranges are the builder's own (checked by
    :class:`ExperimentSpec` through :func:`hamopt.models.check_model_options`)."""

    name: Literal["resnet18", "resnet20", "small_cnn", "mlp"]
    width: Int | None = None
    depth: Int | None = None
    channels_last: bool | None = None


class AblationSpec(Checked):
    """Memory ablations (spec §6) for one optimiser entry at one or more of its step sizes."""

    names: list[Literal["default", "thrash", "scramble"]] = ["default", "thrash", "scramble"]
    optimizer: str = Field(min_length=1)
    band: str = "band"
    step_index: Int = Field(-1, ge=-64, le=63)
    seeds: list[Int] = [0]

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if "default" not in v:
            raise ValueError("must include 'default' (the reference series)")
        if len(set(v)) != len(v):
            raise ValueError(f"must be distinct, got {v}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return check_seeds(v)


class ReversibilitySpec(Checked):
    """Round trips (spec §6): Leapfrog vs Euler, γ = 0, no cap, one fixed batch, error vs N."""

    steps: list[Int] = [1, 4, 16, 64]
    dtypes: list[Literal["float32", "float64"]] = ["float32", "float64"]
    dt: Number | None = Field(None, gt=0.0, le=10.0)
    stability_fraction: Number | None = Field(0.15, gt=0.0, le=10.0)
    batch_size: Int | None = Field(None, ge=1, le=65536)

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


class CalibrationSpec(Checked):
    """Power iteration for the stability limit (used by ``stability_fractions``)."""

    iterations: Int = Field(30, ge=2, le=1000)
    batch_size: Int | None = Field(None, ge=1, le=65536)


class StabilitySpec(Checked):
    """The stability monitor (:mod:`hamopt.diagnostics.stability`) in every drift run: the
    preconditioned sharpness ``λ_max(P⁻¹H)``, the optimiser's threshold and their ratio, measured
    before every ``every``-th step on one fixed batch per run (``batch_size`` rows, the spec's
    batch size when absent), by at most ``iters`` Lanczos steps to relative residual ``tol``."""

    every: Int = Field(ge=1, le=10_000_000)
    iters: Int = Field(50, ge=1, le=1000)
    tol: Number = Field(1e-3, gt=0.0, lt=1.0)
    batch_size: Int | None = Field(None, ge=1, le=65536)
    seed: Int = Field(0, ge=0, le=SEED_MAX)


def check_seeds(v: list[int]) -> list[int]:
    if not v:
        raise ValueError("must list at least one seed")
    bad = [s for s in v if not 0 <= s <= SEED_MAX]
    if bad:
        raise ValueError(f"each seed must be an integer in 0..{SEED_MAX}, got {bad[0]}")
    if len(set(v)) != len(v):
        raise ValueError(f"seeds must be distinct, got {v}")
    return v

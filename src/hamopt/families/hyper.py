r"""Hyper-parameter schemas of the optimiser families and their one-line error messages.

A family's hyper-parameters are the keyword arguments of its optimiser other than the step size
(and, for the seeded Energy Conserving Descent optimisers, other than ``seed``). A schema is a
pydantic model: it fills the defaults, checks the types (and, for the built-in families, the
ranges the lab allows) and rejects unknown keys. The optimiser itself is the final judge: a
family validates a hyper mapping by building its optimiser on a dummy parameter
(:meth:`hamopt.families.Family.validate_hyper`).

Every error is a :class:`HyperError`, one line naming ``hyper.<key>`` and the allowed values.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
    field_validator,
)

__all__ = [
    "AdamHyper",
    "BBIHyper",
    "ECDHyper",
    "ECDSepHyper",
    "ECDq1Hyper",
    "HamiltonianHyper",
    "HyperError",
    "SGDHyper",
    "describe_validation_error",
    "normalise",
    "signature_model",
]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


Real = Annotated[float, BeforeValidator(_not_bool)]  # a YAML number; true/false refused
Count = Annotated[int, Strict()]  # a YAML integer; true, "5" and 5.0 refused


class HyperError(ValueError):
    """A hyper-parameter mapping is invalid; the message names ``hyper.<key>``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HamiltonianHyper(_Strict):
    """Leapfrog/Euler: damping γ, energy cap α (None: no cap), inverse-mass rule and its clip."""

    gamma: Real = Field(1e-3, ge=0.0, le=1e3)
    cap: Real | None = Field(2.0, gt=1.0, le=1e6)
    mass: Literal["fan_in", "identity"] = "fan_in"
    mass_clip: tuple[Real, Real] = (0.125, 8.0)

    @field_validator("mass_clip")
    @classmethod
    def _clip(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"must satisfy 0 < low <= high < inf, got {v}")
        return v


class SGDHyper(_Strict):
    """``torch.optim.SGD`` (heavy ball; ``nesterov`` is refused by the family)."""

    momentum: Real = Field(0.9, ge=0.0, lt=1.0)
    dampening: Real = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: Real = Field(0.0, ge=0.0, le=1.0)
    nesterov: bool = False


class AdamHyper(_Strict):
    """``torch.optim.Adam`` / ``AdamW``."""

    betas: tuple[Real, Real] = (0.9, 0.999)
    eps: Real = Field(1e-8, gt=0.0, le=1.0)
    weight_decay: Real = Field(1e-2, ge=0.0, le=1.0)
    amsgrad: bool = False

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return v


class ECDHyper(BaseModel):
    """An Energy Conserving Descent optimiser's own keyword arguments with its own defaults, less
    ``lr`` (the run's step size) and ``seed`` (given to :meth:`Family.build` separately).

    The model checks only the types; the ranges are the optimiser's own (the family builds it on
    a dummy parameter), and the values recorded are the ones the optimiser keeps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ECDSepHyper(ECDHyper):
    """:class:`hamopt.optim.ECDSep`'s keyword arguments (``eta`` ≥ 1 required)."""

    eta: Real
    F0: Real = 0.0
    nu: Real = 1e-5
    s: Real = 1.0
    deltaEn: Real = 0.0
    weight_decay: Real = 0.0
    consEn: bool = True
    eps1: Real = 1e-10
    eps2: Real = 1e-40
    foreach: bool | None = None
    fused: bool = False


class BBIHyper(ECDHyper):
    """:class:`hamopt.optim.BBI`'s keyword arguments."""

    v0: Real = 0.0
    threshold0: Count = 1000
    threshold: Count = 3000
    n_fixed_bounces: Count = 1
    deltaEn: Real = 0.0
    weight_decay: Real = 0.0
    consEn: bool = True
    eps1: Real = 1e-10
    eps2: Real = 1e-40
    momentum_init: str = "global"
    foreach: bool | None = None
    fused: bool = False


class ECDq1Hyper(ECDHyper):
    """:class:`hamopt.optim.ECDq1`'s keyword arguments (``eta`` > 0 required)."""

    eta: Real
    F0: Real = -1.0
    nu: Real = 0.1
    weight_decay: Real = 0.0
    consEn: bool = True
    eps1: Real = 1e-10
    eps2: Real = 1e-40
    projection: str = "global"
    foreach: bool | None = None
    fused: bool = False


# ---------------------------------------------------------------------- third-party optimisers
def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, (tuple, list)):
        return all(_json_like(v) for v in value)
    return False


def signature_model(cls: type, *, exclude: Iterable[str]) -> type[BaseModel]:
    """A schema read from ``cls.__init__``: one field per keyword argument (less ``exclude`` and
    ``params``) whose default is plain data (numbers, strings, booleans, None, tuples of these);
    arguments without a default are required. Types are left to the optimiser's own checks."""
    skip = set(exclude) | {"self", "params"}
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            fields[name] = (Any, ...)
        elif _json_like(p.default):
            fields[name] = (Any, p.default)
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{cls.__name__}Hyper",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **fields,
    )


# ---------------------------------------------------------------------- messages
def describe_validation_error(exc: ValidationError, prefix: str = "hyper.") -> str:
    """One line per pydantic error, each naming ``prefix + key``; joined with ``; ``."""
    lines = []
    for err in exc.errors():
        loc = [
            str(p)
            for p in err["loc"]
            if not (isinstance(p, str) and (p.startswith("function-") or "[" in p))
            and not isinstance(p, int)
        ]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = prefix + ".".join(loc)
        # a model-level error (no key) begins with the key it is about: "hyper.seed is not ..."
        lines.append(f"{where}{msg}" if where.endswith(".") else f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


def normalise(model: type[BaseModel], hyper: Mapping[str, Any]) -> dict[str, Any]:
    """``hyper`` with every default filled in, as plain JSON-compatible data (tuples → lists)."""
    if not isinstance(hyper, Mapping):
        raise HyperError(
            f"hyper: must be a mapping of keyword arguments to values, got {type(hyper).__name__}"
        )
    bad = [k for k in hyper if not isinstance(k, str)]
    if bad:
        raise HyperError(f"hyper: keys must be strings (keyword argument names), got {bad[0]!r}")
    try:
        return model(**hyper).model_dump(mode="json")
    except ValidationError as exc:
        raise HyperError(describe_validation_error(exc)) from None

r"""The registry of optimiser families: one record per spec ``type``.

:func:`register` adds (or replaces) a :class:`~hamopt.families.Family` and registers its energy
convention with :mod:`hamopt.energy`, so :func:`hamopt.energy.convention_for` and the
:class:`~hamopt.energy.EnergyTracker` know the optimiser. :func:`register_optimizer` does it in
one call for any ``torch.optim.Optimizer`` subclass: its hyper-parameters are its own keyword
arguments, and its kinetic energy is the displacement form ``K = ½‖θ_{t+1} − θ_t‖²/lr`` with
``h = √lr`` unless a state-based ``kinetic`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer

from ..energy import conventions as C
from ..errors import UnregisteredOptimizerError
from .hyper import signature_model
from .record import Family, MomentumReader, StabilityRule
from .state import group_step_size

__all__ = [
    "UnknownFamilyError",
    "families_with_modes",
    "families_with_stability",
    "for_optimizer",
    "get",
    "names",
    "register",
    "register_optimizer",
]

_FAMILIES: dict[str, Family] = {}
_BY_CLASS: dict[type, Family] = {}


class UnknownFamilyError(ValueError):
    """No optimiser family is registered under a name; the message lists the registered ones."""


def register(family: Family) -> Family:
    """Add ``family`` (replacing one of the same name) and register its energy convention."""
    if not isinstance(family, Family):
        raise TypeError(f"register: expected a hamopt.families.Family, got {type(family).__name__}")
    if not (isinstance(family.optimizer_class, type) and issubclass(family.optimizer_class, Optimizer)):
        raise TypeError(
            f"register: optimizer_class must be a torch.optim.Optimizer subclass, got {family.optimizer_class!r}"
        )
    if not family.name or not family.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(
            f"register: name must be letters, digits, '-' or '_' (it is a spec type), got {family.name!r}"
        )
    old = _FAMILIES.get(family.name)
    if old is not None and _BY_CLASS.get(old.optimizer_class) is old:
        del _BY_CLASS[old.optimizer_class]
    _FAMILIES[family.name] = family
    _BY_CLASS[family.optimizer_class] = family
    C.register(family.optimizer_class, family.energy)
    return family


def names() -> tuple[str, ...]:
    """The registered family names, in registration order (built-ins first)."""
    return tuple(_FAMILIES)


def get(name: str) -> Family:
    """The family registered as ``name``; a clear error listing the registered names otherwise."""
    family = _FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        raise UnknownFamilyError(
            f"unknown optimiser type {name!r}; registered: {', '.join(_FAMILIES)} "
            "(add one with hamopt.families.register_optimizer)"
        )
    return family


def for_optimizer(optimizer: Optimizer | type) -> Family:
    """The family of ``optimizer`` (an instance or a class): its class or nearest registered base."""
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    for base in cls.__mro__:
        family = _BY_CLASS.get(base)
        if family is not None:
            return family
    raise UnregisteredOptimizerError(
        f"no optimiser family is registered for {cls.__name__} (registered: "
        f"{', '.join(sorted(c.__name__ for c in _BY_CLASS))}). Register it in one call with "
        f"hamopt.families.register_optimizer({cls.__name__}, name=...)"
    )


def families_with_modes() -> tuple[str, ...]:
    """Names of the families that have modes (``mode`` is allowed in a spec entry)."""
    return tuple(n for n, f in _FAMILIES.items() if f.modes)


def families_with_stability() -> tuple[str, ...]:
    """Names of the families with a stability rule (``stability_fractions`` is allowed)."""
    return tuple(n for n, f in _FAMILIES.items() if f.stability is not None)


# ---------------------------------------------------------------------- third-party optimisers
def _displacement_kinetic(optimizer: Optimizer) -> float:
    raise TypeError(
        f"{type(optimizer).__name__}: its kinetic energy is the displacement form "
        "K = ½‖θ_{t+1} − θ_t‖²/lr of the last step, which hamopt.energy.EnergyTracker measures "
        "across the step; the optimiser's state alone does not define it"
    )


def register_optimizer(
    cls: type[Optimizer],
    *,
    name: str,
    step_size_name: str = "lr",
    kinetic: Callable[[Optimizer], float] | None = None,
    time_step: Callable[[Optimizer], float] | None = None,
    momentum: MomentumReader | None = None,
    stability: StabilityRule | None = None,
    display_name: str | None = None,
    description: str = "",
) -> Family:
    r"""Register a ``torch.optim.Optimizer`` subclass as family ``name`` in one call.

    Args:
        cls: the optimiser class; its hyper-parameters are its keyword arguments other than
            ``params`` and ``step_size_name`` (defaults as in its signature).
        name: the spec ``type`` (letters, digits, ``-``, ``_``).
        step_size_name: the keyword (and param-group key) of its step size.
        kinetic: ``optimizer -> K`` from its state; None (default) uses the displacement form
            ``K = ½‖θ_{t+1} − θ_t‖²/lr``, measured by the tracker across each step.
        time_step: ``optimizer -> h``; default ``√(step size)`` (so ``K = ½‖Δθ/h‖²``).
        momentum: ``optimizer -> (param -> P)`` for the Noether monitor (default: none, the
            monitor uses the displacement).
        stability: a :class:`StabilityRule`, or None (a spec must give literal step sizes).
        display_name: for tables (default ``cls.__name__``).
        description: one line for docs.

    Returns the registered :class:`Family`.
    """
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: cls must be a torch.optim.Optimizer subclass, got {cls!r}")

    def first_step_size(opt: Optimizer) -> float:
        return group_step_size(opt.param_groups[0], step_size_name)

    def root_step_size(opt: Optimizer) -> float:
        return math.sqrt(first_step_size(opt))

    energy = C.EnergyConvention(
        name=name,
        kinetic=kinetic or _displacement_kinetic,
        step_size=first_step_size,
        time_step=time_step or root_step_size,
        displacement_form=kinetic is None,
        description=(
            f"K = ½‖θ_{{t+1}} − θ_t‖²/{step_size_name} (displacement form), h = √{step_size_name}"
            if kinetic is None
            else f"K from {cls.__name__}'s state, h = √{step_size_name}"
        ),
    )

    def construct(params: Any, step_size: float, hyper: Mapping[str, Any], **_: Any) -> Optimizer:
        return cls(params, **{step_size_name: step_size}, **hyper)

    return register(
        Family(
            name=name,
            display_name=display_name or cls.__name__,
            optimizer_class=cls,
            step_size_name=step_size_name,
            energy=energy,
            hyper_model=signature_model(cls, exclude=(step_size_name,)),
            construct=construct,
            stability=stability,
            momentum=momentum,
            step_axis=step_size_name,
            description=description or f"{cls.__module__}.{cls.__qualname__}",
        )
    )

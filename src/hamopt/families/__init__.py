r"""Optimiser families: one record per optimiser family, the one place hamopt learns what an
optimiser is.

Each :class:`Family` owns how to build its optimiser from ``(params, step_size, hyper, seed)``,
its hyper-parameter schema and validation, its step-size axis and time step ``h``, its energy
convention (kinetic energy, momentum reader for the Noether monitor), what goes into a run
manifest and its stability rule for band placement. The spec, the lab, the energy tracker, the
Noether monitor, the playground, the quick demo and the report ask this registry.

>>> from hamopt import families
>>> families.get("sgd").label({"momentum": 0.9})
'sgd-momentum'

Register a third-party optimiser in one call::

    families.register_optimizer(torch.optim.RMSprop, name="rmsprop")

See ``docs/families.md``.
"""

from .builtin import ADAM, ADAMW, BBI_FAMILY, ECDQ1, ECDSEP, EULER, LEAPFROG, SGD
from .hybrid import HYBRID
from .hyper import HyperError
from .record import Family, PlaygroundEntry, SharpnessRule, StabilityRule
from .registry import (
    UnknownFamilyError,
    families_with_modes,
    families_with_stability,
    for_optimizer,
    get,
    names,
    register,
    register_optimizer,
)
from .soap import SOAP_FAMILY  # registered when pytorch-optimizer is installed (extra "soap")

__all__ = [
    "ADAM",
    "ADAMW",
    "BBI_FAMILY",
    "ECDQ1",
    "ECDSEP",
    "EULER",
    "Family",
    "HYBRID",
    "HyperError",
    "LEAPFROG",
    "PlaygroundEntry",
    "SGD",
    "SOAP_FAMILY",
    "SharpnessRule",
    "StabilityRule",
    "UnknownFamilyError",
    "families_with_modes",
    "families_with_stability",
    "for_optimizer",
    "get",
    "names",
    "register",
    "register_optimizer",
]

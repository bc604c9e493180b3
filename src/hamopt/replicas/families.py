"""The replica optimiser of each lab optimiser family that has one (:data:`BATCHED_TYPES`).

:func:`build_replica_optimizer` takes what the family's own ``build`` takes (type, the per-replica
step sizes, the validated hyper-parameters and the mode) and returns the batched optimiser with
the same options, so a replica computes what the family's unbatched optimiser computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from .base import ReplicaOptimizer
from .baselines import ReplicaAdamW, ReplicaSGD
from .bbi import ReplicaBBI
from .ecd import ReplicaECDSep
from .hamiltonian import ReplicaEuler, ReplicaLeapfrog

__all__ = ["BATCHED_TYPES", "build_replica_optimizer"]

BATCHED_TYPES = ("leapfrog", "euler", "sgd", "adamw", "ecdsep", "bbi")


def build_replica_optimizer(type_: str, params: Sequence[Tensor], step_sizes: Sequence[float],
                            hyper: Mapping[str, Any], *, mode: str | None = None,
                            seeds: Sequence[int] | None = None) -> ReplicaOptimizer:
    """The batched optimiser of family ``type_`` over stacked ``params``, replica r at ``step_sizes[r]``.

    ``hyper`` is validated by the family (defaults filled in, unknown keys refused); ``seeds`` are
    the seeds of the replicas' own generators (ECDSep's and BBI's bounces; required there)."""
    from .. import families

    if type_ not in BATCHED_TYPES:
        raise ValueError(f"type: {type_!r} has no batched replicas; batched types are {', '.join(BATCHED_TYPES)}")
    h = families.get(type_).validate_hyper(dict(hyper), mode=mode)
    if type_ in ("leapfrog", "euler"):
        cls = ReplicaLeapfrog if type_ == "leapfrog" else ReplicaEuler
        cap = None if h["cap"] is None else float(h["cap"])
        return cls(params, lr=list(step_sizes), gamma=float(h["gamma"]), cap=cap, mass=h["mass"],
                   mass_clip=tuple(h["mass_clip"]), mode=mode or "exact")
    if type_ == "sgd":
        return ReplicaSGD(params, lr=list(step_sizes), momentum=float(h["momentum"]),
                          dampening=float(h["dampening"]), weight_decay=float(h["weight_decay"]),
                          nesterov=bool(h["nesterov"]))
    if type_ == "ecdsep":
        if seeds is None:
            raise ValueError("seeds: ECDSep replicas need one generator seed per replica")
        options = {k: h[k] for k in ("eta", "F0", "nu", "s", "deltaEn", "weight_decay", "consEn", "eps1", "eps2")}
        return ReplicaECDSep(params, lr=list(step_sizes), seeds=list(seeds), **options)
    if type_ == "bbi":
        if seeds is None:
            raise ValueError("seeds: BBI replicas need one generator seed per replica")
        keys = ("v0", "threshold0", "threshold", "n_fixed_bounces", "deltaEn", "weight_decay", "consEn", "eps1",
                "eps2", "momentum_init")
        return ReplicaBBI(params, lr=list(step_sizes), seeds=list(seeds), **{k: h[k] for k in keys})
    if type_ == "adamw":
        return ReplicaAdamW(params, lr=list(step_sizes), betas=tuple(float(b) for b in h["betas"]),
                            eps=float(h["eps"]), weight_decay=float(h["weight_decay"]), amsgrad=bool(h["amsgrad"]))

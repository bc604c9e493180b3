r"""Batched replicas: R runs of one model as one vectorised computation.

A sweep trains the same model at many step sizes and seeds; on a small model almost all of a
step's time is Python and kernel-launch overhead. This package runs R such runs at once:

* :class:`ReplicaStack` — the R models stacked ``[R, *shape]`` and evaluated by grouped matrix
  products (chains of ``Linear``/activation layers) or ``vmap(functional_call)`` (any other
  model), each replica with its own parameters, buffers and batch;
* :class:`ReplicaLeapfrog`, :class:`ReplicaEuler` (exact and streaming), :class:`ReplicaSGD`
  (heavy ball), :class:`ReplicaAdamW`, :class:`ReplicaECDSep` and :class:`ReplicaBBI` (each replica its own
  generator)
  — the optimisers with per-replica step sizes, energy
  references, cap decisions and non-finite handling (a diverged replica is frozen, the others
  go on);
* :class:`ReplicaTracker` — per replica, the :class:`~hamopt.energy.StepRecord` the unbatched
  :class:`~hamopt.energy.EnergyTracker` would give;
* :func:`build_replica_optimizer` — the replica optimiser of a lab optimiser family.

The lab uses them through ``hamopt sweep --replicas auto|R`` (:mod:`hamopt.replicas.lab`).
"""

from .base import ReplicaOptimizer
from .baselines import ReplicaAdamW, ReplicaSGD
from .bbi import ReplicaBBI
from .ecd import ReplicaECDSep
from .families import BATCHED_TYPES, build_replica_optimizer
from .hamiltonian import ReplicaEuler, ReplicaLeapfrog
from .stack import ReplicaStack
from .tracker import ReplicaTracker

__all__ = [
    "BATCHED_TYPES",
    "ReplicaAdamW",
    "ReplicaBBI",
    "ReplicaECDSep",
    "ReplicaEuler",
    "ReplicaLeapfrog",
    "ReplicaOptimizer",
    "ReplicaSGD",
    "ReplicaStack",
    "ReplicaTracker",
    "build_replica_optimizer",
]

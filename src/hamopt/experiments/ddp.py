r"""Runs of a study as DistributedDataParallel jobs under ``torchrun``.

``torchrun --nproc-per-node N -m hamopt sweep SPEC --out DIR`` (or ``... -m hamopt reproduce``)
starts N processes (ranks) that run every run of the study **together**: each run's model is
wrapped in :class:`torch.nn.parallel.DistributedDataParallel`, each rank trains on its slice of
the same global batch, and rank 0 alone writes to the store (one manifest per run, one
``spec.yaml``, one plan); the other ranks compute.

Why the series equal those of a one-process run of the same global batch ``B`` (size ``|B|``,
split into ``N`` equal slices ``B_r``): each rank's loss is the mean over its slice,
``L_r = (1/|B_r|) Σ_{i∈B_r} ℓ_i``; DDP averages the gradients, ``(1/N) Σ_r ∇L_r = ∇L_B``; and the
loss the run records and gives to the optimiser is made global the same way,
``L = (1/N) Σ_r L_r = L_B`` (:func:`global_mean`, one all-reduce of the value, gradient passed
through unchanged). The parameters are replicated, so every quantity the optimiser derives from
them and the averaged gradient (K, ⟨p, g⟩, ‖g‖², the energy cap, the ECD bounces) is the same on
every rank and equal to the one-process value up to the rounding of the reductions. An optimiser
that itself averages the loss over the group gets the same global value back.

What this needs: the global batch size divides by the world size (refused otherwise, before
anything runs); on CUDA each rank uses ``cuda:LOCAL_RANK`` (give the device as ``cuda``); a
model with batch normalisation is converted to :class:`torch.nn.SyncBatchNorm`, which torch
supports only on GPUs, so such a model on the CPU is refused (its batch statistics would be
per-rank). Local worker processes (``--workers > 1``) and the Ray backend are refused under
``torchrun``: there the ranks are the parallelism.

The process group is set up from torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): backend ``nccl`` on CUDA, ``gloo`` on the CPU.
A process group that the caller initialised already is used as it is; one initialised here is
ended once the runs are done (:func:`close`), before rank 0 writes what it computes alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .spec import SpecError

__all__ = [
    "DistributedRun",
    "close",
    "current",
    "global_mean",
    "launched_by_torchrun",
    "setup",
]


@dataclass(frozen=True)
class DistributedRun:
    """Where this process stands in a DDP job: its rank, the world size and the backend."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the store, logs and shows progress; the other ranks compute."""
        return self.rank == 0

    def manifest(self) -> dict[str, Any]:
        """The fields every run's manifest records about the job."""
        return {"world_size": self.world_size, "distributed_backend": self.backend}

    def device(self, device: str) -> str:
        """The device this rank uses for the spec's ``device``: ``cuda`` → ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if device == "cuda" else device

    def local_slice(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's contiguous slice of each global-batch tensor (first dimension)."""
        n = tensors[0].shape[0]
        if n % self.world_size:
            raise SpecError(f"batch_size: the global batch of {n} does not divide into "
                            f"{self.world_size} equal slices (one per rank)")
        size = n // self.world_size
        lo = self.rank * size
        return tuple(t[lo:lo + size] for t in tensors)

    def wrap(self, model: torch.nn.Module, device: str) -> torch.nn.Module:
        """``model`` as a DDP module (batch norms made synchronous, on CUDA only)."""
        from torch.nn.parallel import DistributedDataParallel

        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            if not device.startswith("cuda"):
                raise SpecError(
                    "model: batch normalisation under torchrun needs SyncBatchNorm, which torch "
                    "supports only on GPUs; run this model on device 'cuda' or in one process")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [torch.device(self.device(device)).index] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


class _GlobalMean(torch.autograd.Function):
    """Forward: the mean over ranks of a scalar; backward: the gradient passed through as is
    (DDP averages the parameter gradients itself)."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        total = local.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / dist.get_world_size()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return grad


def global_mean(loss: torch.Tensor) -> torch.Tensor:
    """The mean of ``loss`` over the ranks (one all-reduce), differentiable as the local loss.

    Every rank must call it the same number of times. Without an initialised process group it
    returns ``loss`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return loss
    return _GlobalMean.apply(loss)


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by ``torchrun``."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


_CURRENT: DistributedRun | None = None
_OWNED = False  # the process group was initialised by setup() (and is ended by close())


def current() -> DistributedRun | None:
    """The DDP job this process belongs to (after :func:`setup`, also after :func:`close`), or
    None in one process."""
    return _CURRENT


def close() -> None:
    """End the process group :func:`setup` initialised (a caller's own group is left as it is).

    The engine calls it once the runs are done, so that what rank 0 computes alone afterwards
    (the drift study's reversibility table runs optimisers) does not try to reduce over ranks
    that have finished. :func:`current` still tells the rank.
    """
    global _OWNED
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def setup(device: str) -> DistributedRun | None:
    """Join the DDP job torchrun started (once per process); None when not under torchrun.

    ``device`` is the study's device: it picks the backend (``nccl`` for CUDA, else ``gloo``)
    and, on CUDA, makes ``cuda:LOCAL_RANK`` this process's current device. A spec that names
    one GPU (``cuda:N``) is refused: every rank would use the same one.
    """
    global _CURRENT, _OWNED
    if _CURRENT is not None and dist.is_initialized():
        return _CURRENT
    _CURRENT = None
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and not launched_by_torchrun():
        return None
    cuda = device.startswith("cuda")
    if cuda and device != "cuda":
        raise SpecError(f"device: {device!r} names one GPU, but under torchrun every rank uses "
                        "its own (cuda:LOCAL_RANK); give the device as 'cuda'")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not initialised:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        _OWNED = True
    if dist.get_world_size() == 1:
        return None
    _CURRENT = DistributedRun(dist.get_rank(), dist.get_world_size(), local_rank,
                              str(dist.get_backend()))
    return _CURRENT

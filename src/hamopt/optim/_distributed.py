r"""What hamopt's optimisers and meters need from ``torch.distributed``, in one place.

Two layouts of a parameter across the ranks of a process group:

* **replicated** (DDP, or a plain tensor in each process): every rank holds all elements, and
  DDP has already averaged the gradients, so ``‖g‖²``, ``⟨p, g⟩`` and ``K`` computed on one rank
  are the global values. They must *not* be summed over the ranks (that would multiply them by
  the number of ranks);
* **sharded** (a ``DTensor`` with a ``Shard`` placement, as ``fully_shard`` (FSDP2) makes): each
  rank holds a slice. Norms and dot products are computed on the local slices
  (:func:`local`) and summed over the group: ``Σ_ranks Σ_{i ∈ shard} x_i y_i = ⟨x, y⟩``.

The loss is different: each rank evaluates its local mean loss on its local batch, and the
global loss of equal-sized local batches is the mean over ranks.

:func:`all_reduce_sums` does all of this with **one** ``all_reduce(SUM)`` of one float64 vector:
every value to sum and every loss to average are flattened into it, reduced together, and split
back. In one process nothing here is called (the optimisers test :func:`is_distributed` first).

How :class:`~hamopt.optim.base.HamoptOptimizer` uses it, when ``torch.distributed`` is
initialised and the process group has more than one rank. Every decision value passes through
:meth:`HamoptOptimizer._reduce` / :meth:`HamoptOptimizer._reduce_with_loss`, which issue at most
ONE ``all_reduce`` of one float64 vector per reduction point:

* the loss (the closure's value, or ``loss=``) is each rank's *local mean loss on an
  equal-sized local batch*; the optimiser uses (and reports in ``stats``) the mean over the
  ranks, the global loss. ``step`` still returns the caller's own value;
* replicated parameters (DDP: plain tensors, gradients already averaged by DDP): norms, dot
  products and K are computed locally and are already global; they are never summed over ranks
  (that would multiply them by the number of ranks). Under DDP only the loss is communicated;
* sharded parameters (``DTensor``, e.g. ``fully_shard``/FSDP2): every kernel works on the local
  shards (:func:`local`), and norms, dot products and K are summed over the group,
  so K is the global K. An optimiser mixes no plain tensors with sharded ones
  (:func:`check_layout` refuses it when the parameters are added).

The decision values are therefore identical on every rank, and so are the energy cap's and the
ECD bounces' decisions. In one process none of this runs: the values pass through unchanged,
with no copy and no extra kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import sys
from typing import Any

import torch
from torch import Tensor

try:  # torch.distributed is optional in a torch build
    import torch.distributed as dist
except ImportError:  # pragma: no cover - a build without distributed support
    dist = None  # type: ignore[assignment]

#: ``DTensor``'s class, looked up once ``torch.distributed.tensor`` has been imported (by whoever
#: made a DTensor: none can exist before). Importing that module costs about 1.3 s of start-up,
#: which programs that never shard should not pay.
_DTENSOR: type | None = None

__all__ = [
    "all_reduce_sums", "broadcast_int", "check_layout", "fill_as_full", "full", "group_rank", "group_size",
    "is_distributed", "is_sharded", "local",
]


def is_distributed(group: Any = None) -> bool:
    """True when ``torch.distributed`` is available and initialised and ``group`` (None: the
    default group) has more than one rank."""
    return (dist is not None and dist.is_available() and dist.is_initialized()
            and dist.get_world_size(group) > 1)


def group_size(group: Any = None) -> int:
    """The number of ranks of ``group`` (1 when not distributed)."""
    return dist.get_world_size(group) if is_distributed(group) else 1


def group_rank(group: Any = None) -> int:
    """This process's rank in ``group`` (0 when not distributed)."""
    return dist.get_rank(group) if is_distributed(group) else 0


def _dtensor_class() -> type | None:
    global _DTENSOR
    if _DTENSOR is None:
        module = sys.modules.get("torch.distributed.tensor")
        _DTENSOR = getattr(module, "DTensor", None)
    return _DTENSOR


def is_dtensor(t: Any) -> bool:
    cls = _dtensor_class()
    return cls is not None and isinstance(t, cls)


def is_sharded(t: Any) -> bool:
    """True for a ``DTensor`` that some rank holds only part of (any placement but ``Replicate``)."""
    if not is_dtensor(t):
        return False
    from torch.distributed.tensor.placement_types import Replicate

    return not all(isinstance(pl, Replicate) for pl in t.placements)


def local(t: Tensor) -> Tensor:
    """The tensor this process holds: a ``DTensor``'s local shard (a view: in-place changes reach
    the ``DTensor``), any other tensor itself."""
    if is_dtensor(t):
        return t._local_tensor if not torch.is_grad_enabled() else t.to_local()
    return t


def full(t: Tensor) -> Tensor:
    """All elements of ``t`` on every rank (``DTensor.full_tensor()``, a collective: every rank
    must call it); any other tensor itself."""
    return t.full_tensor() if is_dtensor(t) else t


def check_layout(params: Sequence[Tensor], where: str, name: str) -> bool:
    """Whether ``params`` (all of an optimiser's parameters) are sharded ``DTensor``s. A mix of
    sharded and unsharded parameters is refused, naming one of each: their norms need different
    reductions (summed over the ranks for shards, not for replicas)."""
    sharded = [is_sharded(t) for t in params]
    if any(sharded) and not all(sharded):
        i, j = sharded.index(False), sharded.index(True)
        raise ValueError(
            f"{where}params: parameter {i} is not sharded (a plain tensor or a replicated DTensor) and parameter "
            f"{j} is a sharded DTensor (counting over all groups); {name} sums norms over the shards of sharded "
            "parameters only, so its parameters must all be sharded (apply fully_shard to the root module too) "
            "or none"
        )
    return bool(sharded) and all(sharded)


def _local_slices(t: Tensor) -> tuple[slice, ...]:
    """Where a sharded ``DTensor``'s local shard sits in the full tensor."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def fill_as_full(targets: Sequence[Tensor], owners: Sequence[Tensor], fill: Callable[[Tensor], None]) -> None:
    """Fill each ``targets[i]`` (the local tensor of ``owners[i]``) with what ``fill`` writes into a
    tensor of the full shape, restricted to this rank's shard: a random draw then equals, on each
    shard, the one-process draw of the whole tensor (every rank draws all of it, from identical
    generators). Tensors that are not sharded are filled directly, in order."""
    for target, owner in zip(targets, owners):
        if is_sharded(owner):
            whole = torch.empty(owner.shape, dtype=target.dtype, device=target.device)
            fill(whole)
            target.copy_(whole[_local_slices(owner)])
        else:
            fill(target)


def all_reduce_sums(sums: Sequence[Tensor | None], means: Sequence[Tensor | None], group: Any,
                    *, sum_over_ranks: bool) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """ONE ``all_reduce(SUM)`` over ``group`` of every value given.

    ``sums`` are float64 tensors (0-d or 1-d) holding sums over this rank's elements; they are
    summed over the ranks when ``sum_over_ranks`` (sharded parameters) and returned as they are
    otherwise (replicated parameters: already global). ``means`` (the per-rank losses) are
    averaged over the ranks. None passes through. When nothing needs a reduction no collective
    is issued. Every rank of ``group`` must call this with values of the same shapes.
    """
    to_sum = [v for v in sums if v is not None] if sum_over_ranks else []
    to_mean = [v for v in means if v is not None]
    if not to_sum and not to_mean:
        return list(sums), list(means)
    parts = to_sum + to_mean
    device = _communication_device(group, parts[0].device)
    flat = torch.cat([v.detach().to(device=device, dtype=torch.float64).reshape(-1) for v in parts])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    pieces = iter(flat.split([v.numel() for v in parts]))
    size = dist.get_world_size(group)

    def back(values: Sequence[Tensor | None], reduce: bool, scale: float) -> list[Tensor | None]:
        out: list[Tensor | None] = []
        for v in values:
            if v is None or not reduce:
                out.append(v)
            else:
                piece = next(pieces).reshape(v.shape)
                out.append(piece / scale if scale != 1.0 else piece)
        return out

    return back(sums, sum_over_ranks, 1.0), back(means, True, float(size))


def _communication_device(group: Any, preferred: torch.device | str) -> torch.device:
    """The device a collective of ``group`` takes its tensors on: the current CUDA device for NCCL,
    ``preferred`` otherwise."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(preferred)


def broadcast_int(value: int, group: Any = None) -> int:
    """``value`` as rank 0 of ``group`` holds it, on every rank (one broadcast of an int64)."""
    t = torch.tensor([value], dtype=torch.int64, device=_communication_device(group, "cpu"))
    dist.broadcast(t, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return int(t.item())

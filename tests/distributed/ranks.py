"""What each rank of the distributed tests runs (``torch.multiprocessing.spawn`` target).

One spawn runs every check, so the processes start once: each scenario under DDP and under
FSDP2, a checkpoint save and resume through ``torch.distributed.checkpoint``, the seed broadcast
and the number of ``all_reduce`` calls an optimiser step makes. Each rank saves what it saw to
``<outdir>/rank<r>.pt``; the test compares it with the one-process reference.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import scenarios as S

CHECKPOINTED = ("leapfrog-streaming", "ecdsep", "bbi")
SPLIT = 3  # checkpoint after this many steps


class AllReduceCounter:
    """Counts ``torch.distributed.all_reduce`` calls made by the optimiser during ``step`` (calls
    inside the closure, by the training framework, are not counted)."""

    def __init__(self) -> None:
        self.total = 0
        self.in_closure = 0
        self._inner = dist.all_reduce

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.total += 1
        return self._inner(*args, **kwargs)

    def install(self) -> None:
        dist.all_reduce = self  # type: ignore[assignment]

    def remove(self) -> None:
        dist.all_reduce = self._inner


def wrap(model: nn.Module, kind: str) -> nn.Module:
    if kind == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    fully_shard(model[0])
    fully_shard(model[2])
    fully_shard(model)
    return model


def wrap_gpt(model: nn.Module, kind: str) -> nn.Module:
    if kind == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    fully_shard(model)
    return model


def counted_steps(model: nn.Module, opt: Any, name: str, steps: range, rank: int, world: int,
                  counter: AllReduceCounter) -> tuple[list[dict], list[int]]:
    """:func:`scenarios.train_steps` one step at a time, with the number of all-reduces the
    optimiser made in each step."""
    records, counts = [], []
    for t in steps:
        total, in_closure = counter.total, counter.in_closure
        records += S.train_steps(model, opt, name, range(t, t + 1), rank, world, counter)
        counts.append((counter.total - total) - (counter.in_closure - in_closure))
    return records, counts


def run_rank(rank: int, world: int, port: int, outdir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    counter = AllReduceCounter()
    counter.install()
    out: dict[str, Any] = {"runs": {}, "counts": {}, "resumed": {}, "continued": {}, "tracked": {}, "noether": {}}
    try:
        for kind in ("ddp", "fsdp2"):
            for name, build in S.OPTIMIZERS.items():
                model = wrap(S.make_model(), kind)
                opt = build(list(model.parameters()))
                records, counts = counted_steps(model, opt, name, range(S.STEPS), rank, world, counter)
                out["runs"][kind, name] = records
                out["counts"][kind, name] = counts
            for name in CHECKPOINTED:
                out["continued"][kind, name], out["resumed"][kind, name] = _save_and_resume(
                    name, kind, rank, world, os.path.join(outdir, f"dcp-{kind}-{name}"))
            for name, build in S.TRACKED.items():
                model = wrap(S.make_model(), kind)
                out["tracked"][kind, name] = S.tracked_run(model, build(list(model.parameters())), rank, world)
            out["noether"][kind] = S.noether_run(wrap_gpt(S.tiny_gpt(), kind), rank, world)
        torch.manual_seed(100 + rank)  # different global RNG states: seed=None must still agree
        model = wrap(S.make_model(), "ddp")
        out["seed_none"] = _seed_of_unseeded(model)
        out["mixed_layout_error"] = _mixed_layout_error()
    finally:
        counter.remove()
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
        dist.destroy_process_group()


def _seed_of_unseeded(model: nn.Module) -> int:
    import hamopt

    return hamopt.ECDSep(model.parameters(), lr=0.01, eta=2.0).global_state["seed"]


def _mixed_layout_error() -> str | None:
    """The error of an optimiser given FSDP2-sharded parameters and a plain one."""
    import hamopt

    model = wrap(S.make_model(), "fsdp2")
    extra = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    try:
        hamopt.Leapfrog([{"params": list(model.parameters())}, {"params": [extra]}], lr=0.1)
    except ValueError as exc:
        return str(exc)
    return None


def _save_and_resume(name: str, kind: str, rank: int, world: int, path: str) -> tuple[list[dict], list[dict]]:
    """Train SPLIT steps, save model and optimiser with DCP, train on (the continued run); then a
    fresh model and optimiser load the checkpoint and train the same steps (the resumed run)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    build = S.OPTIMIZERS[name]
    model = wrap(S.make_model(), kind)
    opt = build(list(model.parameters()))
    S.train_steps(model, opt, name, range(SPLIT), rank, world)
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=path)
    continued = S.train_steps(model, opt, name, range(SPLIT, S.STEPS), rank, world)

    fresh = wrap(S.make_model(), kind)
    for p in fresh.parameters():  # start far from the saved state: the load must set everything
        p.data.add_(1.0)
    opt2 = build(list(fresh.parameters()))
    opt2.materialize_state()  # the state dcp.load reads into must have every entry
    msd2, osd2 = get_state_dict(fresh, opt2)
    state = {"model": msd2, "optim": osd2}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(fresh, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    resumed = S.train_steps(fresh, opt2, name, range(SPLIT, S.STEPS), rank, world)
    return continued, resumed

"""Two gloo ranks against one process on the same global batches (float64, CPU).

One ``mp.spawn`` runs every check (see :mod:`tests.distributed.ranks`); the tests below read
what the ranks saved. Checked per step, to 1e-12 relative: the parameters and every ``stats``
value, for DDP and FSDP2, Leapfrog (exact, streaming with a closure and with ``loss=``), Euler
and the ECD family, with the energy cap firing and ECD bounces; a save and resume through
``torch.distributed.checkpoint`` continues bit for bit; ``seed=None`` gives one seed on every
rank; the optimiser makes the documented number of ``all_reduce`` calls per step.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

from . import scenarios as S

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    from .ranks import run_rank

    outdir = str(tmp_path_factory.mktemp("ranks"))
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the ranks inherit it
    try:
        mp.spawn(run_rank, args=(WORLD, _free_port(), outdir), nprocs=WORLD, join=True)
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    return [torch.load(os.path.join(outdir, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def references():
    return {name: S.reference(name) for name in S.OPTIMIZERS}


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
@pytest.mark.parametrize("name", list(S.OPTIMIZERS))
def test_two_ranks_match_one_process(ranks, references, kind, name):
    want = references[name]
    if name in S.MUST_HAPPEN:
        assert S.MUST_HAPPEN[name]([r["stats"] for r in want]), f"the reference run of {name} misses its event"
    for rank, seen in enumerate(ranks):
        S.assert_same_run(seen["runs"][kind, name], want, where=f"{kind} {name} rank {rank}")


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
@pytest.mark.parametrize("name", ["leapfrog-streaming", "ecdsep", "bbi"])
def test_checkpoint_resume_continues_bit_for_bit(ranks, references, kind, name):
    for rank, seen in enumerate(ranks):
        continued, resumed = seen["continued"][kind, name], seen["resumed"][kind, name]
        S.assert_same_run(resumed, continued, rel=0.0, where=f"{kind} {name} rank {rank} resumed")
        S.assert_same_run(continued, references[name][3:], where=f"{kind} {name} rank {rank} continued")


def test_unseeded_ecd_takes_rank_zeros_seed(ranks):
    seeds = [seen["seed_none"] for seen in ranks]
    assert len(set(seeds)) == 1


def test_sharded_and_plain_parameters_are_refused_together(ranks):
    for seen in ranks:
        message = seen["mixed_layout_error"]
        assert message is not None and message.startswith("param_groups[1].params: parameter 4 is not sharded")
        assert "apply fully_shard to the root module too" in message


# all_reduce calls per optimiser step (steady state), as docs/distributed.md states them
EXPECTED_ALL_REDUCES = {
    # (DDP, FSDP2): one batched reduction per sync point; DDP communicates only the loss
    "leapfrog-exact": (2, 2),
    "leapfrog-streaming": (1, 1),
    "leapfrog-loss-kw": (1, 1),
    "euler-exact": (2, 2),
    "ecdsep": (1, 2),
    "bbi": (1, 2),
    "ecdq1": (1, 2),
}


@pytest.mark.parametrize("name", list(S.OPTIMIZERS))
def test_all_reduce_count_per_step(ranks, name):
    ddp, fsdp2 = EXPECTED_ALL_REDUCES[name]
    for seen in ranks:
        assert seen["counts"]["ddp", name][1:] == [ddp] * (S.STEPS - 1)
        assert seen["counts"]["fsdp2", name][1:] == [fsdp2] * (S.STEPS - 1)


@pytest.fixture(scope="module")
def tracked_references():
    return {name: S.tracked_reference(name) for name in S.TRACKED}


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
@pytest.mark.parametrize("name", list(S.TRACKED))
def test_energy_tracker_records_global_values(ranks, tracked_references, kind, name):
    for rank, seen in enumerate(ranks):
        S.assert_same_records(seen["tracked"][kind, name], tracked_references[name], where=f"{kind} {name} rank {rank}")


@pytest.mark.parametrize("kind", ["ddp", "fsdp2"])
def test_noether_monitor_measures_global_charges(ranks, kind):
    want = S.noether_run(S.tiny_gpt())
    for rank, seen in enumerate(ranks):
        S.assert_same_summaries(seen["noether"][kind], want, where=f"{kind} rank {rank}")

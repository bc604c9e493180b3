"""GPU smoke test of symbreak-124m (marked ``gpu``; skipped without CUDA): the 124M GPT on
synthetic uint16 shards, a few steps per optimiser and variant, through the run engine, with the
per-step time and the charges recorded. The full run is one command (docs/symbreak.md):

    hamopt reproduce --preset symbreak-124m --out DIR --data-root SHARDS
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from hamopt.experiments.symbreak import PRESETS, run_preset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_the_124m_preset_trains_on_a_gpu(tmp_path):
    from hamopt.data.text import write_token_shard

    g = torch.Generator().manual_seed(0)
    shards = tmp_path / "shards"
    shards.mkdir()
    write_token_shard(shards / "train_000.bin", torch.randint(0, 50257, (200_000,), generator=g))
    write_token_shard(shards / "val_000.bin", torch.randint(0, 50257, (50_000,), generator=g))
    preset = replace(PRESETS["symbreak-124m"], steps=4, eval_every=2, val_windows=8, seeds=(0,),
                     optimizers=("adamw", "leapfrog"))
    summary = run_preset(preset, tmp_path / "out", data_dir=shards)
    assert summary.failed == 0 and summary.runs == 4
    for run in (tmp_path / "out" / "runs").iterdir():
        man = json.loads((run / "manifest.json").read_text())
        assert man["status"] == "completed" and man["device"] == "cuda"
        assert man["parameters"] > 100_000_000 and man["state_bytes_per_parameter"] > 0

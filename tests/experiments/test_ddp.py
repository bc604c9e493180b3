"""Runs of a study as DDP jobs under torchrun (gloo, 2 CPU ranks) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from hamopt.errors import OptionError, SpecError
from hamopt.experiments import ddp, engine
from hamopt.experiments.presets import preset_text
from hamopt.experiments.runner import DriftStudy, run_sweep
from hamopt.experiments.spec import parse_spec

from .tiny import tiny_dict

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo on Linux")

VALUE_COLUMNS = ("loss", "loss_after", "kinetic_before", "kinetic", "hamiltonian_before",
                 "hamiltonian", "delta_h_int", "delta_h_traj", "resampling", "grad_norm")


def _torchrun(spec_file, out, *extra, ranks=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={ranks}", "-m", "hamopt", "sweep", str(spec_file), "--out", str(out),
           "--no-progress", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _compare(one, two, *, rtol, atol):
    """Every run's series in ``two`` equals the one-process run in ``one``; return run ids."""
    runs = sorted(p.name for p in (one / "runs").iterdir())
    assert runs == sorted(p.name for p in (two / "runs").iterdir())
    for run in runs:
        a = pq.read_table(one / "runs" / run / "steps.parquet").to_pydict()
        b = pq.read_table(two / "runs" / run / "steps.parquet").to_pydict()
        assert a["step"] == b["step"] and a["cap_engaged"] == b["cap_engaged"], run
        for col in VALUE_COLUMNS:
            x = np.array([np.nan if v is None else v for v in a[col]], dtype=float)
            y = np.array([np.nan if v is None else v for v in b[col]], dtype=float)
            np.testing.assert_allclose(y, x, rtol=rtol, atol=atol, equal_nan=True,
                                       err_msg=f"{run} {col}")
    return runs


def test_torchrun_sweep_matches_one_process_in_float64(tmp_path):
    d = tiny_dict(dtype="float64", steps=8, seeds=[0], ablations=None)
    d["optimizers"] = [
        {"name": "leapfrog-exact", "type": "leapfrog", "mode": "exact", "band": "band",
         "step_sizes": [3.0], "hyper": {"cap": 1.001}},  # a tight cap: it fires on most steps
        {"name": "leapfrog-streaming", "type": "leapfrog", "mode": "streaming", "band": "band",
         "step_sizes": [3.0]},
        {"name": "adamw", "type": "adamw", "band": "band", "step_sizes": [0.003]},
    ]
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(d))
    run_sweep(parse_spec(d), tmp_path / "one", progress=False, log=lambda s: None)
    proc = _torchrun(spec_file, tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _compare(tmp_path / "one", tmp_path / "two", rtol=1e-10, atol=1e-12)
    caps = pq.read_table(tmp_path / "one" / "runs" / runs[1] / "steps.parquet")["cap_engaged"]
    assert 0 < sum(caps.to_pylist()) < 8  # the cap fired on some steps, not all
    for run in runs:
        man = json.loads((tmp_path / "two" / "runs" / run / "manifest.json").read_text())
        assert (man["world_size"], man["distributed_backend"], man["status"]) == (2, "gloo",
                                                                                 "completed")
    one = json.loads((tmp_path / "one" / "runs" / runs[0] / "manifest.json").read_text())
    assert (one["world_size"], one["distributed_backend"]) == (1, None)
    assert proc.stdout.count("runs planned") + proc.stderr.count("runs planned") == 1  # rank 0
    # rank 0 alone wrote the reversibility table, after the ranks parted
    rev = [(tmp_path / d / "reversibility.csv").read_text().splitlines() for d in ("one", "two")]
    assert len(rev[1]) == len(rev[0]) > 1


def test_torchrun_quick_study_matches_one_process_in_float32(tmp_path):
    d = yaml.safe_load(preset_text("quick"))
    d.update(steps=25, seeds=[0], ablations=None, reversibility=None, workers=1)  # torchrun: one process per rank
    d["optimizers"] = [o for o in d["optimizers"] if o["band"] == "band"]
    for o in d["optimizers"]:
        for key in ("stability_fractions", "step_sizes"):
            if key in o:
                o[key] = o[key][-1:]
    spec_file = tmp_path / "quick.yaml"
    spec_file.write_text(yaml.safe_dump(d))
    run_sweep(parse_spec(d), tmp_path / "one", progress=False, log=lambda s: None)
    proc = _torchrun(spec_file, tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_compare(tmp_path / "one", tmp_path / "two", rtol=1e-5, atol=1e-5)) == 4
    assert (tmp_path / "two" / "table.csv").is_file()


# ---------------------------------------------------------------- refusals, without a launch
JOB = ddp.DistributedRun(rank=0, world_size=2, local_rank=0, backend="gloo")


def test_workers_and_ray_are_refused_in_a_job():
    spec = parse_spec(tiny_dict(workers=2))
    with pytest.raises(OptionError, match="workers: 2 worker processes cannot run under torchrun"):
        engine._check_job(DriftStudy(spec), JOB, None)
    with pytest.raises(OptionError, match="--backend ray cannot run under torchrun"):
        engine._check_job(DriftStudy(parse_spec(tiny_dict())), JOB, object())


def test_a_global_batch_that_does_not_divide_is_refused():
    study = DriftStudy(parse_spec(tiny_dict(batch_size=15)))
    with pytest.raises(SpecError, match="batch_size: the global batch size 15 must divide by "
                                        "the world size 2"):
        study.check_world(2)
    DriftStudy(parse_spec(tiny_dict(batch_size=16))).check_world(4)


def test_batch_norm_on_the_cpu_is_refused():
    study = DriftStudy(parse_spec(tiny_dict(model={"name": "resnet18"})))
    with pytest.raises(SpecError, match="batch normalisation.*SyncBatchNorm"):
        study.check_world(2)


def test_a_study_without_ddp_support_is_refused():
    class OneProcess(engine.Study):
        steps = 1
        identity = schema = plan = start = run_manifest = None  # type: ignore[assignment]

    with pytest.raises(OptionError, match="runs in one process; it cannot run under torchrun"):
        engine.Study.check_world(OneProcess.__new__(OneProcess), 2)


def test_slices_and_devices_of_a_rank():
    import torch

    rank1 = ddp.DistributedRun(rank=1, world_size=2, local_rank=1, backend="nccl")
    x, y = rank1.local_slice(torch.arange(8), torch.arange(8) * 10)
    assert x.tolist() == [4, 5, 6, 7] and y.tolist() == [40, 50, 60, 70]
    assert rank1.device("cuda") == "cuda:1" and rank1.device("cpu") == "cpu"
    with pytest.raises(SpecError, match="does not divide into 2 equal slices"):
        rank1.local_slice(torch.arange(7))
    from unittest import mock

    with mock.patch("torch.nn.parallel.DistributedDataParallel") as wrapper:
        rank1.wrap(torch.nn.Linear(2, 2), "cuda")
    assert wrapper.call_args.kwargs["device_ids"] == [1]  # 'cuda' is this rank's GPU
    with pytest.raises(SpecError, match="batch normalisation under torchrun needs SyncBatchNorm"):
        rank1.wrap(torch.nn.BatchNorm1d(2), "cpu")
    loss = torch.tensor(2.0, requires_grad=True)
    assert ddp.global_mean(loss) is loss  # one process: the loss itself

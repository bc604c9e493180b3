"""``--replicas`` on the command line."""

from __future__ import annotations

import json

import yaml

from hamopt.cli import main

from ..experiments.tiny import tiny_dict


def test_sweep_replicas_batches_and_bad_values_are_refused(tmp_path, capsys):
    spec = tiny_dict(steps=5, seeds=[0, 1], reversibility=None, ablations=None)
    spec["optimizers"] = spec["optimizers"][:1]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--replicas", "3", "--no-progress"]) == 0
    manifests = [json.loads(m.read_text()) for m in out.glob("runs/*/manifest.json")]
    # a batch of one runs as a plain run (no replica_batch entry)
    assert sorted(m.get("replica_batch", {}).get("size", 1) for m in manifests) == [1, 3, 3, 3]
    assert "replicas: 4 runs in 2 batches (3, 1 replicas)" in capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(tmp_path / "x"), "--replicas", "lots"]) == 2
    assert "--replicas must be 'auto', 'off' or a number of replicas in 1..256, got 'lots'" in capsys.readouterr().err

"""Sweeps on Ray: each run a Ray task, committed through the same store, series bit-identical."""

from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq
import pytest

from hamopt.cli import main
from hamopt.errors import OptionError
from hamopt.experiments.analysis import analyse, write_analysis
from hamopt.experiments.ray_backend import RayOptions, require_ray
from hamopt.experiments.runner import run_sweep
from hamopt.experiments.store import SpecMismatchError

from .tiny import tiny_dict, tiny_spec


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def _small(**changes):
    return tiny_spec(seeds=[0], ablations=None, **changes)


def _series(out):
    return {p.name: pq.read_table(p / "steps.parquet").to_pydict()
            for p in sorted((out / "runs").iterdir())}


def test_ray_sweep_equals_the_serial_sweep_and_resumes(ray_instance, tmp_path):
    spec = _small()
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    run_sweep(spec, serial, progress=False, log=lambda s: None)
    lines: list[str] = []
    summary = run_sweep(spec, on_ray, progress=False, log=lines.append,
                        backend=RayOptions(cpus_per_run=1))
    assert (summary.planned, summary.completed, summary.failed) == (8, 8, 0)
    assert _series(on_ray) == _series(serial)  # bit for bit, every column of every run
    for out in (serial, on_ray):
        write_analysis(out, analyse(out))
    assert (on_ray / "table.csv").read_text() == (serial / "table.csv").read_text()
    assert (on_ray / "plan.json").read_text() == (serial / "plan.json").read_text()
    run = next((on_ray / "runs").iterdir())
    assert json.loads((run / "manifest.json").read_text())["threads"] == 1
    # resumable and idempotent: a second sweep finds every run done and runs nothing
    again = run_sweep(spec, on_ray, progress=False, log=lines.append, backend=RayOptions())
    assert (again.skipped, again.completed) == (8, 0)
    assert _series(on_ray) == _series(serial)
    # spec-hash guarded like every sweep
    with pytest.raises(SpecMismatchError):
        run_sweep(_small(steps=5), on_ray, progress=False, backend=RayOptions())


def test_cli_sweep_on_ray_redoes_only_what_is_missing(ray_instance, tmp_path, capsys):
    import yaml

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_dict(seeds=[0], ablations=None, reversibility=None,
                                                  optimizers=tiny_dict()["optimizers"][2:])))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--backend", "ray",
                 "--cpus-per-run", "1", "--no-progress"]) == 0
    before = _series(out)
    lost = sorted(before)[0]
    (out / "runs" / lost / "manifest.json").unlink()  # as if the run had been in flight
    assert main(["sweep", str(spec_file), "--out", str(out), "--backend", "ray",
                 "--no-progress"]) == 0
    assert "3 of 4 runs already done" in capsys.readouterr().err
    assert _series(out) == before


def test_resources_and_refusals(monkeypatch):
    class Study:
        threads, device = 3, "cuda"

    assert RayOptions().resources(Study()) == (3.0, 1.0)
    assert RayOptions(cpus_per_run=0.5, gpus_per_run=0).resources(Study()) == (0.5, 0)
    with pytest.raises(OptionError, match="--cpus-per-run must be a number from more than 0"):
        RayOptions(cpus_per_run=0)
    with pytest.raises(OptionError, match="--gpus-per-run must be a number from 0 to 64"):
        RayOptions(gpus_per_run=-1)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(OptionError, match=r"pip install 'hamopt\[ray\]'"):
        require_ray()


def test_cli_refuses_ray_options_without_ray_backend(tmp_path, capsys):
    code = main(["sweep", "x.yaml", "--out", str(tmp_path / "o"), "--address", "auto"])
    assert code == 2
    assert "--address: only used with --backend ray" in capsys.readouterr().err

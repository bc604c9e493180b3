"""No orphans: SIGKILL of a sweep's driver leaves no worker running; resuming gives the same series."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from hamopt.experiments.orphan_reaper import descendants
from hamopt.experiments.runner import run_sweep
from hamopt.experiments.spec import parse_spec

from .tiny import tiny_dict

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SLOW = tiny_dict(
    model={"name": "mlp", "width": 32, "depth": 1}, batch_size=64, steps=150, seeds=[0, 1],
    ablations=None, reversibility=None,
    optimizers=[{"name": "sgd", "type": "sgd", "band": "band", "step_sizes": [0.01, 0.02]},
                {"name": "adamw", "type": "adamw", "band": "band", "step_sizes": [0.001, 0.002]}],
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("orphans") / "serial"
    run_sweep(parse_spec(SLOW), out, progress=False, log=lambda s: None)
    return _series(out)


def _series(out):
    return {p.name: pq.read_table(p / "steps.parquet").to_pydict()
            for p in sorted((out / "runs").iterdir())}


def _alive(procs):
    """The recorded processes that still run (same pid and start time, not a zombie)."""
    now = descendants(0)  # every process: pid 0 is the parent of the first ones
    return {p: s for p, s in procs.items() if now.get(p) == s}


def _kill_driver_mid_sweep(tmp_path, *backend):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SLOW))
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "hamopt", "sweep", str(spec_file), "--out", str(out),
         "--no-progress", *backend],
        env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    procs: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("runs/*/manifest.json")):  # the first run is in
            assert driver.poll() is None, driver.stderr.read()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.2)
        procs = descendants(driver.pid)
        assert len(procs) >= 2  # the workers (and, on Ray, its services) run
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 45
        while _alive(procs) and time.monotonic() < deadline:
            time.sleep(0.25)
        left = _alive(procs)
        assert not left, f"still running after the driver was killed: {sorted(left)}"
        done = len(list(out.glob("runs/*/manifest.json")))
        assert 1 <= done < 8  # killed mid-sweep
        return parse_spec(SLOW), out
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in _alive(procs):  # a failed check must not leave them behind either
            os.kill(pid, signal.SIGKILL)
        driver.stderr.close()


def test_local_pool_workers_die_with_a_killed_driver_and_resume_gives_the_same_series(
        tmp_path, reference):
    spec, out = _kill_driver_mid_sweep(tmp_path, "--workers", "2")
    summary = run_sweep(spec, out, progress=False, log=lambda s: None)
    assert summary.skipped >= 1 and summary.failed == 0
    assert _series(out) == reference


def test_ray_workers_die_with_a_killed_driver_and_resume_gives_the_same_series(
        tmp_path, reference):
    pytest.importorskip("ray")
    spec, out = _kill_driver_mid_sweep(tmp_path, "--backend", "ray", "--cpus-per-run", "1")
    summary = run_sweep(spec, out, progress=False, log=lambda s: None)
    assert summary.skipped >= 1 and summary.failed == 0
    assert _series(out) == reference


def test_parent_watch_ends_a_worker_whose_parent_is_gone():
    # two children arm the watch for their parent, then outlive it: each must end by itself,
    # the first through the kernel's parent-death signal, the second (without it) by polling
    code = ("import os, time\n"
            "import hamopt.experiments.local_pool as pool\n"
            "for kernel_signal in (True, False):\n"
            "    if not kernel_signal:\n"
            "        pool._parent_death_signal = lambda: False\n"
            "    if os.fork() == 0:\n"
            "        pool.die_with_parent(os.getppid())\n"
            "        print(os.getpid(), flush=True)\n"
            "        time.sleep(60)\n"
            "        os._exit(0)\n"
            "time.sleep(1.5)\n"
            "os._exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # returns once both children have closed their stdout
    children = [int(pid) for pid in proc.stdout.split()]
    assert len(children) == 2
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{c}") for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if os.path.exists(f"/proc/{c}")]

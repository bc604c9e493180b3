"""The report's jobs shared between processes: each runs once, failures surface here, same files."""

from __future__ import annotations

import os
import time

import pytest

from hamopt.report import write_report
from hamopt.report.parallel import run_jobs

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forked children need os.fork")


def _writer(path, seconds=0.0):
    def job():
        time.sleep(seconds)
        with open(path, "a") as fh:  # appended: a job run twice would leave two lines
            fh.write(f"{os.getpid()}\n")
    return job


def test_every_job_runs_exactly_once_and_a_child_takes_some(tmp_path):
    paths = [tmp_path / f"job{i}.txt" for i in range(8)]
    run_jobs([_writer(p, seconds=0.1) for p in paths], processes=2)
    lines = [p.read_text().splitlines() for p in paths]
    assert all(len(rows) == 1 for rows in lines), lines
    pids = {rows[0] for rows in lines}
    assert str(os.getpid()) in pids and len(pids) == 2, pids  # this process and one child


def test_a_job_failing_in_a_child_is_rerun_here_and_its_error_raised_here(tmp_path):
    parent = os.getpid()

    def fails_in_child():
        if os.getpid() != parent:
            os._exit(3)  # the child dies in this job
        (tmp_path / "ran_here").write_text("yes")

    def boom():
        raise RuntimeError("bad figure")

    run_jobs([_writer(tmp_path / "a", 0.2), fails_in_child, _writer(tmp_path / "b", 0.2)], processes=2)
    assert (tmp_path / "ran_here").read_text() == "yes"
    with pytest.raises(RuntimeError, match="bad figure"):
        run_jobs([boom, _writer(tmp_path / "c")], processes=2)
    with pytest.raises(ValueError, match="processes must be >= 1"):
        run_jobs([], processes=0)


def test_a_report_drawn_by_two_processes_writes_the_same_files(tiny_report_dir, tmp_path):
    serial = write_report(tiny_report_dir, processes=1)
    drawn = {p.name: p.read_bytes() for p in serial.figures}
    page = serial.html.read_bytes()
    for p in serial.figures:
        p.unlink()
    (tiny_report_dir / "catalog.duckdb").unlink()
    parallel = write_report(tiny_report_dir, processes=2)
    assert {p.name: p.read_bytes() for p in parallel.figures} == drawn
    assert parallel.html.read_bytes() == page
    assert (tiny_report_dir / "catalog.duckdb").exists()
    with pytest.raises(ValueError, match="processes"):
        write_report(tiny_report_dir, processes=0)

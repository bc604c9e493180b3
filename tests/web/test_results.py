"""The results browser's reader and its path guard."""

from __future__ import annotations

import math
import os

import pytest

from hamopt.web.results import MissingResultError, PathOutsideResultsError, ResultsDir

from .resultsdir import write_results_dir


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    root = write_results_dir(base / "results")
    secret = base / "secret"
    secret.mkdir()
    (secret / "steps.parquet").write_bytes(b"not yours")
    (secret / "leak.png").write_bytes(b"\x89PNG")
    os.symlink(secret, root / "runs" / "escape")  # a run directory that leads outside
    os.symlink(secret / "leak.png", root / "figures" / "leak.png")
    os.symlink(secret, root / "outside")
    return root


def test_reads_the_layout(results):
    rd = ResultsDir(results)
    table = rd.table()
    assert set(table["optimizer"]) == {"leapfrog", "sgd_momentum"}
    assert {"slope", "ci_low", "ci_high", "r2"} <= set(table.columns)
    drift = rd.drift()
    assert len(drift) == 6 and (drift["drift_int"] > 0).all()
    assert rd.run_ids() == sorted(drift["run_id"])  # the symlinked "escape" run is not listed
    run = rd.run(rd.run_ids()[0])
    assert run.manifest["status"] == "completed"
    assert len(run.steps) == 60 and all(math.isfinite(v) for v in run.columns["hamiltonian"])
    assert [p.name for p in rd.figures()] == ["drift.png"]  # the symlinked leak.png is not listed


@pytest.mark.parametrize(
    "path", ["..", "../secret", "runs/../../secret", "/etc", "/", "outside", "outside/x", "a\x00b"]
)
def test_paths_escaping_the_root_are_refused(results, path):
    rd = ResultsDir(results)
    with pytest.raises(PathOutsideResultsError):
        rd.sub(path)


@pytest.mark.parametrize(
    "run_id", ["../secret", "..", ".", "escape", "/etc", "runs/x", "a/../../secret"]
)
def test_run_ids_escaping_the_root_are_refused(results, run_id):
    with pytest.raises(PathOutsideResultsError):
        ResultsDir(results).run(run_id)


def test_missing_pieces_are_named(results, tmp_path):
    rd = ResultsDir(results)
    with pytest.raises(MissingResultError, match="no run 'nope'"):
        rd.run("nope")
    with pytest.raises(MissingResultError, match="figures"):
        rd.sub("figures/drift.png")
    empty = ResultsDir(tmp_path)
    with pytest.raises(MissingResultError, match="table.csv"):
        empty.table()
    assert empty.run_ids() == [] and empty.figures() == []
    with pytest.raises(NotADirectoryError):
        ResultsDir(tmp_path / "absent")


def test_inside_paths_resolve(results):
    rd = ResultsDir(results)
    assert rd.resolve(".") == rd.root
    assert rd.resolve("runs/../table.csv") == rd.root / "table.csv"
    sub = rd.sub("runs")
    assert sub.root == rd.root / "runs"

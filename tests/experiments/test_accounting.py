"""Run accounting: the report names planned runs that are missing or damaged; the catalogue is
read read-only, and a locked catalogue is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hamopt.cli import main
from hamopt.experiments import runner as R
from hamopt.experiments.catalog import CatalogBusyError, open_catalog
from hamopt.experiments.store import RunStore

from .tiny import tiny_spec


def _spec():
    return tiny_spec(optimizers=[tiny_spec().optimizers[2].model_dump(mode="json")],
                     ablations=None, reversibility=None)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("acc") / "d"
    summary = R.run_sweep(_spec(), out, progress=False, log=lambda s: None)
    assert summary.completed == 4
    return out, [o.run_id for o in summary.outcomes]


def test_report_names_missing_and_damaged_runs_then_the_sweep_redoes_them(swept, capsys):
    out, ids = swept
    gone, bad_manifest, bad_steps, good = ids
    for f in (out / "runs" / gone).iterdir():
        f.unlink()
    (out / "runs" / gone).rmdir()
    (out / "runs" / bad_manifest / "manifest.json").write_text("{not json")
    steps = out / "runs" / bad_steps / "steps.parquet"
    steps.write_bytes(steps.read_bytes()[:100])
    acc = RunStore(out).accounting()
    assert acc.planned == tuple(ids) and acc.done == (good,) and acc.missing == (gone,)
    assert [rid for rid, _ in acc.damaged] == [bad_manifest, bad_steps]
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"missing: {gone}" in err and "Traceback" not in err
    assert f"run {bad_manifest} damaged: manifest.json unreadable" in err
    assert f"run {bad_steps} damaged: steps.parquet unreadable" in err
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "4 planned (1 completed, 0 diverged, 0 failed, 1 missing, 2 damaged)" in page
    for rid in (gone, bad_manifest, bad_steps):
        assert rid in page
    again = R.run_sweep(_spec(), out, progress=False, log=lambda s: None)
    assert sorted(o.run_id for o in again.outcomes) == sorted([gone, bad_manifest, bad_steps])
    assert (out / "runs" / bad_manifest / "manifest.json.corrupt").exists()  # kept aside
    assert RunStore(out).accounting().done == tuple(ids)


def test_catalogue_is_opened_read_only(swept):
    out, _ = swept
    assert main(["report", str(out)]) == 0
    path = out / "catalog.duckdb"
    before = path.stat().st_mtime_ns
    con = open_catalog(out)
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(4,)]
    with pytest.raises(Exception, match="read-only"):
        con.execute("CREATE TABLE scratch (a INTEGER)")
    con.close()
    assert path.stat().st_mtime_ns == before
    with pytest.raises(FileNotFoundError, match="hamopt report"):
        open_catalog(out / "runs")


def test_a_locked_catalogue_is_one_clear_line(swept, capsys):
    out, _ = swept
    path = out / "catalog.duckdb"
    if not path.exists():
        assert main(["report", str(out)]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CatalogBusyError, match="locked by another process"):
            open_catalog(out)
        capsys.readouterr()
        assert main(["report", str(out)]) == 2
        err = capsys.readouterr().err
        assert "locked by another process" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    json.loads((out / "plan.json").read_text())  # the plan is plain JSON


def test_a_directory_without_a_recorded_plan_is_replanned_from_its_spec(tmp_path):
    from hamopt.experiments.analysis import analyse

    out = tmp_path / "old"
    summary = R.run_sweep(_spec(), out, progress=False, log=lambda s: None)
    ids = [o.run_id for o in summary.outcomes]
    (out / "plan.json").unlink()  # as written before plans were kept
    for f in (out / "runs" / ids[0]).iterdir():
        f.unlink()
    a = analyse(out)
    assert a.accounting.missing == (ids[0],) and a.accounting.planned == tuple(ids)

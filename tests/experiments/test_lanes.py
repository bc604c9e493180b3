"""Lanes: a batched sweep's units shared by this process and forked helpers."""

from __future__ import annotations

import os
import time

import pytest

from hamopt.experiments.engine import RunOutcome, Study
from hamopt.experiments.lanes import AFTER_RUNS, lane_units, run_units_in_lanes
from hamopt.experiments.store import RunStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="lanes fork helpers")


class Cfg:
    def __init__(self, run_id):
        self.run_id = run_id


class FakeStudy(Study):
    """Units are batches of named runs; a batch records which process ran it and can fail."""

    steps = 1
    threads = 1
    after_runs_independent = True
    after_runs_cost = 2.5

    def __init__(self, root, parent, die_in_helper=(), fail_in_helper=()):
        self.root, self.parent = root, parent
        self.die_in_helper, self.fail_in_helper = set(die_in_helper), set(fail_in_helper)

    def identity(self):
        return "hash", "yaml"

    def schema(self):
        return None

    def plan(self, store, log):
        return []

    def start(self, cfg):
        raise NotImplementedError

    def run_manifest(self, cfg, run):
        return {}

    def unit_cost(self, cfgs):
        return float(len(cfgs))

    def run_batch(self, cfgs, store, on_step, finished):
        time.sleep(0.1)
        first = cfgs[0].run_id
        if os.getpid() != self.parent and first in self.die_in_helper:
            os._exit(5)
        if os.getpid() != self.parent and first in self.fail_in_helper:
            raise ValueError(f"batch {first} failed")
        with open(os.path.join(self.root, first), "a") as fh:
            fh.write(f"{os.getpid()}\n")
        for cfg in cfgs:
            finished(RunOutcome(cfg.run_id, "completed", None, None, 1, 0.0), cfg)

    def after_runs(self, store, log):
        log("after runs done")


def _units(sizes):
    return [[Cfg(f"u{i}_{k}") for k in range(n)] for i, n in enumerate(sizes)]


def test_units_are_taken_costliest_first_with_after_runs_among_them(tmp_path):
    study = FakeStudy(str(tmp_path), os.getpid())
    units = lane_units(study, _units([2, 5, 3, 2]))
    assert [u if u == AFTER_RUNS else len(u) for u in units] == [5, 3, AFTER_RUNS, 2, 2]
    assert [u[0].run_id for u in units if u != AFTER_RUNS][-2:] == ["u0_0", "u3_0"]  # stable for ties


def test_two_lanes_run_every_unit_once_and_report_every_run_here(tmp_path):
    study = FakeStudy(str(tmp_path), os.getpid())
    units = lane_units(study, _units([2, 2, 2, 2, 2, 2]))
    seen, said = [], []
    run_units_in_lanes(study, RunStore(tmp_path), units, lanes=2, bar=None,
                       finished=lambda outcome, cfg: seen.append(cfg.run_id), say=said.append)
    assert sorted(seen) == sorted(c.run_id for u in units if u != AFTER_RUNS for c in u)
    assert said == ["after runs done"]
    ran = [(tmp_path / f"u{i}_0").read_text().split() for i in range(6)]
    assert all(len(r) == 1 for r in ran), ran  # each batch once
    assert len({r[0] for r in ran}) == 2  # both lanes took batches


def test_a_unit_whose_helper_dies_is_redone_here(tmp_path):
    units = _units([2, 2, 2, 2])
    study = FakeStudy(str(tmp_path), os.getpid(), die_in_helper={f"u{i}_0" for i in range(4)})
    seen = []
    run_units_in_lanes(study, RunStore(tmp_path), units, lanes=2, bar=None,
                       finished=lambda outcome, cfg: seen.append(cfg.run_id), say=lambda s: None)
    assert sorted(seen) == sorted(c.run_id for u in units for c in u)
    assert all((tmp_path / f"u{i}_0").read_text().split() == [str(os.getpid())] for i in range(4))


def test_an_error_in_a_helper_is_raised_here_after_the_lanes_stop(tmp_path):
    units = _units([2, 2, 2, 2])
    study = FakeStudy(str(tmp_path), os.getpid(), fail_in_helper={f"u{i}_0" for i in range(4)})
    with pytest.raises(RuntimeError, match="batch u._0 failed"):
        run_units_in_lanes(study, RunStore(tmp_path), units, lanes=2, bar=None,
                           finished=lambda outcome, cfg: None, say=lambda s: None)

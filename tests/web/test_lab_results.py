"""The results browser on a directory written by the real lab (``hamopt sweep --report``)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("gradio")
pytest.importorskip("yaml")
pytest.importorskip("pydantic")

from hamopt.cli import main  # noqa: E402
from hamopt.web import app as A  # noqa: E402
from hamopt.web.results import ResultsDir  # noqa: E402

SPEC = """\
name: web-browser-check
dataset: {name: digits}
model: {name: mlp, width: 16, depth: 1}
batch_size: 32
steps: 10
seeds: [0]
dtype: float32
device: cpu
threads: 1
bootstrap: 0
optimizers:
  - {name: leapfrog-exact, type: leapfrog, mode: exact, band: band, step_sizes: [0.05, 0.1, 0.2]}
  - {name: sgd-momentum, type: sgd, band: band, hyper: {momentum: 0.9},
     step_sizes: [0.01, 0.02, 0.04]}
reversibility: {steps: [1, 4], dtypes: [float64], dt: 0.1}
"""


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    spec = base / "spec.yaml"
    spec.write_text(SPEC)
    out = base / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress", "--report"]) == 0
    return out


def test_browser_reads_a_real_sweep(lab_dir):
    root = ResultsDir(lab_dir)
    status, table, drift_fig, rev_fig, cap_fig, abl_fig, csvs, gallery, runs = A.results_view(
        root, ".", "drift_int"
    )
    assert {"table.csv", "drift.csv", "cap.csv", "reversibility.csv"} <= set(csvs["choices"])
    assert "6 runs" in status, status
    assert set(table["optimizer"]) == {"leapfrog-exact", "sgd-momentum"}
    # the legend of each group carries Table 1's slope for the int drift
    labels = [t.name for t in drift_fig.data]
    assert any(name.startswith("leapfrog-exact / band") and "slope" in name for name in labels), (
        labels
    )
    assert {t.name for t in rev_fig.data} >= {"leapfrog / float64", "euler / float64"}
    assert "dt = 0.1" in rev_fig.layout.title.text  # the one dt of the study, written once
    assert len(cap_fig.data) == 2
    assert len(gallery) >= 1
    assert len(runs["choices"]) == 6
    status, fig, manifest = A.run_view(root, ".", runs["choices"][0])
    assert json.loads(manifest)["status"] in ("completed", "diverged")
    ham = [y for t in fig.data if t.name in ("H", "H (= L: K is 0)") for y in t.y]  # the column hamiltonian, named H
    assert len(ham) == 10 and all(math.isfinite(v) for v in ham)

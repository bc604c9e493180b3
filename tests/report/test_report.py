import csv
import re

from hamopt.report import write_report
from hamopt.report.claims import HELD, NOT_HELD, NOT_TESTED, evaluate_claims


def test_report_is_self_contained_with_figures_and_table(tiny_report_dir):
    files = write_report(tiny_report_dir)
    page = files.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(
        r"""(src|href)\s*=\s*['"](https?:|//|file:)""", page
    )  # nothing fetched from outside
    assert page.count("data:image/png;base64,") == 6
    for name in (
        "fig1a_band",
        "fig1b_wide",
        "fig2_reversibility",
        "fig3_cap",
        "fig4_decomposition",
        "fig5_ablations",
    ):
        png = tiny_report_dir / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(files.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:10] == [
        "optimizer",
        "band",
        "drift",
        "n",
        "slope",
        "ci_low",
        "ci_high",
        "r2",
        "boot_low",
        "boot_high",
    ]
    assert list(rows[0])[10:] == [  # the slopes at matched training progress
        f"{c}_{r}" for r in ("isoloss", "per_loss") for c in ("n", "slope", "ci_low", "ci_high")
    ]
    assert {r["drift"] for r in rows} == {"int", "traj", "resampling"}
    assert {(r["optimizer"], r["band"]) for r in rows} == {
        ("leapfrog-exact", "band"),
        ("leapfrog-exact", "wide"),
        ("adamw", "band"),
        ("sgd-momentum", "band"),
    }
    assert (tiny_report_dir / "catalog.duckdb").exists()
    for c in files.claims:
        assert c.verdict in (HELD, NOT_HELD, NOT_TESTED)
        assert c.verdict in page or c.verdict == HELD


def test_claims_follow_their_rules(tiny_report_dir):
    from hamopt.experiments.analysis import analyse

    a = analyse(tiny_report_dir)
    claims = {c.topic: c for c in evaluate_claims(a)}
    table = {(t["optimizer"], t["band"], t["drift"]): t for t in a.table}
    t = table[("adamw", "band", "int")]
    assert claims["AdamW: drift slope — adamw, ΔH^int"].verdict == (
        HELD if t["ci_low"] > 0 else NOT_HELD
    )
    t = table[("leapfrog-exact", "band", "traj")]
    expect = HELD if t["ci_low"] <= 0 <= t["ci_high"] else NOT_HELD
    assert (
        claims["Leapfrog, reference band: drift slope — leapfrog-exact, ΔH^traj"].verdict == expect
    )
    rev = claims["Reversibility (round trip)"]
    assert rev.verdict in (HELD, NOT_HELD) and "Leapfrog" in rev.measured
    # thrash never changes a number: the claim must hold
    assert claims["Memory ablation: thrash"].verdict == HELD
    # no streaming runs in this sweep: the overhead claim cannot be tested
    assert claims["Exact-mode overhead"].verdict == NOT_TESTED


def test_report_refuses_a_directory_without_runs(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="hamopt sweep"):
        write_report(tmp_path)

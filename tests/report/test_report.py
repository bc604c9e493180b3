import csv
import re

from hamopt.report import write_report
from hamopt.report.claims import FLAT_MARGIN, HELD, INCONCLUSIVE, NOT_HELD, NOT_TESTED, evaluate_claims


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
        assert c.verdict in (HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTED)
        assert c.verdict in page
    # the summary opens the page: what was run, the three verdict counts, the rule, the finding
    body = page[page.index("<body>"):]
    assert body.index("id=\"summary\"") < body.index("<table")
    summary = body[: body.index("</section>")]
    for needle in ("What was run", "held", "did not hold", "inconclusive", "Verdict rule", "Main finding",
                   "Why this band differs"):
        assert needle in summary
    assert files.verdict_counts.split(", ")[:3] == [
        f"{[c.verdict for c in files.claims].count(v)} {v}" for v in (HELD, NOT_HELD, INCONCLUSIVE)
    ]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    text_only = re.sub(r"<[^>]+>", "", re.sub(r"data:image/png;base64,[^'\"]+", "", page))
    assert "`" not in text_only  # Markdown backticks become <code>
    assert "<code>default</code>" in page


def test_claims_follow_their_rules(tiny_report_dir):
    from hamopt.experiments.analysis import analyse

    a = analyse(tiny_report_dir)
    claims = {c.topic: c for c in evaluate_claims(a)}
    table = {(t["optimizer"], t["band"], t["drift"]): t for t in a.table}
    def region(lo, hi, low=float("-inf"), high=float("inf")):
        if low < lo and hi < high:
            return HELD
        return NOT_HELD if hi <= low or lo >= high else INCONCLUSIVE

    t = table[("adamw", "band", "int")]
    assert claims["AdamW: drift slope — adamw, ΔH^int"].verdict == region(t["ci_low"], t["ci_high"], low=0)
    t = table[("leapfrog-exact", "band", "traj")]
    assert claims["Leapfrog, reference band: drift slope — leapfrog-exact, ΔH^traj"].verdict == region(
        t["ci_low"], t["ci_high"], high=FLAT_MARGIN
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

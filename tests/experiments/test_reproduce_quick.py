"""Smoke run of the README's main command: the real ``quick`` preset end to end (about a minute)."""

import csv
import math

from hamopt.cli import main


def test_reproduce_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["reproduce", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "report:" in text and "claims:" in text
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 6 and "Claims of the reference study" in page
    for name in (
        "fig1a_band",
        "fig1b_wide",
        "fig2_reversibility",
        "fig3_cap",
        "fig4_decomposition",
    ):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = {(r["optimizer"], r["band"], r["drift"]) for r in rows}
    for opt, band in (
        ("leapfrog-exact", "band"),
        ("leapfrog-exact", "wide"),
        ("leapfrog-streaming", "band"),
        ("leapfrog-streaming", "wide"),
        ("adamw", "band"),
        ("sgd-momentum", "band"),
    ):
        for kind in ("int", "traj", "resampling"):
            assert (opt, band, kind) in keys
    for r in rows:
        n, slope, lo, hi, r2 = (
            int(r["n"]),
            float(r["slope"]),
            float(r["ci_low"]),
            float(r["ci_high"]),
            float(r["r2"]),
        )
        assert 3 <= n <= 12  # 4 step sizes x 3 seeds, less any diverged run
        assert math.isfinite(slope) and lo <= slope <= hi and 0.0 <= r2 <= 1.0
    for f in (
        "drift.csv",
        "cap.csv",
        "ablations.csv",
        "reversibility.csv",
        "spec.yaml",
        "spec.hash",
        "catalog.duckdb",
    ):
        assert (out / f).exists(), f
    # rerunning the command skips every finished run
    assert main(["reproduce", "--preset", "quick", "--out", str(out), "--no-progress"]) == 0
    assert "74 already done" in capsys.readouterr().err

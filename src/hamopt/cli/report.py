"""``hamopt report DIR``: tables, figures, catalogue and a self-contained report.html of a sweep
(for a symmetry-breaking study's directory, that study's table, figures and report)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write report.html, table.csv and figures for a results directory"
    )
    p.add_argument(
        "dir", help="a results directory written by `hamopt sweep` or `hamopt reproduce`"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("report", lambda: _report(args.dir))


def _report(out: str) -> int:
    from ..experiments.symbreak_report import stored_preset_name
    from ..report import write_report
    from ._lab import print_table

    preset = stored_preset_name(out)
    if preset is not None:
        return _symbreak_report(out, preset)
    from ..experiments.hybrid_report import is_hybrid_dir

    if is_hybrid_dir(out):
        from .hybrid import report_hybrid

        return report_hybrid(out)
    files = write_report(out)
    print_table(files.table)
    _print_gaps(files.accounting, out)
    print(f"claims: {files.verdict_counts}")
    print(f"report: {files.html}")
    return 0


def _print_gaps(accounting: object, out: str) -> None:
    """Name the planned runs that are missing or damaged (on stderr), so none is silently lost."""
    import sys

    if accounting is None:
        return
    missing, damaged = accounting.missing, accounting.damaged
    if missing:
        print(f"{len(missing)} planned run(s) missing: {', '.join(missing)}", file=sys.stderr)
    for run_id, why in damaged:
        print(f"run {run_id} damaged: {why}", file=sys.stderr)
    if missing or damaged:
        print(f"rerun the sweep with --out {out} to complete them", file=sys.stderr)


def _symbreak_report(out: str, preset: str) -> int:
    """A symmetry-breaking study's directory: its own table, figures and report.html."""
    from pathlib import Path

    from ..experiments.symbreak_report import analyse, format_table

    print(format_table(analyse(out, preset_name=preset)))
    print(f"report: {Path(out) / 'report.html'}")
    return 0

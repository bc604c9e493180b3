"""``hamopt report DIR``: tables, figures, catalogue and a self-contained report.html of a sweep."""

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
    from ..report import write_report
    from ._lab import print_table

    files = write_report(out)
    print_table(files.table)
    _print_gaps(files.accounting, out)
    verdicts = [c.verdict for c in files.claims]
    print(
        f"claims: {verdicts.count('held')} held, {verdicts.count('did not hold')} did not hold, "
        f"{verdicts.count('not tested')} not tested"
    )
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

"""``hamopt sweep SPEC --out DIR``: run a spec's sweep (skipping finished runs), then analyse it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run the runs of a YAML experiment spec into DIR (resumable)")
    p.add_argument("spec", help="YAML experiment spec (see docs/lab.md)")
    p.add_argument(
        "--out", required=True, help="results directory (created; rerunning skips finished runs)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel processes (1..64; default: the spec's, 1 unless set)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true", help="also write report.html and the figures")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("sweep", lambda: _sweep(args))


def _sweep(args: argparse.Namespace) -> int:
    from ..errors import OptionError
    from ..experiments.analysis import analyse, write_analysis
    from ..experiments.catalog import build_catalog
    from ..experiments.runner import run_sweep
    from ..experiments.spec import load_spec
    from ..experiments.spec_load import check_runnable
    from ._lab import print_summary, print_table

    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise OptionError(f"--threads must be in 1..1024, got {args.threads}")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise OptionError(f"--workers must be in 1..64, got {args.workers}")
    spec = load_spec(args.spec)
    if args.threads is not None:
        spec = spec.model_copy(update={"threads": args.threads})
    if args.workers is not None:
        spec = spec.model_copy(update={"workers": args.workers})
    check_runnable(spec, source=args.spec)  # device and data present: refused before --out is made
    summary = run_sweep(spec, args.out, progress=not args.no_progress)
    print_summary(summary)
    if args.report:
        from ..report import write_report

        files = write_report(args.out)
        print(f"report: {files.html}")
    else:
        write_analysis(args.out, analyse(args.out))
        build_catalog(args.out)
    print_table(f"{args.out}/table.csv")
    return 1 if summary.failed else 0

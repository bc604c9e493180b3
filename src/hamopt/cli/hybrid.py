"""The hybrid-schedule study from the command line: ``hamopt reproduce --preset hybrid-quick``
(digits, CPU) or ``--preset hybrid-cpu`` (the CIFAR-10 subset, CPU; ``--data-root`` or
``$HAMOPT_DATA``), and ``hamopt report DIR`` on such a directory. See
:mod:`hamopt.experiments.hybrid_study`."""

from __future__ import annotations

import argparse
import sys

from ..experiments.hybrid_study import PRESET_NAMES

__all__ = ["PRESET_NAMES", "report_hybrid", "reproduce_hybrid"]


def reproduce_hybrid(args: argparse.Namespace) -> int:
    """``hamopt reproduce --preset hybrid-*``: run (or resume) the preset, print its table."""
    from ..experiments.hybrid_report import format_table
    from ..experiments.hybrid_study import preset_text, run_preset
    from ..experiments.spec import SpecError

    if args.print_spec:
        print(preset_text(args.preset))
        return 0
    if args.out is None:
        raise SpecError("--out is required (a results directory), unless --print-spec")
    dataset = {} if args.data_root is None else {"root": args.data_root}
    summary = run_preset(args.preset, args.out, progress=not args.no_progress, device=args.device,
                         threads=args.threads, workers=args.workers,
                         log=lambda line: print(line, file=sys.stderr), **dataset)
    print(format_table(summary.analysis))
    print(f"\n{summary.runs} runs ({summary.ran} run now, {summary.skipped} kept, {summary.diverged} diverged, "
          f"{summary.failed} failed) in {summary.wall_time_s:.0f} s; report: {summary.out / 'report.html'}")
    return 1 if summary.failed else 0


def report_hybrid(out: str) -> int:
    """``hamopt report DIR`` on a hybrid-schedule study's directory."""
    from pathlib import Path

    from ..experiments.hybrid_report import analyse, format_table

    print(format_table(analyse(out)))
    print(f"report: {Path(out) / 'report.html'}")
    return 0

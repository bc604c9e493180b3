"""The symmetry-breaking study from the command line: ``hamopt reproduce --preset symbreak-tiny``
(CPU, offline corpus) or ``--preset symbreak-124m`` (GPU, ``--data-root`` = a directory of uint16
token shards). See :mod:`hamopt.experiments.symbreak`."""

from __future__ import annotations

import sys

from ..experiments.symbreak import PRESET_NAMES

__all__ = ["PRESET_NAMES", "print_symbreak_spec", "run_symbreak"]


def print_symbreak_spec(preset: str) -> int:
    """Print the preset's YAML (``--print-spec``)."""
    from ..experiments.symbreak import preset_text

    print(preset_text(preset))
    return 0


def run_symbreak(
    preset: str,
    out: str,
    *,
    data: str | None = None,
    steps: int | None = None,
    seeds: list[int] | None = None,
    device: str | None = None,
    threads: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Run a symbreak preset and print its table (``hamopt reproduce --preset symbreak-*``)."""
    from ..experiments.symbreak import format_table, run_preset

    summary = run_preset(
        preset, out, data_dir=data, steps=steps, seeds=seeds, device=device, threads=threads,
        workers=workers, progress=progress, log=lambda line: print(line, file=sys.stderr),
    )
    from ..experiments import ddp

    if ddp.current() is not None and not ddp.current().is_writer:
        return 0  # under torchrun rank 0 reports for the job
    print(format_table(summary.table))
    from ..experiments.symbreak_gaps import format_gaps
    from ..experiments.symbreak_report import gap_table

    print("\n" + format_gaps(gap_table(summary.out)))
    print(
        f"\n{summary.runs} runs ({summary.ran} run now, {summary.skipped} kept, "
        f"{summary.diverged} diverged, {summary.failed} failed) "
        f"in {summary.wall_time_s:.0f} s; report: {summary.out / 'report.html'}"
    )
    return 1 if summary.failed else 0

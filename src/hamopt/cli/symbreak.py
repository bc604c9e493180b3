"""The symmetry-breaking study from the command line: ``hamopt reproduce --preset symbreak-tiny``
(CPU, offline corpus) or ``--preset symbreak-124m`` (GPU, ``--data-root`` = a directory of uint16
token shards). See :mod:`hamopt.experiments.symbreak`."""

from __future__ import annotations

PRESET_NAMES = ("symbreak-tiny", "symbreak-124m")


def run_symbreak(
    preset: str,
    out: str,
    *,
    data: str | None = None,
    steps: int | None = None,
    seeds: list[int] | None = None,
    device: str | None = None,
) -> int:
    """Run a symbreak preset and print its table (``hamopt reproduce --preset symbreak-*``)."""
    from ..experiments.symbreak import format_table, run_preset

    try:
        summary = run_preset(
            preset,
            out,
            data_dir=data,
            steps=steps,
            seeds=seeds,
            device=device,
            progress=lambda line: print(line, flush=True),
        )
    except (ValueError, RuntimeError) as exc:
        raise SystemExit(f"hamopt reproduce: error: {exc}") from None
    print(format_table(summary.table))
    print(
        f"\n{summary.runs} runs ({summary.ran} run now, {summary.skipped} kept, "
        f"{summary.failed} failed) "
        f"in {summary.wall_time_s:.0f} s; report: {summary.out / 'report.html'}"
    )
    return 1 if summary.failed else 0

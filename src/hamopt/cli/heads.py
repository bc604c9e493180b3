"""``hamopt heads RUN_DIR``: which token classes each attention head amplifies along its
query-bias direction, in a symmetry-breaking study's saved models (see
:mod:`hamopt.experiments.heads_report` and :mod:`hamopt.diagnostics.heads`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heads", help="head analysis of a symmetry-breaking study: per head and token class, the "
        "amplification along the bias direction vs the symmetric model and random directions")
    p.add_argument("run_dir", help="a results directory of `hamopt reproduce --preset symbreak-cpu` "
                   "(or one of its runs/<run_id> directories)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("heads", lambda: _heads(args.run_dir))


def _heads(run_dir: str) -> int:
    from ..experiments.heads_report import analyse_heads
    from ..experiments.symbreak_report import analyse, stored_preset_name

    result = analyse_heads(run_dir)
    print(result.text)
    preset = stored_preset_name(result.out)
    if preset is not None:
        analyse(result.out, preset_name=preset)  # the report links the head analysis
    print(f"\nheads: {result.out / 'heads.csv'}, {result.out / 'heads.png'}, "
          f"{result.out / 'heads.html'}")
    return 0

"""``hamopt quickdemo``: a short real training run that prints an energy table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickdemo", help="train a small MLP on digits with each optimiser; print energies")
    p.add_argument("--steps", type=int, default=300, help="full-batch steps per optimiser (1..100000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not 1 <= args.steps <= 100_000:
        raise SystemExit(f"--steps must be in 1..100000, got {args.steps}")
    import torch

    from ..experiments.quickdemo import format_table, run

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = run(steps=args.steps, seed=args.seed)
    print(format_table(rows))
    return 0

"""``hamopt quickdemo``: a short real training run that prints an energy table."""

from __future__ import annotations

import argparse

from ..experiments.spec_parts import SEED_MAX  # the lab's seed range

MAX_STEPS = 100_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickdemo", help="train a small MLP on digits with each optimiser; print energies")
    p.add_argument("--steps", type=int, default=300, help="full-batch steps per optimiser (1..100000)")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the models' initialisation (0..{SEED_MAX})")
    p.set_defaults(func=_run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range options with an :class:`~hamopt.errors.OptionError` naming them."""
    from ..errors import OptionError

    if not 1 <= args.steps <= MAX_STEPS:
        raise OptionError(f"--steps must be in 1..{MAX_STEPS}, got {args.steps}")
    if not 0 <= args.seed <= SEED_MAX:
        raise OptionError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")


def _run(args: argparse.Namespace) -> int:
    check_args(args)
    import torch

    from ..experiments.quickdemo import format_table, run

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = run(steps=args.steps, seed=args.seed)
    print(format_table(rows))
    return 0

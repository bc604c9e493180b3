"""``hamopt bands SPEC [--out DIR] [--budget N] [--optimizer NAME ...]``: automated band discovery.

SPEC is a band-search YAML file (see ``docs/bands.md``) or the name of a built-in one
(``bands-quick``, ``bands-cpu``). The runs go through the lab's store in DIR (resumable: a rerun
with the same spec reuses every finished run); the result is ``bands.csv``, ``bands_local.csv``,
``bands.md`` and ``bands.png`` in DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bands", help="find each optimiser's drift regimes over its step-size range")
    p.add_argument("spec", help="band-search YAML (docs/bands.md) or a built-in: bands-quick, bands-cpu")
    p.add_argument("--out", default=None, help="results directory (default: bands-<spec name>; "
                   "rerunning reuses finished runs)")
    p.add_argument("--budget", type=int, default=None,
                   help="runs per optimiser, initial grid included (default: the spec's bands.budget)")
    p.add_argument("--optimizer", action="extend", nargs="+", default=None, metavar="NAME",
                   help="search only these optimisers of the spec (by name)")
    p.add_argument("--data-root", default=None,
                   help="data location (CIFAR-10: an npz file or a directory); overrides dataset.root")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1..1024)")
    p.add_argument("--workers", type=int, default=None, help="runs in parallel processes (1..64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("bands", lambda: _bands(args))


def _load(name: str) -> object:
    from ..experiments.bands_spec import BANDS_PRESETS, load_bands_preset, load_bands_spec

    if name in BANDS_PRESETS and not Path(name).exists():
        return load_bands_preset(name)
    return load_bands_spec(name)


def _bands(args: argparse.Namespace) -> int:
    from ..errors import OptionError
    from ..experiments.bands import run_bands
    from ..experiments.bands_output import format_bands
    from ..experiments.bands_spec import BandsSpec, with_budget
    from ..experiments.spec_load import check_runnable

    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise OptionError(f"--threads must be in 1..1024, got {args.threads}")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise OptionError(f"--workers must be in 1..64, got {args.workers}")
    spec = _load(args.spec)
    assert isinstance(spec, BandsSpec)
    if args.budget is not None:
        spec = with_budget(spec, args.budget)
    changes = {k: v for k, v in (("threads", args.threads), ("workers", args.workers)) if v is not None}
    if args.data_root is not None:
        changes["dataset"] = spec.experiment.dataset.model_copy(update={"root": str(args.data_root)})
    if changes:
        spec = BandsSpec(spec.experiment.model_copy(update=changes), spec.search, spec.source)
    check_runnable(spec.experiment, source=spec.source)
    out = args.out or f"bands-{spec.experiment.name}"
    result = run_bands(spec, out, optimizers=args.optimizer, progress=not args.no_progress)
    print(format_bands(result, readings=("tail", "isoloss", "per_loss")))
    print(f"\nwrote {', '.join(str(p) for p in result.files.values())}")
    return 0

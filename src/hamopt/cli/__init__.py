"""The ``hamopt`` command line: a thin shell over the library.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the module adds its parser and sets ``func`` (the handler,
``args -> int`` exit code). Heavy imports (torch, the lab) happen inside the handlers.

Errors that are the user's to fix (:func:`hamopt.cli._lab.lab_errors`: every
:class:`hamopt.errors.UserError`, a bad output directory, a missing file...) are printed by
:func:`main` for every sub-command as one line, ``hamopt COMMAND: error: MESSAGE``, with exit
status 2, like argparse's own errors; any other exception keeps its traceback. Ctrl-C prints
one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Sub-command modules, in the order ``hamopt --help`` lists them.
COMMAND_MODULES = (
    "hamopt.cli.quickdemo",
    "hamopt.cli.sweep",
    "hamopt.cli.reproduce",
    "hamopt.cli.bands",
    "hamopt.cli.report",
    "hamopt.cli.heads",
    "hamopt.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hamopt",
        description="Hamiltonian optimisation of neural networks: optimisers and a dynamics lab.",
    )
    parser.add_argument("--version", action="version", version=f"hamopt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hamopt")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ._lab import lab_errors, report_user_error

    try:
        return int(args.func(args) or 0)
    except lab_errors() as exc:
        return report_user_error(args.command, exc)
    except KeyboardInterrupt:
        print(f"hamopt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``hamopt`` command line: a thin shell over the library.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the module adds its parser and sets ``func`` (the handler,
``args -> int`` exit code). Heavy imports (torch, the lab) happen inside the handlers.
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
    "hamopt.cli.report",
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers of the lab's sub-commands: error reporting and the sweep summary."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

REPLICAS_HELP = ("train compatible runs (same optimiser type, mode and hyper-parameters) R at a time as one "
                 "vectorised computation, each stored as if run alone: 'auto' (batches of up to 24), a number "
                 "1..256 (1: one run at a time), or 'off' (default: the spec's 'replicas', else off)")


def add_replicas_argument(p: Any) -> None:
    """``--replicas auto|off|R`` (sweep, reproduce)."""
    p.add_argument("--replicas", default=None, metavar="auto|off|R", help=REPLICAS_HELP)


def replicas_option(value: str | None) -> Any:
    """The spec value ``--replicas`` asks for: ``"auto"``, an int, ``"off"`` (None in the spec) or
    None (not given: keep the spec's); anything else is refused naming the option."""
    from ..errors import OptionError
    from ..experiments.spec import MAX_REPLICAS

    if value is None or value in ("auto", "off"):
        return value
    if value.isdigit() and 1 <= int(value) <= MAX_REPLICAS:
        return int(value)
    raise OptionError(f"--replicas must be 'auto', 'off' or a number of replicas in 1..{MAX_REPLICAS}, "
                      f"got {value!r}")


def with_replicas(spec: Any, value: str | None) -> Any:
    """``spec`` with ``--replicas`` applied (checked by :func:`replicas_option`)."""
    chosen = replicas_option(value)
    if chosen is None:
        return spec
    return spec.model_copy(update={"replicas": None if chosen == "off" else chosen})


def lab_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: printed as one clear line, exit status 2.

    Every :class:`hamopt.errors.UserError` (``SpecError``, ``OptionError`` and any new
    subclass) is one; so are the store's errors about the output directory and missing or
    unreadable files. Extend the tuple here, or better derive the new class from ``UserError``.
    """
    from ..errors import UserError
    from ..experiments.store import CorruptRunError, OutputDirError, SpecMismatchError

    return (
        UserError,
        OutputDirError,
        SpecMismatchError,
        CorruptRunError,
        FileNotFoundError,
        PermissionError,
    )


def report_user_error(prog: str | None, exc: BaseException) -> int:
    """Print ``hamopt PROG: error: MESSAGE`` as one line on stderr; return exit status 2."""
    from ..experiments.spec_load import one_line

    message = one_line(str(exc)) or type(exc).__name__
    print(f"hamopt {prog}: error: {message}" if prog else f"hamopt: error: {message}", file=sys.stderr)
    return 2


def guarded(prog: str, fn: Callable[[], int]) -> int:
    """``fn()``, with a user error reported as one line (exit status 2)."""
    try:
        return fn()
    except lab_errors() as exc:
        return report_user_error(prog, exc)


def print_summary(summary: Any) -> None:
    print(
        f"{summary.planned} runs planned, {summary.skipped} already done, {summary.completed} completed, "
        f"{summary.diverged} diverged, {summary.failed} failed in {summary.wall_time_s:.1f} s -> {summary.out}",
        file=sys.stderr,
    )


def print_table(path: Any) -> None:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    head = f"{'optimizer':<20}{'band':<6}{'drift':<11}{'n':>3}{'slope':>9}{'95% CI':>22}{'R2':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ci = f"[{_num(r, 'ci_low')}, {_num(r, 'ci_high')}]"
        r2 = f"{float(r['r2']):.2f}" if r["r2"] not in ("", "nan") else "n/a"
        print(
            f"{r['optimizer']:<20}{r['band']:<6}{r['drift']:<11}{r['n']:>3}{_num(r, 'slope'):>9}{ci:>22}{r2:>7}"
        )


def _num(row: dict[str, str], key: str) -> str:
    try:
        return f"{float(row[key]):+.3f}"
    except ValueError:
        return "n/a"

r"""Read a lab results directory, never anything outside it.

Layout read here (written by ``hamopt sweep`` / ``hamopt reproduce``)::

    DIR/table.csv           Table 1: optimizer, band, drift, n, slope, ci_low, ci_high, r2,
                            boot_low, boot_high
    DIR/drift.csv           one row per run: run_id, optimizer, mode, band, step_size, seed,
                            ablation, drift_int, drift_traj, drift_resampling, cap_rate, status
    DIR/reversibility.csv   integrator, dtype, steps, dt, theta_error, momentum_error, ...
    DIR/cap.csv             cap engagement per optimizer and step size
    DIR/*.csv               any other table (shown as is)
    DIR/figures/*.png       the static figures of the report
    DIR/runs/<run_id>/manifest.json, steps.parquet   one run's configuration and per-step series

The run layout's names come from :class:`hamopt.experiments.store.RunStore` (the only code that
knows it); this module adds the guard.

Path guard: every path a user supplies (a sub-directory, a run id) is resolved — symlinks
followed — and must stay inside the root given on the command line; otherwise
:class:`PathOutsideResultsError`. Run ids must be a single path component of letters, digits
and ``._=+-``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MissingResultError",
    "PathOutsideResultsError",
    "ResultsDir",
    "RunSeries",
]

RUN_ID = re.compile(r"^[A-Za-z0-9._=+-]+$")
SERIES_COLUMNS = (
    "loss",
    "loss_after",
    "kinetic",
    "hamiltonian",
    "delta_h_int",
    "delta_h_traj",
    "resampling",
    "cap_engaged",
    "grad_norm",
)


class PathOutsideResultsError(PermissionError):
    """A requested path resolves outside the results directory."""


class MissingResultError(FileNotFoundError):
    """A file of the results layout is absent; names it."""


@dataclass(frozen=True)
class RunSeries:
    """One run's manifest and per-step columns (lists of floats; None for missing values)."""

    run_id: str
    manifest: dict[str, Any]
    columns: dict[str, list[float | None]]

    @property
    def steps(self) -> list[float | None]:
        return self.columns.get("step", [])


class ResultsDir:
    """A results directory rooted at ``root`` (which must exist)."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise NotADirectoryError(
                f"results directory {str(root)!r} does not exist or is not a directory"
            )
        self.root = path.resolve(strict=True)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.root)!r})"

    # ------------------------------------------------------------------ path guard
    def resolve(self, relative: str | Path = ".") -> Path:
        """``root / relative`` with symlinks resolved; refused unless it stays inside ``root``."""
        text = str(relative).strip()
        if "\x00" in text:
            raise PathOutsideResultsError("a path must not contain NUL bytes")
        candidate = Path(text or ".")
        if candidate.is_absolute():
            raise PathOutsideResultsError(
                f"{text!r} is an absolute path; give a path relative to the results directory "
                f"{self.root}"
            )
        resolved = (self.root / candidate).resolve(strict=False)
        if resolved != self.root and self.root not in resolved.parents:
            raise PathOutsideResultsError(
                f"{text!r} resolves outside the results directory {self.root}"
            )
        return resolved

    def sub(self, relative: str | Path) -> ResultsDir:
        """A results directory inside this one (its guard checks against its own, inner root)."""
        path = self.resolve(relative)
        if not path.is_dir():
            raise MissingResultError(f"{str(relative)!r} is not a directory inside {self.root}")
        out = ResultsDir.__new__(ResultsDir)
        out.root = path
        return out

    def file(self, relative: str) -> Path:
        """An existing file inside the root (guarded)."""
        path = self.resolve(relative)
        if not path.is_file():
            raise MissingResultError(f"{relative} is missing in {self.root}")
        return path

    def has(self, relative: str) -> bool:
        try:
            return self.resolve(relative).is_file()
        except PathOutsideResultsError:
            return False

    # ------------------------------------------------------------------ tables
    def csv(self, name: str) -> Any:
        """A CSV of the layout as a pandas DataFrame (``name`` relative to the root)."""
        import pandas as pd

        if not str(name).endswith(".csv"):
            raise MissingResultError(f"{name!r} is not a .csv file")
        return pd.read_csv(self.file(name))

    def table(self) -> Any:
        return self.csv("table.csv")

    def drift(self) -> Any:
        return self.csv("drift.csv")

    def reversibility(self) -> Any:
        return self.csv("reversibility.csv")

    def cap(self) -> Any:
        return self.csv("cap.csv")

    def csv_names(self) -> list[str]:
        """The ``*.csv`` files at the top of the root (sorted; links leading outside left out)."""
        return [p.name for p in sorted(self.root.glob("*.csv")) if self.has(p.name)]

    def figures(self) -> list[Path]:
        """The PNG figures under ``figures/`` (sorted; links leading outside are left out)."""
        folder = self.resolve("figures")
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.glob("*.png")):
            try:
                out.append(self.file(str(p.relative_to(self.root))))
            except (PathOutsideResultsError, MissingResultError):
                continue
        return out

    # ------------------------------------------------------------------ runs
    def _store(self) -> Any:
        from ..experiments.store import RunStore

        return RunStore(self.root)

    def run_ids(self) -> list[str]:
        """Run ids that have a ``steps.parquet`` inside the root, sorted."""
        store = self._store()
        runs = self.resolve(store.runs_dir.relative_to(self.root))
        if not runs.is_dir():
            return []
        ids = []
        for d in sorted(runs.iterdir()):
            if RUN_ID.match(d.name) and self.has(str(store.steps_relpath(d.name))):
                ids.append(d.name)
        return ids

    def run_dir(self, run_id: str) -> Path:
        """The guarded directory of ``run_id``."""
        if not isinstance(run_id, str) or not RUN_ID.match(run_id) or run_id in {".", ".."}:
            raise PathOutsideResultsError(
                f"run id {run_id!r} is not a single name of letters, digits and ._=+- characters"
            )
        store = self._store()
        path = self.resolve(store.steps_relpath(run_id).parent)
        if not path.is_dir():
            raise MissingResultError(f"no run {run_id!r} in {store.runs_dir}")
        return path

    def run(self, run_id: str) -> RunSeries:
        """The manifest and per-step columns of one run."""
        import pyarrow.parquet as pq

        self.run_dir(run_id)
        store = self._store()
        manifest_path = self.resolve(store.manifest_relpath(run_id))
        manifest = (
            json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        )
        table = pq.read_table(self.file(str(store.steps_relpath(run_id))))
        names = [c for c in ("step", *SERIES_COLUMNS) if c in table.column_names]
        columns = {}
        for c in names:
            values = table.column(c).to_pylist()
            columns[c] = [None if v is None else float(v) for v in values]
        return RunSeries(run_id, manifest, columns)

r"""The on-disk run store of a sweep directory.

Layout (see ``docs/lab.md``)::

    DIR/spec.yaml                  normalised spec as run (+ resolved step sizes, calibration)
    DIR/spec.hash                  SHA-256 of the normalised spec
    DIR/runs/<run_id>/steps.parquet  one row per step (columns: :data:`STEP_COLUMNS`)
    DIR/runs/<run_id>/manifest.json  config, seed, mode, dtype, device, versions, status, wall time
    DIR/plan.json                  the run ids the spec planned, in order (for run accounting)

This module is the only code that knows this layout: the run engine, the analysis, the report,
the catalogue and the web page's results reader all go through :class:`RunStore`.

Durability: every file is written to a temporary file in the same directory, flushed, fsynced
and moved into place with ``os.replace``, so a reader sees the old file or the new one, never a
torn one. A run's ``manifest.json`` is written last and is its commit mark: a run directory
without one (a run killed in flight) is redone from scratch on the next sweep, so a kill loses
at most the run in flight and never leaves duplicate rows. A directory that already holds a
different spec's results is refused (:class:`SpecMismatchError`). A ``steps.parquet`` that no
longer reads is reported with its run id (:class:`CorruptRunError`); the next sweep moves it aside
to ``steps.parquet.corrupt`` and reruns that run only.

Every study keeps its own step columns: :class:`RunStore` takes the study's Parquet schema
(default: the drift study's :data:`STEP_COLUMNS`) and records the column names in each manifest
(``columns``), so a reader checks a run against the columns it was written with.
:meth:`RunStore.accounting` sets the planned runs against what is on disk: done, failed,
missing (never run, or killed in flight) and damaged (manifest or steps unreadable).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, atomic_write_text, write_csv, write_table_atomic

__all__ = [
    "STEP_COLUMNS",
    "CorruptRunError",
    "OutputDirError",
    "RunAccounting",
    "RunStore",
    "SpecMismatchError",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_csv",
]

STEP_COLUMNS = (
    "step",
    "loss",
    "loss_after",
    "kinetic_before",
    "kinetic",
    "hamiltonian_before",
    "hamiltonian",
    "delta_h_int",
    "delta_h_traj",
    "resampling",
    "cap_engaged",
    "grad_norm",
    "run_id",
)
FINAL_STATUSES = ("completed", "diverged")
MANIFEST_NAME = "manifest.json"
STEPS_NAME = "steps.parquet"
PLAN_NAME = "plan.json"


class OutputDirError(OSError):
    """The output directory cannot be created or written."""


class SpecMismatchError(RuntimeError):
    """The output directory holds results of a different spec."""


class CorruptRunError(RuntimeError):
    """A run's ``steps.parquet`` cannot be read; names the run."""

    def __init__(self, run_id: str, path: Path, detail: str) -> None:
        self.run_id = run_id
        self.path = path
        self.detail = detail
        super().__init__(
            f"run {run_id!r}: {path} is corrupted ({detail}). Rerun only this run with "
            f"`hamopt sweep SPEC --out {path.parent.parent.parent}` (or `hamopt reproduce` with the "
            "same --out): the sweep moves the damaged file aside to steps.parquet.corrupt and redoes "
            "this run alone; every other run is kept."
        )


def steps_schema() -> Any:
    import pyarrow as pa

    f64 = pa.float64()
    return pa.schema(
        [("step", pa.int64())]
        + [(c, f64) for c in STEP_COLUMNS[1:10]]
        + [("cap_engaged", pa.bool_()), ("grad_norm", f64), ("run_id", pa.string())]
    )


@dataclass(frozen=True)
class RunAccounting:
    """Planned runs set against the store: each list holds run ids in plan order.

    ``done``: completed or diverged with readable steps; ``failed``: a failed manifest (retried by
    the next sweep); ``missing``: planned but without a manifest (never run, or killed in flight);
    ``damaged``: ``(run_id, reason)`` for a manifest or steps file that does not read back.
    ``planned`` is None when the directory records no plan (written before plans were kept).
    """

    planned: tuple[str, ...] | None
    done: tuple[str, ...]
    failed: tuple[str, ...]
    missing: tuple[str, ...]
    damaged: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StoredRun:
    """A run found on disk: its id, manifest (None while in flight or when unreadable),
    directory, and why the manifest is damaged (None when it reads or is absent)."""

    run_id: str
    path: Path
    manifest: dict[str, Any] | None
    damaged: str | None = None

    @property
    def status(self) -> str | None:
        return None if self.manifest is None else self.manifest.get("status")

    @property
    def steps_path(self) -> Path:
        return self.path / STEPS_NAME


class RunStore:
    """A sweep directory: spec identity, run directories, atomic writes."""

    def __init__(self, root: str | Path, *, schema: Any = None) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self._schema = schema

    @property
    def schema(self) -> Any:
        """The pyarrow schema of ``steps.parquet`` (the drift study's unless given)."""
        if self._schema is None:
            self._schema = steps_schema()
        return self._schema

    # ------------------------------------------------------------------ layout names
    @staticmethod
    def manifest_relpath(run_id: str) -> Path:
        """``runs/<run_id>/manifest.json`` relative to the root."""
        return Path("runs") / run_id / MANIFEST_NAME

    @staticmethod
    def steps_relpath(run_id: str) -> Path:
        """``runs/<run_id>/steps.parquet`` relative to the root."""
        return Path("runs") / run_id / STEPS_NAME

    def path(self, name: str) -> Path:
        """A top-level file of the directory (``spec.yaml``, ``table.csv``, ...)."""
        return self.root / name

    def write_text(self, name: str, text: str) -> Path:
        """Write a top-level file atomically; return its path."""
        atomic_write_text(self.path(name), text)
        return self.path(name)

    def read_text(self, name: str) -> str | None:
        """A top-level file's text, or None when it does not exist."""
        f = self.path(name)
        return f.read_text(encoding="utf-8") if f.is_file() else None

    # ------------------------------------------------------------------ opening
    def check(self, spec_hash: str) -> None:
        """Refuse (before writing anything) a non-directory, an unwritable directory, or a
        directory holding another spec's results."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise OutputDirError(f"output path {str(root)!r} exists and is not a directory")
        probe = root
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            what = "output directory" if probe == root else f"parent directory {str(probe)!r} of"
            raise OutputDirError(f"{what} {str(root)!r} is not writable; choose another --out")
        if self.runs_dir.exists() and not os.access(self.runs_dir, os.W_OK | os.X_OK):
            raise OutputDirError(f"{self.runs_dir} is not writable; choose another --out")
        hash_file = root / "spec.hash"
        if hash_file.exists():
            old = hash_file.read_text(encoding="utf-8").strip()
            if old != spec_hash:
                raise SpecMismatchError(
                    f"{root} holds results of a different spec (spec.hash {old[:12]}…, this spec "
                    f"{spec_hash[:12]}…); results of two specs are never mixed. Use a new --out "
                    f"directory, or move/delete {root} to start fresh."
                )
        elif self.runs_dir.is_dir() and any(self.runs_dir.iterdir()):
            raise SpecMismatchError(
                f"{root}/runs holds runs but no spec.hash, so their spec is unknown; use a new --out "
                f"directory, or move/delete {root} to start fresh."
            )

    def prepare(self, spec_hash: str, spec_yaml: str) -> None:
        """Create the directory (or adopt it if it holds this spec); refuse another spec's results."""
        self.check(spec_hash)
        root = self.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.runs_dir.mkdir(exist_ok=True)
            atomic_write_text(root / "spec.yaml", spec_yaml)
            if not (root / "spec.hash").exists():
                atomic_write_text(root / "spec.hash", spec_hash + "\n")
        except OSError as exc:
            raise OutputDirError(
                f"cannot write to output directory {str(root)!r}: {exc.strerror or exc}"
            ) from None
        self.clean_temporaries()

    def clean_temporaries(self) -> None:
        """Remove temp files left by a write that was killed half-way (never a committed file)."""
        for tmp in self.root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def read_hash(self) -> str | None:
        f = self.root / "spec.hash"
        return f.read_text(encoding="utf-8").strip() if f.exists() else None

    # ------------------------------------------------------------------ runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def _read_manifest(self, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(manifest, None)``, ``(None, None)`` when absent, ``(None, reason)`` when damaged."""
        f = self.run_dir(run_id) / MANIFEST_NAME
        if not f.exists():
            return None, None
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"manifest.json unreadable ({type(exc).__name__})"
        if not isinstance(data, dict) or "status" not in data:
            return None, "manifest.json has no status"
        return data, None

    def manifest(self, run_id: str) -> dict[str, Any] | None:
        """The run's manifest, or None when it is absent or damaged."""
        return self._read_manifest(run_id)[0]

    def runs(self) -> Iterator[StoredRun]:
        if not self.runs_dir.is_dir():
            return
        for d in sorted(self.runs_dir.iterdir()):
            if d.is_dir():
                manifest, damaged = self._read_manifest(d.name)
                yield StoredRun(d.name, d, manifest, damaged)

    # ------------------------------------------------------------------ plan and accounting
    def write_plan(self, run_ids: list[str]) -> None:
        """Record the run ids the spec plans (in order), for :meth:`accounting`."""
        self.write_text(PLAN_NAME, json.dumps({"runs": list(run_ids)}, indent=1) + "\n")

    def planned(self) -> list[str] | None:
        """The recorded plan, or None when none was recorded."""
        text = self.read_text(PLAN_NAME)
        if text is None:
            return None
        try:
            runs = json.loads(text)["runs"]
        except (ValueError, KeyError, TypeError):
            return None
        return [str(r) for r in runs]

    def accounting(self, fallback_plan: list[str] | None = None,
                   verified: Collection[str] = ()) -> RunAccounting:
        """Every planned run (and every run found on disk) as done, failed, missing or damaged.
        The recorded plan is used; ``fallback_plan`` only when none was recorded. ``verified``:
        runs whose steps the caller has just read whole through :meth:`read_steps` (their
        Parquet files are not read again)."""
        plan = self.planned()
        if plan is None:
            plan = fallback_plan
        on_disk = {r.run_id: r for r in self.runs()}
        order = list(plan) if plan is not None else []
        order += [rid for rid in on_disk if rid not in set(order)]
        done, failed, missing, damaged = [], [], [], []
        for rid in order:
            r = on_disk.get(rid)
            if r is not None and r.damaged is not None:
                damaged.append((rid, r.damaged))
            elif r is None or r.manifest is None:
                missing.append(rid)
            elif r.status == "failed":
                failed.append(rid)
            else:
                try:
                    if rid not in verified:
                        self.check_steps(rid)
                except CorruptRunError as exc:
                    damaged.append((rid, f"steps.parquet unreadable ({exc.detail})"))
                    continue
                done.append(rid)
        return RunAccounting(
            None if plan is None else tuple(plan),
            tuple(done),
            tuple(failed),
            tuple(missing),
            tuple(damaged),
        )

    def check_steps(self, run_id: str) -> None:
        """Raise :class:`CorruptRunError` if the run's Parquet file does not read back whole."""
        self._checked_steps(run_id)

    def _checked_steps(self, run_id: str) -> Any:
        """The run's steps table, read once and checked (see :meth:`check_steps`)."""
        import pyarrow.parquet as pq

        path = self.run_dir(run_id) / STEPS_NAME
        try:
            meta = pq.read_metadata(path)
            table = pq.read_table(path)
        except FileNotFoundError:
            raise CorruptRunError(run_id, path, "file missing") from None
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for damaged files
            raise CorruptRunError(
                run_id, path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None
        man = self.manifest(run_id) or {}
        expected = man.get("columns") or self.schema.names
        missing = [c for c in expected if c not in table.column_names]
        if missing:
            raise CorruptRunError(run_id, path, f"missing columns {missing}")
        if "rows" in man and man["rows"] != meta.num_rows:
            raise CorruptRunError(
                run_id, path, f"{meta.num_rows} rows, manifest says {man['rows']}"
            )
        return table

    def is_done(self, run_id: str) -> bool:
        """True when the run has a final manifest (completed/diverged) and readable steps.

        A damaged manifest is moved aside to ``manifest.json.corrupt``; a damaged
        ``steps.parquet`` is moved aside to ``steps.parquet.corrupt`` (kept, never
        deleted) and the run counts as not done, so the sweep redoes it alone.
        """
        man, damaged = self._read_manifest(run_id)
        if damaged is not None:  # kept aside for inspection; the run is redone
            d = self.run_dir(run_id)
            os.replace(d / MANIFEST_NAME, d / f"{MANIFEST_NAME}.corrupt")
            return False
        if man is None or man.get("status") not in FINAL_STATUSES:
            return False
        try:
            self.check_steps(run_id)
        except CorruptRunError:
            d = self.run_dir(run_id)
            src = d / STEPS_NAME
            if src.exists():
                os.replace(src, d / "steps.parquet.corrupt")
            os.replace(d / MANIFEST_NAME, d / f"{MANIFEST_NAME}.corrupt")
            return False
        return True

    def begin(self, run_id: str) -> Path:
        """Start (or restart) a run: an empty run directory apart from kept ``*.corrupt`` files."""
        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        for name in (STEPS_NAME, MANIFEST_NAME):
            f = d / name
            if f.exists():
                f.unlink()
        return d

    def commit(self, run_id: str, rows: dict[str, list[Any]], manifest: dict[str, Any]) -> None:
        """Write the run's steps (atomically, in :attr:`schema`; absent columns are null, a
        ``run_id`` column is filled in), then its manifest (atomically, the commit mark)."""
        import pyarrow as pa

        d = self.run_dir(run_id)
        n = len(rows["step"])
        schema = self.schema
        data = {c: rows.get(c, [None] * n) for c in schema.names}
        if "run_id" in schema.names:
            data["run_id"] = [run_id] * n
        table = pa.Table.from_pydict(data, schema=schema)
        write_table_atomic(d / STEPS_NAME, table)
        manifest = dict(manifest, rows=n, columns=list(schema.names))
        atomic_write_text(
            d / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True, default=str)
        )

    def read_steps(self, run_id: str) -> Any:
        """The run's steps as a pyarrow Table (raises :class:`CorruptRunError` if unreadable)."""
        return self._checked_steps(run_id)


def readable_runs(root: str | Path) -> tuple[list[tuple[dict[str, Any], dict[str, list[Any]]]], RunStore]:
    """The runs of the store at ``root`` with a manifest and readable steps, each as
    ``(manifest, step columns)``, and the store (whose :meth:`RunStore.accounting` names the runs
    left out because their files are damaged). Raises :class:`FileNotFoundError` without ``runs/``."""
    store = RunStore(root)
    if not store.runs_dir.is_dir():
        raise FileNotFoundError(f"{root} has no runs/ directory: run the preset into it first")
    out = []
    for r in store.runs():
        if r.manifest is None:
            continue
        try:
            out.append((r.manifest, store.read_steps(r.run_id).to_pydict()))
        except CorruptRunError:
            continue  # left out; the accounting names it
    return out, store

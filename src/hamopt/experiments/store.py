r"""The on-disk run store of a sweep directory.

Layout (see ``docs/lab.md``)::

    DIR/spec.yaml                  normalised spec as run (+ resolved step sizes, calibration)
    DIR/spec.hash                  SHA-256 of the normalised spec
    DIR/runs/<run_id>/steps.parquet  one row per step (columns: :data:`STEP_COLUMNS`)
    DIR/runs/<run_id>/manifest.json  config, seed, mode, dtype, device, versions, status, wall time

Durability: every file is written to a temporary file in the same directory, flushed, fsynced
and moved into place with ``os.replace``, so a reader sees the old file or the new one, never a
torn one. A run's ``manifest.json`` is written last and is its commit mark: a run directory
without one (a run killed in flight) is redone from scratch on the next sweep, so a kill loses
at most the run in flight and never leaves duplicate rows. A directory that already holds a
different spec's results is refused (:class:`SpecMismatchError`). A ``steps.parquet`` that no
longer reads is reported with its run id (:class:`CorruptRunError`); the next sweep moves it aside
to ``steps.parquet.corrupt`` and reruns that run only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STEP_COLUMNS",
    "CorruptRunError",
    "OutputDirError",
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


class OutputDirError(OSError):
    """The output directory cannot be created or written."""


class SpecMismatchError(RuntimeError):
    """The output directory holds results of a different spec."""


class CorruptRunError(RuntimeError):
    """A run's ``steps.parquet`` cannot be read; names the run."""

    def __init__(self, run_id: str, path: Path, detail: str) -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(
            f"run {run_id!r}: {path} is corrupted ({detail}). Rerun only this run with "
            f"`hamopt sweep SPEC --out {path.parent.parent.parent}` (or `hamopt reproduce` with the "
            "same --out): the sweep moves the damaged file aside to steps.parquet.corrupt and redoes "
            "this run alone; every other run is kept."
        )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write; on success it is fsynced and moved onto
    ``path`` (``os.replace``), on any error removed, so ``path`` is never half written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``)."""
    with _atomic_target(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_table_atomic(path: Path, table: Any) -> None:
    """Write a pyarrow Table as Parquet atomically."""
    import pyarrow.parquet as pq

    with _atomic_target(Path(path)) as tmp:
        pq.write_table(table, tmp)


def steps_schema() -> Any:
    import pyarrow as pa

    f64 = pa.float64()
    return pa.schema(
        [("step", pa.int64())]
        + [(c, f64) for c in STEP_COLUMNS[1:10]]
        + [("cap_engaged", pa.bool_()), ("grad_norm", f64), ("run_id", pa.string())]
    )


@dataclass(frozen=True)
class StoredRun:
    """A run found on disk: its id, manifest (None while in flight) and directory."""

    run_id: str
    path: Path
    manifest: dict[str, Any] | None

    @property
    def status(self) -> str | None:
        return None if self.manifest is None else self.manifest.get("status")

    @property
    def steps_path(self) -> Path:
        return self.path / "steps.parquet"


class RunStore:
    """A sweep directory: spec identity, run directories, atomic writes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

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
            try:
                tmp.unlink()
            except OSError:
                pass

    def read_hash(self) -> str | None:
        f = self.root / "spec.hash"
        return f.read_text(encoding="utf-8").strip() if f.exists() else None

    # ------------------------------------------------------------------ runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def manifest(self, run_id: str) -> dict[str, Any] | None:
        f = self.run_dir(run_id) / "manifest.json"
        if not f.exists():
            return None
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def runs(self) -> Iterator[StoredRun]:
        if not self.runs_dir.is_dir():
            return
        for d in sorted(self.runs_dir.iterdir()):
            if d.is_dir():
                yield StoredRun(d.name, d, self.manifest(d.name))

    def check_steps(self, run_id: str) -> None:
        """Raise :class:`CorruptRunError` if the run's Parquet file does not read back whole."""
        import pyarrow.parquet as pq

        path = self.run_dir(run_id) / "steps.parquet"
        try:
            meta = pq.read_metadata(path)
            table = pq.read_table(path)
        except FileNotFoundError:
            raise CorruptRunError(run_id, path, "file missing") from None
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for damaged files
            raise CorruptRunError(
                run_id, path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None
        missing = [c for c in STEP_COLUMNS if c not in table.column_names]
        if missing:
            raise CorruptRunError(run_id, path, f"missing columns {missing}")
        man = self.manifest(run_id) or {}
        if "rows" in man and man["rows"] != meta.num_rows:
            raise CorruptRunError(
                run_id, path, f"{meta.num_rows} rows, manifest says {man['rows']}"
            )

    def is_done(self, run_id: str) -> bool:
        """True when the run has a final manifest (completed/diverged) and readable steps.

        A damaged ``steps.parquet`` is moved aside to ``steps.parquet.corrupt`` (kept, never
        deleted) and the run counts as not done, so the sweep redoes it alone.
        """
        man = self.manifest(run_id)
        if man is None or man.get("status") not in FINAL_STATUSES:
            return False
        try:
            self.check_steps(run_id)
        except CorruptRunError:
            d = self.run_dir(run_id)
            src = d / "steps.parquet"
            if src.exists():
                os.replace(src, d / "steps.parquet.corrupt")
            os.replace(d / "manifest.json", d / "manifest.json.corrupt")
            return False
        return True

    def begin(self, run_id: str) -> Path:
        """Start (or restart) a run: an empty run directory apart from kept ``*.corrupt`` files."""
        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        for name in ("steps.parquet", "manifest.json"):
            f = d / name
            if f.exists():
                f.unlink()
        return d

    def commit(self, run_id: str, rows: dict[str, list[Any]], manifest: dict[str, Any]) -> None:
        """Write the run's steps (atomically), then its manifest (atomically, the commit mark)."""
        import pyarrow as pa

        d = self.run_dir(run_id)
        n = len(rows["step"])
        data = {c: rows.get(c, [None] * n) for c in STEP_COLUMNS if c != "run_id"}
        data["run_id"] = [run_id] * n
        table = pa.Table.from_pydict(data, schema=steps_schema())
        write_table_atomic(d / "steps.parquet", table)
        manifest = dict(manifest, rows=n)
        atomic_write_text(
            d / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str)
        )

    def read_steps(self, run_id: str) -> Any:
        """The run's steps as a pyarrow Table (raises :class:`CorruptRunError` if unreadable)."""
        import pyarrow.parquet as pq

        self.check_steps(run_id)
        return pq.read_table(self.run_dir(run_id) / "steps.parquet")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write dict rows as CSV atomically (``columns`` fixes the order; empty tables keep the header)."""
    import csv
    import io

    cols = columns or (list(rows[0].keys()) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    atomic_write_text(Path(path), buf.getvalue())

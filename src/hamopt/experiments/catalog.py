r"""An embedded SQL catalogue (DuckDB) over a sweep directory.

:func:`connect` opens ``DIR/catalog.duckdb`` (or an in-memory database) and (re)creates:

* ``steps`` — a view over every ``runs/*/steps.parquet`` (one row per step, column ``run_id``);
* ``runs`` — a table of the manifests (run_id, optimizer, type, mode, band, step_size, seed,
  ablation, dtype, device, threads, status, status_text, diverged_at_step, rows, wall_time_s,
  cap_engagements, torch_version, manifest JSON);
* ``drift``, ``slopes`` (``table.csv``), ``cap``, ``ablations``, ``reversibility`` — views over
  the analysis CSVs when they exist.

The view reads the Parquet files at query time, so the catalogue never goes stale for ``steps``;
``runs`` is refreshed on every :func:`connect`; runs whose files are damaged are left out (the
report names them). :func:`open_catalog` opens an existing
``catalog.duckdb`` **read-only** (for queries: it never rebuilds or writes). A catalogue locked by
another process raises :class:`CatalogBusyError` with one line naming the file and the process.
Example::

    con = hamopt.experiments.catalog.open_catalog("results/quick")
    con.sql("SELECT optimizer, step_size, median(abs(delta_h_int)) FROM steps JOIN runs USING (run_id) "
            "GROUP BY ALL ORDER BY ALL").show()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .store import CorruptRunError, OutputDirError, RunStore

__all__ = ["CatalogBusyError", "build_catalog", "connect", "open_catalog"]

CATALOG_NAME = "catalog.duckdb"


class CatalogBusyError(OutputDirError):
    """The catalogue file is locked by another process (one line: the file and the holder)."""


def _open(path: str, *, read_only: bool) -> Any:
    import duckdb

    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" not in text.lower():
            raise
        holder = text.split("Conflicting lock is held in", 1)[-1].split(". See", 1)[0].strip()
        raise CatalogBusyError(
            f"catalogue {path} is locked by another process ({holder}); close that connection "
            "and try again"
        ) from None


def open_catalog(out: str | Path) -> Any:
    """A read-only DuckDB connection to ``out``'s existing ``catalog.duckdb``."""
    path = Path(out) / CATALOG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: write it with `hamopt report {out}` (or `hamopt sweep`)"
        )
    return _open(str(path), read_only=True)

_CSV_VIEWS = {
    "drift": "drift.csv",
    "slopes": "table.csv",
    "cap": "cap.csv",
    "ablations": "ablations.csv",
    "reversibility": "reversibility.csv",
    "decomposition": "decomposition.csv",
}


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(out: str | Path, *, persist: bool = True) -> Any:
    """A DuckDB connection with the (re)built catalogue of ``out``; ``persist`` writes
    ``catalog.duckdb``, otherwise it lives in memory. Use :func:`open_catalog` to only read."""
    root = Path(out).resolve()
    store = RunStore(root)
    if not store.runs_dir.is_dir():
        raise FileNotFoundError(
            f"{out} has no runs/ directory: run `hamopt sweep SPEC --out {out}` first"
        )
    con = _open(str(root / CATALOG_NAME) if persist else ":memory:", read_only=False)
    rows = []
    for r in store.runs():
        m = r.manifest
        if m is None or not r.steps_path.exists():
            continue
        try:
            store.check_steps(r.run_id)
        except CorruptRunError:
            continue  # a damaged run is named by the report, never queried
        rows.append(
            (
                r.run_id,
                m.get("optimizer"),
                m.get("type"),
                m.get("mode"),
                m.get("band"),
                m.get("step_size"),
                m.get("seed"),
                m.get("ablation"),
                m.get("dtype"),
                m.get("device"),
                m.get("threads"),
                m.get("status"),
                m.get("status_text"),
                m.get("diverged_at_step"),
                m.get("rows"),
                m.get("wall_time_s"),
                m.get("cap_engagements"),
                (m.get("versions") or {}).get("torch"),
                json.dumps(m, sort_keys=True),
            )
        )
    con.execute("DROP VIEW IF EXISTS steps")
    con.execute("DROP TABLE IF EXISTS runs")
    con.execute(
        "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, optimizer VARCHAR, type VARCHAR, mode VARCHAR, "
        "band VARCHAR, step_size DOUBLE, seed BIGINT, ablation VARCHAR, dtype VARCHAR, device VARCHAR, "
        "threads INTEGER, status VARCHAR, status_text VARCHAR, diverged_at_step BIGINT, rows BIGINT, "
        "wall_time_s DOUBLE, cap_engagements BIGINT, torch_version VARCHAR, manifest JSON)"
    )
    if rows:
        con.executemany("INSERT INTO runs VALUES (" + ",".join(["?"] * 19) + ")", rows)
        files = ", ".join(_sql_str(str(root / store.steps_relpath(r[0]))) for r in rows)
        con.execute(
            f"CREATE VIEW steps AS SELECT * FROM read_parquet([{files}], union_by_name = true)"
        )
    else:
        con.execute(
            "CREATE VIEW steps AS SELECT NULL::BIGINT AS step, NULL::VARCHAR AS run_id WHERE false"
        )
    for view, name in _CSV_VIEWS.items():
        con.execute(f"DROP VIEW IF EXISTS {view}")
        f = root / name
        if (
            f.exists()
            and f.stat().st_size > 0
            and len(f.read_text(encoding="utf-8").splitlines()) > 1
        ):
            con.execute(
                f"CREATE VIEW {view} AS SELECT * FROM read_csv_auto({_sql_str(str(f))}, header = true)"
            )
    return con


def build_catalog(out: str | Path) -> Path:
    """Write ``DIR/catalog.duckdb`` and return its path."""
    con = connect(out, persist=True)
    con.close()
    return Path(out) / CATALOG_NAME

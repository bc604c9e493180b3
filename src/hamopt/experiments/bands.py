r"""Automated band discovery (``hamopt bands SPEC``): where an optimiser's drift grows, stays
flat, falls or diverges as its step size moves through its own stability range.

For each optimiser of a :class:`~hamopt.experiments.bands_spec.BandsSpec`:

1. measure its stability limit at initialisation (:func:`~.bands_limit.measure_limit`, kept in
   ``limits.json`` so a rerun places the same step sizes);
2. run the initial grid of fractions of the limit × seeds through the lab's run engine and store
   (:func:`~hamopt.experiments.engine.run_study`: resumable, spec-hash guarded; a rerun with the
   same spec reuses every finished run);
3. fit the trajectory and integrator drift slopes locally over neighbouring step sizes with 95 %
   t-intervals (:mod:`.bands_fit`), in three readings: the fixed-step tail median (the lab's),
   the iso-loss median and the drift per unit of loss decrease at matched training progress
   (:mod:`hamopt.diagnostics.isoloss`, the common loss range of each window's runs, per seed);
4. bisect (in log step size) where a tail-reading slope changes sign and, optionally, between the
   largest stable and smallest diverged step size; repeat for ``rounds`` rounds or until the run
   budget is spent;
5. report the regimes with their step-size ranges, CIs and the integrator/resampling split
   (:mod:`.bands_output`: ``bands.csv``, ``bands_local.csv``, ``bands.md``, ``bands.png``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnostics import tail_median_abs
from ..diagnostics.isoloss import group_readings
from .bands_fit import REGIMES, GridPoint, band_map, fit_points, local_fits, propose_fractions
from .bands_limit import StepLimit, measure_limit, supports_limit
from .bands_spec import BandsSpec, with_step_sizes
from .drift_setup import load_data, plan_runs
from .engine import run_study
from .runner import DriftStudy
from .spec import SpecError
from .store import RunStore

__all__ = ["READINGS", "BandsResult", "BandStudy", "run_bands"]

READINGS = ("tail", "isoloss", "per_loss")
FIT_KINDS = ("traj", "int")
_SERIES = {"int": "delta_h_int", "traj": "delta_h_traj", "resampling": "resampling"}
LIMITS_NAME = "limits.json"
GRID_NAME = "bands_grid.json"


class BandStudy(DriftStudy):
    """The drift study of one round of a band search: the band spec's identity, literal steps."""

    def __init__(self, bands: BandsSpec, step_sizes: dict[str, list[float]], limits: dict[str, StepLimit],
                 dataset: Any = None) -> None:
        super().__init__(with_step_sizes(bands, step_sizes), dataset)
        self.bands = bands
        self.limits = limits

    def identity(self) -> tuple[str, str]:
        return self.bands.identity, self.bands.to_yaml()

    def plan(self, store: RunStore, log: Callable[[str], None]) -> list[Any]:
        import yaml

        steps = {f"{o.name}/{o.band}": list(o.step_sizes or []) for o in self.spec.optimizers}
        extra = {"resolved_step_sizes": steps, "spec_hash": self.bands.identity,
                 "stability_limits": {k: v.as_dict() for k, v in self.limits.items()}}
        store.write_text("spec.yaml", self.bands.to_yaml() + yaml.safe_dump(extra, sort_keys=False))
        return plan_runs(self.spec, steps)


@dataclass(frozen=True)
class BandsResult:
    """What a band search found: rows of ``bands.csv`` and ``bands_local.csv``, one summary per
    optimiser (limit, grid, runs), the regime rule and the wall time."""

    out: Path
    rule: str
    bands: list[dict[str, Any]]
    local: list[dict[str, Any]]
    optimizers: list[dict[str, Any]]
    wall_time_s: float
    runs_run: int = 0
    runs_reused: int = 0
    files: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------- the runs of one optimiser
class _OptimizerRuns:
    """The stored runs of one optimiser on the current grid, and the readings' points."""

    def __init__(self, name: str, limit: StepLimit, fractions: Sequence[float], runs: Sequence[Any],
                 *, tail_fraction: float, isoloss_fraction: float) -> None:
        steps = {limit.step_size(f): f for f in fractions}
        self.limit, self.isoloss_fraction = limit, isoloss_fraction
        self.runs = [r for r in runs if r.manifest.get("optimizer") == name
                     and r.manifest.get("ablation") == "default" and r.manifest["step_size"] in steps]
        self.grid = [
            GridPoint(f, s, sum(r.manifest["step_size"] == s for r in self.runs),
                      sum(r.manifest["step_size"] == s and r.manifest["status"] != "completed"
                          for r in self.runs))
            for s, f in sorted(steps.items())
        ]
        self.tail = {
            r.run_id: {k: tail_median_abs(r.columns[c], tail_fraction=tail_fraction) for k, c in _SERIES.items()}
            for r in self.completed()
        }
        self._matched: dict[tuple[float, ...], dict[str, dict[str, Any]]] = {}

    def completed(self, steps: Sequence[float] | None = None) -> list[Any]:
        return [r for r in self.runs if r.manifest["status"] == "completed"
                and (steps is None or r.manifest["step_size"] in steps)]

    def matched(self, members: Sequence[GridPoint]) -> dict[str, dict[str, Any]]:
        """Iso-loss readings of the members' runs, the common range taken per seed."""
        key = tuple(g.step_size for g in members)
        if key not in self._matched:
            out: dict[str, dict[str, Any]] = {}
            runs = self.completed(key)
            for seed in sorted({r.manifest["seed"] for r in runs}):
                group = {r.run_id: (r.columns["loss"], {k: r.columns[c] for k, c in _SERIES.items()})
                         for r in runs if r.manifest["seed"] == seed}
                out.update(group_readings(group, fraction=self.isoloss_fraction))
            self._matched[key] = out
        return self._matched[key]

    def values(self, members: Sequence[GridPoint], reading: str, kind: str) -> list[tuple[float, float]]:
        """``(step size, drift)`` points of the members' completed runs in one reading."""
        runs = self.completed([g.step_size for g in members])
        if reading == "tail":
            return [(r.manifest["step_size"], self.tail[r.run_id][kind]) for r in runs]
        matched = self.matched(members)
        return [(r.manifest["step_size"], matched[r.run_id][f"{reading}_{kind}"]) for r in runs]

    def points_of(self, reading: str, kind: str) -> Callable[[Sequence[GridPoint]], list[tuple[float, float]]]:
        return lambda members: self.values(members, reading, kind)


def _median_ratio(pairs: list[tuple[float, float]]) -> float:
    ratios = [b / a for a, b in pairs if a > 0 and b > 0 and np.isfinite(a) and np.isfinite(b)]
    return float(np.median(ratios)) if ratios else float("nan")


def _analyse_optimizer(o: _OptimizerRuns, name: str, type_: str, spec: BandsSpec
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(bands rows, local-fit rows)`` of one optimiser in every reading and drift kind."""
    s = spec.search
    band_rows, local_rows = [], []
    for reading in READINGS:
        for kind in FIT_KINDS:
            fits = local_fits(o.grid, o.points_of(reading, kind), window=s.window, tolerance=s.flat_tolerance)
            for f in fits:
                local_rows.append({"optimizer": name, "reading": reading, "drift": kind, "fraction": f.center,
                                   "step_size": f.step_size, "window_low": f.low, "window_high": f.high,
                                   "n": f.n, "slope": f.slope, "ci_low": f.ci_low, "ci_high": f.ci_high,
                                   "regime": f.regime})
            for b in band_map(o.grid, fits, o.points_of(reading, kind)):
                members = [g for g in o.grid if g.fraction in b.members]
                stable = b.regime != "unstable"
                split = {part: fit_points(o.values(members, reading, part))[1] if stable else float("nan")
                         for part in ("int", "resampling")}
                pairs = list(zip((v for _, v in o.values(members, reading, "int")),
                                 (v for _, v in o.values(members, reading, "resampling"))))
                ratio = _median_ratio(pairs) if stable else float("nan")
                band_rows.append({
                    "optimizer": name, "type": type_, "reading": reading, "drift": kind,
                    "regime": b.regime, "regime_text": REGIMES[b.regime],
                    "fraction_low": b.fraction_low, "fraction_high": b.fraction_high,
                    "step_low": b.step_low, "step_high": b.step_high, "local_fits": b.local_fits,
                    "n": b.n, "slope": b.slope, "ci_low": b.ci_low, "ci_high": b.ci_high,
                    "slope_int": split["int"], "slope_resampling": split["resampling"],
                    "resampling_to_int": ratio, "diverged": b.diverged,
                })
    return band_rows, local_rows


# ---------------------------------------------------------------------- the search
def _selected(spec: BandsSpec, optimizers: Sequence[str] | None) -> list[Any]:
    entries = spec.experiment.optimizers
    if optimizers:
        unknown = [n for n in optimizers if n not in spec.optimizer_names()]
        if unknown:
            raise SpecError(f"--optimizer: {', '.join(map(repr, unknown))} names no optimiser of "
                            f"{spec.source}; choose from {', '.join(spec.optimizer_names())}")
        entries = [o for o in entries if o.name in optimizers]
    for i, o in enumerate(spec.experiment.optimizers):
        why = supports_limit(o) if o in entries else None
        if why:
            raise SpecError(f"{spec.source}: optimizers[{i}] ({o.name}): {why}")
    return list(entries)


def _limits(spec: BandsSpec, entries: Sequence[Any], store: RunStore, dataset: Any,
            say: Callable[[str], None]) -> dict[str, StepLimit]:
    """Each optimiser's limit: read from ``limits.json``, measured (and added) when absent."""
    text = store.read_text(LIMITS_NAME)
    stored = json.loads(text) if text else {}
    out = {}
    for o in entries:
        if o.name not in stored:
            lim = measure_limit(spec.experiment, o, dataset)
            stored[o.name] = lim.as_dict()
            store.write_text(LIMITS_NAME, json.dumps(stored, indent=2) + "\n")
            say(f"{o.name}: {lim.eigenvalue_name} = {lim.eigenvalue:.4g}, step-size limit {lim.limit:.4g} "
                f"({lim.rule})")
        out[o.name] = StepLimit.from_dict(stored[o.name])
    return out


def _load_runs(store: RunStore, cache: dict[str, Any]) -> list[Any]:
    """Every finished run of the store; runs already read (immutable once final) come from
    ``cache``, a damaged one is left out (the store's accounting names it)."""
    from .analysis import RunData
    from .store import CorruptRunError

    out = []
    for r in store.runs():
        if r.manifest is None or r.status not in ("completed", "diverged"):
            continue
        if r.run_id not in cache:
            try:
                cache[r.run_id] = RunData(r.run_id, r.manifest, store.read_steps(r.run_id).to_pydict())
            except CorruptRunError:
                continue
        out.append(cache[r.run_id])
    return out


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_bands(
    spec: BandsSpec,
    out: str | Path,
    *,
    optimizers: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    dataset: Any = None,
) -> BandsResult:
    """Search the bands of ``spec``'s optimisers (all, or those named) into ``out``; write
    ``bands.csv``, ``bands_local.csv``, ``bands.md`` and ``bands.png`` there."""
    from .bands_output import write_outputs

    say = log or _stderr
    t0 = time.perf_counter()
    search, seeds = spec.search, len(spec.experiment.seeds)
    entries = _selected(spec, optimizers)
    store = RunStore(out)
    store.check(spec.identity)  # refuse another spec's directory before loading anything
    dataset = dataset if dataset is not None else load_data(spec.experiment)
    store.prepare(spec.identity, spec.to_yaml())
    limits = _limits(spec, entries, store, dataset, say)
    fractions = {o.name: search.initial_fractions() for o in entries}
    ran: set[str] = set()
    reused = 0
    cache: dict[str, Any] = {}
    for round_ in range(search.rounds + 1):
        steps = {n: sorted({limits[n].step_size(f) for f in fr}) for n, fr in fractions.items()}
        summary = run_study(BandStudy(spec, steps, limits, dataset), out, progress=progress, log=say)
        ran |= {o.run_id for o in summary.outcomes}
        reused = summary.planned - len(ran)
        if round_ == search.rounds:
            break
        runs = _load_runs(store, cache)
        added = 0
        for o in entries:
            n = o.name
            found = _OptimizerRuns(n, limits[n], fractions[n], runs, tail_fraction=spec.experiment.tail_fraction,
                                   isoloss_fraction=search.isoloss_fraction)
            fits = [local_fits(found.grid, found.points_of("tail", k), window=search.window,
                               tolerance=search.flat_tolerance) for k in FIT_KINDS]
            have = set(steps[n])
            room = search.budget // seeds - len(have)
            new = [f for f in propose_fractions(found.grid, fits, min_ratio=search.min_ratio,
                                                refine_edge=search.refine_edge)
                   if limits[n].step_size(f) not in have][: max(room, 0)]
            if new:
                say(f"round {round_ + 1}: {n}: bisecting at fractions {', '.join(f'{f:g}' for f in new)}")
            fractions[n] = sorted(fractions[n] + new)
            added += len(new)
        if not added:
            break
    runs = _load_runs(store, cache)
    band_rows, local_rows, summaries = [], [], []
    for o in entries:
        found = _OptimizerRuns(o.name, limits[o.name], fractions[o.name], runs,
                               tail_fraction=spec.experiment.tail_fraction,
                               isoloss_fraction=search.isoloss_fraction)
        b, loc = _analyse_optimizer(found, o.name, o.type, spec)
        band_rows += b
        local_rows += loc
        summaries.append({
            "optimizer": o.name, "type": o.type, "limit": limits[o.name].as_dict(),
            "grid": [{"fraction": g.fraction, "step_size": g.step_size, "runs": g.runs,
                      "diverged": g.diverged} for g in found.grid],
            "runs": len(found.runs), "budget": search.budget,
            "diverged": sum(g.diverged for g in found.grid),
        })
    store.write_text(GRID_NAME, json.dumps(summaries, indent=1) + "\n")
    result = BandsResult(Path(out), search.rule(), band_rows, local_rows, summaries,
                         time.perf_counter() - t0, len(ran), reused)
    return write_outputs(result, spec)

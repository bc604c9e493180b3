r"""What a sweep ran, read once from its ``spec.yaml``: the problem, and each spec entry's step
sizes as fractions of that optimiser's own measured stability limit.

A spec entry given as ``stability_fractions`` ``f`` ran at ``step size = f^power · limit`` with the
limit from the top eigenvalue measured at initialisation (``dt_c = 2/√λ_max(M⁻¹H)`` for Leapfrog,
``lr_c = 2(1+β)/λ_max(H)`` for heavy-ball SGD; :class:`~hamopt.families.StabilityRule`). The report
plots such entries against ``f`` — each optimiser in units of its own limit — and entries with
literal step sizes (AdamW) against the step size itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import families

__all__ = ["ReportContext", "StepAxis", "read_context"]


@dataclass(frozen=True)
class StepAxis:
    """One spec entry and band: its step sizes, and their fractions of the stability limit (empty
    when the entry gave literal step sizes)."""

    name: str
    band: str
    family: str
    step_label: str
    step_sizes: tuple[float, ...]
    fractions: tuple[float, ...] = ()
    limit: float | None = None

    @property
    def relative(self) -> bool:
        """Whether the step sizes are fractions of a measured limit."""
        return bool(self.fractions) and len(self.fractions) == len(self.step_sizes)

    @property
    def unit(self) -> str:
        """The x-axis label of a plot in this entry's units."""
        if not self.relative:
            return f"{self.step_label} (absolute)"
        if self.step_label == "dt":
            return "dt / dt_c (fraction of the stability limit)"
        return f"√({self.step_label} / {self.step_label}_c) (fraction of the stability limit)"

    def position(self, step_size: float) -> float:
        """``step_size`` on this entry's axis: its fraction f when relative (nearest listed step
        size, else computed from the limit), the step size itself otherwise."""
        if not self.relative:
            return step_size
        best = min(range(len(self.step_sizes)), key=lambda i: abs(self.step_sizes[i] - step_size))
        if math.isclose(self.step_sizes[best], step_size, rel_tol=1e-3):
            return self.fractions[best]
        if self.limit:
            power = 1 if self.step_label == "dt" else 2
            return (step_size / self.limit) ** (1 / power)
        return step_size

    def describe(self) -> str:
        """"f = 0.1–0.175 of dt_c = 4.697 → dt 0.4697–0.822" or "lr 0.0002–0.0006 (given directly)"."""
        lo, hi = min(self.step_sizes), max(self.step_sizes)
        absolute = f"{self.step_label} {lo:.4g}–{hi:.4g}"
        if not self.relative:
            return f"{absolute} (given directly)"
        span = f"{min(self.fractions):g}–{max(self.fractions):g}"
        limit = f"{self.step_label}_c = {self.limit:.4g}" if self.limit else f"{self.step_label}_c"
        if self.step_label == "dt":
            return f"f = {span} of {limit} → {absolute}"
        return (f"f = {span} of the limit in √{self.step_label} units ({self.step_label} = f²·{self.step_label}_c, "
                f"{limit}) → {absolute}")


@dataclass(frozen=True)
class ReportContext:
    """The sweep's spec (as stored), its stability calibration and the step axes by
    (spec entry, band)."""

    spec: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    axes: dict[tuple[str, str], StepAxis] = field(default_factory=dict)

    @property
    def problem(self) -> str:
        """"digits, mlp (width 64, depth 1), batch 64, 200 steps, seeds 0, 1, 2"."""
        s = self.spec
        ds, model = s.get("dataset") or {}, s.get("model") or {}
        shape = ", ".join(f"{k} {model[k]}" for k in ("width", "depth") if model.get(k) is not None)
        seeds = ", ".join(str(x) for x in s.get("seeds", []))
        return (f"{ds.get('name', '?')}, {model.get('name', '?')}" + (f" ({shape})" if shape else "")
                + f", batch {s.get('batch_size', '?')}, {s.get('steps', '?')} steps, seeds {seeds}")

    def axis(self, name: str, band: str) -> StepAxis | None:
        return self.axes.get((name, band))

    @property
    def relative(self) -> bool:
        """Whether any entry placed its band relative to a measured stability limit."""
        return any(a.relative for a in self.axes.values())


def _limit(entry: dict[str, Any], calibration: dict[str, Any] | None) -> tuple[str, float | None]:
    """(step label, stability limit) of a spec entry's family under ``calibration``."""
    try:
        family = families.get(entry.get("type") or "")
    except families.UnknownFamilyError:
        return "step", None
    rule = family.stability
    if rule is None or not calibration or calibration.get(rule.eigenvalue) is None:
        return family.step_axis, None
    try:
        return family.step_axis, float(rule.limit(float(calibration[rule.eigenvalue]), entry.get("hyper") or {}))
    except (ValueError, TypeError, ZeroDivisionError, KeyError):
        return family.step_axis, None


def context_from_spec(spec: dict[str, Any]) -> ReportContext:
    """The context of a stored spec (``spec.yaml`` as a dict)."""
    calibration = spec.get("stability_calibration")
    resolved = spec.get("resolved_step_sizes") or {}
    axes = {}
    for entry in spec.get("optimizers") or []:
        name, band = entry.get("name"), entry.get("band")
        steps = resolved.get(f"{name}/{band}") or entry.get("step_sizes") or []
        fractions = entry.get("stability_fractions") or []
        label, limit = _limit(entry, calibration)
        axes[(name, band)] = StepAxis(
            name, band, entry.get("type") or "", label,
            tuple(float(x) for x in steps), tuple(float(x) for x in fractions), limit,
        )
    return ReportContext(spec, calibration, axes)


def read_context(root: Path) -> ReportContext:
    """The context of the sweep directory ``root`` (empty when it has no readable spec)."""
    import yaml

    from ..experiments.store import RunStore

    text = RunStore(root).read_text("spec.yaml")
    try:
        spec = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        spec = {}
    return context_from_spec(spec if isinstance(spec, dict) else {})

r"""The phases of a :class:`hamopt.Hybrid` schedule and their validation.

A :class:`Phase` names an optimiser family of the registry (:mod:`hamopt.families`), its step
size and hyper-parameters, how long it runs and how it takes over from the phase before:

* length: ``steps=n`` (n steps), or ``fraction=f`` of the Hybrid's ``total_steps``
  (``round(f · total_steps)`` steps, at least 1), or a ``switch`` rule
  (:mod:`hamopt.optim.switch_rules`), or a rule and a length (whichever ends the phase first).
  The last phase needs none: it runs until training stops (a length there is not an end).
* ``handover``: ``"velocity"`` (the new optimiser starts with the old one's velocity
  ``θ̇ = M⁻¹p``, :mod:`hamopt.optim.handover`) or ``"reset"`` (fresh state); None takes the
  Hybrid's default. The first phase starts fresh.

:func:`resolve_phases` checks every phase before anything is built or computed and raises
:class:`PhaseError`, whose message starts with ``phases[i].<field>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .handover import HANDOVERS, velocity_support
from .switch_rules import SwitchRule, rule_from_dict

__all__ = ["Phase", "PhaseError", "ResolvedPhase", "resolve_phases"]

_FIELDS = ("family", "lr", "hyper", "mode", "steps", "fraction", "switch", "handover", "label")


class PhaseError(ValueError):
    """A phase of a Hybrid schedule is invalid; ``index`` and ``field`` name it and the message
    starts with ``phases[index].field``."""

    def __init__(self, index: int | None, field: str, message: str) -> None:
        self.index = index
        self.field = field
        where = "phases" if index is None else f"phases[{index}]"
        super().__init__(f"{where}.{field}: {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class Phase:
    """One phase: an optimiser family with its step size and hyper-parameters, and its length.

    Args:
        family: a registered family name (``leapfrog``, ``adamw``, ``sgd``, ...).
        lr: the phase's step size (``dt`` for Leapfrog/Euler, ``lr`` otherwise), > 0.
        hyper: the family's hyper-parameters (missing keys take their defaults).
        mode: the family's mode (Leapfrog/Euler: ``exact`` or ``streaming``), None for its default.
        steps: the phase runs this many steps (integer ≥ 1).
        fraction: or this fraction of the Hybrid's ``total_steps`` (in (0, 1]).
        switch: a :class:`~hamopt.optim.switch_rules.SwitchRule` (or ``{plateau: {...}}``) that
            may end the phase earlier.
        handover: ``"velocity"`` or ``"reset"``: how this phase takes over from the previous one
            (None: the Hybrid's default).
        label: a name for tables and plots (default: the family's label).
    """

    family: str
    lr: float
    hyper: Mapping[str, Any] = field(default_factory=dict)
    mode: str | None = None
    steps: int | None = None
    fraction: float | None = None
    switch: Any = None
    handover: str | None = None
    label: str | None = None

    @classmethod
    def coerce(cls, value: Any, index: int) -> Phase:
        """A :class:`Phase` from a Phase or a mapping with its field names."""
        if isinstance(value, Phase):
            return value
        if not isinstance(value, Mapping):
            raise PhaseError(index, "", f"must be a hamopt.optim.Phase or a mapping of its fields; "
                                        f"got {type(value).__name__}")
        unknown = [k for k in value if k not in _FIELDS]
        if unknown:
            raise PhaseError(index, str(unknown[0]), f"unknown field; allowed: {', '.join(_FIELDS)}")
        for required in ("family", "lr"):
            if required not in value:
                raise PhaseError(index, required, "required")
        return cls(**dict(value))

    def describe(self) -> dict[str, Any]:
        """The phase as plain data (the switch rule by its settings)."""
        rule = self.switch.describe() if isinstance(self.switch, SwitchRule) else self.switch
        return {"family": self.family, "lr": self.lr, "hyper": dict(self.hyper), "mode": self.mode,
                "steps": self.steps, "fraction": self.fraction, "switch": rule,
                "handover": self.handover, "label": self.label}


@dataclass(frozen=True)
class ResolvedPhase:
    """A checked phase: its family record, normalised hyper, mode, length in steps (None: until
    its rule fires or, for the last phase, until training stops), rule and hand-over."""

    index: int
    phase: Phase
    family: Any
    hyper: dict[str, Any]
    mode: str | None
    length: int | None
    switch: SwitchRule | None
    handover: str
    label: str

    def describe(self) -> dict[str, Any]:
        return {**self.phase.describe(), "hyper": self.hyper, "mode": self.mode,
                "length": self.length, "handover": self.handover, "label": self.label}


def _check_lr(i: int, lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise PhaseError(i, "lr", f"must be a finite number > 0; got {lr!r}")
    return float(lr)


def _length(i: int, p: Phase, total_steps: int | None) -> int | None:
    if p.steps is not None and p.fraction is not None:
        raise PhaseError(i, "steps", "give steps or fraction, not both")
    if p.steps is not None:
        if isinstance(p.steps, bool) or not isinstance(p.steps, int) or p.steps < 1:
            raise PhaseError(i, "steps", f"must be an integer >= 1; got {p.steps!r}")
        return p.steps
    if p.fraction is not None:
        f = p.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0 < f <= 1):
            raise PhaseError(i, "fraction", f"must be a number in (0, 1]; got {f!r}")
        if total_steps is None:
            raise PhaseError(i, "fraction", "needs the Hybrid's total_steps (the budget it is a fraction of)")
        return max(1, round(f * total_steps))
    return None


def _family(i: int, p: Phase) -> tuple[Any, dict[str, Any], str | None]:
    from .. import families

    try:
        family = families.get(p.family)
    except families.UnknownFamilyError as exc:
        raise PhaseError(i, "family", str(exc)) from None
    if family.optimizer_class.__name__ == "Hybrid":
        raise PhaseError(i, "family", "a Hybrid cannot be a phase of a Hybrid; list its phases instead")
    if p.hyper is not None and not isinstance(p.hyper, Mapping):
        raise PhaseError(i, "hyper", f"must be a mapping; got {type(p.hyper).__name__}")
    try:
        mode = family.check_mode(p.mode)
    except ValueError as exc:
        raise PhaseError(i, "mode", str(exc)) from None
    try:
        hyper = family.validate_hyper(dict(p.hyper or {}), mode=mode)
    except ValueError as exc:  # HyperError: "hyper.<key>: ..."
        text = str(exc)
        key, _, rest = text.partition(": ")
        if key.startswith("hyper"):
            raise PhaseError(i, key, rest) from None
        raise PhaseError(i, "hyper", text) from None
    return family, hyper, mode


def _rule(i: int, p: Phase) -> SwitchRule | None:
    if p.switch is None:
        return None
    try:
        rule = rule_from_dict(p.switch)
        rule.check()
    except ValueError as exc:
        raise PhaseError(i, "switch", str(exc)) from None
    return rule


def resolve_phases(phases: Sequence[Any], *, total_steps: int | None, handover: str) -> list[ResolvedPhase]:
    """Check and resolve every phase (see the module docstring); :class:`PhaseError` otherwise."""
    if handover not in HANDOVERS:
        raise PhaseError(None, "handover", f"must be one of {', '.join(map(repr, HANDOVERS))}; got {handover!r}")
    if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                    or total_steps < 1):
        raise ValueError(f"total_steps: must be an integer >= 1 or None; got {total_steps!r}")
    if isinstance(phases, (str, bytes, Mapping)) or not isinstance(phases, Sequence) or not phases:
        raise PhaseError(None, "", "must be a non-empty list of phases")
    out: list[ResolvedPhase] = []
    for i, raw in enumerate(phases):
        p = Phase.coerce(raw, i)
        lr = _check_lr(i, p.lr)
        family, hyper, mode = _family(i, p)
        length = _length(i, p, total_steps)
        rule = _rule(i, p)
        last = i == len(phases) - 1
        if not last and length is None and rule is None:
            raise PhaseError(i, "steps", "a phase before the last needs steps, fraction or a switch rule")
        chosen = handover if p.handover is None else p.handover
        if chosen not in HANDOVERS:
            raise PhaseError(i, "handover", f"must be one of {', '.join(map(repr, HANDOVERS))}; got {chosen!r}")
        if i == 0:
            chosen = "reset"
        elif chosen == "velocity":
            prev = out[-1]
            for side, fam, hyp in (("previous phase", prev.family, prev.hyper), ("this phase", family, hyper)):
                why = velocity_support(fam.optimizer_class, hyp)
                if why:
                    raise PhaseError(i, "handover", f"'velocity' needs momentum on both sides, but {side} "
                                                    f"({fam.name}) has none: {why}; use handover 'reset'")
        if p.label is not None and not isinstance(p.label, str):
            raise PhaseError(i, "label", f"must be a string; got {p.label!r}")
        label = p.label or family.label(hyper)
        resolved = Phase(p.family, lr, dict(p.hyper or {}), p.mode, p.steps, p.fraction, p.switch,
                         p.handover, p.label)
        out.append(ResolvedPhase(i, resolved, family, hyper, mode, length, rule, chosen, label))
    if total_steps is not None:
        fixed = sum(r.length for r in out[:-1] if r.length is not None)
        if fixed >= total_steps:
            raise PhaseError(len(out) - 2, "steps" if out[-2].phase.steps is not None else "fraction",
                             f"the phases before the last take {fixed} steps, leaving none of total_steps="
                             f"{total_steps} for the last phase")
    return out

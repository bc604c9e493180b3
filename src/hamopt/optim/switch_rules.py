r"""Switch rules of :class:`hamopt.Hybrid`: when a phase hands over to the next one.

A phase of a Hybrid schedule ends after a fixed number of steps, or when its switch rule fires,
whichever comes first. A rule observes the schedule after every step of its phase
(:meth:`SwitchRule.observe`) and answers True to end the phase there; the next step runs in the
next phase. Its state (a loss window, a step counter) is part of ``Hybrid.state_dict()``, so a
resumed run switches on the same step as an uninterrupted one.

* :class:`Plateau` — the loss has stopped falling: with ``L̄_old`` the mean of the older
  ``window`` losses and ``L̄_new`` the mean of the latest ``window``, the rule fires when
  ``L̄_old − L̄_new < rel_tol · |L̄_old|`` (needs ``2·window`` losses of the phase first).
* :class:`StabilityCrossing` — a stability ratio crosses a level. The ratio comes from any
  callable ``source() -> float`` (for example ``dt·√λ_max`` from a sharpness estimate); the
  rule asks it every ``every`` steps and fires when ``ratio ≥ level`` (``above=True``) or
  ``ratio ≤ level`` (``above=False``). The rule never imports a stability monitor itself.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Plateau", "StabilityCrossing", "SwitchRule", "rule_from_dict"]


class SwitchRule(ABC):
    """A rule that ends a phase. Subclasses keep plain-data state (floats, ints, lists)."""

    name = "rule"

    @abstractmethod
    def check(self) -> None:
        """Raise ``ValueError("<field>: ...")`` for bad settings (called before any compute)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything observed: the phase starts now."""

    @abstractmethod
    def observe(self, *, loss: float | None, phase_step: int) -> bool:
        """After step ``phase_step`` (0-based, within the phase) with training loss ``loss``:
        True ends the phase."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The observed state as plain data."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The settings as plain data (manifests, ``state_dict`` checks)."""


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: must be an integer >= 1; got {value!r}")
    return value


def _finite(field: str, value: Any, *, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field}: must be a finite number; got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{field}: must be >= {low:g}; got {value!r}")
    return float(value)


class Plateau(SwitchRule):
    """Fire when the mean loss of the latest ``window`` steps improved on the ``window`` before
    by less than ``rel_tol`` (relative): ``L̄_old − L̄_new < rel_tol · |L̄_old|``.

    Args:
        window: steps per window (integer ≥ 1); the rule needs ``2·window`` losses of the phase.
        rel_tol: relative improvement below which the loss counts as flat (≥ 0).
    """

    name = "plateau"

    def __init__(self, *, window: int = 20, rel_tol: float = 1e-3) -> None:
        self.window = window
        self.rel_tol = rel_tol
        self._losses: list[float] = []

    def check(self) -> None:
        _positive_int("window", self.window)
        _finite("rel_tol", self.rel_tol, low=0.0)

    def reset(self) -> None:
        self._losses = []

    def observe(self, *, loss: float | None, phase_step: int) -> bool:
        if loss is None:
            raise ValueError(
                "plateau needs the training loss of every step: pass a closure to step() or "
                "step(loss=...)"
            )
        self._losses.append(float(loss))
        del self._losses[: -2 * self.window]
        if len(self._losses) < 2 * self.window:
            return False
        old = sum(self._losses[: self.window]) / self.window
        new = sum(self._losses[self.window:]) / self.window
        return old - new < self.rel_tol * abs(old)

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self._losses)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._losses = [float(v) for v in state["losses"]]

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "window": self.window, "rel_tol": self.rel_tol}


class StabilityCrossing(SwitchRule):
    """Fire when a stability ratio crosses ``level``.

    Args:
        source: ``() -> float``, the current ratio (e.g. ``dt·√λ_max`` of the active phase, from a
            sharpness estimate); called after a step, every ``every`` steps of the phase.
        level: the level (finite).
        above: fire when ``ratio ≥ level`` (True, default) or when ``ratio ≤ level`` (False).
        every: ask the source after every ``every``-th step of the phase (integer ≥ 1).

    The last ratio read is :attr:`last_ratio` (None before the first read).
    """

    name = "stability"

    def __init__(self, source: Callable[[], float], *, level: float, above: bool = True,
                 every: int = 1) -> None:
        self.source = source
        self.level = level
        self.above = above
        self.every = every
        self.last_ratio: float | None = None

    def check(self) -> None:
        if not callable(self.source):
            raise ValueError(f"source: must be a callable () -> float; got {type(self.source).__name__}")
        _finite("level", self.level)
        if not isinstance(self.above, bool):
            raise ValueError(f"above: must be True or False; got {self.above!r}")
        _positive_int("every", self.every)

    def reset(self) -> None:
        self.last_ratio = None

    def observe(self, *, loss: float | None, phase_step: int) -> bool:
        if (phase_step + 1) % self.every:
            return False
        ratio = float(self.source())
        if not math.isfinite(ratio):
            raise ValueError(f"stability source returned a non-finite ratio {ratio!r}")
        self.last_ratio = ratio
        return ratio >= self.level if self.above else ratio <= self.level

    def state_dict(self) -> dict[str, Any]:
        return {"last_ratio": self.last_ratio}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        value = state.get("last_ratio")
        self.last_ratio = None if value is None else float(value)

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "level": self.level, "above": self.above, "every": self.every}


def rule_from_dict(data: Any) -> SwitchRule:
    """A rule from plain data: ``{"plateau": {"window": 20, "rel_tol": 1e-3}}`` (a stability
    crossing needs a ratio source, so it is built in Python, not from data)."""
    if isinstance(data, SwitchRule):
        return data
    if not isinstance(data, Mapping) or len(data) != 1:
        raise ValueError(
            "must be a SwitchRule or a one-key mapping {plateau: {window: ..., rel_tol: ...}}; "
            f"got {data!r}"
        )
    (kind, options), = data.items()
    if kind != "plateau":
        raise ValueError(
            f"unknown rule {kind!r}; from data only 'plateau' (a StabilityCrossing needs a ratio "
            "source: build it in Python)"
        )
    options = dict(options or {})
    unknown = set(options) - {"window", "rel_tol"}
    if unknown:
        raise ValueError(f"plateau: unknown key(s) {', '.join(sorted(unknown))}; allowed: window, rel_tol")
    return Plateau(**options)

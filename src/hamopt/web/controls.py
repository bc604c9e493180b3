"""What the page's controls mean: dropdown choices, field names in messages, control values → a
validated :class:`~hamopt.playground.PlaygroundConfig`, and the text shown when that fails."""

from __future__ import annotations

import re
from typing import Any

from .. import playground as pg
from ..landscapes import LANDSCAPES

__all__ = [
    "FIELD_LABELS",
    "LANDSCAPE_CHOICES",
    "OPTIMIZER_CHOICES",
    "config_from_controls",
    "failure_message",
    "invalid_input_message",
    "readable_numbers",
]

LANDSCAPE_CHOICES = [(info.label, name) for name, info in LANDSCAPES.items()]
OPTIMIZER_CHOICES = [(info.label, name) for name, info in pg.OPTIMIZERS.items()]

# how an invalid field is named in the message (the config's field names otherwise)
FIELD_LABELS = {
    "step_size": "dt / lr (step size)",
    "gamma": "γ damping",
    "mass": "mass M",
    "cap": "energy cap α",
    "momentum": "momentum / β₁",
    "weight_decay": "weight decay",
    "eta": "η (ECD)",
    "f0": "F0 / v0 (ECD loss floor)",
    "nu": "ν (ECD bounce)",
}


def config_from_controls(
    landscape: str,
    optimizer: str,
    step_size: Any,
    gamma: Any,
    mass: Any,
    cap: Any,
    momentum: Any,
    weight_decay: Any,
    steps: Any,
    noise: Any,
    x0: Any,
    y0: Any,
    seed: Any,
    eta: Any = 1.0,
    f0: Any = -0.1,
    nu: Any = 0.0,
) -> pg.PlaygroundConfig:
    """Controls → a validated config (``cap`` 0 or empty means no cap; empty start = default).

    Raises :class:`~hamopt.playground.PlaygroundInputError` naming the field for bad input.
    """
    if (x0 is None) != (y0 is None):
        raise pg.PlaygroundInputError(
            "start", "give both x and y, or leave both empty for the landscape's default"
        )
    cap_value = None if cap is None or (isinstance(cap, (int, float)) and cap == 0) else cap
    return pg.PlaygroundConfig(
        landscape=landscape,
        optimizer=optimizer,
        step_size=step_size,
        gamma=gamma,
        mass=mass,
        cap=cap_value,
        momentum=momentum,
        weight_decay=weight_decay,
        steps=steps,
        noise=noise,
        start=None if x0 is None else (x0, y0),
        seed=seed,
        eta=eta,
        f0=f0,
        nu=nu,
    )


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")


def readable_numbers(text: str) -> str:
    """Every number in ``text`` as a person writes it: "got 1000000000.0" → "got 1e9"."""

    def short(match: re.Match[str]) -> str:
        token = match.group(0)
        if "." not in token and "e" not in token.lower() and len(token.lstrip("-")) <= 5:
            return token  # small integers (steps, ranges) stay as written
        value = float(token)
        if value == 0 or 1e-4 <= abs(value) < 1e5:
            return f"{value:.6g}"
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"

    return _NUMBER.sub(short, text)


def invalid_input_message(exc: pg.PlaygroundInputError) -> str:
    """Markdown naming the invalid field (by its label on the page) and its allowed values."""
    label = FIELD_LABELS.get(exc.field, exc.field)
    detail = readable_numbers(str(exc).removeprefix(f"{exc.field}: "))
    return (
        f"**Invalid input** — {label}: {detail}. Nothing was computed: the plots still show the last "
        "valid settings; fix the marked field to redraw."
    )


def failure_message(what: str, exc: Exception) -> str:
    """Markdown for an unexpected failure of ``what`` ("Run", "Scan", …): the page shows it
    instead of freezing."""
    return f"**{what} failed** — {type(exc).__name__}: {exc}"

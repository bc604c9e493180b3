r"""Built-in sweep presets (``hamopt reproduce --preset NAME``), stored as YAML next to this module.

* ``quick`` — digits, 64-64-10 MLP, CPU, about a minute: the README's main command.
* ``cpu`` — CIFAR-10 subset, ResNet-20-family network, CPU, about ten minutes.
* ``paper`` — the study's setting: ResNet-18, CIFAR-10, batch 128, one epoch, its step sizes, GPU.
* ``stability-quick`` — the stability monitor on the quick problem: Leapfrog, SGD-momentum and AdamW
  at step sizes across their stability limits, sharpness every 10 steps (a minute or two).

Leapfrog and SGD step sizes of ``quick``/``cpu`` are fractions of the measured stability limit
(see :mod:`hamopt.experiments.calibrate` and ``docs/lab.md``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from .spec import ExperimentSpec, SpecError, parse_spec

__all__ = ["PRESETS", "load_preset", "preset_text"]

PRESETS = ("quick", "cpu", "paper", "stability-quick")


def preset_text(name: str) -> str:
    """The YAML text of preset ``name``."""
    if name not in PRESETS:
        raise SpecError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    return (
        resources.files("hamopt.experiments")
        .joinpath("presets", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )


def load_preset(name: str, **overrides: Any) -> ExperimentSpec:
    """Preset ``name`` as a validated spec; ``overrides`` replace top-level keys (``device``,
    ``threads``) or, for ``data_root``, the dataset's ``root``."""
    import yaml

    data = yaml.safe_load(preset_text(name))
    root = overrides.pop("data_root", None)
    if root is not None:
        data["dataset"]["root"] = str(root)
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    return parse_spec(data, source=f"preset {name!r}")

r"""The symmetry-breaking study's presets: the :class:`SymbreakPreset` grid and its YAML files
(``presets/symbreak-*.yaml`` next to this package's modules); see
:mod:`hamopt.experiments.symbreak`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .spec import SpecError

__all__ = ["PRESETS", "PRESET_NAMES", "SymbreakPreset", "load_preset", "preset_dict",
           "preset_text", "preset_yaml"]


@dataclass(frozen=True)
class SymbreakPreset:
    """A study grid. ``hyper`` maps optimiser name → keyword arguments of its constructor
    (``lr`` is the step size, ``mode`` the family's mode); ``types`` maps it → its family.
    ``schedule`` is the shared step-size schedule (:mod:`hamopt.experiments.symbreak_schedule`;
    ``None``: constant); ``track_energy: false`` records losses, gradient norms and charges but
    no energies (:class:`hamopt.energy.LossTracker`, one forward pass less per step)."""

    name: str
    model: str
    model_overrides: dict[str, Any]
    steps: int
    batch_size: int
    context: int
    eval_every: int
    val_windows: int
    hyper: dict[str, dict[str, Any]]
    types: dict[str, str]
    optimizers: tuple[str, ...]
    variants: tuple[str, ...] = ("symmetric", "bq+bv")
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "stdlib"
    device: str = "cpu"
    threads: int | None = None
    workers: int = 1
    grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    tune_seed: int | None = None
    test_windows: int = 0
    save_models: bool = False
    schedule: dict[str, Any] | None = None
    track_energy: bool = True


PRESET_NAMES = ("symbreak-tiny", "symbreak-cpu", "symbreak-124m")


def preset_text(name: str) -> str:
    """The YAML text of symbreak preset ``name`` (stored next to this module)."""
    from importlib import resources

    if name not in PRESET_NAMES:
        raise SpecError(f"preset must be one of {', '.join(map(repr, PRESET_NAMES))}; got {name!r}")
    return resources.files("hamopt.experiments").joinpath("presets", f"{name}.yaml").read_text(
        encoding="utf-8")


def load_preset(name: str) -> SymbreakPreset:
    """Symbreak preset ``name`` from its YAML."""
    import yaml

    data = yaml.safe_load(preset_text(name))
    entries = data.pop("optimizers")
    return SymbreakPreset(
        **{k: tuple(v) if k in ("variants", "seeds") else v for k, v in data.items()},
        hyper={n: dict(e.get("hyper", {})) for n, e in entries.items()},
        grid={n: dict(e["grid"]) for n, e in entries.items() if e.get("grid")},
        types={n: e["type"] for n, e in entries.items()},
        optimizers=tuple(entries),
    )


PRESETS: dict[str, SymbreakPreset] = {name: load_preset(name) for name in PRESET_NAMES}


def preset_dict(preset: SymbreakPreset) -> dict[str, Any]:
    """The preset as plain JSON-ready data (tuples as lists)."""
    return json.loads(json.dumps(asdict(preset)))


def preset_yaml(preset: SymbreakPreset) -> str:
    """The (resolved) preset as YAML."""
    import yaml

    return yaml.safe_dump(preset_dict(preset), sort_keys=False)

r"""Tuning for the symmetry-breaking study: each optimiser chosen on a small grid per variant.

A preset with a ``grid`` (``optimizers.<name>.grid``, e.g. ``{lr: [1e-3, 3e-3, 1e-2]}``) runs in
two stages on the run engine and store, each resumable on its own:

1. **tune** (``OUT/tune``): every grid point of every optimiser × variant, trained on the
   ``tune_seed`` alone (a seed not among the reported ones);
2. **choose**: per (optimiser, variant), the grid point with the lowest final validation loss
   among the completed tuning runs (a diverged or failed point is never chosen; a pair with no
   completed point is left out of stage 3 and named in ``OUT/tuning.json``);
3. **eval** (``OUT``): the chosen point of each (optimiser, variant) on every seed of the preset;
   the report (:mod:`hamopt.experiments.symbreak_report`) compares these runs on the held-out
   test windows, which the choice never saw.

A preset without a grid is one eval stage (as before). ``OUT/tuning.json`` records the grid,
the validation loss of every tuning run and the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_text
from .engine import SweepSummary, run_study
from .spec import SpecError

__all__ = [
    "MODEL_FILE",
    "TUNING_FILE",
    "check_tuning",
    "choose",
    "load_model",
    "run_stages",
    "save_model",
]

MODEL_FILE = "model.pt"
TUNING_FILE = "tuning.json"


def check_tuning(preset: Any) -> None:
    """Refuse an optimiser whose family is not installed, a grid for an optimiser the preset does
    not list, an empty grid axis, and a grid without a ``tune_seed`` (or with one among the
    seeds)."""
    from .. import families
    from ..families.soap import INSTALL_HINT

    for opt in preset.optimizers:
        if preset.types[opt] not in families.names():
            hint = f"; {INSTALL_HINT}" if preset.types[opt] == "soap" else ""
            raise SpecError(f"optimizers.{opt}: type {preset.types[opt]!r} is not a registered "
                            f"optimiser family (registered: {', '.join(families.names())}){hint}")
    for opt, grid in preset.grid.items():
        if opt not in preset.types:
            raise SpecError(f"optimizers.{opt}.grid: {opt!r} is not one of the preset's optimisers")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise SpecError(f"optimizers.{opt}.grid.{key}: must be a non-empty list of values; "
                                f"got {values!r}")
    if preset.grid:
        seed = preset.tune_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError("tune_seed: a preset with a grid needs an integer tune_seed >= 0 (the "
                            f"seed of the tuning runs); got {seed!r}")
        if seed in preset.seeds:
            raise SpecError(f"tune_seed={seed} must differ from the seeds {list(preset.seeds)}: "
                            "the choice is reported on other seeds")


def choose(tune_dir: str | Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``(chosen, candidates)`` from the tuning runs in ``tune_dir``: ``chosen["opt/variant"]``
    is the grid point (``hyper`` keys of the grid) with the lowest final validation loss among
    the completed runs; ``candidates`` lists every tuning run with its point, status and loss."""
    from .store import readable_runs

    runs, _ = readable_runs(tune_dir)
    candidates: list[dict[str, Any]] = []
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for man, _cols in runs:
        point = man.get("grid_point") or {}
        key = f"{man['optimizer']}/{man['variant']}"
        loss = man.get("final_val_loss")
        candidates.append({"pair": key, "point": point, "status": man["status"], "val_loss": loss})
        if man["status"] == "completed" and loss is not None and (
                key not in best or loss < best[key][0]):
            best[key] = (loss, point)
    candidates.sort(key=lambda c: (c["pair"], json.dumps(c["point"], sort_keys=True)))
    return {k: point for k, (_, point) in sorted(best.items())}, candidates


def run_stages(
    preset: Any,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> list[SweepSummary]:
    """Run the stages of ``preset`` into ``out`` (see the module docstring); their summaries."""
    from .symbreak import SymbreakStudy, plan_runs

    root = Path(out)
    summaries = []
    chosen: dict[str, dict[str, Any]] = {}
    if preset.grid:
        tune_dir = root / "tune"
        log(f"tuning: {len(plan_runs(preset, stage='tune'))} runs on seed {preset.tune_seed}")
        summaries.append(run_study(SymbreakStudy(preset, data_dir, stage="tune"), tune_dir,
                                   progress=progress, log=log))
        chosen, candidates = choose(tune_dir)
        pairs = [f"{o}/{v}" for o in preset.optimizers for v in preset.variants]
        untuned = [p for p in pairs if p not in chosen]
        for pair, point in chosen.items():
            log(f"chosen {pair}: {point}")
        if untuned:
            log(f"no completed tuning run, left out: {', '.join(untuned)}")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / TUNING_FILE, json.dumps(
            {"grid": preset.grid, "tune_seed": preset.tune_seed, "chosen": chosen,
             "left_out": untuned, "candidates": candidates}, indent=2, default=str))
        if not chosen:
            raise SpecError("every tuning run diverged or failed; nothing to evaluate "
                            f"(see {tune_dir})")
    study = SymbreakStudy(preset, data_dir, stage="eval", chosen=chosen, out=root)
    summaries.append(run_study(study, root, progress=progress, log=log))
    return summaries


def save_model(model: Any, path: Path) -> None:
    """The model's config and weights (CPU tensors), written atomically to ``path``."""
    import os

    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": model.config.as_dict(),
                "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)
    os.replace(tmp, path)


def load_model(path: str | Path) -> Any:
    """A GPT saved by :func:`save_model`, in eval mode."""
    from ..models.gpt import GPT, GPTConfig

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model.eval()

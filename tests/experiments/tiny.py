"""A tiny sweep spec (digits, 8-unit MLP, a dozen steps) shared by the lab's tests."""

from __future__ import annotations

import copy
from typing import Any

from hamopt.experiments.spec import ExperimentSpec, parse_spec

TINY: dict[str, Any] = {
    "name": "tiny",
    "dataset": {"name": "digits", "train_size": 400, "test_size": 100},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "batch_size": 16,
    "steps": 12,
    "seeds": [0, 1],
    "threads": 1,
    "bootstrap": 50,
    "optimizers": [
        {
            "name": "leapfrog-exact",
            "type": "leapfrog",
            "mode": "exact",
            "band": "band",
            "stability_fractions": [0.1, 0.2],
        },
        {
            "name": "leapfrog-streaming",
            "type": "leapfrog",
            "mode": "streaming",
            "band": "band",
            "stability_fractions": [0.1, 0.2],
        },
        {"name": "adamw", "type": "adamw", "band": "band", "step_sizes": [0.001, 0.003]},
        {"name": "sgd-momentum", "type": "sgd", "band": "band", "stability_fractions": [0.1, 0.2]},
    ],
    "ablations": {"optimizer": "leapfrog-exact", "band": "band", "step_index": 0, "seeds": [0]},
    "reversibility": {"steps": [1, 4], "dtypes": ["float32", "float64"], "batch_size": 32},
    "calibration": {"iterations": 5},
}


def tiny_dict(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(TINY)
    d.update(changes)
    return d


def tiny_spec(**changes: Any) -> ExperimentSpec:
    return parse_spec(tiny_dict(**changes))

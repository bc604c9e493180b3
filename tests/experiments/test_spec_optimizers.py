"""The optimiser entries of a spec ask the family registry."""

import pytest
import torch

from hamopt import families
from hamopt.experiments.spec import SpecError, parse_spec

from .tiny import tiny_dict


def _with(entry):
    d = tiny_dict()
    d["optimizers"] = [{"name": "x", "band": "band", "step_sizes": [0.01], **entry}]
    d.pop("ablations", None)
    return d


def test_unknown_type_lists_the_registered_ones():
    with pytest.raises(SpecError, match=r"optimizers\[0\]\.type: unknown optimiser type 'lion'; registered: leapfrog"):
        parse_spec(_with({"type": "lion"}))


def test_a_registered_optimizer_is_a_spec_type(restore_registry):
    families.register_optimizer(torch.optim.Adagrad, name="adagrad")
    spec = parse_spec(_with({"type": "adagrad", "hyper": {"lr_decay": 0.01}}))
    o = spec.optimizers[0]
    assert o.run_mode == "baseline" and o.hyper["lr_decay"] == 0.01 and o.hyper["eps"] == 1e-10
    with pytest.raises(SpecError, match=r"optimizers\[0\]: hyper\.lr_decay: .*lr_decay"):
        parse_spec(_with({"type": "adagrad", "hyper": {"lr_decay": -1.0}}))
    with pytest.raises(SpecError, match=r"stability_fractions is defined for leapfrog, euler, sgd .* not 'adagrad'"):
        parse_spec(_with({"type": "adagrad", "step_sizes": None, "stability_fractions": [0.5]}))


def test_nesterov_and_heavy_ball_rules():
    with pytest.raises(SpecError, match=r"optimizers\[0\]: hyper\.nesterov: Nesterov SGD is refused"):
        parse_spec(_with({"type": "sgd", "hyper": {"nesterov": True}}))
    with pytest.raises(SpecError, match=r"stability_fractions for sgd needs momentum > 0"):
        parse_spec(_with({"type": "sgd", "hyper": {"momentum": 0.0}, "step_sizes": None,
                          "stability_fractions": [0.5]}))


def test_mode_follows_the_family():
    assert parse_spec(_with({"type": "euler"})).optimizers[0].mode == "exact"
    assert parse_spec(_with({"type": "leapfrog", "mode": "streaming"})).optimizers[0].run_mode == "streaming"
    with pytest.raises(SpecError, match=r"optimizers\[0\]: mode must be one of 'exact', 'streaming'"):
        parse_spec(_with({"type": "leapfrog", "mode": "fast"}))

"""The playground offers the families that carry a playground entry."""

from dataclasses import replace

import torch

from hamopt import families
from hamopt.families import PlaygroundEntry
from hamopt.playground import OPTIMIZERS, PlaygroundConfig, run_trajectory, suggested_config


def test_table_follows_the_registry():
    keys = [families.get(n).playground.key for n in families.names() if families.get(n).playground]
    assert list(OPTIMIZERS) == keys
    for name in families.names():
        f = families.get(name)
        if f.playground is not None:
            info = OPTIMIZERS[f.playground.key]
            assert info.step_label == f.step_axis and info.hamiltonian == f.integrator


def test_a_registered_family_with_an_entry_is_offered(restore_registry):
    family = families.register_optimizer(torch.optim.RMSprop, name="rmsprop")
    families.register(replace(family, playground=PlaygroundEntry(
        "rmsprop", "RMSprop", ("momentum",), lambda c: {"momentum": c.momentum}, 0.01)))
    assert "rmsprop" in OPTIMIZERS
    config = replace(suggested_config("quadratic", "rmsprop"), steps=30, momentum=0.5)
    assert config.step_size == 0.01
    tr = run_trajectory(config)
    assert tr.steps_run == 30 and not tr.diverged and tr.optimizer_label == "RMSprop"
    assert tr.loss[-1] < tr.loss[0]


def test_built_optimizers_are_not_fused():
    for key in ("sgd_momentum", "adamw"):
        opt = OPTIMIZERS[key].build([torch.zeros(2, requires_grad=True)], PlaygroundConfig(optimizer=key))
        assert not opt.param_groups[0]["fused"]

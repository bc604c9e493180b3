"""The worked example of docs/families.md: Adagrad registered in one call, then used in a spec."""

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from hamopt import families
from hamopt.data import BatchStream, Dataset
from hamopt.energy import EnergyTracker
from hamopt.experiments.spec import SpecError, parse_spec
from hamopt.models import build_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "families.md"


def _blocks(language):
    text = DOC.read_text(encoding="utf-8")
    example = text[text.index("## Worked example") :]
    return re.findall(rf"```{language}\n(.*?)```", example, flags=re.S)


def _digits_like(train_size, test_size):
    """Random data with the digits' shapes (64 features, 10 classes): the example's dynamics, fast."""
    g = torch.Generator().manual_seed(0)
    n = train_size + test_size
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    return Dataset(name="digits-like", x_train=x[:train_size], y_train=y[:train_size], x_test=x[train_size:],
                   y_test=y[train_size:], num_classes=10, input_shape=(64,), source="random", augment=False)


def test_the_docs_example_registers_adagrad_and_runs_its_spec(restore_registry):
    register, *_ = _blocks("python")
    exec(compile(register, str(DOC), "exec"), {})
    family = families.get("adagrad")
    assert family.optimizer_class is torch.optim.Adagrad

    spec = parse_spec(yaml.safe_load(_blocks("yaml")[0]))
    entry = spec.optimizers[0]
    assert entry.type == "adagrad" and entry.hyper == {
        "lr_decay": 0.0, "weight_decay": 0, "initial_accumulator_value": 0, "eps": 1e-10,
        "foreach": None, "maximize": False, "differentiable": False, "fused": None,
    }
    bad = yaml.safe_load(_blocks("yaml")[0])
    bad["optimizers"][0]["hyper"]["lr_decay"] = -1.0
    try:
        parse_spec(bad)
    except SpecError as exc:
        assert "optimizers[0]: hyper.lr_decay: Invalid lr_decay value: -1.0" in str(exc)
    else:
        raise AssertionError("a negative lr_decay was accepted")

    # each run as the run engine does it: the family builds the optimiser, the tracker measures H
    data = _digits_like(spec.dataset.train_size, spec.dataset.test_size)
    for step_size in entry.step_sizes:
        model = build_model(spec.model.name, num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                            width=spec.model.width, depth=spec.model.depth, seed=spec.seeds[0])
        opt = family.build(model.parameters(), step_size, entry.hyper, seed=spec.seeds[0], device=spec.device)
        assert type(opt) is torch.optim.Adagrad and opt.param_groups[0]["lr"] == step_size
        stream = BatchStream(data, batch_size=spec.batch_size, seed=spec.seeds[0])
        tracker = EnergyTracker(opt)
        for t in range(spec.steps):
            x, y = stream.batch(t)
            tracker.step(lambda x=x, y=y, m=model: F.cross_entropy(m(x), y))
        for r in tracker.records:
            assert math.isfinite(r.delta_h_int) and r.kinetic >= 0.0
            assert r.hamiltonian == r.kinetic + r.loss_after
        manifest = family.manifest(opt)
        assert manifest["energy_convention"]["name"] == "adagrad"
        assert manifest["energy_convention"]["displacement_form"] is True


def test_the_docs_playground_entry_example(restore_registry):
    from hamopt.playground import OPTIMIZERS, run_trajectory, suggested_config

    register, _run, playground = _blocks("python")
    scope = {}
    exec(compile(register, str(DOC), "exec"), scope)
    exec(compile(playground, str(DOC), "exec"), scope)
    assert OPTIMIZERS["adagrad"].label == "Adagrad"
    tr = run_trajectory(suggested_config("quadratic", "adagrad"))
    assert not tr.diverged and tr.loss[-1] < tr.loss[0]

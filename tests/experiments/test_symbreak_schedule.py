"""The symmetry-breaking presets' shared step-size schedule."""

import math

import pytest
import torch

from hamopt.experiments.spec import SpecError
from hamopt.experiments.symbreak_schedule import check_schedule, lr_factor


def test_cosine_warmup_shape():
    m = lr_factor({"warmup": 0.1, "shape": "cosine", "final": 0.1}, 100)
    assert [m(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert m(9) == pytest.approx(1.0)
    assert m(10) == pytest.approx(1.0)  # the decay starts at its peak
    assert m(99) == pytest.approx(0.1)  # and ends at final
    mid = 10 + (99 - 10) / 2
    assert m(int(mid)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 89)))
    values = [m(t) for t in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_and_constant_and_none():
    lin = lr_factor({"shape": "linear", "final": 0.0}, 11)
    assert [lin(t) for t in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert lr_factor({"shape": "constant", "warmup": 0.5}, 10)(7) == 1.0
    assert lr_factor(None, 10)(3) == 1.0


@pytest.mark.parametrize("bad, field", [
    ({"warmup": 1.0}, "schedule.warmup"),
    ({"warmup": -0.1}, "schedule.warmup"),
    ({"shape": "step"}, "schedule.shape"),
    ({"final": 2.0}, "schedule.final"),
    ({"decay": 0.1}, "unknown key"),
    ([0.1], "schedule: must be a mapping"),
])
def test_bad_schedules_name_the_field(bad, field):
    with pytest.raises(SpecError, match=field):
        check_schedule(bad, 100)


def test_lambda_lr_follows_the_factor():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.5)
    m = lr_factor({"warmup": 0.25, "shape": "cosine", "final": 0.0}, 8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, m)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5 * m(t) for t in range(8)])

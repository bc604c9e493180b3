"""Family.validate_hyper: the schema, then the optimiser itself on a dummy parameter."""

import pytest

from hamopt import families
from hamopt.families import HyperError


def test_defaults_are_filled_and_json_compatible():
    assert families.LEAPFROG.validate_hyper({}) == {
        "gamma": 1e-3, "cap": 2.0, "mass": "fan_in", "mass_clip": [0.125, 8.0]
    }
    assert families.ADAMW.validate_hyper(None)["betas"] == [0.9, 0.999]


@pytest.mark.parametrize(
    "name, hyper, pattern",
    [
        ("leapfrog", {"gama": 0.1}, r"^hyper\.gama: unknown key"),
        ("leapfrog", {"gamma": -1.0}, r"^hyper\.gamma: Input should be greater than or equal to 0"),
        ("sgd", {"momentum": 1.5}, r"^hyper\.momentum: Input should be less than 1"),
        ("adam", {"betas": [0.9, 1.5]}, r"^hyper\.betas: each beta must be in \[0, 1\)"),
        ("ecdsep", {}, r"^hyper\.eta: required key is missing"),
        ("ecdsep", {"eta": 0.5}, r"^hyper\.eta must be .*>= 1"),
        ("ecdsep", {"eta": 2.0, "s": 0.5, "deltaEn": 0.3}, r"^hyper\.s=0\.5.*deltaEn"),
        ("ecdq1", {"eta": 1.0, "projection": "x"}, r"^hyper\.projection must be"),
        ("bbi", {"seed": 3}, r"^hyper\.seed is not a hyper-parameter"),
        ("sgd", [1, 2], r"^hyper: must be a mapping"),
    ],
)
def test_bad_hyper_names_the_key(name, hyper, pattern):
    with pytest.raises(HyperError, match=pattern) as info:
        families.get(name).validate_hyper(hyper)
    assert "\n" not in str(info.value)


def test_values_the_optimiser_keeps_are_recorded():
    assert families.ECDSEP.validate_hyper({"eta": 2.0, "s": 0.5})["deltaEn"] == 1.0


def test_mode_only_for_families_with_modes():
    assert families.LEAPFROG.check_mode(None) == "exact"
    assert families.LEAPFROG.check_mode("streaming") == "streaming"
    with pytest.raises(HyperError, match=r"mode must be one of 'exact', 'streaming'"):
        families.LEAPFROG.validate_hyper({}, mode="fast")
    with pytest.raises(HyperError, match=r"mode applies only to leapfrog/euler, not to type 'sgd'"):
        families.SGD.build([], 0.1, mode="exact")


def test_build_validates_before_constructing():
    import torch

    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(HyperError, match=r"hyper\.momentum"):
        families.SGD.build(p, 0.1, {"momentum": -0.1})
    opt = families.SGD.build(p, 0.1, {"momentum": 0.0})
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[0]["lr"] == 0.1

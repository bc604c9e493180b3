"""check_model_options refuses exactly what build_model refuses, naming the option."""

import itertools

import pytest

from hamopt.models import ModelOptionError, build_model, check_model_options

DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)


def _refusal(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ModelOptionError as exc:
        return exc.option, str(exc)
    return None


GRID = [
    ("mlp", DIGITS, [0, 1, 64, 65, 1000], [1, 8]),
    ("small_cnn", DIGITS, [1, 3, 4, 7], [2]),
    ("small_cnn", CIFAR, [5, 6], [2]),
    ("resnet20", CIFAR, [8, 14, 21, 0], [2]),
    ("resnet18", CIFAR, [18, 20], [1, 513]),
]


@pytest.mark.parametrize("name, shape, depths, widths", GRID)
def test_check_agrees_with_the_builder(name, shape, depths, widths):
    for depth, width in itertools.product(depths, widths):
        options = dict(num_classes=10, input_shape=shape, width=width, depth=depth)
        if name == "resnet18" and width > 512 or name == "resnet20" and depth == 14:
            continue  # too slow to build for real; covered by the checks below
        expected = _refusal(build_model, name, **options)
        assert _refusal(check_model_options, name, **options) == expected, (name, depth, width)


@pytest.mark.parametrize(
    "name, options, option, text",
    [
        ("mlp", {"depth": 1000}, "depth", "[0, 64]"),
        ("mlp", {"width": 0}, "width", "[1, 65536]"),
        ("mlp", {"channels_last": True}, "channels_last", "convolutional"),
        ("small_cnn", {"depth": 4}, "depth", "[1, 3]"),
        ("resnet20", {"depth": 21}, "depth", "6n + 2"),
        ("resnet18", {"width": 4096}, "width", "[1, 512]"),
        ("resnet18", {"depth": 20}, "depth", "18"),
        ("vgg", {}, "name", "resnet18"),
    ],
)
def test_refusals_name_the_option(name, options, option, text):
    with pytest.raises(ModelOptionError, match=r".") as info:
        check_model_options(name, num_classes=10, input_shape=DIGITS if name != "resnet18" else CIFAR,
                            **options)
    assert info.value.option == option and text in str(info.value)


def test_model_option_error_is_a_value_error():
    assert issubclass(ModelOptionError, ValueError)


def test_the_check_allocates_no_parameters_and_leaves_the_rng_alone():
    import torch

    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    check_model_options("resnet18", num_classes=10, input_shape=CIFAR, width=512)
    assert torch.equal(torch.rand(1), before)
    assert torch.zeros(1).device.type == "cpu"  # the meta device does not leak out

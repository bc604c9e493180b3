"""check_dataset_options / check_dataset_available apply load_dataset's own rules without loading."""

import pytest

from hamopt.data import (
    DATASET_FACTS,
    DatasetOptionError,
    check_dataset_available,
    check_dataset_options,
    load_dataset,
)
from hamopt.data.dataset import largest_balanced_size


@pytest.mark.parametrize(
    "sizes",
    [{"train_size": s} for s in (None, 9, 10, 1391, 1392, 1437, True, 20.0)]
    + [{"test_size": s} for s in (350, 352, 353, 360)],
)
def test_digits_subset_rule_is_the_loaders(sizes):
    def outcome(fn):
        try:
            fn("digits", **sizes)
        except ValueError as exc:
            return str(exc)
        return None

    assert outcome(check_dataset_options) == outcome(load_dataset)


def test_largest_balanced_digits_subsets():
    # 139 rows of class 8 bound the train split: 10 × 139 + classes 0..7 with one more
    assert largest_balanced_size(DATASET_FACTS["digits"].train_class_counts) == 1398
    assert largest_balanced_size([5, 5, 3]) == 11 and largest_balanced_size([3, 5, 5]) == 9
    assert largest_balanced_size([4, 3, 5]) == 10
    data = load_dataset("digits", train_size=1398)
    assert data.train_size == 1398


def test_digits_facts_match_the_loaded_data():
    import torch

    data = load_dataset("digits")
    facts = DATASET_FACTS["digits"]
    assert (facts.input_shape, facts.num_classes) == (data.input_shape, data.num_classes)
    assert facts.train_class_counts == tuple(torch.bincount(data.y_train).tolist())
    assert facts.test_class_counts == tuple(torch.bincount(data.y_test).tolist())


@pytest.mark.parametrize(
    "name, options, option",
    [
        ("imagenet", {}, "name"),
        ("digits", {"root": "/data"}, "root"),
        ("digits", {"download": True}, "download"),
        ("cifar10", {"train_size": 50_001}, "train_size"),
        ("cifar10", {"test_size": 9}, "test_size"),
    ],
)
def test_refusals_name_the_option(name, options, option):
    with pytest.raises(DatasetOptionError) as info:
        check_dataset_options(name, **options)
    assert info.value.option == option


def test_cifar10_root_must_hold_a_layout(tmp_path, monkeypatch):
    with pytest.raises(DatasetOptionError, match="does not exist"):
        check_dataset_available("cifar10", root=tmp_path / "absent")
    with pytest.raises(DatasetOptionError, match="no CIFAR-10 data at root"):
        check_dataset_available("cifar10", root=tmp_path)
    (tmp_path / "cifar10_subset.npz").write_bytes(b"")
    check_dataset_available("cifar10", root=tmp_path)  # a layout is there (reading is the loader's job)
    check_dataset_available("cifar10", root=tmp_path / "absent", download=True)
    check_dataset_available("digits")
    monkeypatch.setenv("HAMOPT_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetOptionError, match="root is not given"):
        check_dataset_available("cifar10")

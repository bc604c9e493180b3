import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from hamopt.data import load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_split_sizes_shapes_and_types(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.augment is False
    assert "sklearn" in digits.source
    assert "x_train" not in repr(digits) and "digits" in repr(digits)


def test_split_is_fixed(digits):
    again = load_dataset("digits")
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)


def test_split_is_stratified(digits):
    _, y = sk_load_digits(return_X_y=True)
    full = np.bincount(y, minlength=10) / len(y)
    for labels in (digits.y_train, digits.y_test):
        frac = torch.bincount(labels, minlength=10).numpy() / len(labels)
        # stratification keeps every class share within one example of the full set's share
        assert np.all(np.abs(frac - full) <= 1.0 / len(labels) + 1e-12)


def test_split_partitions_the_bundled_images(digits):
    _, y = sk_load_digits(return_X_y=True)
    counts = torch.bincount(digits.y_train, minlength=10) + torch.bincount(
        digits.y_test, minlength=10
    )
    assert counts.tolist() == np.bincount(y, minlength=10).tolist()


def test_standardised_with_train_statistics(digits):
    flat = digits.x_train.reshape(len(digits.x_train), -1).double()
    mean, std = flat.mean(0), flat.std(0, unbiased=False)
    assert torch.allclose(mean, torch.zeros(64, dtype=torch.float64), atol=1e-5)
    varying = std > 0
    assert varying.sum() >= 60  # a few border pixels are always 0 in the training split
    assert torch.allclose(
        std[varying], torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5
    )
    # the test split uses the training statistics, so it is only approximately standardised
    assert not torch.allclose(digits.x_test.reshape(360, -1).double().mean(0), mean, atol=1e-5)


def test_balanced_subset(digits):
    small = load_dataset("digits", train_size=25, test_size=10)
    assert torch.bincount(small.y_train, minlength=10).tolist() == [3] * 5 + [2] * 5
    assert torch.bincount(small.y_test, minlength=10).tolist() == [1] * 10
    # rows are a subset of the full split, in stored order
    first_zero = torch.nonzero(digits.y_train == 0).flatten()[0]
    assert torch.equal(small.x_train[small.y_train == 0][0], digits.x_train[first_zero])


@pytest.mark.parametrize("size", [0, 9, 5000, 2.5])
def test_bad_subset_size_names_argument(size):
    with pytest.raises(ValueError, match="train_size"):
        load_dataset("digits", train_size=size)


def test_unknown_name_and_root_for_digits():
    with pytest.raises(ValueError, match="name must be one of 'digits', 'cifar10'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="root"):
        load_dataset("digits", root="/tmp")

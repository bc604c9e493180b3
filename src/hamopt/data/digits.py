"""scikit-learn's bundled 8×8 digits: a fixed stratified 1437/360 split, standardised per pixel.

Each pixel is standardised with the training split's mean and standard deviation
(``x' = (x − μ_train) / σ_train``; pixels constant over the training split, σ = 0, are only
centred). Images are returned as ``(N, 1, 8, 8)`` float32 so convolutional nets and the MLP
(which flattens) take the same tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, take_subset

DIGITS_TEST_SIZE = 360
# Rows per class (0..9) of the fixed split, for checking subset sizes without loading
# (tests/data/test_dataset_checks.py compares them with the loaded data).
DIGITS_TRAIN_CLASS_COUNTS = (142, 146, 142, 146, 145, 145, 145, 143, 139, 144)
DIGITS_TEST_CLASS_COUNTS = (36, 36, 35, 37, 36, 37, 36, 36, 35, 36)
DIGITS_SPLIT_SEED = 0


def load_digits(*, train_size: int | None = None, test_size: int | None = None) -> Dataset:
    """The digits data set with the fixed split (``random_state=0``, stratified by label)."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def images(a: np.ndarray) -> torch.Tensor:
        z = ((a - mean) / std).astype(np.float32)
        return torch.from_numpy(z).reshape(-1, 1, 8, 8).contiguous()

    parts = {
        "x_train": images(xtr),
        "y_train": torch.from_numpy(ytr.astype(np.int64)),
        "x_test": images(xte),
        "y_test": torch.from_numpy(yte.astype(np.int64)),
    }
    parts = take_subset(parts, 10, train_size, test_size)
    return Dataset(
        name="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        source="sklearn bundled (sklearn.datasets.load_digits)",
        augment=False,
        **parts,
    )

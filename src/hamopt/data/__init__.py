"""Data for the dynamics lab: in-memory data sets and deterministic, resumable mini-batches.

``load_dataset("digits")`` (scikit-learn's bundled 8×8 digits, the embedded default) or
``load_dataset("cifar10", root=...)`` (an ``.npz`` file or torchvision's on-disk layout) returns a
normalised :class:`Dataset`; :class:`BatchStream` turns it into batches that depend only on
``(seed, step)``.
"""

from __future__ import annotations

from pathlib import Path

from .cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from .dataset import Dataset, balanced_subset
from .digits import load_digits
from .stream import BatchStream, derive_seed, eval_batches, random_crop_flip
from .text import (
    TextBatches,
    TextCorpus,
    TokenShardBatches,
    load_text_corpus,
    read_token_shard,
    validation_batches,
    write_token_shard,
)

DATASET_NAMES: tuple[str, ...] = ("digits", "cifar10")


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Load data set ``name`` ("digits" or "cifar10"), optionally a class-balanced subset.

    ``root`` and ``download`` apply to CIFAR-10 only (see :mod:`hamopt.data.cifar10`);
    ``train_size``/``test_size`` keep the first rows of each class in stored order, equally many
    per class (the first ``size mod 10`` classes get one more).
    """
    if name == "digits":
        if root is not None or download:
            raise ValueError(
                "root and download apply only to name='cifar10'; "
                "digits are bundled with scikit-learn"
            )
        return load_digits(train_size=train_size, test_size=test_size)
    if name == "cifar10":
        return load_cifar10(root, download=download, train_size=train_size, test_size=test_size)
    raise ValueError(f"name must be one of {', '.join(map(repr, DATASET_NAMES))}; got {name!r}")


__all__ = [
    "TextBatches",
    "TextCorpus",
    "TokenShardBatches",
    "load_text_corpus",
    "read_token_shard",
    "validation_batches",
    "write_token_shard",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASET_NAMES",
    "BatchStream",
    "Dataset",
    "balanced_subset",
    "derive_seed",
    "eval_batches",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "random_crop_flip",
]

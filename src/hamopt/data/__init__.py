"""Data for the dynamics lab: in-memory data sets and deterministic, resumable mini-batches.

``load_dataset("digits")`` (scikit-learn's bundled 8×8 digits, the embedded default) or
``load_dataset("cifar10", root=...)`` (an ``.npz`` file or torchvision's on-disk layout) returns a
normalised :class:`Dataset`; :class:`BatchStream` turns it into batches that depend only on
``(seed, step)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, LAYOUTS_HELP, find_layout, load_cifar10
from .dataset import Dataset, DatasetOptionError, balanced_subset, check_subset_size
from .digits import DIGITS_TEST_CLASS_COUNTS, DIGITS_TRAIN_CLASS_COUNTS, load_digits
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


@dataclass(frozen=True)
class DatasetFacts:
    """What is known of a data set before loading it: one example's shape, and the rows per
    class of the train and test splits (for CIFAR-10 the most any accepted layout holds:
    torchvision's full data set; a smaller ``.npz`` is checked again when loaded)."""

    input_shape: tuple[int, ...]
    train_class_counts: tuple[int, ...]
    test_class_counts: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.train_class_counts)

    @property
    def max_train_size(self) -> int:
        return sum(self.train_class_counts)


DATASET_FACTS: dict[str, DatasetFacts] = {
    "digits": DatasetFacts((1, 8, 8), DIGITS_TRAIN_CLASS_COUNTS, DIGITS_TEST_CLASS_COUNTS),
    "cifar10": DatasetFacts((3, 32, 32), (5000,) * 10, (1000,) * 10),  # torchvision's full set
}


def check_dataset_options(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    train_size: int | None = None,
    test_size: int | None = None,
) -> DatasetFacts:
    """Raise :class:`DatasetOptionError` (``option`` names the argument) for options that
    :func:`load_dataset` refuses whatever is on disk; return the data set's facts. Reads nothing."""
    if name not in DATASET_FACTS:
        raise DatasetOptionError(
            "name", f"name must be one of {', '.join(map(repr, DATASET_NAMES))}; got {name!r}"
        )
    if name == "digits" and (root is not None or download):
        raise DatasetOptionError(
            "root" if root is not None else "download",
            "root and download apply only to name='cifar10'; digits are bundled with scikit-learn",
        )
    facts = DATASET_FACTS[name]
    if train_size is not None:
        check_subset_size(train_size, facts.train_class_counts, argument="train_size")
    if test_size is not None:
        check_subset_size(test_size, facts.test_class_counts, argument="test_size")
    return facts


def check_dataset_available(name: str, *, root: str | Path | None = None, download: bool = False) -> None:
    """Raise :class:`DatasetOptionError` if ``load_dataset(name, root=..., download=...)`` would
    find no data (checks the layout's presence only; ``download=True`` may fetch it later)."""
    if name != "cifar10" or download:
        return
    if root is not None:
        path = Path(root).expanduser()
        if not path.exists():
            raise DatasetOptionError("root", f"root {str(root)!r} does not exist; {LAYOUTS_HELP}")
        if find_layout(path) is None:
            raise DatasetOptionError("root", f"no CIFAR-10 data at root {str(root)!r}; {LAYOUTS_HELP}")
        return
    from .cifar10 import DATA_ENV_VAR, default_roots

    if not any(find_layout(p) is not None for p in default_roots()):
        tried = ", ".join(str(p) for p in default_roots())
        raise DatasetOptionError(
            "root",
            f"root is not given and no CIFAR-10 data is in {tried} (${DATA_ENV_VAR}, then "
            f"~/.cache/hamopt); give root or download: true; {LAYOUTS_HELP}",
        )


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
    check_dataset_options(name, root=root, download=download, train_size=train_size, test_size=test_size)
    if name == "digits":
        return load_digits(train_size=train_size, test_size=test_size)
    return load_cifar10(root, download=download, train_size=train_size, test_size=test_size)


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
    "DATASET_FACTS",
    "DATASET_NAMES",
    "DatasetFacts",
    "DatasetOptionError",
    "check_dataset_available",
    "check_dataset_options",
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

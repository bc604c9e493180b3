"""The :class:`Dataset` record shared by every loader, and the class-balanced subset rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory classification data set, already normalised.

    ``x_*`` are float32 tensors in NCHW layout (digits as ``(N, 1, 8, 8)``, CIFAR-10 as
    ``(N, 3, 32, 32)``); ``y_*`` are int64 class labels in ``[0, num_classes)``.
    ``source`` says where the data came from (a path, or ``"sklearn bundled"``) for run manifests.
    ``augment`` says whether the study's augmentation (4-px padded random crop + horizontal flip)
    applies to training batches. ``pad_value`` is the per-channel value, in normalised units,
    that a black (all-zero) raw pixel takes; the random crop pads with it, so padding is black
    exactly as ``RandomCrop(32, padding=4)`` before ``Normalize`` would pad.

    Equality is identity (the tensors are not compared), and the repr omits the tensors.
    """

    name: str
    x_train: Tensor = field(repr=False)
    y_train: Tensor = field(repr=False)
    x_test: Tensor = field(repr=False)
    y_test: Tensor = field(repr=False)
    num_classes: int
    input_shape: tuple[int, ...]
    source: str
    augment: bool
    pad_value: tuple[float, ...] = ()

    @property
    def train_size(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.y_test.shape[0])


class DatasetOptionError(ValueError):
    """A data set option is out of range; ``option`` names it (``train_size``, ``root``...)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


def largest_balanced_size(class_counts: Sequence[int]) -> int:
    """The largest size :func:`balanced_subset` can take from classes with these row counts:
    every class gives ``size // C`` rows and the first ``size mod C`` classes one more."""
    low = min(class_counts)
    extra = 0
    while extra < len(class_counts) - 1 and class_counts[extra] > low:
        extra += 1
    return low * len(class_counts) + extra


def check_subset_size(size: object, class_counts: Sequence[int], *, argument: str) -> int:
    """``size`` must be an integer from one example per class up to
    :func:`largest_balanced_size` of ``class_counts`` (rows available per class)."""
    num_classes = len(class_counts)
    largest = largest_balanced_size(class_counts)
    if isinstance(size, bool) or not isinstance(size, int) or not num_classes <= size <= largest:
        raise DatasetOptionError(
            argument,
            f"{argument} must be an integer in [{num_classes}, {largest}] (a class-balanced subset: "
            f"at least one example per class, at most the {largest} the classes' "
            f"{min(class_counts)}..{max(class_counts)} rows allow), got {size!r}",
        )
    return size


def balanced_subset(labels: Tensor, size: int, num_classes: int, *, argument: str) -> Tensor:
    """Indices of a deterministic class-balanced subset of ``size`` rows, in stored order.

    Class ``c`` contributes its first ``size // num_classes`` rows (in stored order), and the
    first ``size % num_classes`` classes one row more. Raises :class:`DatasetOptionError` naming
    ``argument`` if ``size`` is out of range (:func:`check_subset_size`).
    """
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].tolist()
    check_subset_size(size, counts, argument=argument)
    base, extra = divmod(size, num_classes)
    chosen = []
    for c in range(num_classes):
        quota = base + (1 if c < extra else 0)
        rows = torch.nonzero(labels == c).flatten()
        chosen.append(rows[:quota])
    return torch.sort(torch.cat(chosen)).values


def take_subset(
    ds_parts: dict[str, Tensor], num_classes: int, train_size: int | None, test_size: int | None
) -> dict[str, Tensor]:
    """Apply :func:`balanced_subset` to the train and/or test split of ``ds_parts``."""
    out = dict(ds_parts)
    if train_size is not None:
        idx = balanced_subset(out["y_train"], train_size, num_classes, argument="train_size")
        out["x_train"], out["y_train"] = out["x_train"][idx], out["y_train"][idx]
    if test_size is not None:
        idx = balanced_subset(out["y_test"], test_size, num_classes, argument="test_size")
        out["x_test"], out["y_test"] = out["x_test"][idx], out["y_test"][idx]
    return out

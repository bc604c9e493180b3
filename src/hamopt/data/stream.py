r"""Deterministic, resumable mini-batches and the study's augmentation.

Batch ``t`` is a pure function of ``(seed, t)``:

* epoch ``e = t // steps_per_epoch`` visits the training set in the order of
  ``torch.randperm(N)`` drawn from a generator seeded by ``derive_seed(seed, 0, e)``; batch ``t``
  is the slice ``[i·B, (i+1)·B)`` of that permutation with ``i = t mod steps_per_epoch``
  (``steps_per_epoch = N // B``: the last incomplete batch is dropped);
* with augmentation, a generator seeded by ``derive_seed(seed, 1, t)`` draws, in this order,
  the vertical crop offsets ``oy ∈ {0..2p}^B``, the horizontal offsets ``ox ∈ {0..2p}^B`` and the
  flip flags ``f ∈ {0,1}^B``; image ``b`` becomes the ``H×W`` window at ``(oy_b, ox_b)`` of the
  image padded by ``p = 4`` pixels of black on every side, mirrored left–right if ``f_b = 1``.

So ``batch(t)`` is identical whenever and in whatever order it is called, and a run resumes at
step ``t`` with nothing but ``t``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from .dataset import Dataset

PERMUTATION_STREAM = 0
AUGMENTATION_STREAM = 1
CROP_PADDING = 4


def derive_seed(*words: int) -> int:
    """A 64-bit seed from non-negative integers (numpy ``SeedSequence`` hashing)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(1, dtype=np.uint64)
    return int(state[0])


def _generator(*words: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*words))


def random_crop_flip(
    x: Tensor,
    generator: torch.Generator,
    *,
    padding: int = CROP_PADDING,
    fill: tuple[float, ...] = (),
) -> Tensor:
    """Per-image random crop of the ``padding``-padded batch plus a random horizontal flip.

    ``x`` is ``(B, C, H, W)``; ``fill`` gives the per-channel pad value (empty → 0). Offsets and
    flips are drawn from ``generator`` (on the CPU) in the order given in the module docstring.
    """
    b, c, h, w = x.shape
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.randint(0, 2, (b,), generator=generator).bool()
    padded = x.new_empty(b, c, h + 2 * padding, w + 2 * padding)
    if fill:
        padded.copy_(
            torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1).expand_as(padded)
        )
    else:
        padded.zero_()
    padded[:, :, padding : padding + h, padding : padding + w] = x
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    dev = x.device
    picked = padded[
        torch.arange(b, device=dev)[:, None, None],
        :,
        rows.to(dev)[:, :, None],
        cols.to(dev)[:, None, :],
    ]  # (B, H, W, C)
    return picked.permute(0, 3, 1, 2).contiguous()


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer in {allowed}, got {v}")
    return v


class BatchStream:
    """Deterministic, resumable mini-batches: ``batch(t)`` depends only on ``(seed, t)``."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        augment: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        n = dataset.train_size
        self.batch_size = _check_int("batch_size", batch_size, 1, n)
        self.seed = _check_int("seed", seed, 0, 2**63 - 1)
        if augment is not None and not isinstance(augment, bool):
            raise TypeError(f"augment must be True, False or None, got {augment!r}")
        self.augment = dataset.augment if augment is None else augment
        if self.augment and dataset.x_train.ndim != 4:
            raise ValueError(
                f"augment=True needs (N, C, H, W) images, got shape {tuple(dataset.x_train.shape)}"
            )
        self.dataset = dataset
        self.device = torch.device(device)
        self.steps_per_epoch = n // self.batch_size
        self._x = dataset.x_train.to(self.device)
        self._y = dataset.y_train.to(self.device)
        self._cached: tuple[int, Tensor] | None = None

    def epoch_of(self, step: int) -> int:
        return _check_int("step", step, 0) // self.steps_per_epoch

    def permutation(self, epoch: int) -> Tensor:
        """The order in which epoch ``epoch`` visits the training set (CPU int64)."""
        epoch = _check_int("epoch", epoch, 0)
        if self._cached is None or self._cached[0] != epoch:
            perm = torch.randperm(
                self.dataset.train_size, generator=_generator(self.seed, PERMUTATION_STREAM, epoch)
            )
            self._cached = (epoch, perm)
        return self._cached[1]

    def indices(self, step: int) -> Tensor:
        """Training-set rows of batch ``step`` (CPU int64)."""
        epoch = self.epoch_of(step)
        i = step % self.steps_per_epoch
        return self.permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Inputs and labels of batch ``step`` on ``device`` (augmented if ``augment``)."""
        idx = self.indices(step).to(self.device)
        x, y = self._x[idx], self._y[idx]
        if self.augment:
            x = random_crop_flip(
                x, _generator(self.seed, AUGMENTATION_STREAM, step), fill=self.dataset.pad_value
            )
        return x, y

    def describe(self) -> dict[str, object]:
        """Plain-data description for run manifests."""
        return {
            "dataset": self.dataset.name,
            "source": self.dataset.source,
            "train_size": self.dataset.train_size,
            "test_size": self.dataset.test_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "augment": self.augment,
            "steps_per_epoch": self.steps_per_epoch,
            "drop_last": True,
            "sampler": "epoch permutation seeded by (seed, 0, epoch); "
            "augmentation by (seed, 1, step)",
        }


def eval_batches(
    dataset: Dataset,
    *,
    split: str = "test",
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[Tensor, Tensor]]:
    """The whole ``split`` ("train" or "test") in stored order, un-augmented, in chunks."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    batch_size = _check_int("batch_size", batch_size, 1)
    x, y = (
        (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)
    )
    for i in range(0, int(y.shape[0]), batch_size):
        yield x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)

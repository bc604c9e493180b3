r"""The symmetry-breaking study's data: training batches, fixed validation windows, and the
validation loss (eval mode, nats per token).

``stdlib`` presets read the offline standard-library corpus (:mod:`hamopt.data.text`); ``shards``
presets read uint16 token shards from a directory with ``*train*.bin`` and ``*val*.bin`` files.

Held-out test windows (``test_windows`` > 0, stdlib presets): fixed, non-overlapping windows from
the second half of the validation split, disjoint from the validation windows (which start at the
beginning of the split), so a grid choice made on the validation loss is reported on other text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .spec import SpecError

__all__ = ["StudyData", "load_study_data", "test_windows", "validation_loss"]


@dataclass(frozen=True)
class StudyData:
    """Training batches (``batch(t)``), fixed validation batches and the data manifest."""

    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    validation: list[tuple[torch.Tensor, torch.Tensor]]
    manifest: dict[str, Any]
    vocab_size: int
    test: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def check_data_dir(preset: Any, data_dir: str | Path | None) -> None:
    """Refuse a data directory a preset cannot use, and test windows that do not fit, before
    anything runs."""
    if preset.data == "stdlib":
        if data_dir is not None:
            raise SpecError(
                f"data_dir applies only to shard presets; {preset.name} uses the stdlib corpus"
            )
        if getattr(preset, "test_windows", 0):
            from ..data.text import load_text_corpus

            test_windows(load_text_corpus("stdlib").val, preset)
        return
    if data_dir is None:
        raise SpecError(
            f"data_dir is required for {preset.name}: a directory with *train*.bin and "
            "*val*.bin shards (--data-root DIR)"
        )
    root = Path(data_dir)
    if not sorted(root.glob("*train*.bin")) or not sorted(root.glob("*val*.bin")):
        raise SpecError(
            f"data_dir={str(root)!r} must hold *train*.bin and *val*.bin uint16 shards"
        )


def load_study_data(preset: Any, seed: int, data_dir: str | Path | None) -> StudyData:
    """The batches of run seed ``seed`` and the fixed validation windows of ``preset``."""
    from ..data.text import TextBatches, TokenShardBatches, load_text_corpus, validation_batches

    check_data_dir(preset, data_dir)
    if preset.data == "stdlib":
        corpus = load_text_corpus("stdlib")
        train = TextBatches(
            corpus.train, context=preset.context, batch_size=preset.batch_size, seed=seed
        )
        val = validation_batches(
            corpus.val,
            context=preset.context,
            batch_size=preset.batch_size,
            max_windows=preset.val_windows,
        )
        test = test_windows(corpus.val, preset)
        return StudyData(train.batch, val, corpus.manifest(), corpus.vocab_size, test)
    root = Path(data_dir)
    train_files, val_files = sorted(root.glob("*train*.bin")), sorted(root.glob("*val*.bin"))
    vocab = preset.model_overrides.get("vocab_size", 50304)
    train = TokenShardBatches(train_files, context=preset.context, batch_size=preset.batch_size,
                              vocab_size=vocab, seed=seed)
    val = TokenShardBatches(
        val_files, context=preset.context, batch_size=preset.batch_size, vocab_size=vocab, seed=seed
    ).validation(max_windows=preset.val_windows)
    manifest = {
        "corpus": "shards",
        "train": [str(p) for p in train_files],
        "val": [str(p) for p in val_files],
        "train_tokens": train.num_tokens,
        "token": "uint16",
    }
    return StudyData(train.batch, val, manifest, vocab)


def test_windows(val_tokens: torch.Tensor, preset: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``preset.test_windows`` fixed windows from the second half of the validation split (none
    when the preset asks for none); an error names the field when the half is too short."""
    from ..data.text import validation_batches

    count = getattr(preset, "test_windows", 0)
    if not count:
        return []
    half = val_tokens[val_tokens.numel() // 2:]
    if preset.val_windows * preset.context > val_tokens.numel() // 2:
        raise SpecError(f"val_windows={preset.val_windows} windows of {preset.context} tokens reach "
                        "into the second half of the validation split, which the test windows use")
    if count * preset.context + 1 > half.numel():
        raise SpecError(f"test_windows={count} windows of {preset.context} tokens do not fit in "
                        f"the second half of the validation split ({half.numel()} tokens)")
    return validation_batches(half, context=preset.context, batch_size=preset.batch_size,
                              max_windows=count)


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: str
) -> float:
    """Mean cross-entropy (nats per token) over fixed batches, eval mode (biases at their means)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was)
    return total / count

r"""Language-modelling data: an offline byte-level corpus and a loader for uint16 token shards.

**The offline corpus** (``load_text_corpus("stdlib")``) is the source code of a fixed list of 51
long-standing, pure-Python modules of the Python standard library (:data:`STDLIB_MODULES`, in that
order), read as bytes from ``sysconfig.get_paths()["stdlib"]``. Why: every machine that runs
hamopt has these files (no download, no licence question — the PSF licence allows
redistribution and the files are not copied into the project), they are ~2.2 MB of real,
structured text (code, comments, docstrings), and bytes need no tokenizer (vocabulary 256, one
token = one byte, so the loss is in nats per byte). A module that became a package (``zipfile``
in 3.12) is read from its ``__init__.py``; a module missing from an unusual installation is an
error, not a silent omission. The files differ between Python versions, so the corpus carries the
SHA-256 of its bytes, the Python version and the file list: record them in run manifests; results
are bit-for-bit reproducible only for equal hashes. Any other text can be used instead with
``load_text_corpus("files", path=...)`` (a file, or every file of a directory in sorted order).

Layout: the files are joined with one newline byte; the first 90 % of the bytes are the training
split, the last 10 % the validation split (a fixed cut, ``val_fraction``).

Batches (:class:`TextBatches`): batch ``t`` is a pure function of ``(seed, t)``: ``batch_size``
windows of ``context + 1`` bytes starting at offsets drawn uniformly from the training split by a
generator seeded with ``derive_seed(seed, 2, t)``; inputs are the first ``context`` bytes and
targets the last ``context`` (next-byte prediction). Validation (:func:`validation_batches`)
uses fixed, non-overlapping windows from the start of the validation split.

**Token shards** (for the 124m preset on real data, e.g. GPT-2-tokenised text): a shard is a
binary file with a 1024-byte header of 256 little-endian int32 — ``header[0] = 20240520`` (magic),
``header[1] = 1`` (version), ``header[2] = n`` (number of tokens), the rest zero — followed by
``n`` little-endian uint16 tokens (the llm.c format). A headerless file of uint16 tokens (the
nanoGPT ``train.bin`` format) is read too: it is recognised by the absence of the magic number
(the magic's two uint16 halves decode to tokens 54600 and 308, impossible as a GPT-2 pair at the
start of a raw file whose first token would be ≥ 50257). :func:`write_token_shard` writes the
headered format; :class:`TokenShardBatches` samples windows from a list of shards, memory-mapped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .stream import derive_seed

__all__ = [
    "SHARD_MAGIC",
    "SHARD_VERSION",
    "STDLIB_MODULES",
    "TextBatches",
    "TextCorpus",
    "TokenShardBatches",
    "load_text_corpus",
    "read_token_shard",
    "validation_batches",
    "write_token_shard",
]

STDLIB_MODULES: tuple[str, ...] = (
    "argparse",
    "ast",
    "bisect",
    "calendar",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "difflib",
    "dis",
    "enum",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "heapq",
    "hmac",
    "inspect",
    "ipaddress",
    "locale",
    "mailbox",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pickle",
    "pprint",
    "queue",
    "random",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "tokenize",
    "traceback",
    "typing",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
)

BATCH_STREAM = 2
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {rng}; got {value!r}")
    return value


@dataclass(frozen=True)
class TextCorpus:
    """A byte-level corpus with a fixed train/validation split (uint8 tensors, vocabulary 256)."""

    name: str
    train: Tensor
    val: Tensor
    sha256: str
    source: str
    files: tuple[str, ...]
    python_version: str
    vocab_size: int = 256

    @property
    def size(self) -> int:
        return int(self.train.numel() + self.val.numel())

    def manifest(self) -> dict[str, object]:
        """What a run manifest should record to identify the data exactly."""
        return {
            "corpus": self.name,
            "sha256": self.sha256,
            "source": self.source,
            "files": list(self.files),
            "python_version": self.python_version,
            "bytes": self.size,
            "train_bytes": int(self.train.numel()),
            "val_bytes": int(self.val.numel()),
            "vocab_size": self.vocab_size,
            "token": "byte",
        }


def _stdlib_files(modules: Sequence[str]) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for m in modules:
        single, package = root / f"{m}.py", root / m / "__init__.py"
        if single.is_file():
            files.append(single)
        elif package.is_file():
            files.append(package)
        else:
            raise FileNotFoundError(
                f"modules: standard-library module {m!r} has no source file under {root} "
                f"(neither {m}.py nor {m}/__init__.py); pass modules= without it or use "
                "load_text_corpus('files', path=...)"
            )
    return files


def _user_files(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        if files:
            return files
        raise ValueError(f"path={str(p)!r} is a directory without files")
    raise FileNotFoundError(f"path={str(p)!r} does not exist")


def load_text_corpus(
    name: str = "stdlib",
    *,
    path: str | os.PathLike | None = None,
    modules: Sequence[str] = STDLIB_MODULES,
    val_fraction: float = 0.1,
) -> TextCorpus:
    """The byte corpus ``name`` (``"stdlib"``, or ``"files"`` with ``path``), split in two."""
    if (
        not isinstance(val_fraction, (int, float))
        or isinstance(val_fraction, bool)
        or not 0.0 < val_fraction < 1.0
    ):
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
    if name == "stdlib":
        if path is not None:
            raise ValueError("path applies only to name='files'")
        if isinstance(modules, str) or not modules:
            raise ValueError(
                f"modules must be a non-empty sequence of module names; got {modules!r}"
            )
        files = _stdlib_files(modules)
        root = Path(sysconfig.get_paths()["stdlib"])
        labels = tuple(str(f.relative_to(root)) for f in files)
        source = f"Python standard library source ({root})"
    elif name == "files":
        if path is None:
            raise ValueError("name='files' needs path= (a text file or a directory of files)")
        files = _user_files(path)
        labels = tuple(str(f) for f in files)
        source = f"files under {path}"
    else:
        raise ValueError(f"name must be 'stdlib' or 'files'; got {name!r}")
    data = b"\n".join(f.read_bytes() for f in files)
    if len(data) < 2:
        raise ValueError(f"the corpus has {len(data)} bytes; at least 2 are needed")
    cut = int(round(len(data) * (1.0 - val_fraction)))
    cut = min(max(cut, 1), len(data) - 1)
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return TextCorpus(
        name=name,
        train=tokens[:cut].clone(),
        val=tokens[cut:].clone(),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
        files=labels,
        python_version=".".join(map(str, sys.version_info[:3])),
    )


def _check_context(context: int, available: int, what: str) -> None:
    _check_int("context", context, 1)
    if context + 1 > available:
        raise ValueError(
            f"context={context} is too long for the {what} ({available} tokens): a window needs "
            f"context + 1 tokens, so context must be <= {available - 1}"
        )


class TextBatches:
    """Training batches from a 1-D token tensor; batch ``t`` depends only on ``(seed, t)``.

    ``batch(t)`` returns ``(x, y)`` int64 tensors of shape ``(batch_size, context)`` with
    ``y[:, i] = x[:, i+1]`` continued by one more token (next-token targets).
    """

    def __init__(self, tokens: Tensor, *, context: int, batch_size: int, seed: int = 0) -> None:
        if not isinstance(tokens, Tensor) or tokens.ndim != 1:
            raise ValueError("tokens must be a 1-D tensor")
        _check_context(context, int(tokens.numel()), "training split")
        self.tokens = tokens
        self.context = context
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)

    def batch(self, t: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, BATCH_STREAM, t))
        high = self.tokens.numel() - self.context  # starts in [0, n − context − 1]
        starts = torch.randint(0, high, (self.batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(self.context + 1)
        win = self.tokens[idx].long()
        return win[:, :-1], win[:, 1:]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        t = 0
        while True:
            yield self.batch(t)
            t += 1


def validation_batches(
    tokens: Tensor, *, context: int, batch_size: int, max_windows: int | None = None
) -> list[tuple[Tensor, Tensor]]:
    """Fixed, non-overlapping windows from the start of ``tokens``, grouped into batches.

    Window ``i`` covers tokens ``[i·context, (i+1)·context]``; ``max_windows`` caps their number
    (the default takes every full window). The mean loss over these batches, weighted by window
    count, is the validation loss in nats per token.
    """
    _check_context(context, int(tokens.numel()), "validation split")
    _check_int("batch_size", batch_size, 1)
    n = (int(tokens.numel()) - 1) // context
    if max_windows is not None:
        n = min(n, _check_int("max_windows", max_windows, 1))
    idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)
    win = tokens[idx].long()
    return [
        (win[i : i + batch_size, :-1], win[i : i + batch_size, 1:]) for i in range(0, n, batch_size)
    ]


# ---------------------------------------------------------------------- token shards
def write_token_shard(path: str | os.PathLike, tokens: np.ndarray | Tensor | Sequence[int]) -> Path:
    """Write ``tokens`` (integers in [0, 65535]) as a headered uint16 shard; return the path."""
    arr = tokens.cpu().numpy() if isinstance(tokens, Tensor) else np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D; got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ValueError("tokens must lie in [0, 65535] to be stored as uint16")
    if arr.size >= 2**31:
        raise ValueError("a shard holds at most 2**31 - 1 tokens (the header stores int32)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, arr.size)
    out = Path(path)
    with out.open("wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype("<u2").tobytes())
    return out


def read_token_shard(path: str | os.PathLike) -> np.ndarray:
    """A read-only memory map of a shard's uint16 tokens (headered or raw; see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"shard {str(p)!r} does not exist")
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) >= 12 and int(np.frombuffer(head[:4], dtype="<i4")[0]) == SHARD_MAGIC:
        if len(head) < HEADER_BYTES:
            raise ValueError(f"shard {str(p)!r}: truncated header ({size} bytes)")
        version, n = (int(v) for v in np.frombuffer(head[4:12], dtype="<i4"))
        if version != SHARD_VERSION:
            raise ValueError(
                f"shard {str(p)!r}: header version {version}, expected {SHARD_VERSION}"
            )
        if size != HEADER_BYTES + 2 * n:
            raise ValueError(
                f"shard {str(p)!r}: header says {n} tokens ({HEADER_BYTES + 2 * n} bytes) "
                f"but the file has {size} bytes"
            )
        return np.memmap(p, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))
    if size % 2:
        raise ValueError(
            f"shard {str(p)!r}: a raw uint16 shard needs an even size, got {size} bytes"
        )
    if size == 0:
        return np.zeros(0, dtype="<u2")
    return np.memmap(p, dtype="<u2", mode="r")


class TokenShardBatches:
    """Random windows from uint16 token shards; batch ``t`` depends only on ``(seed, t)``.

    A window never crosses a shard boundary; windows are uniform over all valid starts of all
    shards together. Tokens are checked against ``vocab_size`` batch by batch.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        context: int,
        batch_size: int,
        vocab_size: int,
        seed: int = 0,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)) or not paths:
            raise ValueError("paths must be a non-empty list of shard files")
        self.paths = [Path(p) for p in sorted(map(str, paths))]
        self.shards = [read_token_shard(p) for p in self.paths]
        _check_int("context", context, 1)
        self.context = context
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.vocab_size = _check_int("vocab_size", vocab_size, 1, 65536)
        self.seed = _check_int("seed", seed, 0)
        starts = np.array([max(0, len(s) - context) for s in self.shards], dtype=np.int64)
        if starts.sum() == 0:
            longest = max(len(s) for s in self.shards)
            _check_context(context, longest, "longest shard")
        self._cum = np.cumsum(starts)

    @property
    def num_tokens(self) -> int:
        return int(sum(len(s) for s in self.shards))

    def batch(self, t: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, BATCH_STREAM, t))
        total = int(self._cum[-1])
        picks = torch.randint(0, total, (self.batch_size,), generator=g).numpy()
        shard_idx = np.searchsorted(self._cum, picks, side="right")
        rows = []
        for pick, s in zip(picks, shard_idx, strict=True):
            offset = int(pick - (self._cum[s - 1] if s > 0 else 0))
            rows.append(
                np.asarray(self.shards[s][offset : offset + self.context + 1], dtype=np.int64)
            )
        win = torch.from_numpy(np.stack(rows))
        top = int(win.max())
        if top >= self.vocab_size:
            raise ValueError(f"a shard holds token {top} >= vocab_size={self.vocab_size}")
        return win[:, :-1], win[:, 1:]

    def validation(self, *, max_windows: int) -> list[tuple[Tensor, Tensor]]:
        """Fixed non-overlapping windows from the first shard (sorted by name)."""
        first = torch.from_numpy(
            np.asarray(self.shards[0][: (max_windows * self.context) + 1], dtype=np.int64)
        )
        return validation_batches(
            first, context=self.context, batch_size=self.batch_size, max_windows=max_windows
        )

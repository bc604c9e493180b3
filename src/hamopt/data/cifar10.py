r"""CIFAR-10 from either of two on-disk layouts, normalised with the standard statistics.

Accepted layouts (``root`` may name either, or a directory holding one):

* **npz**: a ``.npz`` file with ``x_train``/``x_test`` (N, 32, 32, 3) uint8 RGB in HWC order and
  ``y_train``/``y_test`` (N,) integer labels 0..9, such as the class-balanced
  ``cifar10_subset.npz`` (10,000 train / 2,000 test). A directory is searched for
  ``cifar10_subset.npz``.
* **torchvision**: a directory containing ``cifar-10-batches-py/`` with the pickles
  ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (50,000 / 10,000 images), as
  ``torchvision.datasets.CIFAR10`` writes it. The pickles are read with a restricted unpickler
  (numpy arrays, lists, strings only), so torchvision is not needed to read them.

When a directory holds both, the torchvision layout (the full data set) is used. With
``root=None`` the directory in ``$HAMOPT_DATA`` is searched, then ``~/.cache/hamopt``.
``download=True`` fetches the torchvision layout only when no layout is found (through
``torchvision.datasets.CIFAR10`` if installed, else directly from the dataset's home page with an
MD5 check).

Pixels are mapped to ``x' = (x / 255 − μ_c) / σ_c`` with the standard per-channel statistics
μ = (0.4914, 0.4822, 0.4465), σ = (0.2470, 0.2435, 0.2616).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, take_subset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NPZ_FILENAME = "cifar10_subset.npz"
BATCHES_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DOWNLOAD_MD5 = "c58f30108f718f92721af3b95e74349a"
DATA_ENV_VAR = "HAMOPT_DATA"

LAYOUTS_HELP = (
    "accepted layouts: (a) a .npz file with x_train/y_train/x_test/y_test (images HWC uint8), "
    f"given as the file itself or a directory containing {NPZ_FILENAME}; "
    f"(b) torchvision's layout, a directory containing {BATCHES_DIRNAME}/ with "
    f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH} (pass download=True to fetch it)"
)


def default_roots() -> list[Path]:
    """Directories searched when ``root`` is None: ``$HAMOPT_DATA`` (if set), then
    ``~/.cache/hamopt``."""
    roots = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.home() / ".cache" / "hamopt")
    return roots


def find_layout(path: Path) -> tuple[str, Path] | None:
    """``("npz", file)`` or ``("torchvision", batches_dir)`` found at ``path``, or None."""
    if path.is_file():
        return ("npz", path) if path.suffix == ".npz" else None
    if not path.is_dir():
        return None
    for batches in (path / BATCHES_DIRNAME, path):
        if (batches / TRAIN_BATCHES[0]).is_file() or (batches / TEST_BATCH).is_file():
            return ("torchvision", batches)
    if (path / NPZ_FILENAME).is_file():
        return ("npz", path / NPZ_FILENAME)
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_cifar10(directory: Path) -> Path:
    """Fetch torchvision's layout into ``directory``; return the ``cifar-10-batches-py`` path."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        torchvision = None
    if torchvision is not None:
        from torchvision.datasets import CIFAR10

        CIFAR10(root=str(directory), train=True, download=True)
        return directory / BATCHES_DIRNAME
    archive = directory / "cifar-10-python.tar.gz"
    if not archive.is_file() or _md5(archive) != DOWNLOAD_MD5:
        partial = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(DOWNLOAD_URL) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise FileNotFoundError(
                f"could not download CIFAR-10 from {DOWNLOAD_URL} into {directory}: {exc}; "
                + LAYOUTS_HELP
            ) from exc
        partial.replace(archive)
    digest = _md5(archive)
    if digest != DOWNLOAD_MD5:
        raise OSError(f"{archive} has MD5 {digest}, expected {DOWNLOAD_MD5}; delete it and retry")
    with tarfile.open(archive, "r:gz") as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(BATCHES_DIRNAME + "/")
            and m.isfile()
            and ".." not in Path(m.name).parts
        ]
        for m in members:
            target = directory / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return directory / BATCHES_DIRNAME


def resolve(root: str | Path | None, download: bool) -> tuple[str, Path]:
    """Locate a CIFAR-10 layout; ``FileNotFoundError`` naming every path tried if none is there."""
    candidates = default_roots() if root is None else [Path(root).expanduser()]
    for path in candidates:
        found = find_layout(path)
        if found is not None:
            return found
    if download:
        target = candidates[0]
        if target.suffix == ".npz":
            raise FileNotFoundError(
                f"{target} does not exist and download=True can only fetch torchvision's layout "
                f"into a directory; {LAYOUTS_HELP}"
            )
        return ("torchvision", download_cifar10(target))
    tried = ", ".join(str(p) for p in candidates)
    hint = f" (root=None searches ${DATA_ENV_VAR}, then ~/.cache/hamopt)" if root is None else ""
    raise FileNotFoundError(f"no CIFAR-10 data found at {tried}{hint}; {LAYOUTS_HELP}")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers and refuses everything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 pickle")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; {LAYOUTS_HELP}")
    with open(path, "rb") as fh:
        d = _ArrayUnpickler(io.BufferedReader(fh), encoding="latin1").load()
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    try:
        data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch (keys 'data' N×3072 uint8, 'labels'): {exc}"
        ) from exc
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    return data, labels


def read_torchvision(batches: Path) -> dict[str, np.ndarray]:
    """uint8 NCHW images and int64 labels from a ``cifar-10-batches-py`` directory."""
    train = [_read_batch(batches / name) for name in TRAIN_BATCHES]
    xte, yte = _read_batch(batches / TEST_BATCH)
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": xte,
        "y_test": yte,
    }


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """uint8 NCHW images and int64 labels from an ``.npz`` file with HWC images."""
    with np.load(path, allow_pickle=False) as d:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in d.files]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}; {LAYOUTS_HELP}")
        out = {}
        for split in ("train", "test"):
            x, y = d[f"x_{split}"], d[f"y_{split}"]
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
                raise ValueError(
                    f"{path}: x_{split} must be (N, 32, 32, 3) uint8, got {x.shape} {x.dtype}"
                )
            if y.shape != (x.shape[0],):
                raise ValueError(
                    f"{path}: y_{split} must have shape ({x.shape[0]},), got {y.shape}"
                )
            out[f"x_{split}"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            out[f"y_{split}"] = y.astype(np.int64)
    return out


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → float32 ``(x / 255 − μ_c) / σ_c``."""
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(mean).div_(std).contiguous()


def load_cifar10(
    root: str | Path | None = None,
    *,
    download: bool = False,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """CIFAR-10 from ``root`` (see the module docstring for the layouts and the search order)."""
    kind, path = resolve(root, download)
    arrays = read_npz(path) if kind == "npz" else read_torchvision(path)
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{path}: y_{split} labels must lie in 0..9, got {y.min()}..{y.max()}")
    parts = {k: torch.from_numpy(v) for k, v in arrays.items()}
    parts = take_subset(parts, 10, train_size, test_size)
    parts["x_train"] = normalise(parts["x_train"])
    parts["x_test"] = normalise(parts["x_test"])
    pad = tuple(normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten().tolist())
    return Dataset(
        name="cifar10",
        num_classes=10,
        input_shape=(3, 32, 32),
        source=f"{path} ({kind} layout)",
        augment=True,
        pad_value=pad,
        **parts,
    )

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hamopt.data.cifar10 as cifar10
from hamopt.data import CIFAR10_MEAN, CIFAR10_STD, balanced_subset, load_dataset

REPO = Path(__file__).resolve().parents[2]
NPZ_CANDIDATES = [REPO.parent / "shared" / "data" / "cifar10_subset.npz"]
if os.environ.get("HAMOPT_DATA"):
    NPZ_CANDIDATES.insert(0, Path(os.environ["HAMOPT_DATA"]) / "cifar10_subset.npz")


def subset_npz() -> Path:
    for p in NPZ_CANDIDATES:
        if p.is_file():
            return p
    if os.environ.get("CI"):
        pytest.fail(
            f"cifar10_subset.npz not found (looked at {NPZ_CANDIDATES}); CI must provide it"
        )
    pytest.skip(
        f"cifar10_subset.npz not found at {NPZ_CANDIDATES} (set HAMOPT_DATA to its directory)"
    )


def normalised(raw_chw: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(raw_chw).float() / 255
    return (x - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)


def test_npz_layout_loads_from_file_and_directory():
    path = subset_npz()
    ds = load_dataset("cifar10", root=path, train_size=50, test_size=20)
    assert ds.name == "cifar10" and ds.augment is True and ds.input_shape == (3, 32, 32)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [5] * 10
    assert str(path) in ds.source and "npz" in ds.source
    with np.load(path) as raw:
        y = torch.from_numpy(raw["y_train"].astype(np.int64))
        idx = balanced_subset(y, 50, 10, argument="train_size")
        assert torch.equal(ds.y_train, y[idx])
        expected = normalised(raw["x_train"][int(idx[7])].transpose(2, 0, 1))
    assert torch.allclose(ds.x_train[7], expected, atol=1e-6)
    from_dir = load_dataset("cifar10", root=path.parent, train_size=50, test_size=20)
    assert torch.equal(from_dir.x_train, ds.x_train)


def test_pad_value_is_normalised_black():
    path = subset_npz()
    ds = load_dataset("cifar10", root=path, train_size=10, test_size=10)
    assert ds.pad_value == pytest.approx(
        [-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True)], abs=1e-6
    )


def write_batches(
    directory: Path, sizes: dict[str, int], *, bytes_keys: bool = False
) -> dict[str, tuple]:
    """A miniature cifar-10-batches-py in the real pickle format (dict with data N×3072, labels)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name, n in sizes.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(n)]
        d = {
            "batch_label": f"fake {name}",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        if bytes_keys:
            d = {k.encode(): v for k, v in d.items()}
        with open(directory / name, "wb") as fh:
            pickle.dump(d, fh, protocol=2)
        written[name] = (data, labels)
    return written


SIZES = {**{f"data_batch_{i}": 10 for i in range(1, 6)}, "test_batch": 20}


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_torchvision_layout_loads(tmp_path, bytes_keys):
    written = write_batches(tmp_path / "cifar-10-batches-py", SIZES, bytes_keys=bytes_keys)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert "torchvision" in ds.source
    data3, labels3 = written["data_batch_3"]
    # row 2 of data_batch_3 is training row 22; its 3072 bytes are the R, G, B planes
    assert int(ds.y_train[22]) == labels3[2]
    assert torch.allclose(ds.x_train[22], normalised(data3[2].reshape(3, 32, 32)), atol=1e-6)
    # the batches directory itself is also accepted
    again = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", test_size=10)
    assert torch.equal(again.x_train, ds.x_train) and again.x_test.shape[0] == 10


def test_torchvision_layout_with_missing_batch_names_the_file(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py", {"data_batch_1": 10, "test_batch": 10})
    with pytest.raises(FileNotFoundError, match="data_batch_2"):
        load_dataset("cifar10", root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickles_other_than_arrays_are_refused(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_batches(d, SIZES)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({"data": _Evil(), "labels": []}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_data_names_path_and_both_layouts(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=missing)
    msg = str(info.value)
    assert (
        str(missing) in msg
        and ".npz" in msg
        and "cifar-10-batches-py" in msg
        and "download=True" in msg
    )


def test_default_search_uses_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMOPT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10")
    msg = str(info.value)
    assert str(tmp_path / "env") in msg and str(tmp_path / "home" / ".cache" / "hamopt") in msg
    write_batches(tmp_path / "home" / ".cache" / "hamopt" / "cifar-10-batches-py", SIZES)
    assert load_dataset("cifar10").x_train.shape[0] == 50


def test_download_fetches_checks_and_extracts(tmp_path, monkeypatch):
    pytest.importorskip("numpy")
    try:
        import torchvision  # noqa: F401

        pytest.skip(
            "torchvision is installed, so download goes through torchvision.datasets.CIFAR10"
        )
    except ImportError:
        pass
    write_batches(tmp_path / "src" / "cifar-10-batches-py", SIZES)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "DOWNLOAD_URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "DOWNLOAD_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    target = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        load_dataset("cifar10", root=target)
    ds = load_dataset("cifar10", root=target, download=True)
    assert ds.x_train.shape == (50, 3, 32, 32)
    assert (target / "cifar-10-batches-py" / "test_batch").is_file()
    # a corrupted archive is rejected by its checksum
    monkeypatch.setattr(cifar10, "DOWNLOAD_MD5", "0" * 32)
    with pytest.raises(OSError, match="MD5"):
        load_dataset("cifar10", root=tmp_path / "other", download=True)


def test_npz_with_wrong_arrays_is_rejected(tmp_path):
    bad = tmp_path / "bad.npz"
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.zeros(4, np.uint8))
    bad.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="x_test"):
        load_dataset("cifar10", root=bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(
        wrong,
        x_train=np.zeros((4, 3, 32, 32), np.uint8),
        y_train=np.zeros(4, np.uint8),
        x_test=np.zeros((2, 32, 32, 3), np.uint8),
        y_test=np.zeros(2, np.uint8),
    )
    with pytest.raises(ValueError, match=r"x_train must be \(N, 32, 32, 3\) uint8"):
        load_dataset("cifar10", root=wrong)


def write_npz(path: Path, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    np.savez_compressed(path, **arrays)
    return arrays


def test_npz_layout_hwc_is_converted_to_chw(tmp_path):
    arrays = write_npz(tmp_path / "cifar10_subset.npz")
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_train.is_contiguous()
    expected = normalised(arrays["x_test"][4].transpose(2, 0, 1))
    assert torch.allclose(ds.x_test[4], expected, atol=1e-6)
    # pixel (row 5, column 9, green) of training image 3
    g = (arrays["x_train"][3, 5, 9, 1] / 255 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]
    assert float(ds.x_train[3, 1, 5, 9]) == pytest.approx(g, abs=1e-6)


def test_full_torchvision_layout_wins_over_subset(tmp_path):
    write_npz(tmp_path / "cifar10_subset.npz")
    write_batches(tmp_path / "cifar-10-batches-py", SIZES)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape[0] == 50 and "torchvision" in ds.source

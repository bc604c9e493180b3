"""Malformed specs, as a new user would write them: each is refused through ``hamopt sweep`` with
one line on stderr naming the field, exit status 2, and nothing created under ``--out``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import yaml

from hamopt.cli import main
from hamopt.experiments.spec import parse_spec
from hamopt.experiments.spec_load import available_devices, check_runnable

from .tiny import tiny_dict

HERE_DEVICES = available_devices()


def _changed(path: str, value: Any) -> dict[str, Any]:
    """The tiny spec with ``path`` (``"model.depth"``, ``"optimizers.0.hyper.gamma"``) set to
    ``value``, or removed when ``value`` is :data:`REMOVE`."""
    d = copy.deepcopy(tiny_dict())
    *parents, last = path.split(".")
    node: Any = d
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key = int(last) if isinstance(node, list) else last
    if value is REMOVE:
        del node[key]
    else:
        node[key] = value
    return d


REMOVE = object()

# (case id, spec data or file text/bytes, text that must appear in the error line)
CASES: list[tuple[str, Any, str]] = [
    # ---- the file itself
    ("empty file", "", "empty"),
    ("only a comment", "# nothing yet\n", "empty"),
    ("yaml list", "- dataset\n- model\n", "must be a mapping"),
    ("single string", "digits mlp sgd\n", "must be a mapping"),
    ("not yaml", "dataset: {name: digits\nmodel: [\n", "not valid YAML: line"),
    ("python tag", "steps: !!python/object/apply:os.system ['true']\n", "not valid YAML: line 1"),
    ("binary", bytes(range(256)) * 4, "binary"),
    ("utf-16 with bom", "\ufeffname: x\n".encode("utf-16"), "UTF-16"),
    ("latin-1", "name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("duplicated top-level key", "steps: 12\nsteps: 40\n", "steps: duplicated key on line 2"),
    ("duplicated nested key", "model: {name: mlp, depth: 1, depth: 2}\n", "model.depth: duplicated key"),
    (
        "duplicated key in a list item",
        "optimizers:\n  - name: a\n    type: sgd\n    name: b\n",
        "optimizers[0].name: duplicated key on line 4",
    ),
    (
        "duplicated hyper key",
        "optimizers:\n  - name: a\n    hyper:\n      gamma: 0\n      gamma: 1\n",
        "optimizers[0].hyper.gamma: duplicated key",
    ),
    # ---- keys
    ("unknown top-level key", {**tiny_dict(), "batch_sise": 3}, "batch_sise: unknown key"),
    ("unknown model key", _changed("model.widht", 8), "model.widht: unknown key"),
    ("unknown dataset key", _changed("dataset.trainsize", 100), "dataset.trainsize: unknown key"),
    ("unknown hyper key", _changed("optimizers.0.hyper", {"gama": 0.1}), "optimizers[0]: hyper.gama: unknown key"),
    ("missing dataset", _changed("dataset", REMOVE), "dataset: required key is missing"),
    ("missing optimizers", _changed("optimizers", REMOVE), "optimizers: required key is missing"),
    ("missing seeds", _changed("seeds", REMOVE), "seeds: required key is missing"),
    ("missing optimizer type", _changed("optimizers.2.type", REMOVE), "optimizers[2].type"),
    # ---- types
    ("steps as words", _changed("steps", "many"), "steps"),
    ("steps as a boolean", _changed("steps", True), "steps"),
    ("fractional batch size", _changed("batch_size", 16.5), "batch_size"),
    ("seeds not a list", _changed("seeds", 0), "seeds"),
    ("model as a string", _changed("model", "mlp"), "model"),
    ("optimizers as a mapping", _changed("optimizers", {"name": "sgd"}), "optimizers"),
    # ---- numbers
    ("zero steps", _changed("steps", 0), "steps"),
    ("negative steps", _changed("steps", -5), "steps"),
    ("huge steps", _changed("steps", 10**12), "steps"),
    ("zero batch size", _changed("batch_size", 0), "batch_size"),
    ("batch larger than the data", _changed("batch_size", 5000), "batch_size: must be in 1..400"),
    ("nan tail fraction", _changed("tail_fraction", float("nan")), "tail_fraction"),
    ("infinite tail fraction", _changed("tail_fraction", float("inf")), "tail_fraction"),
    ("nan step size", _changed("optimizers.2.step_sizes", [float("nan")]), "optimizers[2].step_sizes"),
    ("negative step size", _changed("optimizers.2.step_sizes", [-0.1]), "optimizers[2].step_sizes"),
    ("step size out of range", _changed("optimizers.2.step_sizes", [100.0]), "optimizers[2].step_sizes"),
    ("no step sizes", _changed("optimizers.2.step_sizes", []), "optimizers[2].step_sizes"),
    ("zero stability fraction", _changed("optimizers.0.stability_fractions", [0.0]),
     "optimizers[0].stability_fractions"),
    ("negative friction", _changed("optimizers.0.hyper", {"gamma": -1.0}), "optimizers[0]: hyper.gamma"),
    ("momentum above one", _changed("optimizers.3.hyper", {"momentum": 1.5}), "optimizers[3]: hyper.momentum"),
    ("zero workers", _changed("workers", 0), "workers"),
    ("too many threads", _changed("threads", 100_000), "threads"),
    ("zero calibration iterations", _changed("calibration.iterations", 0), "calibration.iterations"),
    ("reversibility of zero steps", _changed("reversibility.steps", [0]), "reversibility.steps"),
    # ---- seeds
    ("negative seed", _changed("seeds", [-1]), "seeds"),
    ("seed too large", _changed("seeds", [2**31]), "seeds"),
    ("repeated seeds", _changed("seeds", [0, 0]), "seeds must be distinct"),
    ("no seeds", _changed("seeds", []), "seeds"),
    ("negative ablation seed", _changed("ablations.seeds", [-1]), "ablations.seeds"),
    # ---- model: the builder's own limits
    ("deep mlp", _changed("model.depth", 1000), "model.depth: mlp: depth must be an integer in [0, 64]"),
    ("zero width", _changed("model.width", 0), "model.width"),
    ("unknown model", _changed("model.name", "resnet50"), "model.name"),
    ("cnn deeper than the image", _changed("model", {"name": "small_cnn", "depth": 4}),
     "model.depth: small_cnn: depth must be an integer in [1, 3]"),
    ("resnet20 depth not 6n+2", _changed("model", {"name": "resnet20", "depth": 21}), "model.depth"),
    ("resnet18 too wide", _changed("model", {"name": "resnet18", "width": 4096}), "model.width"),
    ("channels-last mlp", _changed("model.channels_last", True), "model.channels_last"),
    # ---- data set
    ("unknown data set", _changed("dataset.name", "imagenet"), "dataset.name"),
    ("train size below the classes", _changed("dataset.train_size", 5), "dataset.train_size"),
    ("train size above the data", _changed("dataset.train_size", 100_000), "dataset.train_size"),
    ("root for digits", _changed("dataset.root", "/data"), "dataset.root"),
    ("name over two lines", _changed("name", "my\nsweep"), "name: must be one line"),
    ("name too long", _changed("name", "x" * 81), "name"),
    # ---- optimisers
    ("unknown optimiser type", _changed("optimizers.0.type", "sgdd"), "optimizers[0].type"),
    ("optimiser name with a space", _changed("optimizers.0.name", "leap frog"), "optimizers[0].name"),
    ("ablation of no optimiser", _changed("ablations.optimizer", "nadam"), "ablations.optimizer"),
    ("step size as a boolean", _changed("optimizers.2.step_sizes", [True]), "optimizers[2].step_sizes[0]"),
    ("friction as a boolean", _changed("optimizers.0.hyper", {"gamma": True}), "optimizers[0]: hyper.gamma"),
    ("momentum as a boolean", _changed("optimizers.3.hyper", {"momentum": True}), "optimizers[3]: hyper.momentum"),
    ("full dampening", _changed("optimizers.3.hyper", {"dampening": 1.0}), "optimizers[3]: hyper.dampening"),
    ("nesterov momentum", _changed("optimizers.3.hyper", {"nesterov": True}), "optimizers[3]: hyper.nesterov"),
    # ---- device and dtype
    ("device gpu", _changed("device", "gpu"), "device"),
    ("device empty", _changed("device", ""), "device"),
    ("dtype float16", _changed("dtype", "float16"), "dtype"),
    ("device cuda:99", _changed("device", "cuda:99"), "device: 'cuda:99' is not available"),
]

if "cuda:0" not in HERE_DEVICES:
    CASES.append(("device cuda without CUDA", _changed("device", "cuda"), "device: 'cuda' is not available"))
if "cuda:7" not in HERE_DEVICES:
    CASES.append(("device cuda:7", _changed("device", "cuda:7"), "device: 'cuda:7' is not available"))
if "mps" not in HERE_DEVICES:
    CASES.append(("device mps", _changed("device", "mps"), "device: 'mps' is not available"))


def _write(path, spec: Any) -> None:
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif isinstance(spec, str):
        path.write_text(spec, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")


def _refused(capsys, argv: list[str], field: str, out) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("hamopt sweep: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and captured.out == ""
    assert field in err, err
    assert not out.exists()
    return err


def test_the_base_spec_is_accepted():
    check_runnable(parse_spec(tiny_dict()))


@pytest.mark.parametrize("spec, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_is_refused_in_one_line(tmp_path, capsys, spec, field):
    path = tmp_path / "spec.yaml"
    _write(path, spec)
    out = tmp_path / "out"
    _refused(capsys, ["sweep", str(path), "--out", str(out), "--no-progress"], field, out)


def test_missing_file_and_directory(tmp_path, capsys):
    out = tmp_path / "out"
    _refused(capsys, ["sweep", str(tmp_path / "nope.yaml"), "--out", str(out)], "does not exist", out)
    _refused(capsys, ["sweep", str(tmp_path), "--out", str(out)], "is not a file", out)


def test_oversized_file(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 200_000, encoding="utf-8")
    out = tmp_path / "out"
    _refused(capsys, ["sweep", str(path), "--out", str(out)], "bytes; a spec has at most", out)


@pytest.mark.parametrize("root_kind", ["absent", "empty directory"])
def test_cifar10_root_without_data(tmp_path, capsys, root_kind):
    root = tmp_path / "data"
    if root_kind == "empty directory":
        root.mkdir()
    spec = tiny_dict(dataset={"name": "cifar10", "root": str(root), "train_size": 400, "test_size": 100})
    path = tmp_path / "spec.yaml"
    _write(path, spec)
    out = tmp_path / "out"
    _refused(capsys, ["sweep", str(path), "--out", str(out)], "dataset.root", out)


@pytest.mark.parametrize("option, value", [("--threads", "0"), ("--workers", "65")])
def test_out_of_range_options(tmp_path, capsys, option, value):
    path = tmp_path / "spec.yaml"
    _write(path, tiny_dict())
    out = tmp_path / "out"
    _refused(capsys, ["sweep", str(path), "--out", str(out), option, value], option, out)


def test_utf8_with_a_byte_order_mark_is_accepted(tmp_path):
    from hamopt.experiments.spec_load import load_spec

    path = tmp_path / "spec.yaml"
    path.write_bytes("\ufeff".encode() + yaml.safe_dump(tiny_dict()).encode())
    assert load_spec(path).steps == 12


def test_cuda_spec_is_refused_before_compute_here():
    """The refusal above depends on this machine; on a CUDA machine 'cuda' is accepted."""
    spec = parse_spec(tiny_dict(device="cuda"))
    if torch.cuda.is_available():
        check_runnable(spec)
    else:
        with pytest.raises(Exception, match="device: 'cuda' is not available"):
            check_runnable(spec)

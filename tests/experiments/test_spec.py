import pytest

from hamopt.experiments.spec import SpecError, load_spec, parse_spec, spec_hash

from .tiny import tiny_dict, tiny_spec


def test_valid_spec_fills_defaults():
    spec = tiny_spec()
    assert spec.optimizers[0].hyper["gamma"] == 1e-3 and spec.optimizers[0].hyper["cap"] == 2.0
    assert spec.optimizers[2].mode is None and spec.optimizers[2].run_mode == "baseline"
    assert spec.optimizers[3].hyper["momentum"] == 0.9
    assert spec.dtype == "float32" and spec.device == "cpu"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"colour": "red"}, "colour"),
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 2}, "steps"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "gpu0"}, "device"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"tail_fraction": 1.5}, "tail_fraction"),
    ],
)
def test_bad_top_level_values_name_the_key(change, key):
    with pytest.raises(SpecError, match=key):
        parse_spec(tiny_dict(**change))


def test_bad_nested_values_name_the_path():
    d = tiny_dict()
    d["optimizers"][3]["hyper"] = {"momentum": 1.5}
    with pytest.raises(SpecError, match=r"optimizers\[3\].*momentum"):
        parse_spec(d)
    d = tiny_dict()
    d["optimizers"][0]["hyper"] = {"gama": 0.1}
    with pytest.raises(SpecError, match=r"optimizers\[0\].*gama.*unknown key"):
        parse_spec(d)
    d = tiny_dict()
    d["optimizers"][2]["step_sizes"] = [-1.0]
    with pytest.raises(SpecError, match=r"optimizers\[2\].step_sizes"):
        parse_spec(d)
    d = tiny_dict()
    d["model"]["widht"] = 3
    with pytest.raises(SpecError, match=r"model.widht: unknown key"):
        parse_spec(d)


def test_cross_field_rules():
    d = tiny_dict()
    d["optimizers"][2] = {"name": "adamw", "type": "adamw", "stability_fractions": [0.1]}
    with pytest.raises(SpecError, match="stability_fractions"):
        parse_spec(d)
    d = tiny_dict()
    d["optimizers"][2]["mode"] = "exact"
    with pytest.raises(SpecError, match="mode applies only"):
        parse_spec(d)
    d = tiny_dict(ablations={"optimizer": "nope"})
    with pytest.raises(SpecError, match="ablations"):
        parse_spec(d)
    d = tiny_dict()
    d["optimizers"].append(dict(d["optimizers"][0]))
    with pytest.raises(SpecError, match="unique"):
        parse_spec(d)


def test_hash_ignores_threads_and_data_root_but_not_results():
    a = tiny_spec()
    assert spec_hash(a) == spec_hash(tiny_spec(threads=2))
    cifar = {"name": "cifar10", "train_size": 400, "test_size": 100}
    b = tiny_spec(dataset=cifar)
    assert spec_hash(tiny_spec(dataset={**cifar, "root": "/somewhere"})) == spec_hash(b)
    assert spec_hash(tiny_spec(steps=13)) != spec_hash(a)


def test_load_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(notmap)


def test_presets_are_valid():
    from hamopt.experiments.presets import PRESETS, load_preset

    for name in PRESETS:
        spec = load_preset(name)
        if name == "stability-quick":  # its own study (tests/experiments/test_stability_lab.py)
            continue
        assert len(spec.seeds) == 3
        kinds = {(o.type, o.run_mode, o.band) for o in spec.optimizers}
        assert {
            ("leapfrog", "exact", "band"),
            ("leapfrog", "exact", "wide"),
            ("leapfrog", "streaming", "band"),
            ("leapfrog", "streaming", "wide"),
            ("adamw", "baseline", "band"),
            ("sgd", "baseline", "band"),
        } <= kinds
    paper = load_preset("paper")
    assert paper.model.name == "resnet18" and paper.batch_size == 128
    lf = next(o for o in paper.optimizers if o.type == "leapfrog" and o.band == "band")
    assert lf.step_sizes == [0.002, 0.0025, 0.003, 0.0035]
    with pytest.raises(SpecError, match="preset"):
        load_preset("nope")


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    import yaml

    d = tiny_dict()
    text = yaml.safe_dump({k: v for k, v in d.items() if k != "optimizers"})
    text += (
        "optimizers:\n"
        "  - &sgd {name: sgd-a, type: sgd, band: band, step_sizes: [0.01]}\n"
        "  - <<: *sgd\n"
        "    name: sgd-b\n"
        "  - *sgd\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("optimizer: leapfrog-exact", "optimizer: sgd-a"), encoding="utf-8")
    with pytest.raises(SpecError, match="pairs must be unique"):  # the alias repeats sgd-a
        load_spec(path)
    path.write_text(path.read_text(encoding="utf-8").replace("  - *sgd\n", ""), encoding="utf-8")
    spec = load_spec(path)
    assert [o.name for o in spec.optimizers] == ["sgd-a", "sgd-b"]
    assert spec.optimizers[1].step_sizes == [0.01]


def test_range_errors_state_the_whole_range():
    with pytest.raises(SpecError, match=r"steps: must be an integer in \[5, 10000000\], got 3"):
        tiny_spec(steps=3)
    with pytest.raises(SpecError, match=r"tail_fraction: must be a finite number in \(0.0, 1.0\], got nan"):
        tiny_spec(tail_fraction=float("nan"))
    with pytest.raises(SpecError, match=r"calibration.iterations: must be an integer in \[2, 1000\], got 1"):
        tiny_spec(calibration={"iterations": 1})
    with pytest.raises(SpecError, match=r"threads: must be an integer in \[1, 1024\], got True"):
        tiny_spec(threads=True)

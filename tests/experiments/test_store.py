import pytest

from hamopt.experiments import runner as R
from hamopt.experiments.analysis import load_runs
from hamopt.experiments.store import CorruptRunError, OutputDirError, RunStore, SpecMismatchError

from .tiny import tiny_spec


def _one_optimizer_spec(**changes):
    base = tiny_spec()
    return tiny_spec(
        optimizers=[base.optimizers[2].model_dump(mode="json")],
        seeds=[0],
        ablations=None,
        reversibility=None,
        **changes,
    )


def test_refuses_a_directory_of_another_spec(tmp_path):
    out = tmp_path / "d"
    R.run_sweep(_one_optimizer_spec(), out, progress=False, log=lambda s: None)
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(SpecMismatchError, match="different spec.*start fresh"):
        R.run_sweep(_one_optimizer_spec(steps=13), out, progress=False, log=lambda s: None)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files  # nothing touched


def test_refuses_runs_without_a_spec_hash(tmp_path):
    (tmp_path / "d" / "runs" / "x").mkdir(parents=True)
    with pytest.raises(SpecMismatchError, match="no spec.hash"):
        RunStore(tmp_path / "d").check("abc")


def test_unwritable_or_wrong_output_path(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="not a directory"):
        RunStore(f).check("abc")
    with pytest.raises(OutputDirError, match="not writable"):
        RunStore(f / "sub").check("abc")


def test_corrupted_parquet_names_the_run_and_only_it_is_rerun(tmp_path):
    out = tmp_path / "d"
    spec = _one_optimizer_spec()
    first = R.run_sweep(spec, out, progress=False, log=lambda s: None)
    bad, good = first.outcomes[0].run_id, first.outcomes[1].run_id
    path = out / "runs" / bad / "steps.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptRunError, match=bad) as err:
        load_runs(out)
    assert "rerun" in str(err.value).lower()
    good_bytes = (out / "runs" / good / "steps.parquet").read_bytes()
    again = R.run_sweep(spec, out, progress=False, log=lambda s: None)
    assert [o.run_id for o in again.outcomes] == [bad]
    assert (out / "runs" / bad / "steps.parquet.corrupt").read_bytes() == data[
        : len(data) // 2
    ]  # kept
    assert (out / "runs" / good / "steps.parquet").read_bytes() == good_bytes
    assert len(load_runs(out)) == 2


def test_missing_data_fails_before_writing(tmp_path, monkeypatch):
    spec = tiny_spec(
        dataset={"name": "cifar10", "root": str(tmp_path / "nowhere")},
        ablations=None,
        reversibility=None,
    )
    with pytest.raises(FileNotFoundError):
        R.run_sweep(spec, tmp_path / "d", progress=False, log=lambda s: None)
    assert not (tmp_path / "d").exists()

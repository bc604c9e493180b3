import pytest

from hamopt.experiments.runner import run_sweep

from .tiny import tiny_spec


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One tiny sweep shared by the read-only tests: (spec, directory, summary)."""
    out = tmp_path_factory.mktemp("tiny") / "sweep"
    spec = tiny_spec()
    summary = run_sweep(spec, out, progress=False, log=lambda s: None)
    return spec, out, summary

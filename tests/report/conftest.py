import pytest

from hamopt.experiments.runner import run_sweep
from tests.experiments.tiny import tiny_spec


@pytest.fixture(scope="module")
def tiny_report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sweep"
    spec = tiny_spec(
        optimizers=[o.model_dump(mode="json") for o in tiny_spec().optimizers[:1]]
        + [o.model_dump(mode="json") for o in tiny_spec().optimizers[2:]]
        + [
            {
                "name": "leapfrog-exact",
                "type": "leapfrog",
                "mode": "exact",
                "band": "wide",
                "stability_fractions": [0.3, 0.5],
            }
        ]
    )
    run_sweep(spec, out, progress=False, log=lambda s: None)
    return out

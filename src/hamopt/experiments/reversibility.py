"""The drift study's reversibility table: Leapfrog vs Euler round trips on one fixed batch."""

from __future__ import annotations

import time
from typing import Any

import torch.nn.functional as F

from .drift_setup import DTYPES, build, hamiltonian_hyper
from .spec import ExperimentSpec

__all__ = ["run_reversibility"]


def run_reversibility(spec: ExperimentSpec, dataset: Any, dt: float) -> list[dict[str, Any]]:
    """Leapfrog vs Euler round trips (γ = 0, no cap, exact mode, one fixed batch) per dtype and N;
    error = ‖θ_back − θ_0‖/‖θ_0‖ (and likewise for the momentum)."""
    from ..data import BatchStream
    from ..diagnostics import round_trip
    from ..optim import Euler, Leapfrog

    rev = spec.reversibility
    assert rev is not None
    hyper = hamiltonian_hyper(spec)
    stream = BatchStream(
        dataset,
        batch_size=min(rev.batch_size or spec.batch_size, len(dataset.y_train)),
        seed=spec.seeds[0],
        augment=False,
        device=spec.device,
    )
    x0, y = stream.batch(0)
    out = []
    for dname in rev.dtypes:
        dtype = DTYPES[dname]
        x = x0.to(dtype)
        for cls in (Leapfrog, Euler):
            for n in rev.steps:
                model = build(spec, dataset, spec.seeds[0], dtype=dtype)
                params = [p for p in model.parameters() if p.requires_grad]
                t0 = time.perf_counter()
                rt = round_trip(
                    lambda ps, cls=cls: cls(ps, lr=dt, gamma=0.0, cap=None, mode="exact",
                                            mass=hyper["mass"],
                                            mass_clip=tuple(hyper["mass_clip"])),
                    params,
                    lambda model=model, x=x: F.cross_entropy(model(x), y),
                    steps=n,
                )
                out.append({
                    "integrator": rt.integrator.lower(),
                    "dtype": rt.dtype,
                    "steps": rt.steps,
                    "dt": rt.dt,
                    "theta_error": rt.theta_error,
                    "momentum_error": rt.momentum_error,
                    "wall_time_s": time.perf_counter() - t0,
                })
    return out

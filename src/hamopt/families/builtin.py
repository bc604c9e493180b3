r"""The built-in optimiser families: Leapfrog, Euler, SGD, AdamW, Adam, ECDSep, BBI, ECDq1.

=========  ==============  ====  ======  ==========================================  ==========
type       optimiser       axis  h       kinetic energy K                            stability
=========  ==============  ====  ======  ==========================================  ==========
leapfrog   Leapfrog        dt    dt      ½ Σ m_i ‖p_i‖²                              dt·√λ(M⁻¹H) < 2
euler      Euler           dt    dt      ½ Σ m_i ‖p_i‖²                              dt·√λ(M⁻¹H) < 2
sgd        torch SGD       lr    √lr     momentum: ½·lr·‖b‖²; plain: displacement    lr·λ(H) < 2(1+μ)
adamw      torch AdamW     lr    √lr     see :mod:`hamopt.energy.conventions`        none
adam       torch Adam      lr    √lr     see :mod:`hamopt.energy.conventions`        none
ecdsep     ECDSep          lr    lr      ½‖θ_{t+1} − θ_t‖²/lr (displacement)         none
bbi        BBI             lr    lr      ½‖θ_{t+1} − θ_t‖²/lr (displacement)         none
ecdq1      ECDq1           lr    lr      ½‖θ_{t+1} − θ_t‖²/lr (displacement)         none
=========  ==============  ====  ======  ==========================================  ==========

The baselines are built with torch's fused kernels on ``cpu``/``cuda`` (as the lab always has);
the ECD optimisers get the ``seed`` passed to :meth:`~hamopt.families.Family.build`. SGD refuses
``nesterov: true``: the SGD energy convention reads the heavy-ball map, and Nesterov's update is
a different map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch.optim import Optimizer

from ..energy import conventions as C
from ..optim import BBI, ECDq1, ECDSep, Euler, Leapfrog
from .hyper import AdamHyper, BBIHyper, ECDq1Hyper, ECDSepHyper, HamiltonianHyper, SGDHyper
from .record import Family, StabilityRule
from .registry import register
from .state import global_scalars, hamiltonian_momentum, sgd_momentum

__all__ = ["ADAM", "ADAMW", "BBI_FAMILY", "ECDQ1", "ECDSEP", "EULER", "LEAPFROG", "SGD"]


def _fused(device: str) -> bool:
    return str(device).startswith(("cpu", "cuda"))


# ---------------------------------------------------------------------- Hamiltonian integrators
def _hamiltonian_kinetic(opt: Optimizer) -> float:
    return float(opt.kinetic_energy())  # type: ignore[attr-defined]


def _hamiltonian_convention(name: str) -> C.EnergyConvention:
    return C.EnergyConvention(
        name=name,
        kinetic=_hamiltonian_kinetic,
        step_size=C._first_lr,
        time_step=C._first_lr,
        displacement_form=False,
        description="K = ½ Σ m_i ‖p_i‖², h = dt",
    )


def _hamiltonian_construct(cls: type) -> Any:
    def construct(params: Any, step_size: float, h: Mapping[str, Any], *, mode: str | None = None,
                  **_: Any) -> Optimizer:
        return cls(
            params,
            lr=step_size,
            mode=mode or "exact",
            gamma=h["gamma"],
            cap=h["cap"],
            mass=h["mass"],
            mass_clip=tuple(h["mass_clip"]),
        )

    return construct


def _hamiltonian_manifest(opt: Optimizer) -> dict[str, Any]:
    glob = global_scalars(opt, "hamopt") or {}
    h0 = glob.get("H0")
    return {
        "hamiltonian": {
            "mode": opt.param_groups[0].get("mode"),
            "H0": None if h0 is None else float(h0),
            "cap_engagements": int(glob.get("cap_engagements", 0)),
        }
    }


_DT_RULE = StabilityRule(
    eigenvalue="lambda_preconditioned",
    limit=lambda lam, hyper: 2.0 / math.sqrt(lam),
    power=1,
    description="dt = f · 2/√λ_max(M⁻¹H) (linear stability: dt²·λ < 4)",
)


def _hamiltonian_family(name: str, display: str, cls: type) -> Family:
    return Family(
        name=name,
        display_name=display,
        optimizer_class=cls,
        step_size_name="lr",
        energy=_hamiltonian_convention(name),
        hyper_model=HamiltonianHyper,
        construct=_hamiltonian_construct(cls),
        modes=("exact", "streaming"),
        stability=_DT_RULE,
        momentum=hamiltonian_momentum,
        manifest_extras=_hamiltonian_manifest,
        has_energy_cap=True,
        integrator=True,
        step_axis="dt",
        description=f"{display}: damped, preconditioned Hamiltonian integrator (time step dt)",
    )


LEAPFROG = register(_hamiltonian_family("leapfrog", "Leapfrog", Leapfrog))
EULER = register(_hamiltonian_family("euler", "Euler", Euler))


# ---------------------------------------------------------------------- SGD
def _sgd_construct(params: Any, step_size: float, h: Mapping[str, Any], *, device: str = "cpu",
                   **_: Any) -> Optimizer:
    return torch.optim.SGD(
        params,
        lr=step_size,
        momentum=h["momentum"],
        dampening=h["dampening"],
        weight_decay=h["weight_decay"],
        nesterov=h["nesterov"],
        fused=_fused(device),
    )


def _sgd_refuse(h: Mapping[str, Any]) -> str | None:
    if h.get("nesterov"):
        return (
            "hyper.nesterov: Nesterov SGD is refused: its update is not the heavy-ball map that the "
            "SGD energy convention reads, so its energy is undefined; use nesterov: false"
        )
    return None


def _sgd_label(h: Mapping[str, Any]) -> str:
    return "sgd-momentum" if h.get("momentum", 0.0) else "sgd"


def _heavy_ball_requirement(h: Mapping[str, Any]) -> str | None:
    if not h.get("momentum", 0.0):
        return "stability_fractions for sgd needs momentum > 0 (the heavy-ball limit)"
    return None


SGD = register(
    Family(
        name="sgd",
        display_name="SGD",
        optimizer_class=torch.optim.SGD,
        step_size_name="lr",
        energy=C.SGD_CONVENTION,
        hyper_model=SGDHyper,
        construct=_sgd_construct,
        stability=StabilityRule(
            eigenvalue="lambda_hessian",
            limit=lambda lam, h: 2.0 * (1.0 + h["momentum"]) / lam,
            power=2,
            description="lr = f² · 2(1+μ)/λ_max(H) (heavy ball: lr·λ < 2(1+μ))",
            requirement=_heavy_ball_requirement,
        ),
        momentum=sgd_momentum,
        labeller=_sgd_label,
        refuse=_sgd_refuse,
        description="torch.optim.SGD, plain or heavy-ball momentum",
    )
)


# ---------------------------------------------------------------------- Adam, AdamW
def _adam_construct(cls: type) -> Any:
    def construct(params: Any, step_size: float, h: Mapping[str, Any], *, device: str = "cpu",
                  **_: Any) -> Optimizer:
        return cls(
            params,
            lr=step_size,
            betas=tuple(h["betas"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            amsgrad=h["amsgrad"],
            fused=_fused(device),
        )

    return construct


def _adam_family(name: str, display: str, cls: type) -> Family:
    return Family(
        name=name,
        display_name=display,
        optimizer_class=cls,
        step_size_name="lr",
        energy=replace(C.ADAM_CONVENTION, name=name),
        hyper_model=AdamHyper,
        construct=_adam_construct(cls),
        description=f"torch.optim.{display}",
    )


ADAMW = register(_adam_family("adamw", "AdamW", torch.optim.AdamW))
ADAM = register(_adam_family("adam", "Adam", torch.optim.Adam))


# ---------------------------------------------------------------------- Energy Conserving Descent
def _ecd_convention(name: str) -> C.EnergyConvention:
    return C.EnergyConvention(
        name=name,
        kinetic=_hamiltonian_kinetic,  # ½‖θ_{t+1} − θ_t‖²/lr of the last step, kept by the optimiser
        step_size=C._first_lr,
        time_step=C._first_lr,
        displacement_form=True,
        description="K = ½‖θ_{t+1} − θ_t‖²/lr (displacement form), h = lr",
    )


def _ecd_construct(cls: type) -> Any:
    def construct(params: Any, step_size: float, h: Mapping[str, Any], *, seed: int | None = None,
                  **_: Any) -> Optimizer:
        return cls(params, lr=step_size, seed=seed, **h)

    return construct


def _ecd_manifest(opt: Optimizer) -> dict[str, Any]:
    glob = global_scalars(opt, "ecd")
    if glob is None:
        return {"optimizer_seed": None, "ecd": None}
    return {
        "optimizer_seed": int(glob["seed"]),
        "ecd": {
            "steps": int(glob["step"]),
            "skipped_steps": int(glob["skipped_steps"]),
            "bounces": int(glob["bounces"]),
        },
    }


def _ecd_family(name: str, display: str, cls: type, model: type) -> Family:
    return Family(
        name=name,
        display_name=display,
        optimizer_class=cls,
        step_size_name="lr",
        energy=_ecd_convention(name),
        hyper_model=model,
        construct=_ecd_construct(cls),
        manifest_extras=_ecd_manifest,
        seeded=True,
        keeps_own_values=True,
        description=f"{display}: Energy Conserving Descent (seeded bounces)",
    )


ECDSEP = register(_ecd_family("ecdsep", "ECDSep", ECDSep, ECDSepHyper))
BBI_FAMILY = register(_ecd_family("bbi", "BBI", BBI, BBIHyper))
ECDQ1 = register(_ecd_family("ecdq1", "ECDq1", ECDq1, ECDq1Hyper))

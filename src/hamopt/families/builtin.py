r"""The built-in optimiser families: Leapfrog, Euler, SGD, AdamW, Adam, ECDSep, BBI, ECDq1.

* ``leapfrog``, ``euler`` (:class:`hamopt.Leapfrog`, :class:`hamopt.Euler`): axis and h = ``dt``,
  ``K = ½ Σ m_i ‖p_i‖²``, modes exact/streaming, energy cap, stability ``dt·√λ_max(M⁻¹H) < 2``,
  momentum P = the stored momentum.
* ``sgd`` (``torch.optim.SGD``): axis ``lr``; with momentum μ and dampening d,
  ``h = √(lr(1−d))`` and ``K = ½ · lr/(1−d) · ‖b‖²``, P = ``−√(lr/(1−d)) · b``, stability
  ``lr·(1−d)·λ_max(H) < 2(1+μ)`` (heavy ball, μ > 0); plain SGD: displacement form, ``h = √lr``.
* ``adamw``, ``adam`` (``torch.optim.AdamW``, ``Adam``): axis ``lr``, ``h = √(lr(1−β1))``,
  ``K = ½ · lr/(1−β1) · Σ m̂²/(√v̂+ε)``; no stability rule, no momentum reader (the element-wise
  mass breaks the rotation charges; the monitor uses the displacement).
* ``ecdsep``, ``bbi``, ``ecdq1`` (:class:`hamopt.ECDSep`, ``BBI``, ``ECDq1``): axis and h = ``lr``,
  displacement form ``K = ½‖θ_{t+1} − θ_t‖²/lr``, seeded, no stability rule.

Sharpness thresholds (:mod:`hamopt.diagnostics.thresholds`, on ``λ_max(P⁻¹H)``): Leapfrog
``4(1+a²)/((1+a)dt²)`` with ``a = e^{−γdt/2}`` and Euler ``(1−e^{−γdt})/dt²``, both with
``P = M``; SGD ``(2+2μ)/((1−d)η) − wd`` with ``P = I``; Adam/AdamW ``(2+2β1)/((1−β1)η)`` with
``P = diag(√v̂+ε)``; the ECD family has none (the reason is in its rule). The band-placement rules
derive from these: Leapfrog and Euler bands are fractions of the *undamped leapfrog* limit
``2/√λ`` (so both integrators run at the same dt; Euler's own limit is far lower), SGD's of the
heavy-ball limit.

The formulas live in :mod:`hamopt.energy.conventions`; the records point at them.
The baselines are built with torch's fused kernels on ``cpu``/``cuda`` (as the lab always has);
the ECD optimisers get the ``seed`` passed to :meth:`~hamopt.families.Family.build`. SGD refuses
``nesterov: true``: the SGD energy convention reads the heavy-ball map, and Nesterov's update is
a different map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch.optim import Optimizer

from ..diagnostics import thresholds as T
from ..energy import conventions as C
from ..optim import BBI, ECDq1, ECDSep, Euler, Leapfrog
from .hyper import AdamHyper, BBIHyper, ECDq1Hyper, ECDSepHyper, HamiltonianHyper, SGDHyper
from .record import Family, PlaygroundEntry, SharpnessRule
from .registry import register
from .state import (
    adam_inverse_preconditioner,
    global_scalars,
    hamiltonian_inverse_mass,
    hamiltonian_momentum,
    sgd_momentum,
)

__all__ = ["ADAM", "ADAMW", "BBI_FAMILY", "ECDQ1", "ECDSEP", "EULER", "LEAPFROG", "SGD"]


def _fused(device: str, fused: bool | None) -> bool:
    return bool(fused) if fused is not None else str(device).startswith(("cpu", "cuda"))


# ---------------------------------------------------------------------- Hamiltonian integrators
def _hamiltonian_convention(name: str) -> C.EnergyConvention:
    return C.EnergyConvention(
        name=name,
        kinetic=C._hamiltonian_kinetic,
        step_size=C._first_lr,
        time_step=C._first_lr,
        displacement_form=False,
        description="K = ½ Σ m_i ‖p_i‖², h = dt",
        self_reported=True,
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
    glob = global_scalars(opt) or {}
    h0 = glob.get("H0")
    return {
        "hamiltonian": {
            "mode": opt.param_groups[0].get("mode"),
            "H0": None if h0 is None else float(h0),
            "cap_engagements": int(glob.get("cap_engagements", 0)),
        }
    }


_LEAPFROG_SHARPNESS = SharpnessRule(
    T.leapfrog_threshold,
    "λ_max(M⁻¹H) < 4(1+a²)/((1+a)·dt²), a = e^{−γ·dt/2} (4/dt² undamped)",
    preconditioned=True,
)
_EULER_SHARPNESS = SharpnessRule(
    T.euler_threshold,
    "λ_max(M⁻¹H) < (1 − e^{−γ·dt})/dt² (explicit Euler; 0 without damping)",
    preconditioned=True,
)
# bands of both integrators: fractions of the undamped leapfrog limit 2/√λ
_DT_RULE = _LEAPFROG_SHARPNESS.stability_rule(
    power=1,
    description="dt = f · 2/√λ_max(M⁻¹H) (linear stability: dt²·λ < 4)",
    at={"gamma": 0.0},
)


def _scalar_inverse_mass(config: Any) -> Any:
    inverse = 1.0 / config.mass
    return lambda _tensor: inverse


def _hamiltonian_playground(config: Any) -> dict[str, Any]:
    return {"gamma": config.gamma, "cap": config.cap, "mass": _scalar_inverse_mass(config)}


def _hamiltonian_family(name: str, display: str, cls: type, sharpness: SharpnessRule) -> Family:
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
        playground=PlaygroundEntry(name, display, ("gamma", "mass", "cap"), _hamiltonian_playground),
        sharpness=sharpness,
        preconditioner=hamiltonian_inverse_mass,
    )


LEAPFROG = register(_hamiltonian_family("leapfrog", "Leapfrog", Leapfrog, _LEAPFROG_SHARPNESS))
EULER = register(_hamiltonian_family("euler", "Euler", Euler, _EULER_SHARPNESS))


# ---------------------------------------------------------------------- SGD
def _sgd_construct(params: Any, step_size: float, h: Mapping[str, Any], *, device: str = "cpu",
                   fused: bool | None = None, **_: Any) -> Optimizer:
    return torch.optim.SGD(
        params,
        lr=step_size,
        momentum=h["momentum"],
        dampening=h["dampening"],
        weight_decay=h["weight_decay"],
        nesterov=h["nesterov"],
        fused=_fused(device, fused),
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
    if h.get("dampening", 0.0) >= 1.0:
        return "stability_fractions for sgd needs dampening < 1 (dampening 1 never moves θ)"
    return None


_SGD_SHARPNESS = SharpnessRule(
    T.heavy_ball_threshold,
    "λ_max(H) < (2+2μ)/((1−d)·lr) − weight_decay (2/lr − weight_decay without momentum)",
)

SGD = register(
    Family(
        name="sgd",
        display_name="SGD",
        optimizer_class=torch.optim.SGD,
        step_size_name="lr",
        energy=C.SGD_CONVENTION,
        hyper_model=SGDHyper,
        construct=_sgd_construct,
        stability=_SGD_SHARPNESS.stability_rule(
            power=2,
            description="lr = f² · 2(1+μ)/((1−d)·(λ_max(H) + wd)) (heavy ball: lr·(1−d)·(λ+wd) < 2(1+μ))",
            requirement=_heavy_ball_requirement,
        ),
        momentum=sgd_momentum,
        labeller=_sgd_label,
        refuse=_sgd_refuse,
        description="torch.optim.SGD, plain or heavy-ball momentum",
        playground=PlaygroundEntry(
            "sgd_momentum",
            "SGD-momentum",
            ("momentum", "weight_decay"),
            lambda c: {"momentum": c.momentum, "weight_decay": c.weight_decay},
        ),
        sharpness=_SGD_SHARPNESS,
    )
)


# ---------------------------------------------------------------------- Adam, AdamW
def _adam_construct(cls: type) -> Any:
    def construct(params: Any, step_size: float, h: Mapping[str, Any], *, device: str = "cpu",
                  fused: bool | None = None, **_: Any) -> Optimizer:
        return cls(
            params,
            lr=step_size,
            betas=tuple(h["betas"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            amsgrad=h["amsgrad"],
            fused=_fused(device, fused),
        )

    return construct


def _adamw_playground(config: Any) -> dict[str, Any]:
    return {"betas": (config.momentum, 0.999), "weight_decay": config.weight_decay}


_ADAM_SHARPNESS = SharpnessRule(
    T.adam_threshold,
    "λ_max(P⁻¹H) < (2+2β1)/((1−β1)·lr), P = diag(√v̂+ε) (38/lr at β1 = 0.9)",
    preconditioned=True,
)


def _adam_family(name: str, display: str, cls: type, playground: PlaygroundEntry | None = None) -> Family:
    return Family(
        name=name,
        display_name=display,
        optimizer_class=cls,
        step_size_name="lr",
        energy=replace(C.ADAM_CONVENTION, name=name),
        hyper_model=AdamHyper,
        construct=_adam_construct(cls),
        description=f"torch.optim.{display}",
        playground=playground,
        sharpness=_ADAM_SHARPNESS,
        preconditioner=adam_inverse_preconditioner,
    )


ADAMW = register(
    _adam_family(
        "adamw",
        "AdamW",
        torch.optim.AdamW,
        PlaygroundEntry("adamw", "AdamW", ("momentum", "weight_decay"), _adamw_playground, 0.05),
    )
)
ADAM = register(_adam_family("adam", "Adam", torch.optim.Adam))


# ---------------------------------------------------------------------- Energy Conserving Descent
def _ecd_convention(name: str) -> C.EnergyConvention:
    return C.EnergyConvention(
        name=name,
        kinetic=C._hamiltonian_kinetic,  # ½‖θ_{t+1} − θ_t‖²/lr of the last step, kept by the optimiser
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
    glob = global_scalars(opt)
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


def _ecd_playground(config: Any) -> dict[str, Any]:
    return {"eta": config.eta, "F0": config.f0, "nu": config.nu, "weight_decay": config.weight_decay}


def _bbi_playground(config: Any) -> dict[str, Any]:
    return {"v0": config.f0, "weight_decay": config.weight_decay}


_ECD_SHARPNESS = SharpnessRule(
    None,
    "no threshold: the ECD update rescales the momentum onto its energy shell every step, so its "
    "step is 2ηΔt²/(F·(s+‖p‖²)) of the state, not a fixed linear map; a mode cannot grow "
    "geometrically while the energy is conserved (see docs/stability.md)",
)


def _ecd_family(name: str, display: str, cls: type, model: type, playground: PlaygroundEntry) -> Family:
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
        playground=playground,
        sharpness=_ECD_SHARPNESS,
    )


_ECD_USES = ("eta", "f0", "nu", "weight_decay")
ECDSEP = register(
    _ecd_family("ecdsep", "ECDSep", ECDSep, ECDSepHyper,
                PlaygroundEntry("ecdsep", "ECDSep", _ECD_USES, _ecd_playground, 0.01))
)
BBI_FAMILY = register(
    _ecd_family("bbi", "BBI", BBI, BBIHyper,
                PlaygroundEntry("bbi", "BBI", ("f0", "weight_decay"), _bbi_playground, 0.01))
)
ECDQ1 = register(
    _ecd_family("ecdq1", "ECDq1", ECDq1, ECDq1Hyper,
                PlaygroundEntry("ecdq1", "ECDq1", _ECD_USES, _ecd_playground, 0.01))
)

r"""One energy convention for every optimiser (spec §5).

Every optimiser is read as a discretised, damped Hamiltonian system with a time step ``h`` and a
diagonal metric; its kinetic energy is a function of its own state:

==================================  ============  ===========================================
optimiser                           h             kinetic energy K_t
==================================  ============  ===========================================
Leapfrog / Euler                    dt            ½ Σ m_i ‖p_i‖²
SGD, momentum μ, dampening d (b)    √(lr(1−d))    ½ · lr/(1−d) · ‖b_t‖²
AdamW / Adam (β1; m̂, v̂ corrected)  √(lr(1−β1))   ½ · lr/(1−β1) · Σ m̂² / (√v̂ + ε)
plain SGD / GD                      √lr           ½ ‖θ_{t+1} − θ_t‖² / lr  (displacement form)
==================================  ============  ===========================================

Why these factors: read a step as damped symplectic Euler, ``p' = e^{−γh} p − h ∇L``,
``θ' = θ + h D⁻¹ p'``. A buffer ``m' = β m + k g`` with ``θ' = θ − lr m'/D`` (Adam: ``k = 1−β1``,
``D = √v̂+ε``; SGD: ``β = μ``, ``k = 1−d``, ``D = 1``) is that map for ``p = −c m``: the kick needs
``c k = h``, the drift ``lr/c = h``, so ``h = √(lr k)``, ``c = √(lr/k)``, ``e^{−γh} = β`` and
``K = ½ pᵀD⁻¹p = ½ (lr/k) Σ m²/D``. Torch's first SGD step sets ``b = g`` (no dampening); the
convention reads that buffer as it is (a one-off kick ``1/(1−d)`` times a from-rest kick).
Nesterov SGD evaluates a different map and is refused with a ``ValueError`` naming ``nesterov``.
Every sum runs over the param groups with each group's own lr, betas and dampening; ``h`` and
the step-size axis are those of group 0.

``ΔH_t = K_{t+1} + L_{B_t}(θ_{t+1}) − K_t − L_{B_t}(θ_t)`` with the loss after the step measured
on the same batch. The step-size axis of a drift plot is ``dt`` for Leapfrog and ``lr`` for the
baselines (:attr:`EnergyConvention.step_size`).

For the displacement form the displacement of the latest step is recovered from the gradient
still in ``.grad`` (``θ_{t+1} − θ_t = −lr (g + λ θ_t)``), so read it after ``step`` and before
``zero_grad``; :class:`~hamopt.energy.EnergyTracker` measures it directly instead.

The conventions are registered by the optimiser families (:mod:`hamopt.families`); register a
new optimiser with :func:`hamopt.families.register_optimizer` (or only its convention with
:func:`register`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim import Optimizer

from ..errors import UnregisteredOptimizerError

__all__ = [
    "EnergyConvention",
    "adam_momentum_coefficient",
    "convention_for",
    "kinetic",
    "register",
    "registered",
    "registered_convention",
    "sgd_momentum_coefficient",
    "step_size",
    "unregister",
]


@dataclass(frozen=True)
class EnergyConvention:
    """How to read an optimiser as a Hamiltonian system.

    Attributes:
        name: short label (``leapfrog``, ``sgd``, ...).
        kinetic: ``optimizer -> float``, the kinetic energy K of the current state.
        step_size: ``optimizer -> float``, the drift plot's step-size axis (dt or lr) of group 0.
        time_step: ``optimizer -> float``, the Hamiltonian time step h of group 0 (dt, √(lr(1−β1)),
            √(lr(1−d)) or √lr).
        displacement_form: True when K is defined by the step's displacement (then the tracker
            measures ``θ_{t+1} − θ_t`` itself), or a function ``optimizer -> bool`` when that
            depends on the instance (plain SGD versus SGD with momentum).
        description: the formula, for reports.
        label: ``optimizer -> str``, a per-instance name (``sgd-momentum`` vs ``sgd``); None: ``name``.
        self_reported: True when the optimiser measures L, K, H and ΔH itself inside ``step()``
            (exact mode: on the closure's batch at both ends of the step) and publishes them in
            ``optimizer.stats`` with the keys of :class:`hamopt.optim.Leapfrog`; the tracker then
            reads them instead of measuring the step from outside.
    """

    name: str
    kinetic: Callable[[Optimizer], float]
    step_size: Callable[[Optimizer], float]
    time_step: Callable[[Optimizer], float]
    displacement_form: bool | Callable[[Optimizer], bool]
    description: str
    label: Callable[[Optimizer], str] | None = None
    self_reported: bool = False


_REGISTRY: dict[type, EnergyConvention] = {}


def register(cls: type, convention: EnergyConvention) -> None:
    """Register (or replace) the energy convention of an optimiser class."""
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register: cls must be a torch.optim.Optimizer subclass, got {cls!r}")
    _REGISTRY[cls] = convention


def registered_convention(cls: type) -> EnergyConvention | None:
    """The convention registered for exactly ``cls`` (no base-class lookup), or None."""
    return _REGISTRY.get(cls)


def unregister(cls: type) -> None:
    """Remove the convention registered for exactly ``cls`` (the families do this when a family
    name moves to another optimiser class)."""
    _REGISTRY.pop(cls, None)


def registered() -> dict[type, EnergyConvention]:
    """A copy of the registry."""
    _load_families()
    return dict(_REGISTRY)


def convention_for(optimizer: Optimizer) -> EnergyConvention:
    """The convention of ``optimizer``'s class (or its nearest registered base class)."""
    _load_families()
    for cls in type(optimizer).__mro__:
        conv = _REGISTRY.get(cls)
        if conv is not None:
            return conv
    names = ", ".join(sorted(c.__name__ for c in _REGISTRY))
    raise UnregisteredOptimizerError(
        f"no energy convention is registered for {type(optimizer).__name__} (registered: {names}). "
        "Register the optimiser in one call with hamopt.families.register_optimizer(MyOptimizer, "
        "name=...), or only its convention with hamopt.energy.register(MyOptimizer, hamopt.energy.EnergyConvention("
        "name=..., kinetic=lambda opt: ..., step_size=lambda opt: ..., time_step=lambda opt: ..., "
        "displacement_form=False, description=...))"
    )


def kinetic(optimizer: Optimizer) -> float:
    """Kinetic energy ``K`` of ``optimizer``'s current state under its registered convention."""
    return convention_for(optimizer).kinetic(optimizer)


def step_size(optimizer: Optimizer) -> float:
    """The step-size axis (dt or lr) of ``optimizer``'s first param group."""
    return convention_for(optimizer).step_size(optimizer)


# ---------------------------------------------------------------------- built-in conventions
def _lr(group: dict, key: str = "lr") -> float:
    """A param group's step size ``group[key]`` as a float (torch allows a tensor lr)."""
    lr = group[key]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


def _first_lr(opt: Optimizer) -> float:
    return _lr(opt.param_groups[0])


def _sum64(terms: list[torch.Tensor]) -> float:
    if not terms:
        return 0.0
    device = terms[0].device
    return float(torch.stack([t.to(device=device, dtype=torch.float64) for t in terms]).sum().item())


def _hamiltonian_kinetic(opt: Optimizer) -> float:
    return opt.kinetic_energy()  # type: ignore[attr-defined]


def _sgd_kick_factor(group: dict, index: int) -> float:
    """``1 − d`` of an SGD group with momentum; refuses Nesterov and ``dampening = 1``."""
    if group.get("nesterov", False):
        raise ValueError(
            f"param group {index}: SGD with nesterov=True has no energy convention (its update "
            "θ' = θ − lr (g + μ b') is not the damped symplectic-Euler map that defines K for "
            "SGD with momentum); use nesterov=False, or register a convention for it with "
            "hamopt.energy.register"
        )
    kick = 1.0 - float(group.get("dampening", 0.0))
    if not kick > 0.0:
        raise ValueError(
            f"param group {index}: SGD dampening must be in [0, 1) for an energy convention "
            f"(h = √(lr(1−dampening)) vanishes at 1); got {group.get('dampening')!r}"
        )
    return kick


def sgd_momentum_coefficient(group: dict, index: int = 0) -> float:
    """``c = √(lr/(1−d))`` of an SGD param group with momentum: the momentum is ``P = −c b``.

    Raises ``ValueError`` for ``nesterov=True`` and for ``dampening = 1``."""
    return (_lr(group) / _sgd_kick_factor(group, index)) ** 0.5


def adam_momentum_coefficient(group: dict) -> float:
    """``c = √(lr/(1−β1))`` of an Adam/AdamW param group: the momentum is ``P = −c m̂``."""
    beta1 = float(group["betas"][0])
    return (_lr(group) / (1.0 - beta1)) ** 0.5


def _sgd_time_step(opt: Optimizer) -> float:
    """Group 0: ``√(lr(1−d))`` with momentum, ``√lr`` without (torch ignores d then)."""
    for index, group in enumerate(opt.param_groups):
        if group.get("momentum", 0.0):
            _sgd_kick_factor(group, index)  # refuse Nesterov whichever group asks for it
    group = opt.param_groups[0]
    if not group.get("momentum", 0.0):
        return _lr(group) ** 0.5
    return (_lr(group) * _sgd_kick_factor(group, 0)) ** 0.5


def _adam_time_step(opt: Optimizer) -> float:
    """Group 0: ``√(lr(1−β1))``."""
    group = opt.param_groups[0]
    return (_lr(group) * (1.0 - float(group["betas"][0]))) ** 0.5


def _sgd_kinetic(opt: Optimizer) -> float:
    """Momentum: ``½ · lr/(1−d) · ‖b‖²`` per group. Plain SGD: ``½ ‖Δθ‖²/lr`` with
    ``Δθ = −lr (g + λθ_t)`` recovered from ``.grad``."""
    terms = []
    with torch.no_grad():
        for index, group in enumerate(opt.param_groups):
            lr = _lr(group)
            wd = float(group.get("weight_decay", 0.0))
            if group.get("momentum", 0.0):
                factor = 0.5 * sgd_momentum_coefficient(group, index) ** 2
                for p in group["params"]:
                    buf = opt.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        terms.append(factor * torch.linalg.vector_norm(buf.double()).square())
                continue
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad.double()
                    if wd:
                        theta_t = (p.double() + lr * g) / (1.0 - lr * wd)
                        g = g + wd * theta_t
                    terms.append(0.5 * lr * torch.linalg.vector_norm(g).square())
    return _sum64(terms)


def _adam_kinetic(opt: Optimizer) -> float:
    """``½ · lr/(1−β1) · Σ m̂² / (√v̂ + ε)`` per group, with torch's bias corrections
    (``max_exp_avg_sq`` under amsgrad)."""
    terms = []
    with torch.no_grad():
        for group in opt.param_groups:
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            factor = 0.5 * adam_momentum_coefficient(group) ** 2
            for p in group["params"]:
                st = opt.state.get(p)
                if not st or "exp_avg" not in st:
                    continue
                step = float(st["step"])
                m_hat = st["exp_avg"].double() / (1.0 - beta1**step)
                v = st["max_exp_avg_sq"] if group.get("amsgrad") else st["exp_avg_sq"]
                v_hat = v.double() / (1.0 - beta2**step)
                terms.append(factor * (m_hat.square() / (v_hat.sqrt() + eps)).sum())
    return _sum64(terms)


def _sgd_label(opt: Optimizer) -> str:
    from ..families import for_optimizer

    return for_optimizer(opt).label(opt)


def _sgd_displacement(opt: Optimizer) -> bool:
    return not opt.param_groups[0].get("momentum", 0.0)


SGD_CONVENTION = EnergyConvention(
    name="sgd",
    kinetic=_sgd_kinetic,
    step_size=_first_lr,
    time_step=_sgd_time_step,
    displacement_form=_sgd_displacement,
    description=(
        "momentum μ, dampening d: K = ½·lr/(1−d)·‖b‖², h = √(lr(1−d)) (nesterov refused); "
        "plain: K = ½‖θ_{t+1}−θ_t‖²/lr, h = √lr"
    ),
    label=_sgd_label,
)

ADAM_CONVENTION = EnergyConvention(
    name="adam",
    kinetic=_adam_kinetic,
    step_size=_first_lr,
    time_step=_adam_time_step,
    displacement_form=False,
    description="K = ½·lr/(1−β1)·Σ m̂²/(√v̂+ε) (bias-corrected), h = √(lr(1−β1))",
)


def is_displacement_form(optimizer: Optimizer) -> bool:
    """True when ``optimizer``'s K is the displacement form (plain SGD, or a convention that says so)."""
    form = convention_for(optimizer).displacement_form
    return bool(form(optimizer)) if callable(form) else bool(form)


def label(optimizer: Optimizer) -> str:
    """A short name for the optimiser under its convention (``sgd-momentum``, ``adamw``...)."""
    conv = convention_for(optimizer)
    if conv.label is not None:
        return conv.label(optimizer)
    return conv.name


def _load_families() -> None:
    """The optimiser families (:mod:`hamopt.families`) register their conventions on import."""
    from .. import families  # noqa: F401

r"""State hand-over between the phases of :class:`hamopt.Hybrid`, through the energy conventions.

Every optimiser with momentum is read as damped symplectic Euler / leapfrog on
``H = ½ pᵀ M⁻¹ p + L(θ)`` with time step ``h`` (:mod:`hamopt.energy.conventions`, spec §5). Its
momentum ``p`` and inverse mass ``M⁻¹`` define the **velocity** ``θ̇ = M⁻¹ p``, the displacement
per unit time of the next drift (``θ' = θ + h θ̇'``):

==========================  =====================  ==============================================
optimiser (state)           p                      θ̇ = M⁻¹ p
==========================  =====================  ==============================================
Leapfrog / Euler (p)        p                      m_i p   (m_i: inverse mass of tensor i)
SGD, momentum μ, damp. d    −c b, c = √(lr/(1−d))  −c b    (unit mass)
Adam / AdamW (m̂, v̂)       −c m̂, c = √(lr/(1−β1))  −c m̂ / (√v̂ + ε)
==========================  =====================  ==============================================

The ``velocity`` hand-over reads ``θ̇`` from the old optimiser's state and writes the state of
the new one that has the same ``θ̇`` under the new convention:

* into Leapfrog/Euler: ``p = θ̇ / m_i`` (the stored full-step momentum);
* into SGD: ``b = −θ̇ / c`` with the new group's ``lr`` and ``d``;
* into Adam/AdamW: ``m̂ = −(√v̂ + ε) θ̇ / c``. The metric ``v̂`` is the old optimiser's when it is an
  Adam too, else ``g²`` of the gradient still in ``.grad`` (the last one the old phase evaluated;
  Adam's own first step uses the same one-sample estimate). The state is written as that of an
  Adam past its bias-correction transient: ``step = S`` with ``S = ⌈40 / −ln max(β1, β2)⌉``
  (capped at 2²⁴), so ``1 − β^S = 1`` to float64 rounding, ``exp_avg = m̂ (1 − β1^S)``,
  ``exp_avg_sq = v̂ (1 − β2^S)``; the next step then decays ``m̂`` by ``β1 = e^{−γh}`` as the
  convention's map does (at ``step = 1`` Adam's bias correction would halve the carried momentum).

Reading the new state back under its convention gives the old ``θ̇`` to rounding. The kinetic
energy ``K = ½ θ̇ᵀ M θ̇`` is **not** preserved when the mass changes (``M`` = fan-in mass, 1, or
``√v̂ + ε``); nor is the step: the next drift moves ``h_new · θ̇`` (times the new decay), so a
switch from Leapfrog at ``dt`` to AdamW at ``h = √(lr(1−β1))`` keeps the direction and speed of
the motion and changes the distance per step by ``h_new / h_old``.

A parameter without momentum in the old state (never stepped) starts fresh in the new one; an
Adam target with no gradient for a parameter leaves it fresh too. Streaming Leapfrog stores the
half-step momentum ``p_{t+½}`` (whose drift made the last step); that is the ``p`` read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "ADAM_STEADY_EXPONENT",
    "HANDOVERS",
    "read_velocity",
    "transfer_velocity",
    "velocity_support",
    "write_velocity",
]

HANDOVERS = ("velocity", "reset")
ADAM_STEADY_EXPONENT = 40.0
_ADAM_MAX_STEP = 2**24


def _kind(cls: type) -> str | None:
    from .hamiltonian import HamiltonianOptimizer

    if issubclass(cls, HamiltonianOptimizer):
        return "hamiltonian"
    if issubclass(cls, torch.optim.SGD):
        return "sgd"
    if issubclass(cls, torch.optim.Adam):  # AdamW is a subclass
        return "adam"
    return None


def velocity_support(cls: type, hyper: Mapping[str, Any]) -> str | None:
    """None when the ``velocity`` hand-over can read and write an optimiser of class ``cls`` with
    ``hyper``; otherwise why not (one line)."""
    kind = _kind(cls)
    if kind is None:
        return (f"{cls.__name__} keeps no momentum that an energy convention reads (only Leapfrog, "
                "Euler, SGD with momentum, Adam and AdamW do)")
    if kind == "sgd":
        if not hyper.get("momentum", 0.0):
            return "plain SGD (momentum 0) keeps no momentum buffer"
        if hyper.get("nesterov", False) or float(hyper.get("dampening", 0.0)) >= 1.0:
            return "SGD with nesterov or dampening 1 has no energy convention"
    return None


def _float(value: Any) -> float:
    return float(value.item() if isinstance(value, Tensor) else value)


def _groups(opt: Optimizer) -> list[tuple[dict[str, Any], list[Tensor]]]:
    return [(g, list(g["params"])) for g in opt.param_groups]


# ---------------------------------------------------------------------- reading θ̇
def _adam_hat(opt: Optimizer, group: Mapping[str, Any], p: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(m̂, v̂)`` of ``p`` in float64, or None when it has no Adam state yet."""
    st = opt.state.get(p)
    if not st or "exp_avg" not in st:
        return None
    beta1, beta2 = (float(b) for b in group["betas"])
    step = _float(st["step"])
    v = st["max_exp_avg_sq"] if group.get("amsgrad") else st["exp_avg_sq"]
    return st["exp_avg"].double() / (1.0 - beta1**step), v.double() / (1.0 - beta2**step)


def read_velocity(opt: Optimizer) -> dict[Tensor, Tensor]:
    """``param -> θ̇`` (float64) of every parameter with momentum in ``opt``'s state (see the
    module docstring for each convention)."""
    from ..energy.conventions import adam_momentum_coefficient, sgd_momentum_coefficient
    from .mass import inverse_mass

    kind = _kind(type(opt))
    out: dict[Tensor, Tensor] = {}
    with torch.no_grad():
        for index, (group, params) in enumerate(_groups(opt)):
            for p in params:
                st = opt.state.get(p) or {}
                if kind == "hamiltonian" and "momentum" in st:
                    out[p] = st["momentum"].double() * inverse_mass(p, group["mass"], group["mass_clip"])
                elif kind == "sgd" and st.get("momentum_buffer") is not None:
                    out[p] = st["momentum_buffer"].double() * -sgd_momentum_coefficient(group, index)
                elif kind == "adam":
                    hats = _adam_hat(opt, group, p)
                    if hats is not None:
                        m_hat, v_hat = hats
                        c = adam_momentum_coefficient(group)
                        out[p] = -c * m_hat / (v_hat.sqrt() + float(group["eps"]))
    return out


def _adam_metric(opt: Optimizer) -> dict[Tensor, Tensor]:
    """``param -> v̂`` of an Adam optimiser (empty for any other)."""
    if _kind(type(opt)) != "adam":
        return {}
    out = {}
    for group, params in _groups(opt):
        for p in params:
            hats = _adam_hat(opt, group, p)
            if hats is not None:
                out[p] = hats[1]
    return out


# ---------------------------------------------------------------------- writing θ̇
def _adam_step_tensor(opt: Optimizer, group: Mapping[str, Any], p: Tensor, value: float) -> Tensor:
    """The ``step`` entry torch's Adam would create for ``p`` (dtype and device), set to ``value``."""
    try:
        from torch.optim.optimizer import _get_scalar_dtype

        dtype = _get_scalar_dtype(is_fused=bool(group.get("fused")))
    except ImportError:  # pragma: no cover - private helper of older torch
        dtype = torch.float32
    on_device = bool(group.get("fused") or group.get("capturable"))
    return torch.tensor(value, dtype=dtype, device=p.device if on_device else "cpu")


def adam_steady_step(betas: tuple[float, float]) -> int:
    """``S = ⌈40 / −ln max(β1, β2)⌉`` capped at 2²⁴: ``β^S ≤ e^{-40}`` (below float64 rounding of 1)."""
    beta = max(float(betas[0]), float(betas[1]))
    if beta <= 0.0:
        return 1
    return int(min(_ADAM_MAX_STEP, max(1, math.ceil(ADAM_STEADY_EXPONENT / -math.log(beta)))))


def write_velocity(opt: Optimizer, velocity: Mapping[Tensor, Tensor],
                   metric: Mapping[Tensor, Tensor] | None = None) -> int:
    """Write into ``opt`` (fresh, before its first step) the state whose velocity is ``velocity``
    (``param -> θ̇``); ``metric`` gives Adam's ``v̂`` per parameter (default: ``g²`` of ``.grad``).
    Returns how many parameters received a state."""
    from ..energy.conventions import adam_momentum_coefficient, sgd_momentum_coefficient
    from .mass import inverse_mass

    kind = _kind(type(opt))
    metric = metric or {}
    written = 0
    with torch.no_grad():
        for index, (group, params) in enumerate(_groups(opt)):
            for p in params:
                v = velocity.get(p)
                if v is None:
                    continue
                if kind == "hamiltonian":
                    m = inverse_mass(p, group["mass"], group["mass_clip"])
                    opt.state[p]["momentum"] = (v / m).to(p.dtype)
                elif kind == "sgd":
                    c = sgd_momentum_coefficient(group, index)
                    opt.state[p]["momentum_buffer"] = (-v / c).to(p.dtype)
                elif kind == "adam":
                    v_hat = metric.get(p)
                    if v_hat is None:
                        if p.grad is None:
                            continue
                        v_hat = p.grad.double().square()
                    beta1, beta2 = (float(b) for b in group["betas"])
                    steps = adam_steady_step((beta1, beta2))
                    m_hat = -(v_hat.sqrt() + float(group["eps"])) * v / adam_momentum_coefficient(group)
                    st = opt.state[p]
                    st["step"] = _adam_step_tensor(opt, group, p, float(steps))
                    st["exp_avg"] = (m_hat * (1.0 - beta1**steps)).to(p.dtype)
                    st["exp_avg_sq"] = (v_hat * (1.0 - beta2**steps)).to(p.dtype)
                    if group.get("amsgrad"):
                        st["max_exp_avg_sq"] = st["exp_avg_sq"].clone()
                else:
                    raise TypeError(velocity_support(type(opt), group) or type(opt).__name__)
                written += 1
    return written


def transfer_velocity(old: Optimizer, new: Optimizer) -> int:
    """The ``velocity`` hand-over: ``new`` (fresh) gets the state with ``old``'s velocity ``θ̇``
    (Adam → Adam keeps ``v̂`` as well). Returns how many parameters were handed over."""
    return write_velocity(new, read_velocity(old), _adam_metric(old))

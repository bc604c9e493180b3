r"""The tensor-valued streaming step of :class:`~hamopt.optim.Leapfrog` and :class:`~hamopt.optim.Euler`:
the path taken under ``torch.compile``, with ``capturable=True`` and with ``fused=True``.

The eager step (:meth:`HamiltonianOptimizer._step_streaming`) reads its decision values (loss,
‖g‖², K) on the host and continues with Python floats. Traced by ``torch.compile`` such floats
become constants of the graph, so every new dt, energy or cap factor would compile a new graph.
Here every value that changes from step to step is a 0-d float64 tensor on the parameters' device,
and every decision is a ``torch.where``; a step has three parts:

1. :func:`prepare` (run eagerly, never traced): gather the tensors that step, create missing
   momentum buffers, and turn the per-step numbers into tensors: ``dt`` of each group (a float
   ``lr`` or a tensor ``lr``), the dt of the deferred half-kick, which momenta owe it, and the
   optimiser-wide scalars ``H0``, ``H_last`` (NaN: not set yet), ``cap_engagements``, ``step``.
   A float ``lr`` becomes a tensor here, outside the graph, so an LR scheduler never recompiles.
2. :func:`streaming_program` (traced, or compiled whole with Inductor when ``fused=True``): the
   reductions, the energy bookkeeping and the cap decision on the device, then the update, in
   place. Nothing leaves the device.
3. :func:`finish` (run eagerly, never traced): ``capturable=True`` keeps the results as tensors
   (``opt.stats`` holds 0-d tensors, read when the user asks); otherwise this is the one host
   transfer of the step (the documented graph break): the stats become floats as in eager mode
   and a non-finite loss or gradient raises :class:`~hamopt.NonFiniteError`.

The math is the eager step's (see :mod:`hamopt.optim.leapfrog`, :mod:`hamopt.optim.euler` and
:mod:`hamopt.optim.hamiltonian`). Leapfrog, with ``a = e^{-γ dt/2}``, ``c = dt/2``, the deferred
half-kick's ``(a₁, c₁)`` (``c₁ = 0`` for a momentum that owes none) and the cap's factor ``f``::

    K(p_t) = ½ Σ_i m_i (a₁² ‖p_i‖² − 2 a₁ c₁ ⟨p_i, g_i⟩ + c₁² ‖g_i‖²)      (p_t never materialised)
    f      = √(max(ε, α H0 − L) / max(ε, K))  if  K + L > α H0  else  1
    p_i    ← a f a₁ p_i − (a f c₁ + c) g_i ,   θ_i ← θ_i + dt m_i p_i

and Euler ``p ← f p``, ``θ ← θ + dt m p``, ``p ← e^{-γ dt} p − dt g``. A non-finite loss or
‖g‖² leaves θ, p and every scalar unchanged (the update is masked on the device), so the eager
contract "nothing changes before the error" holds with and without a host sync. Reductions run
in float64 (each element is converted as it is read), so no chunking is needed for accuracy;
the numbers agree with the eager path to float rounding.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import NonFiniteError
from . import _distributed as D
from . import _fused_cpu
from .base import ParamSet

if TYPE_CHECKING:
    from .hamiltonian import HamiltonianOptimizer

CAP_EPS = 1e-12
F64 = torch.float64
# the optimiser-wide scalars kept as tensors in capturable mode (None ↔ NaN)
TENSOR_SCALARS = ("H0", "H_last")


@dataclass
class StepInputs:
    """What :func:`prepare` hands to :func:`streaming_program` (tensors and static structure)."""

    params: list[list[Tensor]]
    grads: list[list[Tensor]]
    moms: list[list[Tensor]]
    inv_masses: list[tuple[float, ...]]
    gammas: list[float]
    dts: list[Tensor]
    prev_dts: list[Tensor]
    owes: list[Tensor]
    scalars: dict[str, Tensor]
    loss: Tensor | None
    used: list[list[Tensor]]
    group_indices: list[int]


def _as_f64(value: Any, device: torch.device) -> Tensor:
    """A number (None: NaN) or a 1-element tensor as a float64 tensor of shape (1,) on ``device``.

    Shape (1,), not 0-d: Dynamo treats a 0-d float64 CPU tensor argument as a Python number, and
    in-place changes to it would not reach the caller's tensor."""
    if isinstance(value, Tensor):
        return value.detach().to(device=device, dtype=F64).reshape(1)
    return torch.tensor([math.nan if value is None else float(value)], dtype=F64, device=device)


def never_traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` always runs eagerly: a call from code that ``torch.compile`` traces is a graph break
    and ``fn`` runs as plain Python (``torch.compiler.disable``'s contract). Applied through
    ``torch._disable_dynamo``, which imports ``torch._dynamo`` at the first call rather than at
    import (about 1.4 s of start-up that programs which never compile should not pay); Dynamo
    skips that wrapper's module, so a traced call still breaks the graph there."""
    lazy = getattr(torch, "_disable_dynamo", None)
    return lazy(fn) if lazy is not None else torch.compiler.disable(fn)


@never_traced
def prepare(opt: HamiltonianOptimizer, closure: Callable[[], Any] | None, loss: Any
            ) -> tuple[Any, StepInputs | None, list[ParamSet], tuple[str, float | None, bool, bool, bool]]:
    """Part 1 (eager): check the arguments, call the closure, gather the tensors and turn the
    step's numbers into device tensors. Returns ``(value, inputs, sets, config)``; in exact mode
    (reached only under ``torch.compile``) the eager step runs here and ``inputs`` is None."""
    g = opt.param_groups[0]
    config = (opt._integrator, None if g["cap"] is None else float(g["cap"]), opt._needs_energy(),
              opt._needs_energy() or g["check_finite"], g["fused"])
    if opt.mode == "exact":
        return opt._step_eager(closure, loss), None, [], config
    if D.is_distributed(opt.process_group):
        raise NotImplementedError(
            f"{opt._name}: capturable=True, fused=True and torch.compile of the streaming step are not available "
            "with a process group of more than one rank; use the eager step (capturable=False, fused=False)")
    if closure is not None:
        if loss is not None:
            raise ValueError("pass either closure or loss=, not both")
        loss, source = opt._call_closure(closure), "the closure"
    else:
        source = "loss="
    value = loss
    glob = opt._global
    device = opt._device()
    capturable = opt.param_groups[0]["capturable"]
    lt = opt._loss_tensor(loss, source)
    if lt is None:
        opt._warn_no_loss()
    sets = opt._gather(read_lr=False)
    if capturable:
        to_tensor_form(opt)
        scalars = {k: glob[k] for k in (*TENSOR_SCALARS, "cap_engagements", "step", "pending")}
    else:
        scalars = {k: _as_f64(glob[k], device) for k in TENSOR_SCALARS}
        scalars["cap_engagements"] = _as_f64(glob["cap_engagements"], device)
        scalars["step"] = _as_f64(glob["step"], device)
        scalars["pending"] = _as_f64(1.0 if glob["pending"] else 0.0, device)
    dts, prev, owes, used = [], [], [], []
    for s in sets:
        dts.append(_as_f64(s.options["lr"], device))
        if capturable:
            prev.append(glob["pending_dt"][s.index])
            # a 0-d float32 flag per parameter (a 0-d float64 CPU tensor would reach Dynamo as a number)
            flags = [opt.state[p].setdefault("momentum_used", torch.tensor(0.0 if new else 1.0, device=device))
                     for p, new in zip(s.owners, s.fresh)]
            used.append(flags)
            owes.append(torch.stack(flags).to(F64) if flags else torch.zeros(0, dtype=F64, device=device))
        else:
            prev.append(_as_f64(glob["pending_dt"].get(s.index), device))
            owes.append(torch.tensor([0.0 if f else 1.0 for f in s.fresh], dtype=F64, device=device))
            used.append([])
    return value, StepInputs(
        params=[s.params for s in sets], grads=[s.grads for s in sets], moms=[s.moms for s in sets],
        inv_masses=[tuple(s.inv_masses) for s in sets], gammas=[s.option("gamma") for s in sets],
        dts=dts, prev_dts=prev, owes=owes, scalars=scalars,
        loss=None if lt is None else lt.to(device).reshape(1), used=used, group_indices=[s.index for s in sets],
    ), sets, config


def to_tensor_form(opt: HamiltonianOptimizer) -> None:
    """Capturable mode: the optimiser-wide scalars as device tensors (None ↔ NaN), once."""
    glob = opt._global
    if isinstance(glob["step"], Tensor) and glob["step"].device == opt._device():
        for i in range(len(opt.param_groups)):
            glob["pending_dt"].setdefault(i, torch.tensor(math.nan, dtype=F64, device=opt._device()))
        return
    device = opt._device()
    for key in TENSOR_SCALARS:
        glob[key] = _as_f64(glob[key], device)
    for key in ("cap_engagements", "step"):
        glob[key] = _as_f64(glob[key], device)
    glob["pending"] = _as_f64(1.0 if bool(glob["pending"]) else 0.0, device)
    table = dict(glob["pending_dt"] or {})
    glob["pending_dt"] = {i: _as_f64(table.get(i), device) for i in range(len(opt.param_groups))}


def host_number(v: Any) -> Any:
    """A scalar tensor as a Python float (NaN: None); anything else unchanged."""
    if not isinstance(v, Tensor):
        return v
    x = float(v.item())
    return None if math.isnan(x) else x


def to_float_form(glob: dict[str, Any]) -> None:
    """The optimiser-wide scalars as Python numbers (what the eager step and checkpoints of a
    non-capturable optimiser hold)."""
    num = host_number
    for key in TENSOR_SCALARS:
        glob[key] = num(glob[key])
    for key in ("cap_engagements", "step"):
        if isinstance(glob[key], Tensor):
            glob[key] = int(glob[key].item())
    if isinstance(glob["pending"], Tensor):
        glob["pending"] = bool(glob["pending"].item())
    table = {int(k): num(v) for k, v in dict(glob["pending_dt"] or {}).items()}
    glob["pending_dt"] = {k: None if v is None else float(v) for k, v in table.items()}


# ---------------------------------------------------------------------- the traced part
def _sq(x: Tensor) -> Tensor:
    x = x.to(F64)
    return torch.sum(x * x).reshape(1)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    return torch.sum(x.to(F64) * y.to(F64)).reshape(1)


def reductions(inputs: StepInputs, *, with_momenta: bool) -> list[Tensor]:
    """Per group, a float64 ``(3, n)`` tensor of ``‖p_i‖², ‖g_i‖², ⟨p_i, g_i⟩`` (rows of zeros for the
    momentum terms when ``with_momenta`` is False): one read of p and g."""
    out = []
    for grads, moms in zip(inputs.grads, inputs.moms):
        zero = torch.zeros(1, dtype=F64, device=inputs.scalars["step"].device)
        gsq = [_sq(g) for g in grads]
        psq = [_sq(p) if with_momenta else zero for p in moms]
        pg = [_dot(p, g) if with_momenta else zero for p, g in zip(moms, grads)]
        out.append(torch.stack([torch.cat(psq), torch.cat(gsq), torch.cat(pg)]) if grads
                   else torch.zeros(3, 0, dtype=F64, device=zero.device))
    return out


def decide(inputs: StepInputs, sums: list[Tensor] | None, *, integrator: str, cap: float | None, energy: bool,
           check: bool) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
    """The energy bookkeeping and the cap on the device, from the per-tensor ``sums`` (None when
    nothing is reduced). Returns per group the update coefficients ``(3, n)`` (rows: the momentum
    factor, the gradient factor, the drift factor ``dt m_i``; for Euler the drift comes first and
    carries the cap's factor), whether the step may move, and the stats. The optimiser-wide
    scalars and the flags in ``inputs`` are updated in place."""
    sc = inputs.scalars
    device = sc["step"].device
    zero = torch.zeros(1, dtype=F64, device=device)
    nan = torch.full((1,), math.nan, dtype=F64, device=device)
    loss = inputs.loss
    leapfrog = integrator == "leapfrog"
    pending = sc["pending"]
    masses = [torch.tensor(m, dtype=F64, device=device) for m in inputs.inv_masses]
    closing = []  # per group: (a₁ per tensor, c₁ per tensor) of the deferred half-kick
    for gamma, dt, prev, owe in zip(inputs.gammas, inputs.dts, inputs.prev_dts, inputs.owes):
        if leapfrog:
            owe = owe * pending  # nothing is owed before the first step
            prev_dt = torch.where(torch.isnan(prev), dt, prev)
            a1 = torch.where(owe > 0, torch.exp(-gamma * prev_dt / 2), 1.0)
            closing.append((a1, prev_dt / 2 * owe))
        else:
            closing.append((torch.ones_like(owe), torch.zeros_like(owe)))

    gsq = zero
    kinetic = zero
    if sums is not None:
        for (a1, c1), m, (psq, g2, pg) in zip(closing, masses, sums):
            gsq = gsq + g2.sum()
            if energy:
                kinetic = kinetic + 0.5 * (m * (a1 * a1 * psq - 2 * a1 * c1 * pg + c1 * c1 * g2)).sum()
    finite = torch.isfinite(gsq)
    if loss is not None:
        finite = finite & torch.isfinite(loss)

    factor = torch.ones(1, dtype=F64, device=device)
    fire = torch.zeros(1, dtype=torch.bool, device=device)
    hamiltonian = delta_h = nan
    k_after = kinetic if energy else nan
    if energy and loss is not None:
        h = kinetic + loss
        h0 = torch.where(torch.isnan(sc["H0"]), h, sc["H0"])
        delta_h = h - sc["H_last"]
        if cap is not None:
            fire = finite & ~(h <= cap * h0)
            ratio = torch.clamp(cap * h0 - loss, min=CAP_EPS) / torch.clamp(kinetic, min=CAP_EPS)
            factor = torch.where(fire, torch.sqrt(ratio), factor)
        k_after = kinetic * factor * factor
        hamiltonian = k_after + loss
        sc["H0"].copy_(torch.where(finite, h0, sc["H0"]))
        sc["H_last"].copy_(torch.where(finite, hamiltonian, sc["H_last"]))
    sc["cap_engagements"].add_(fire.to(F64))

    coefs = []
    for gamma, dt, (a1, c1), m in zip(inputs.gammas, inputs.dts, closing, masses):
        if leapfrog:  # p ← a f a₁ p − (a f c₁ + c) g, then θ ← θ + dt m p
            a2 = torch.exp(-gamma * dt / 2)
            coefs.append(torch.stack([a2 * factor * a1, a2 * factor * c1 + dt / 2, dt * m]))
        else:  # θ ← θ + dt m f p, then p ← e^{-γ dt} f p − dt g
            ones = torch.ones_like(m)
            coefs.append(torch.stack([torch.exp(-gamma * dt) * factor * ones, dt * ones, dt * m * factor]))
    for flags in inputs.used:
        for flag in flags:
            flag.copy_(torch.where(finite, 1.0, flag).reshape(()))
    for prev, dt in zip(inputs.prev_dts, inputs.dts):
        prev.copy_(torch.where(finite, dt, prev))
    pending.copy_(torch.where(finite, 1.0, pending))
    step = sc["step"].clone()
    sc["step"].add_(finite.to(F64))
    stats = {"step": step, "loss": nan if loss is None else loss, "kinetic": k_after, "hamiltonian": hamiltonian,
             "delta_h": delta_h, "grad_norm": torch.sqrt(gsq) if sums is not None else nan,
             "cap_engaged": fire, "finite": finite, "cap_engagements": sc["cap_engagements"].clone()}
    return coefs, finite, {k: v.reshape(()) for k, v in stats.items()}


def update(inputs: StepInputs, coefs: list[Tensor], finite: Tensor, *, drift_first: bool, masked: bool) -> None:
    """θ and p in place, one pass per tensor: ``p ← d p − c g; θ ← θ + h p`` (Leapfrog) or
    ``θ ← θ + h p; p ← d p − c g`` (Euler), with each tensor's ``(d, c, h)`` from :func:`decide`
    in the tensor's dtype. ``masked``: nothing moves unless ``finite``."""
    for params, grads, moms, coef in zip(inputs.params, inputs.grads, inputs.moms, coefs):
        for i, (theta, p, g) in enumerate(zip(params, moms, grads)):
            d, c, h = (coef[k, i].to(p.dtype) for k in range(3))
            if drift_first:
                new_theta = theta + h * p
                new_p = d * p - c * g
            else:
                new_p = d * p - c * g
                new_theta = theta + h * new_p
            if masked:
                new_p = torch.where(finite, new_p, p)
                new_theta = torch.where(finite, new_theta, theta)
            p.copy_(new_p)
            theta.copy_(new_theta)


def streaming_program(
    inputs: StepInputs, *, integrator: str, cap: float | None, energy: bool, check: bool,
) -> dict[str, Tensor]:
    """Part 2 (traced, or compiled whole by Inductor when fused off the CPU): one streaming step
    on the device, :func:`reductions` → :func:`decide` → :func:`update`. Returns the stats as 0-d
    tensors (NaN where the eager step reports None)."""
    sums = reductions(inputs, with_momenta=energy) if (energy or check) else None
    coefs, finite, stats = decide(inputs, sums, integrator=integrator, cap=cap, energy=energy, check=check)
    update(inputs, coefs, finite, drift_first=integrator == "euler", masked=check or inputs.loss is not None)
    return stats


def fused_cpu_program(
    inputs: StepInputs, *, integrator: str, cap: float | None, energy: bool, check: bool,
) -> dict[str, Tensor]:
    """:func:`streaming_program` with the hand-written CPU kernels of :mod:`._fused_cpu`: one
    read of p and g for the sums, :func:`decide` on a few small vectors, one pass for the update
    (skipped when the loss or a gradient is not finite; reading that flag costs no device sync on
    the CPU)."""
    sums = ([_fused_cpu.sums(m, g, with_momenta=energy) for m, g in zip(inputs.moms, inputs.grads)]
            if (energy or check) else None)
    coefs, finite, stats = decide(inputs, sums, integrator=integrator, cap=cap, energy=energy, check=check)
    if (not check and inputs.loss is None) or bool(finite):
        for params, moms, grads, coef in zip(inputs.params, inputs.moms, inputs.grads, coefs):
            _fused_cpu.update(params, moms, grads, coef, drift_first=integrator == "euler")
    return stats


def fused_cpu_supported(inputs: StepInputs) -> bool:
    """Whether :func:`fused_cpu_program` can run this step (contiguous float32/float64 CPU tensors)."""
    return all(_fused_cpu.supported([p, m, g]) for p, m, g in zip(inputs.params, inputs.moms, inputs.grads))


# ---------------------------------------------------------------------- the host side
@never_traced
def finish(opt: HamiltonianOptimizer, inputs: StepInputs, sets: list[ParamSet], stats: dict[str, Tensor]) -> None:
    """Part 3 (eager). Capturable: keep the stats as tensors. Otherwise the one host transfer:
    raise on a non-finite loss or gradient (nothing has changed), write the scalars back as
    Python numbers and fill ``opt.stats`` with floats, as the eager step does."""
    glob = opt._global
    if opt.param_groups[0]["capturable"]:
        opt.stats = dict(stats, mode=opt.mode, loss_after=None, kinetic_before=None)
        return
    names = list(stats)
    values = dict(zip(names, opt._to_host(*[stats[k] for k in names])))
    sc = inputs.scalars
    if not values["finite"]:
        loss, gnorm = values["loss"], values["grad_norm"]
        opt._drop_fresh_buffers(sets)
        if not math.isnan(loss) and not math.isfinite(loss):
            raise NonFiniteError("loss", glob["step"], loss)
        raise NonFiniteError("gradient", glob["step"], gnorm, "the global gradient norm is not finite")
    h0, h_last, pend = opt._to_host(sc["H0"].reshape(()), sc["H_last"].reshape(()), sc["pending"].reshape(()))
    glob["H0"] = None if math.isnan(h0) else h0
    glob["H_last"] = None if math.isnan(h_last) else h_last
    glob["cap_engagements"] = int(values["cap_engagements"])
    glob["pending"] = bool(pend)
    for index, dt in zip(inputs.group_indices, opt._to_host(*[dt.reshape(()) for dt in inputs.dts])):
        glob["pending_dt"][index] = dt
    opt._finish_stats(**{k: (None if isinstance(v, float) and math.isnan(v) else v)
                         for k, v in values.items() if k not in ("finite", "cap_engagements", "step")},
                      step=glob["step"])
    opt.stats["cap_engaged"] = bool(values["cap_engaged"])
    glob["step"] += 1


def compiled_program() -> Any:
    """:func:`streaming_program` compiled by Inductor (``fullgraph=True``, static shapes) for one
    optimiser: a private copy of the function, so that each optimiser has its own compile cache
    (Dynamo keys its cache on the code object) and several optimisers do not share one
    recompile limit."""
    fn = streaming_program
    private = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__,
                                 fn.__closure__)
    private.__kwdefaults__ = fn.__kwdefaults__
    return torch.compile(private, fullgraph=True, dynamic=False)

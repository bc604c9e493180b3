r"""The fused CPU steps of :class:`~hamopt.optim.ECDSep` and :class:`~hamopt.optim.ECDq1`
(``fused=True``).

The eager step of either makes four to six passes over memory and draws the bounce noise with
``normal_`` from the optimiser's ``torch.Generator`` into a scratch buffer. The fused step makes
two, with the kernels of :mod:`hamopt.optim._fused_ecd_cpu`:

1. one read of p and g (and θ with weight decay) gives every tensor's ``‖p‖², ‖g‖², ⟨p, g⟩``
   (and ``‖θ‖², ⟨p, θ⟩, ⟨g, θ⟩``);
2. the decisions are made on these numbers, as in the eager step (skip, rescale factor, invariant).
   The kick ``q = a p − b g − w θ`` is linear, so ``‖q‖²`` (which sets ECDSep's drift coefficient
   and both optimisers' bounce size) follows from the sums before anything moves:
   ``‖q‖² = a²‖p‖² + b²‖g‖² + w²‖θ‖² − 2ab⟨p, g⟩ − 2aw⟨p, θ⟩ + 2bw⟨g, θ⟩``;
3. one pass reads θ, p, g and writes θ, p: kick, drift, and the random part of the bounce
   ``p ← q + α z`` with ``z`` drawn inside the loop by a counter-based generator (Philox4x32-10
   keyed by the seed, the step counter, the tensor's position and the element's index; see
   :mod:`hamopt.optim._fused_ecd_cpu`). The bounce's norm-restoring rescale stays deferred to the
   next step's first multiply, exactly as in the eager step.

With ``nu = 0`` the numbers equal the eager step's to float rounding. With ``nu > 0`` the noise
is a different (but equally distributed) draw than the eager step's generator makes: a fused run
is reproducible from its seed and resumes bit for bit from a ``state_dict``, but it does not
reproduce an eager run. A non-finite loss, gradient or kicked ``‖p‖²`` raises before anything
changes (the eager step raises on the last one after its kick).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import _distributed as D
from .. import _fused_ecd_cpu as FK
from ..base import ParamSet
from ._common import energy_rescale

if TYPE_CHECKING:
    from ._common import ECDOptimizer


def check_supported(opt: ECDOptimizer, sets: list[ParamSet]) -> None:
    """Refuse, before anything changes, a step the fused kernels cannot run (the state buffers
    this step's gather created are dropped again)."""
    message = None
    if D.is_distributed(opt.process_group) or opt._sharded:
        message = "runs in one process on unsharded parameters; use fused=False under torch.distributed"
    else:
        reason = FK.unsupported_reason([t for s in sets for t in zip(s.params, s.moms, s.grads)])
        if reason is not None:
            message = f"needs contiguous float32/float64 CPU parameters and gradients; {reason}"
    if message is not None:
        opt._drop_fresh_buffers(sets)
        raise ValueError(f"{opt._name}: fused=True {message}")


def _positions(opt: ECDOptimizer) -> dict[int, int]:
    """Each parameter's position in the optimiser's parameter list (keys the bounce noise)."""
    return {id(p): k for k, p in enumerate(p for g in opt.param_groups for p in g["params"])}


def _sums(sets: list[ParamSet]) -> list[list[list[float]] | None]:
    """Per set the six rows of per-tensor sums (None for a set with nothing to step)."""
    return [FK.sums(s.params, s.moms, s.grads, with_params=bool(s.option("weight_decay"))).tolist() if s.grads
            else None for s in sets]


def _kicked_sq(rows: list[list[float]], i: int, a: float, b: float, w: float) -> float:
    """``‖a p − b g − w θ‖²`` of tensor ``i`` from its sums (never below 0)."""
    pp, gg, pg, tt, pt, gt = (r[i] for r in rows)
    value = a * a * pp + b * b * gg - 2 * a * b * pg
    if w:
        value += w * w * tt - 2 * a * w * pt + 2 * b * w * gt
    return max(value, 0.0)


def _update(opt: ECDOptimizer, sets: list[ParamSet], coefs: list[list[list[float]]], alpha: float) -> None:
    """The one pass: per set the per-tensor rows ``(a, b, w, h)`` and the noise size ``alpha``."""
    positions = _positions(opt)
    seed, step = int(opt._global["seed"]), int(opt._global["step"])
    for s, rows in zip(sets, coefs):
        if not s.params:
            continue
        table = torch.tensor([*rows, [alpha] * len(s.params)], dtype=torch.float64)
        FK.update(s.params, s.moms, s.grads, table, seed=seed, step=step,
                  indices=[positions[id(p)] for p in s.owners])


def ecdsep_step(opt: ECDOptimizer, loss_t: Tensor) -> None:
    """One fused ECDSep step (the decisions of :meth:`ECDSep._step`, two passes over memory)."""
    glob = opt._global
    group0 = opt.param_groups[0]
    eta, F0, nu, s_reg = float(group0["eta"]), float(group0["F0"]), float(group0["nu"]), float(group0["s"])
    delta, cons = float(group0["deltaEn"]), group0["consEn"]
    eps1, eps2 = float(group0["eps1"]), float(group0["eps2"])
    sets = opt._gather()
    check_supported(opt, sets)
    sums = _sums(sets)
    loss = float(loss_t)
    wd = sum(0.5 * s.option("weight_decay") * math.fsum(r[3]) for s, r in zip(sets, sums) if r is not None)
    p2 = math.fsum(x for r in sums if r is not None for x in r[0])
    gsq = math.fsum(x for r in sums if r is not None for x in r[1])
    opt._raise_if_nonfinite(loss, gsq)
    pot = loss + wd - F0
    common = dict(loss=loss, potential=pot, grad_norm=math.sqrt(gsq))
    if not any(s.moms for s in sets):
        opt._skip("no parameter has a gradient this step", **common)
        return
    if not pot > eps2:
        opt._skip(f"F = L + ½λ‖θ‖² − F0 = {pot:.6g} ≤ eps2 = {eps2:g}", **common)
        return
    log_v = eta * math.log(pot)
    owed, p2, applied = opt._resolve_deferred(sets, p2)
    if applied:  # buffers renormalised: the momentum sums are stale
        sums = _sums(sets)
    if not glob["initialized"]:
        glob["log_C"] = log_v + math.log(s_reg + delta)
        if delta > 0.0 and gsq > 0.0:
            k = math.sqrt(delta / gsq)
            for s, rows in zip(sets, sums):
                for m, g in zip(s.moms, s.grads):
                    torch.mul(g, -k, out=m)
                if rows is not None:  # p = −k g
                    rows[0] = [k * k * x for x in rows[1]]
                    rows[2] = [-k * x for x in rows[1]]
                    rows[4] = [-k * x for x in rows[5]]
            p2 = delta
        glob["initialized"] = True
    log_c = glob["log_C"]

    # 1. rescale (as the eager step)
    c, p2_rescaled, invariant, error = energy_rescale(log_c, log_v, p2, s_reg, eps1, cons)

    # 2. the kicked ‖p‖² per set, from the sums
    a = c * owed
    group_p2 = []
    for s, rows in zip(sets, sums):
        b = s.lr * eta / pot
        w = b * s.option("weight_decay")
        group_p2.append(0.0 if rows is None else math.fsum(_kicked_sq(rows, i, a, b, w) for i in range(len(s.params))))
    p2 = math.fsum(group_p2)
    if not math.isfinite(p2):
        raise FloatingPointError(f"ECDSep: ‖p‖² = {p2} after the kick at step {glob['step']}")

    # 3. kick, drift and bounce noise in one pass
    disp = 0.0
    coefs = []
    for s, gp2 in zip(sets, group_p2):
        b = s.lr * eta / pot
        h = s.lr * 2.0 / (s_reg + p2) if s_reg + p2 > 0.0 else 0.0
        disp += h * h * gp2
        n = len(s.params)
        coefs.append([[a] * n, [b] * n, [b * s.option("weight_decay")] * n, [h] * n])
    bounced = nu > 0.0 and p2 > 0.0
    _update(opt, sets, coefs, nu * math.sqrt(p2) if bounced else 0.0)
    if bounced:
        opt._defer_bounce_rescale(p2)
        glob["bounces"] += 1
    glob["P2"] = p2
    opt._finish(invariant=invariant, invariant_log_target=log_c, invariant_error=error, rescale=c,
                P2=p2, displacement_sq=disp, bounced=bounced, **common)


def ecdq1_step(opt: ECDOptimizer, loss_t: Tensor) -> None:
    """One fused ECDq1 step (the decisions of :meth:`ECDq1._step`, two passes over memory).

    The kick ``v ← f v − a G`` (``f = owed · c (1 + a c ⟨v, G⟩)``, ``G = ∇L + λθ``) and the drift
    ``θ ← θ + Δt v`` do not depend on the kicked ``‖v‖²``; the bounce size ``(ν/√d) ‖v‖`` does,
    and comes from the sums."""
    glob = opt._global
    group0 = opt.param_groups[0]
    eta, F0, nu, cons = float(group0["eta"]), float(group0["F0"]), float(group0["nu"]), group0["consEn"]
    eps1, eps2 = float(group0["eps1"]), float(group0["eps2"])
    per_tensor = group0["projection"] == "per_tensor"
    sets = opt._gather()
    check_supported(opt, sets)
    d = sum(s.numel for s in sets)
    has_vel = any(s.moms for s in sets)
    if has_vel and d < 2:
        raise ValueError(f"ECDq1 needs at least 2 parameters with a gradient (d/(d−1)); got d = {d}")
    sums = _sums(sets)
    loss = float(loss_t)
    wd = sum(0.5 * s.option("weight_decay") * math.fsum(r[3]) for s, r in zip(sets, sums) if r is not None)
    gsq = math.fsum(x for r in sums if r is not None for x in r[1])
    opt._raise_if_nonfinite(loss, gsq)
    if has_vel and not glob["initialized"]:  # once, even if this step is skipped below
        k = 1.0 / math.sqrt(gsq) if gsq > 0 else 0.0
        for s, rows in zip(sets, sums):
            for m, g in zip(s.moms, s.grads):
                torch.mul(g, -k, out=m)
            if rows is not None:  # v = −g/‖g‖
                rows[0] = [k * k * x for x in rows[1]]
                rows[2] = [-k * x for x in rows[1]]
                rows[4] = [-k * x for x in rows[5]]
        glob["initialized"] = True
    p2 = math.fsum(x for r in sums if r is not None for x in r[0])
    pot = loss + wd - F0
    common = dict(loss=loss, potential=pot, grad_norm=math.sqrt(gsq), d=d)
    if not has_vel:
        opt._skip("no parameter has a gradient this step", **common)
        return
    if not pot > eps2:
        opt._skip(f"F = L + ½λ‖θ‖² − F0 = {pot:.6g} ≤ eps2 = {eps2:g}", **common)
        return
    owed, p2, applied = opt._resolve_deferred(sets, p2)
    if applied:  # buffers renormalised: the velocity sums are stale
        sums = _sums(sets)

    def dots(s: ParamSet, rows: list[list[float]]) -> list[float]:
        """⟨v, G⟩ per tensor of the spec's v (= owed · buffer)."""
        lam = s.option("weight_decay")
        return [owed * (rows[2][i] + lam * rows[4][i]) for i in range(len(s.params))]

    per_set_dots = [dots(s, r) if r is not None else [] for s, r in zip(sets, sums)]
    total_dot = math.fsum(x for ds in per_set_dots for x in ds)

    # 1. rescale
    c = 1.0
    if cons and p2 > 0.0 and not abs(1.0 - p2) < eps1:
        c = 1.0 / math.sqrt(p2)
    speed = c * math.sqrt(p2)
    error = abs(speed - 1.0)

    # 2-3. kick and drift coefficients; the kicked ‖v‖² per set from the sums
    coefs, group_p2 = [], []
    for s, rows, ds in zip(sets, sums, per_set_dots):
        n = len(s.params)
        a = 0.5 * (s.lr / math.sqrt(eta)) * eta * d / (d - 1) / pot
        f = [owed * c * (1.0 + a * c * (x if per_tensor else total_dot)) for x in ds]
        w = a * s.option("weight_decay")
        coefs.append([f, [a] * n, [w] * n, [s.lr / math.sqrt(eta)] * n])
        group_p2.append(0.0 if rows is None else math.fsum(_kicked_sq(rows, i, f[i], a, w) for i in range(n)))
    p2 = math.fsum(group_p2)
    disp = sum((s.lr / math.sqrt(eta)) ** 2 * gp2 for s, gp2 in zip(sets, group_p2))

    # 4. bounce noise in the same pass
    bounced = nu > 0.0 and p2 > 0.0
    _update(opt, sets, coefs, nu / math.sqrt(d) * math.sqrt(p2) if bounced else 0.0)
    if bounced:
        opt._defer_bounce_rescale(p2)
        glob["bounces"] += 1
    glob["P2"] = p2
    opt._finish(invariant=speed, invariant_error=error, rescale=c, P2=p2, kick_norm_excess=p2 - 1.0,
                displacement_sq=disp, bounced=bounced, **common)


# ---------------------------------------------------------------------- BBI's pieces
def sums_for_step(opt: ECDOptimizer, sets: list[ParamSet]) -> tuple[float, float, float, list]:
    """``(½ Σ λ‖θ‖², ‖p‖², ‖g‖², sums)`` from one read of p and g (θ with weight decay): what
    the eager step's first reduction gives, plus the per-tensor sums for :func:`kick_drift`."""
    check_supported(opt, sets)
    sums = _sums(sets)
    wd = sum(0.5 * s.option("weight_decay") * math.fsum(r[3]) for s, r in zip(sets, sums) if r is not None)
    p2 = math.fsum(x for r in sums if r is not None for x in r[0])
    gsq = math.fsum(x for r in sums if r is not None for x in r[1])
    return wd, p2, gsq, sums


def kick_drift(opt: ECDOptimizer, sets: list[ParamSet], sums: list, a: float, kicks: list[float],
               drifts: list[float]) -> list[float]:
    """``p ← a p − b (g + λθ); θ ← θ + h p`` in one pass with per-set ``b`` (``kicks``) and ``h``
    (``drifts``); returns the kicked ``‖p‖²`` per set (from the sums, before the pass)."""
    coefs, group_p2 = [], []
    for s, rows, b, h in zip(sets, sums, kicks, drifts):
        n = len(s.params)
        w = b * s.option("weight_decay")
        coefs.append([[a] * n, [b] * n, [w] * n, [h] * n])
        group_p2.append(0.0 if rows is None else math.fsum(_kicked_sq(rows, i, a, b, w) for i in range(n)))
    _update(opt, sets, coefs, 0.0)
    return group_p2

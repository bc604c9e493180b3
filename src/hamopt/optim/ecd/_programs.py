r"""The traced programs of the ECD family's tensor step (see :mod:`hamopt.optim.ecd._tensor`).

Each is the eager step's math (:mod:`~hamopt.optim.ecd.ecdsep`, :mod:`~hamopt.optim.ecd.ecdq1`,
:mod:`~hamopt.optim.ecd.bbi`) on (1,) float64 tensors, with every branch a ``torch.where`` and
every write masked, so that nothing read here changes from one step to the next except tensor
values (no recompilation). The step *moves* when the loss and ‖g‖² are finite and ``F > eps2``
(BBI: ``V > eps2``); it *counts* (``step`` advances) when it moves or is skipped, not when it is
refused as non-finite. Reductions run in float64 (each element converted as it is read).

The kick is linear in p, g and θ: ``q = a p − b g − w θ`` with per-tensor (1,) coefficients,
which also covers ECDSep's and BBI's initial momentum (``p₀ = −k g`` folds into ``b``) and the
deferred rescale of the last bounce (``owed``, folded into ``a``; momenta that sit the step out
are scaled by it directly, as the eager step does).

Stats come back as 0-d tensors (NaN where the eager step reports None); the keys of
:data:`~hamopt.optim.ecd._tensor.INTERNAL_STATS` are for the host side.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..tensor_step import F64, _dot, _sq
from ._common import _LOG_MAX
from ._tensor import ECDInputs

NAN = math.nan


# ---------------------------------------------------------------------- helpers
def _zero(device: torch.device) -> Tensor:
    return torch.zeros(1, dtype=F64, device=device)


def _sumsq(tensors: list[Tensor], device: torch.device) -> Tensor:
    """``Σ ‖x‖²`` as a (1,) float64 tensor (0 for no tensors)."""
    return torch.cat([_sq(t) for t in tensors]).sum().reshape(1) if tensors else _zero(device)


def _flat(lists: list[list[Tensor]]) -> list[Tensor]:
    return [t for ts in lists for t in ts]


def _like(coef: Tensor, t: Tensor) -> Tensor:
    """A (1,) float64 coefficient as a 0-d scalar of ``t``'s dtype."""
    return coef.reshape(()).to(t.dtype)


def _weight_decay_term(x: ECDInputs, device: torch.device) -> Tensor:
    """``½ Σ_groups λ ‖θ‖²`` over the stepping tensors."""
    total = _zero(device)
    for params, lam in zip(x.params, x.decays):
        if lam and params:
            total = total + 0.5 * lam * _sumsq(params, device)
    return total


def _resolve_deferred(x: ECDInputs, p2: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(owed, ‖p‖²)``: the factor the stored momenta still owe to the last bounce (1 when none
    is pending, NaN) and the squared norm of the spec's momentum. With momenta that sit this
    step out, the factor renormalises all stored momenta together (as the eager step does)."""
    pending = x.scalars["pending_norm_sq"]
    has = ~torch.isnan(pending)
    if x.others:
        total = p2 + _sumsq(x.others, device)
        owed = torch.where(has & (total > 0), torch.sqrt(pending / torch.where(total > 0, total, 1.0)), 1.0)
        return owed, owed * owed * p2
    owed = torch.where(has & (p2 > 0), torch.sqrt(pending / torch.where(p2 > 0, p2, 1.0)), 1.0)
    return owed, torch.where(has & (p2 > 0), pending, p2)


def _kick(x: ECDInputs, moms: list[list[Tensor]], a: Tensor, coefs: list[tuple[Tensor, Tensor]],
          device: torch.device) -> tuple[list[list[Tensor]], list[Tensor], Tensor]:
    """The kicked momenta ``q = a p − c_g g − c_θ λ θ`` of every group (``coefs[i] = (c_g, c_θ)``
    of group i, λ its weight decay), each group's ``‖q‖²``, and their sum."""
    kicked, group_p2 = [], []
    for params, grads, ps, (c_g, c_theta), lam in zip(x.params, x.grads, moms, coefs, x.decays):
        qs = []
        for theta, g, p in zip(params, grads, ps):
            q = _like(a, p) * p - _like(c_g, g) * g
            if lam:
                q = q - _like(c_theta * lam, theta) * theta
            qs.append(q)
        kicked.append(qs)
        group_p2.append(_sumsq(qs, device))
    return kicked, group_p2, (torch.stack(group_p2).sum(0) if group_p2 else _zero(device))


def _write(dst: Tensor, new: Tensor, move: Tensor) -> None:
    dst.copy_(torch.where(move.reshape(()), new, dst))


def _commit(x: ECDInputs, *, counts: Tensor, moving: Tensor, bounced: Tensor, p2: Tensor, disp: Tensor,
            owed: Tensor | None) -> dict[str, Tensor]:
    """The shared scalar bookkeeping after a step; returns the shared stats. ``owed``: the
    deferred bounce rescale this step settled (None: the optimiser defers none, BBI)."""
    sc = x.scalars
    skipped = counts & ~moving
    if owed is not None:
        for buf in x.others:
            _write(buf, buf * _like(owed, buf), moving)
        sc["pending_norm_sq"].copy_(torch.where(moving, torch.where(bounced, p2, NAN), sc["pending_norm_sq"]))
    sc["P2"].copy_(torch.where(moving, p2, sc["P2"]))
    sc["bounces"].add_(bounced.to(F64))
    sc["displacement_sq"].copy_(torch.where(moving, disp, torch.where(counts, 0.0, sc["displacement_sq"])))
    step = sc["step"].clone()
    sc["step"].add_(counts.to(F64))
    sc["skipped_steps"].add_(skipped.to(F64))
    return {"step": step, "skipped": skipped, "bounced": bounced, "finite": counts, "P2": sc["P2"].clone(),
            "displacement_sq": sc["displacement_sq"].clone(),
            "kinetic": 0.5 * sc["displacement_sq"] / x.lr0,
            "skipped_steps": sc["skipped_steps"].clone(), "bounces": sc["bounces"].clone()}


def _stats(values: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.reshape(()) for k, v in values.items()}


def _first_checks(x: ECDInputs, offset: float, eps2: float) -> tuple[Tensor, ...]:
    """``(device, ‖g‖², loss finite and ‖g‖² finite, potential, moves)`` of a step."""
    device = x.scalars["step"].device
    gsq = _sumsq(_flat(x.grads), device)
    finite = torch.isfinite(x.loss) & torch.isfinite(gsq)
    pot = x.loss + _weight_decay_term(x, device) - offset
    move = finite & (pot > eps2) if any(x.moms) else torch.zeros(1, dtype=torch.bool, device=device)
    return device, gsq, finite, pot, move


# ---------------------------------------------------------------------- ECDSep
def energy_rescale(log_c: Tensor, log_v: Tensor, p2: Tensor, s: float, eps1: float, cons: bool
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`hamopt.optim.ecd._common.energy_rescale` on tensors: ``(c, c²‖p‖², invariant, error)``."""
    c = torch.ones_like(p2)
    if cons:
        x = log_c - log_v
        target = torch.where(x < _LOG_MAX, torch.exp(torch.clamp(x, max=_LOG_MAX)) - s, math.inf)
        keep = (torch.abs(target - p2) < eps1) | (target < 0)
        safe = torch.where(p2 > 0, p2, 1.0)
        finite_c = torch.sqrt(torch.clamp(target, min=0.0) / safe)
        huge_c = torch.exp(torch.clamp(0.5 * (x - torch.log(safe)), max=_LOG_MAX))
        c = torch.where((p2 > 0) & ~keep, torch.where(torch.isfinite(target), finite_c, huge_c), c)
    p2r = c * c * p2
    arg = s + p2r
    invariant = torch.where(arg > 0, torch.log(torch.where(arg > 0, arg, 1.0)) + log_v, -math.inf)
    error = torch.where(torch.isfinite(invariant), torch.abs(torch.expm1(invariant - log_c)), math.inf)
    return c, p2r, invariant, error


def ecdsep_program(x: ECDInputs, *, eta: float, F0: float, nu: float, s: float, delta: float, cons: bool,
                   eps1: float, eps2: float) -> dict[str, Tensor]:
    """One ECDSep step (:meth:`ECDSep._step`) on the device."""
    sc = x.scalars
    device, gsq, finite, pot, move = _first_checks(x, F0, eps2)
    p2 = _sumsq(_flat(x.moms), device)
    log_v = eta * torch.log(torch.where(pot > 0, pot, 1.0))
    owed, p2 = _resolve_deferred(x, p2, device)
    first = move & ~(sc["initialized"] > 0)
    log_c = torch.where(first, log_v + math.log(s + delta), sc["log_C"])
    seeded = torch.zeros_like(first)
    k = _zero(device)
    if delta > 0.0:  # p₀ = −√(δE/‖g‖²) g
        seeded = first & (gsq > 0)
        k = torch.sqrt(delta / torch.where(gsq > 0, gsq, 1.0))
        p2 = torch.where(seeded, delta, p2)
    c, _, invariant, error = energy_rescale(log_c, log_v, p2, s, eps1, cons)
    a = torch.where(seeded, 0.0, c * owed)
    b_seed = torch.where(seeded, c * owed * k, 0.0)

    kicked, group_p2, p2_new = _kick(x, x.moms, a, [(dt * eta / pot + b_seed, dt * eta / pot) for dt in x.dts], device)
    kick_ok = torch.isfinite(p2_new)
    moving = move & kick_ok
    counts = finite & (kick_ok | ~move)
    denom = s + p2_new
    safe = torch.where(denom > 0, denom, 1.0)
    bounced = moving & (p2_new > 0) if (nu > 0.0 and x.noise is not None) else torch.zeros_like(moving)
    alpha = torch.where(bounced, nu * torch.sqrt(torch.clamp(p2_new, min=0.0)), 0.0)
    disp = _zero(device)
    for gi, (params, moms, qs, dt, gp2) in enumerate(zip(x.params, x.moms, kicked, x.dts, group_p2)):
        h = torch.where(denom > 0, dt * 2.0 / safe, 0.0)
        disp = disp + h * h * gp2
        for i, (theta, p, q) in enumerate(zip(params, moms, qs)):
            _write(theta, theta + _like(h, theta) * q, moving)
            if x.noise is not None and nu > 0.0:
                z = x.noise[gi][i]
                q = q + _like(alpha, q) * z
            _write(p, q, moving)
    sc["initialized"].copy_(torch.where(moving, 1.0, sc["initialized"]))
    sc["log_C"].copy_(torch.where(moving, log_c, sc["log_C"]))
    shared = _commit(x, counts=counts, moving=moving, bounced=bounced, p2=p2_new, disp=disp, owed=owed)
    return _stats(dict(
        shared, loss=x.loss, potential=pot, grad_norm=torch.sqrt(gsq), grad_sq=gsq, inputs_finite=finite,
        kick_finite=kick_ok | ~move, invariant=torch.where(moving, invariant, NAN),
        invariant_log_target=torch.where(moving, log_c, NAN), invariant_error=torch.where(moving, error, NAN),
        rescale=torch.where(moving, c, NAN),
    ))


# ---------------------------------------------------------------------- ECDq1
def ecdq1_program(x: ECDInputs, *, eta: float, F0: float, nu: float, cons: bool, eps1: float, eps2: float,
                  per_tensor: bool, d: int) -> dict[str, Tensor]:
    """One ECDq1 step (:meth:`ECDq1._step`) on the device (``d`` ≥ 2 checked by the caller)."""
    sc = x.scalars
    device, gsq, finite, pot, move = _first_checks(x, F0, eps2)
    has = any(x.moms)
    # v = −g/‖g‖ once, on the first finite step (even when it is skipped)
    init = finite & ~(sc["initialized"] > 0) if has else torch.zeros_like(finite)
    k = torch.where(gsq > 0, -torch.rsqrt(torch.where(gsq > 0, gsq, 1.0)), 0.0)
    vels = [[torch.where(init.reshape(()), g * _like(k, g), v) for g, v in zip(grads, moms)]
            for grads, moms in zip(x.grads, x.moms)]
    p2 = _sumsq(_flat(vels), device)
    dots = []
    for params, grads, vs, lam in zip(x.params, x.grads, vels, x.decays):
        for theta, g, v in zip(params, grads, vs):
            vg = _dot(v, g)
            dots.append(vg + lam * _dot(v, theta) if lam else vg)
    owed, p2 = _resolve_deferred(x, p2, device)
    vdots = owed * (torch.cat(dots) if dots else _zero(device))
    total_dot = vdots.sum().reshape(1)

    c = torch.ones_like(p2)
    if cons:
        c = torch.where((p2 > 0) & ~(torch.abs(1.0 - p2) < eps1), torch.rsqrt(torch.where(p2 > 0, p2, 1.0)), c)
    speed = c * torch.sqrt(p2)
    root_eta = math.sqrt(eta)

    kicked, group_p2 = [], []
    offset = 0
    for params, grads, vs, dt, lam in zip(x.params, x.grads, vels, x.dts, x.decays):
        a = 0.5 * (dt / root_eta) * eta * d / (d - 1) / pot
        qs = []
        for i, (theta, g, v) in enumerate(zip(params, grads, vs)):
            dot = vdots[offset + i].reshape(1) if per_tensor else total_dot
            q = _like(owed * c * (1.0 + a * c * dot), v) * v - _like(a, g) * g
            if lam:
                q = q - _like(a * lam, theta) * theta
            qs.append(q)
        offset += len(params)
        kicked.append(qs)
        group_p2.append(_sumsq(qs, device))
    p2_new = torch.stack(group_p2).sum(0) if group_p2 else _zero(device)
    bounced = move & (p2_new > 0) if (nu > 0.0 and x.noise is not None) else torch.zeros_like(move)
    alpha = torch.where(bounced, nu / math.sqrt(d) * torch.sqrt(torch.clamp(p2_new, min=0.0)), 0.0)
    disp = _zero(device)
    for gi, (params, moms, vs, qs, dt, gp2) in enumerate(zip(x.params, x.moms, vels, kicked, x.dts, group_p2)):
        h = dt / root_eta
        disp = disp + h * h * gp2
        for i, (theta, v_buf, v, q) in enumerate(zip(params, moms, vs, qs)):
            _write(theta, theta + _like(h, theta) * q, move)
            if x.noise is not None and nu > 0.0:
                q = q + _like(alpha, q) * x.noise[gi][i]
            v_buf.copy_(torch.where(move.reshape(()), q, v))
    sc["initialized"].copy_(torch.where(init, 1.0, sc["initialized"]))
    shared = _commit(x, counts=finite, moving=move, bounced=bounced, p2=p2_new, disp=disp, owed=owed)
    return _stats(dict(
        shared, loss=x.loss, potential=pot, grad_norm=torch.sqrt(gsq), grad_sq=gsq, inputs_finite=finite,
        kick_finite=torch.ones_like(finite), invariant=torch.where(move, speed, NAN),
        invariant_error=torch.where(move, torch.abs(speed - 1.0), NAN), rescale=torch.where(move, c, NAN),
        kick_norm_excess=torch.where(move, p2_new - 1.0, NAN),
    ))


# ---------------------------------------------------------------------- BBI
def bbi_program(x: ECDInputs, *, v0: float, delta: float, cons: bool, eps1: float, eps2: float, t0: int, t1: int,
                nb: int, per_tensor_init: bool) -> dict[str, Tensor]:
    """One BBI step (:meth:`BBI._step`) on the device: a kick and drift, or a bounce that
    replaces π by the uniform noise of ``x.noise`` rescaled to the rescaled momentum's norm."""
    sc = x.scalars
    device, gsq, finite, pot, move = _first_checks(x, v0, eps2)
    p2 = _sumsq(_flat(x.moms), device)
    first = move & ~(sc["initialized"] > 0)
    v_zero = torch.where(first, pot, sc["V0"])
    energy = torch.where(first, pot + delta, sc["energy"])
    magnitude = torch.sqrt(torch.clamp(energy * energy / pot - pot, min=0.0))
    # π = −(g/‖g‖)·magnitude on first use, with the global norm or each tensor's own
    starts, p2_start = [], _zero(device)
    if per_tensor_init:
        for grads in x.grads:
            sq = [_sq(g) for g in grads]
            starts.append([torch.where(q > 0, -magnitude * torch.rsqrt(torch.where(q > 0, q, 1.0)), 0.0) for q in sq])
            for q in sq:
                p2_start = p2_start + torch.where(q > 0, magnitude * magnitude, 0.0)
    else:
        k = torch.where(gsq > 0, -magnitude * torch.rsqrt(torch.where(gsq > 0, gsq, 1.0)), 0.0)
        starts = [[k] * len(grads) for grads in x.grads]
        p2_start = torch.where(gsq > 0, magnitude * magnitude, 0.0)
    p2 = torch.where(first, p2_start, p2)
    moms = [[torch.where(first.reshape(()), g * _like(f, g), p) for g, p, f in zip(grads, ps, fs)]
            for grads, ps, fs in zip(x.grads, x.moms, starts)]

    target = pot * ((energy / pot) ** 2 - 1.0)
    r = torch.ones_like(p2)
    if cons:
        keep = (torch.abs(p2 - target) < eps1) | (target < 0)
        r = torch.where((p2 > 0) & ~keep, torch.sqrt(torch.clamp(target, min=0.0) / torch.where(p2 > 0, p2, 1.0)), r)
    p2r = r * r * p2
    invariant = pot * pot + pot * p2r
    error = torch.abs(invariant / (energy * energy) - 1.0)

    fixed_due = (sc["counter0"] == t0) & (sc["fixed_bounces"] < nb)
    bounce = move & (fixed_due | (sc["counter"] >= t1)) if x.noise is not None else torch.zeros_like(move)
    kick = move & ~bounce
    v_over_e = pot / energy
    coefs = [0.5 * dt * (v_over_e + 1.0 / v_over_e) for dt in x.dts]
    kicked, group_p2, p2_kick = _kick(x, moms, r, [(c, c) for c in coefs], device)
    noise = _flat(x.noise) if x.noise is not None else []
    u2 = _sumsq(noise, device)
    spread = torch.where(u2 > 0, torch.sqrt(p2r / torch.where(u2 > 0, u2, 1.0)), 1.0)
    disp = _zero(device)
    position = 0
    for params, bufs, qs, dt, gp2 in zip(x.params, x.moms, kicked, x.dts, group_p2):
        h = dt * v_over_e
        disp = disp + h * h * gp2
        for theta, buf, q in zip(params, bufs, qs):
            _write(theta, theta + _like(h, theta) * q, kick)
            new = q
            if noise:
                u = noise[position]
                new = torch.where(bounce.reshape(()), u * _like(spread, u), q)
            position += 1
            _write(buf, new, move)
    p2_new = torch.where(bounce, p2r, p2_kick)
    disp = torch.where(kick, disp, 0.0)

    # counters: a kick advances both (a new minimum of V resets the progress counter); a bounce
    # resets the progress counter and, when fixed, restarts the fixed one while bounces remain
    fixed = bounce & fixed_due
    fixed_after = sc["fixed_bounces"] + fixed.to(F64)
    record = kick & (pot < sc["min_V"])
    counter0 = torch.where(kick, sc["counter0"] + 1, torch.where(fixed, torch.where(
        fixed_after < nb, 0.0, sc["counter0"] + 1), sc["counter0"]))
    counter = torch.where(record | bounce, 0.0, torch.where(kick, sc["counter"] + 1, sc["counter"]))
    sc["min_V"].copy_(torch.where(record, pot, sc["min_V"]))
    sc["counter0"].copy_(counter0)
    sc["counter"].copy_(counter)
    sc["fixed_bounces"].copy_(fixed_after)
    sc["initialized"].copy_(torch.where(move, 1.0, sc["initialized"]))
    sc["V0"].copy_(v_zero)
    sc["energy"].copy_(energy)
    shared = _commit(x, counts=finite, moving=move, bounced=bounce, p2=p2_new, disp=disp, owed=None)
    return _stats(dict(
        shared, loss=x.loss, potential=pot, grad_norm=torch.sqrt(gsq), grad_sq=gsq, inputs_finite=finite,
        kick_finite=torch.ones_like(finite), invariant=torch.where(move, invariant, NAN),
        invariant_error=torch.where(move, error, NAN), energy=torch.where(move, energy, NAN),
        rescale=torch.where(move, r, NAN), fixed_bounce=fixed, counter0=sc["counter0"].clone(),
        counter=sc["counter"].clone(), fixed_bounces=sc["fixed_bounces"].clone(), min_V=sc["min_V"].clone(),
    ))

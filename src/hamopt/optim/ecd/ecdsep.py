r"""ECDSep: Energy Conserving Descent with a separable Hamiltonian and generalised bounces.

Potential ``F(θ) = L(θ) + ½ λ ‖θ‖² − F0`` and ``V = F^η``. The Hamiltonian
``H = log(s + ‖p‖²) + η log F`` is separable, and ``(s + ‖p‖²) · V = C`` is its invariant (kept
here in log form, ``η log F + log(s + ‖p‖²) = log C``, so large η neither overflows nor underflows).
Its equations of motion are ``θ' = 2p / (s + ‖p‖²)``, ``p' = −η ∇F / F``.

First (non-skipped) step: ``log C = η log F(θ0) + log(s + δE)``; ``p0 = −∇L(θ0) · √(δE) / ‖∇L(θ0)‖``
(0 when δE = 0 or the gradient is 0); ``P2 = ‖p0‖²``.

Each step with ``F > eps2`` (otherwise skipped: nothing changes, ``stats["skipped"]``):

1. rescale (consEn): ``P2* = C/V − s``; ``c = 1`` if ``|P2* − P2| < eps1``, ``P2* < 0`` or ``P2 = 0``,
   else ``c = √(P2*/P2)``. ``P2`` is measured from the momenta at the start of the step.
2. kick: ``p ← c p − Δt η / F · (∇L + λ θ)``; ``P2 = ‖p‖²``.
3. drift: ``θ ← θ + Δt · 2p / (s + P2)``.
4. bounce (ν > 0): ``u = p/‖p‖ + ν z``, ``z ~ N(0, I)`` from the optimiser's generator;
   ``p ← ‖p‖ u/‖u‖`` (norm kept; the final rescale is folded into the next step's first multiply,
   see :meth:`finalize_bounce`).

Norms and dot products run over all parameters together. ``lr`` (Δt) and ``weight_decay`` may
differ per param group; every other hyperparameter is optimiser-wide.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import _validation as V
from .. import kernels
from ..base import ParamSet
from . import _common as K
from . import _fused, _programs

__all__ = ["ECDSep", "bounce_"]



def bounce_(moms: list[Tensor], noise: list[Tensor], p2: float, nu: float, generator: torch.Generator | None,
            *, foreach: bool, draw: Callable[[list[Tensor]], None] | None = None) -> None:
    r"""The random part of the norm-keeping bounce ``p ← ‖p‖ u/‖u‖``, ``u = p/‖p‖ + ν z``,
    ``z ~ N(0, I)``: ``p ← p + ν ‖p‖ z`` (``p2 = ‖p‖²``). The positive rescale back to ``‖p‖² = p2``
    is left to the caller (:meth:`~hamopt.optim.base.HamoptOptimizer._renormalise`, or deferred).
    ``z`` is drawn from ``generator``, or by ``draw(noise)`` when given (sharded parameters)."""
    if draw is not None:
        draw(noise)
    else:
        kernels.fill_normal(noise, generator)  # type: ignore[arg-type]
    kernels.axpy(moms, noise, nu * math.sqrt(p2), foreach=foreach)


class ECDSep(K.ECDOptimizer):
    r"""Energy Conserving Descent with a separable Hamiltonian (see the module docstring).

    Args:
        params: parameters or param-group dicts.
        lr: the time step Δt > 0 (per group; LR schedulers act on it).
        eta: η ≥ 1, the concentration of the measure (``V = F^η``). Required.
        F0: the expected minimum of the loss (``F = L + ½λ‖θ‖² − F0``).
        nu: ν ≥ 0, the size of the random bounce (chaos); 0 makes the dynamics deterministic.
        s: the regularisation switch s ≥ 0 in ``(s + ‖p‖²) V``. If ``s ≠ 1`` the initial energy
            ``deltaEn`` is forced to 1, as the published code does (a warning says so when another
            non-zero value was given).
        deltaEn: δE ≥ 0, the initial ``‖p0‖²`` (extra energy above ``V0``).
        weight_decay: λ ≥ 0, an L2 term ``½λ‖θ‖²`` inside the potential (per group).
        consEn: rescale p every step so that the invariant holds exactly.
        eps1: tolerance below which no rescale is made. eps2: the step is skipped when ``F ≤ eps2``.
        seed: seed of the optimiser's ``torch.Generator`` (None: drawn once from the global RNG).
            Under ``torch.distributed`` rank 0's seed is broadcast to every rank.
        foreach: multi-tensor kernels (None: on). Both paths give identical numbers.
        fused: one read of p and g for the step's sums and one pass for kick, drift and bounce
            noise (hand-written CPU kernels, see :mod:`hamopt.optim.ecd._fused`; contiguous
            float32/float64 CPU tensors, one process). Equal to the eager step with ``nu = 0``;
            with ``nu > 0`` the noise comes from a counter-based generator keyed by ``seed`` and
            the step (reproducible and resumable, but not the eager step's draw).
        capturable: every per-step value (dt, the energies, the invariant, counters, the skip and
            bounce decisions, the non-finite guard) stays in device tensors: no host sync, the
            stats are 0-d tensors read when asked, and a non-finite loss or gradient leaves θ and
            the momenta untouched and sets ``stats["finite"]`` to False instead of raising. The
            bounce noise is drawn at every step and used only if the step bounces (see
            :mod:`hamopt.optim.ecd._tensor`). Not with ``fused=True``; one process.
        process_group: the ``torch.distributed`` process group the loss and the norms are reduced
            over (None: the default group; see :mod:`hamopt.optim.base`). Not saved in
            ``state_dict``; a pickled or deep-copied optimiser uses the default group.

    After each ``step(closure)`` ``opt.stats`` holds ``step, loss, potential (F), invariant
    (η log F + log(s + ‖p‖²) after the rescale), invariant_log_target (log C), invariant_error
    (|(s + ‖p‖²)V / C − 1| after the rescale), rescale (c), P2, grad_norm, displacement_sq, kinetic,
    skipped, skip_reason, bounced, skipped_steps, bounces``.
    """

    _name = "ECDSep"
    _buffer = "momentum"
    GLOBAL_OPTIONS = ("eta", "F0", "nu", "s", "deltaEn", "consEn", "eps1", "eps2", "foreach", "fused", "capturable")
    TENSOR_SCALARS = dict(K.ECDOptimizer.TENSOR_SCALARS, log_C="optional")
    _tensor_program = staticmethod(_programs.ecdsep_program)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor,
        *,
        eta: float,
        F0: float = 0.0,
        nu: float = 1e-5,
        s: float = 1.0,
        deltaEn: float = 0.0,
        weight_decay: float = 0.0,
        consEn: bool = True,
        eps1: float = 1e-10,
        eps2: float = 1e-40,
        seed: int | None = None,
        foreach: bool | None = None,
        fused: bool = False,
        capturable: bool = False,
        process_group: Any = None,
    ) -> None:
        defaults = dict(lr=lr, eta=eta, F0=F0, nu=nu, s=s, deltaEn=deltaEn, weight_decay=weight_decay,
                        consEn=consEn, eps1=eps1, eps2=eps2, foreach=foreach, fused=fused, capturable=capturable)
        super().__init__(params, defaults, seed=seed, process_group=process_group)

    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        K.check_common(options, where)
        K.check_fused(options, where)
        V.check_at_least(f"{where}eta", options["eta"], 1.0)
        K.check_finite(f"{where}F0", options["F0"])
        V.check_nonnegative(f"{where}nu", options["nu"])
        s = V.check_nonnegative(f"{where}s", options["s"])
        delta = V.check_nonnegative(f"{where}deltaEn", options["deltaEn"])
        if s != 1.0 and delta != 1.0:
            if delta != 0.0:
                warnings.warn(f"{where}s={s:g} != 1 forces deltaEn=1 (as the published ECDSep does); "
                              f"deltaEn={delta:g} is ignored", stacklevel=4)
            options["deltaEn"] = 1.0

    def _fresh_global_state(self) -> dict[str, Any]:
        glob = super()._fresh_global_state()
        glob["log_C"] = None
        return glob

    # ------------------------------------------------------------------ the tensor step
    def _tensor_config(self, sets: list[ParamSet]) -> dict[str, Any]:
        g = self.param_groups[0]
        return dict(eta=float(g["eta"]), F0=float(g["F0"]), nu=float(g["nu"]), s=float(g["s"]),
                    delta=float(g["deltaEn"]), cons=bool(g["consEn"]), eps1=float(g["eps1"]), eps2=float(g["eps2"]))

    def _tensor_noise(self, capturable: bool) -> tuple[str | None, bool]:
        return ("normal", True) if float(self.param_groups[0]["nu"]) > 0.0 else (None, False)

    def _tensor_host_stats(self, values: dict[str, Any], sets: list[ParamSet]) -> None:
        common = dict(loss=values["loss"], potential=values["potential"], grad_norm=values["grad_norm"])
        if values["skipped"]:
            self._skip(K.skip_reason(sets, values["potential"], self.param_groups[0]["eps2"], "F", "F0"), **common)
            return
        self._finish(invariant=values["invariant"], invariant_log_target=values["invariant_log_target"],
                     invariant_error=values["invariant_error"], rescale=values["rescale"], P2=values["P2"],
                     displacement_sq=values["displacement_sq"], bounced=bool(values["bounced"]), **common)

    # ------------------------------------------------------------------ one step
    def _step(self, loss_t: Tensor) -> None:
        if self.param_groups[0].get("fused"):
            _fused.ecdsep_step(self, loss_t)
            return
        glob = self._global
        opt = self.param_groups[0]
        eta, F0, nu, s = float(opt["eta"]), float(opt["F0"]), float(opt["nu"]), float(opt["s"])
        delta, cons, eps1, eps2 = float(opt["deltaEn"]), opt["consEn"], float(opt["eps1"]), float(opt["eps2"])
        fe = self._foreach()
        groups = self._gather()
        moms = [m for g in groups for m in g.moms]
        grads = [t for g in groups for t in g.grads]

        # sync 1: loss, ½λ‖θ‖², ‖p‖², ‖∇L‖²
        loss, wd, p2, gsq = self._to_host(*self._reduce_with_loss(loss_t, self._weight_decay_term(groups),
                                                                  self._sq_norm(moms), self._sq_norm(grads)))
        self._raise_if_nonfinite(loss, gsq)
        pot = loss + (wd or 0.0) - F0
        common = dict(loss=loss, potential=pot, grad_norm=math.sqrt(gsq))
        if not moms:
            self._skip("no parameter has a gradient this step", **common)
            return
        if not pot > eps2:
            self._skip(f"F = L + ½λ‖θ‖² − F0 = {pot:.6g} ≤ eps2 = {eps2:g}", **common)
            return
        log_v = eta * math.log(pot)
        owed, p2, _ = self._resolve_deferred(groups, p2)
        if not glob["initialized"]:
            glob["log_C"] = log_v + math.log(s + delta)
            if delta > 0.0 and gsq > 0.0:
                for m, g in zip(moms, grads):
                    m.copy_(g)
                kernels.scale(moms, -math.sqrt(delta / gsq), foreach=fe)
                p2 = delta
            glob["initialized"] = True
        log_c = glob["log_C"]

        # 1. rescale
        c, p2_rescaled, invariant, error = K.energy_rescale(log_c, log_v, p2, s, eps1, cons)

        # 2. kick (the scale also settles the last bounce's deferred rescale)
        kernels.scale(moms, c * owed, foreach=fe)
        for g in groups:
            coef = g.lr * eta / pot
            kernels.axpy(g.moms, g.grads, -coef, foreach=fe)
            if g.option("weight_decay"):
                kernels.axpy(g.moms, g.params, -coef * g.option("weight_decay"), foreach=fe)
        # sync 2: ‖p‖² per group
        group_p2 = self._to_host(*self._reduce(*[self._sq_norm(g.moms) for g in groups]))
        p2 = sum(group_p2)
        if not math.isfinite(p2):
            raise FloatingPointError(f"ECDSep: ‖p‖² = {p2} after the kick at step {glob['step']}")

        # 3. drift
        disp = 0.0
        if s + p2 > 0.0:
            for g, gp2 in zip(groups, group_p2):
                h = g.lr * 2.0 / (s + p2)
                kernels.axpy(g.params, g.moms, h, foreach=fe)
                disp += h * h * gp2

        # 4. bounce
        bounced = nu > 0.0 and p2 > 0.0
        if bounced:
            owners = [p for g in groups for p in g.owners]
            bounce_(moms, self._noise_buffers(moms), p2, nu, None, foreach=fe,
                    draw=lambda noise: self._fill(noise, owners, "normal"))
            self._defer_bounce_rescale(p2)
            glob["bounces"] += 1
        glob["P2"] = p2
        self._finish(invariant=invariant, invariant_log_target=log_c, invariant_error=error, rescale=c,
                     P2=p2, displacement_sq=disp, bounced=bounced, **common)

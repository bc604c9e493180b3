r"""ECDq1: unit-speed Energy Conserving Descent (q = 1), the variant used for transformers.

Potential ``F = L + ½ λ ‖θ‖² − F0``; ``G = ∇L + λθ``; ``d`` = the number of parameters that take
part in the step; time step ``Δt = lr / √η`` (per group). The velocity ``v`` lives on the unit
sphere: the invariant is ``‖v‖ = 1`` (the stationary measure concentrates as ``F^(−ηd/2)``).

First call (even when it is skipped): ``v = −∇L / ‖∇L‖`` (global norm; ``v = 0`` for a zero
gradient). A parameter that first gets a gradient later starts from ``v = 0``.

Each step with ``F > eps2`` (otherwise skipped: nothing changes, ``stats["skipped"]``):

1. rescale (consEn): ``v ← v / ‖v‖`` unless ``|1 − ‖v‖²| < eps1`` or ``v = 0``.
2. kick: ``v ← v − ½ Δt η d/(d−1) / F · (G − v ⟨v, G⟩)`` with the global dot product
   (``projection="global"``: the kick is tangent to the sphere, so ``‖v‖² − 1 = O(Δt²)``) or each
   tensor's own dot product (``"per_tensor"``, the published code's variant).
3. drift: ``θ ← θ + Δt v``.
4. bounce (ν > 0): ``u = v/‖v‖ + (ν/√d) z``, ``z ~ N(0, I)`` from the optimiser's generator;
   ``v ← ‖v‖ u/‖u‖`` (the final rescale is folded into the next step's first multiply, see
   :meth:`finalize_bounce`).

Nothing is rescaled twice: Δt and ν/√d are recomputed from the param groups at every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .. import _validation as V
from .. import kernels
from ..base import ParamSet
from . import _common as K
from . import _fused, _programs
from .ecdsep import bounce_

__all__ = ["ECDq1", "PROJECTIONS"]

PROJECTIONS = ("global", "per_tensor")


class ECDq1(K.ECDOptimizer):
    r"""Unit-speed ECD (see the module docstring).

    Args:
        params: parameters or param-group dicts.
        lr: > 0, per group; the time step is ``Δt = lr / √η``.
        eta: η > 0, the concentration of the measure. Required.
        F0: the expected minimum of the loss (default −1; the symmetry-breaking paper used
            F0 = 2, lr = 1, η = 100 for its 124M-parameter runs).
        nu: ν ≥ 0; the bounce adds ``(ν/√d) z``.
        weight_decay: λ ≥ 0, an L2 term ``½λ‖θ‖²`` inside F (per group).
        consEn: renormalise v to unit length every step.
        eps1: tolerance below which no rescale is made. eps2: the step is skipped when ``F ≤ eps2``.
        projection: ``"global"`` (default, sphere-exact) or ``"per_tensor"`` (published variant).
        seed: seed of the optimiser's ``torch.Generator`` (None: drawn once from the global RNG).
            Under ``torch.distributed`` rank 0's seed is broadcast to every rank.
        foreach: multi-tensor kernels (None: on). Both paths give identical numbers.
        fused: one read of v and g for the step's sums and one pass for kick, drift and bounce
            noise (hand-written CPU kernels, see :mod:`hamopt.optim.ecd._fused`; contiguous
            float32/float64 CPU tensors, one process). Equal to the eager step with ``nu = 0``;
            with ``nu > 0`` the noise comes from a counter-based generator keyed by ``seed`` and
            the step (reproducible and resumable, but not the eager step's draw).
        capturable: every per-step value (dt, the energies, the invariant, counters, the skip and
            bounce decisions, the non-finite guard) stays in device tensors: no host sync, the
            stats are 0-d tensors read when asked, and a non-finite loss or gradient leaves θ and
            the velocities untouched and sets ``stats["finite"]`` to False instead of raising. The
            bounce noise is drawn at every step and used only if the step bounces (see
            :mod:`hamopt.optim.ecd._tensor`). Not with ``fused=True``; one process.
        process_group: the ``torch.distributed`` process group the loss and the norms are reduced
            over (None: the default group; see :mod:`hamopt.optim.base`). Not saved in
            ``state_dict``; a pickled or deep-copied optimiser uses the default group.

    After each ``step(closure)`` ``opt.stats`` holds ``step, loss, potential (F), invariant (‖v‖
    after the rescale), invariant_error (|‖v‖ − 1| after the rescale), rescale, P2 (‖v‖² after the
    step), kick_norm_excess (‖v‖² − 1 right after the kick, before the bounce), d, grad_norm,
    displacement_sq, kinetic, skipped, skip_reason, bounced, skipped_steps, bounces``.
    """

    _name = "ECDq1"
    _buffer = "velocity"
    GLOBAL_OPTIONS = ("eta", "F0", "nu", "consEn", "eps1", "eps2", "projection", "foreach", "fused", "capturable")
    _tensor_program = staticmethod(_programs.ecdq1_program)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor,
        *,
        eta: float,
        F0: float = -1.0,
        nu: float = 0.1,
        weight_decay: float = 0.0,
        consEn: bool = True,
        eps1: float = 1e-10,
        eps2: float = 1e-40,
        projection: str = "global",
        seed: int | None = None,
        foreach: bool | None = None,
        fused: bool = False,
        capturable: bool = False,
        process_group: Any = None,
    ) -> None:
        defaults = dict(lr=lr, eta=eta, F0=F0, nu=nu, weight_decay=weight_decay, consEn=consEn, eps1=eps1,
                        eps2=eps2, projection=projection, foreach=foreach, fused=fused, capturable=capturable)
        super().__init__(params, defaults, seed=seed, process_group=process_group)

    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        K.check_common(options, where)
        K.check_fused(options, where)
        V.check_positive(f"{where}eta", options["eta"])
        K.check_finite(f"{where}F0", options["F0"])
        V.check_nonnegative(f"{where}nu", options["nu"])
        V.check_choice(f"{where}projection", options["projection"], PROJECTIONS)

    def _init_velocity(self, vels: list[Tensor], grads: list[Tensor]) -> None:
        """``v = −∇L/‖∇L‖`` on the device (0 for a zero gradient)."""
        fe = self._foreach()
        (gsq,) = self._reduce(self._sq_norm(grads))
        factor = torch.where(gsq > 0, -torch.rsqrt(torch.where(gsq > 0, gsq, 1.0)), 0.0)
        for v, g in zip(vels, grads):
            v.copy_(g)
        kernels.scale_by_tensor(vels, factor, foreach=fe)

    # ------------------------------------------------------------------ the tensor step
    def _tensor_config(self, sets: list[ParamSet]) -> dict[str, Any]:
        g = self.param_groups[0]
        d = sum(s.numel for s in sets)
        if any(s.moms for s in sets) and d < 2:
            raise ValueError(f"ECDq1 needs at least 2 parameters with a gradient (d/(d−1)); got d = {d}")
        return dict(eta=float(g["eta"]), F0=float(g["F0"]), nu=float(g["nu"]), cons=bool(g["consEn"]),
                    eps1=float(g["eps1"]), eps2=float(g["eps2"]), per_tensor=g["projection"] == "per_tensor", d=d)

    def _tensor_noise(self, capturable: bool) -> tuple[str | None, bool]:
        return ("normal", True) if float(self.param_groups[0]["nu"]) > 0.0 else (None, False)

    def _tensor_host_stats(self, values: dict[str, Any], sets: list[ParamSet]) -> None:
        common = dict(loss=values["loss"], potential=values["potential"], grad_norm=values["grad_norm"],
                      d=sum(s.numel for s in sets))
        if values["skipped"]:
            self._skip(K.skip_reason(sets, values["potential"], self.param_groups[0]["eps2"], "F", "F0"), **common)
            return
        self._finish(invariant=values["invariant"], invariant_error=values["invariant_error"],
                     rescale=values["rescale"], P2=values["P2"], kick_norm_excess=values["kick_norm_excess"],
                     displacement_sq=values["displacement_sq"], bounced=bool(values["bounced"]), **common)

    # ------------------------------------------------------------------ one step
    def _step(self, loss_t: Tensor) -> None:
        if self.param_groups[0].get("fused"):
            _fused.ecdq1_step(self, loss_t)
            return
        glob = self._global
        opt = self.param_groups[0]
        eta, F0, nu, cons = float(opt["eta"]), float(opt["F0"]), float(opt["nu"]), opt["consEn"]
        eps1, eps2 = float(opt["eps1"]), float(opt["eps2"])
        per_tensor = opt["projection"] == "per_tensor"
        fe = self._foreach()
        groups = self._gather()
        vels = [m for g in groups for m in g.moms]
        grads = [t for g in groups for t in g.grads]
        d = sum(g.numel for g in groups)
        if vels and d < 2:
            raise ValueError(f"ECDq1 needs at least 2 parameters with a gradient (d/(d−1)); got d = {d}")
        params = [p for g in groups for p in g.params]

        def v_dependent() -> list[Tensor]:
            """‖v‖² and ⟨v, G⟩ (the global sum, or one value per tensor)."""
            if not vels:
                return [torch.zeros((), dtype=torch.float64, device=self._device())]
            vg = kernels.dots(vels, grads)
            if any(g.option("weight_decay") for g in groups):
                lam = torch.tensor([g.option("weight_decay") for g in groups for _ in g.params], dtype=torch.float64,
                                   device=vg.device)
                vg = vg + lam * kernels.dots(vels, params)
            return [self._sq_norm(vels), vg if per_tensor else vg.sum()]

        # sync 1: loss, ½λ‖θ‖², ‖∇L‖², and once initialised ‖v‖², ⟨v, G⟩
        first = bool(vels) and not glob["initialized"]
        loss, wd, gsq, *vvals = self._to_host(
            *self._reduce_with_loss(loss_t, self._weight_decay_term(groups), self._sq_norm(grads),
                                    *([] if first else v_dependent()))
        )
        self._raise_if_nonfinite(loss, gsq)
        if first:  # once, even if this step is skipped below; one extra sync on this step only
            self._init_velocity(vels, grads)
            glob["initialized"] = True
            vvals = self._to_host(*self._reduce(*v_dependent()))
        p2, *vdots = vvals
        pot = loss + (wd or 0.0) - F0
        common = dict(loss=loss, potential=pot, grad_norm=math.sqrt(gsq), d=d)
        if not vels:
            self._skip("no parameter has a gradient this step", **common)
            return
        if not pot > eps2:
            self._skip(f"F = L + ½λ‖θ‖² − F0 = {pot:.6g} ≤ eps2 = {eps2:g}", **common)
            return

        owed, p2, applied = self._resolve_deferred(groups, p2)
        if applied:
            p2, *vdots = self._to_host(*self._reduce(*v_dependent()))
        elif owed != 1.0:  # ⟨v, G⟩ of the spec's v = owed · buffer
            vdots = [[owed * x for x in vdots[0]]] if per_tensor else [owed * vdots[0]]

        # 1. rescale
        c = 1.0
        if cons and p2 > 0.0 and not abs(1.0 - p2) < eps1:
            c = 1.0 / math.sqrt(p2)
        speed = c * math.sqrt(p2)
        error = abs(speed - 1.0)

        # 2. kick: v ← c(1 + a c⟨v,G⟩) v − a G  (⟨v,G⟩ global or per tensor, before the rescale;
        #    the buffer holds v / owed until this multiply)
        dots_per_tensor = vdots[0] if per_tensor else []
        offset = 0
        for g in groups:
            a = 0.5 * (g.lr / math.sqrt(eta)) * eta * d / (d - 1) / pot
            n = len(g.params)
            if per_tensor:
                kernels.scale_each(g.moms, [owed * c * (1.0 + a * c * x) for x in dots_per_tensor[offset:offset + n]],
                              foreach=fe)
            else:
                kernels.scale(g.moms, owed * c * (1.0 + a * c * vdots[0]), foreach=fe)
            kernels.axpy(g.moms, g.grads, -a, foreach=fe)
            if g.option("weight_decay"):
                kernels.axpy(g.moms, g.params, -a * g.option("weight_decay"), foreach=fe)
            offset += n
        # 3. drift
        for g in groups:
            kernels.axpy(g.params, g.moms, g.lr / math.sqrt(eta), foreach=fe)
        # sync 2: ‖v‖² per group
        group_p2 = self._to_host(*self._reduce(*[self._sq_norm(g.moms) for g in groups]))
        p2 = sum(group_p2)
        disp = sum((g.lr / math.sqrt(eta)) ** 2 * gp2 for g, gp2 in zip(groups, group_p2))

        # 4. bounce
        bounced = nu > 0.0 and p2 > 0.0
        if bounced:
            bounce_(vels, self._noise_buffers(vels), p2, nu / math.sqrt(d), None, foreach=fe,
                    draw=lambda noise: self._fill(noise, [p for g in groups for p in g.owners], "normal"))
            self._defer_bounce_rescale(p2)
            glob["bounces"] += 1
        glob["P2"] = p2
        self._finish(invariant=speed, invariant_error=error, rescale=c, P2=p2, kick_norm_excess=p2 - 1.0,
                     displacement_sq=disp, bounced=bounced, **common)

r"""BBI: Born-Infeld Energy Conserving Descent with fixed and progress-dependent bounces.

Potential ``V = L − v0`` (plus ``½ λ ‖θ‖²`` with weight decay). The invariant is
``E² = V² + V ‖π‖²`` with ``E = V0 + δE`` fixed at the first (non-skipped) step.

Each step with ``V > eps2`` (otherwise skipped: nothing changes, ``stats["skipped"]``):

1. momentum initialisation on first use: ``π = −(g/‖g‖) · √(E²/V0 − V0)`` with the global norm
   (``momentum_init="global"``, default) or each tensor's own norm (``"per_tensor"``, the
   published code: each tensor then starts with that magnitude). A zero gradient gives ``π = 0``.
   A parameter that first gets a gradient later starts from ``π = 0``.
2. rescale (consEn): ``π²* = V((E/V)² − 1)``; ``r = 1`` if ``|‖π‖² − π²*| < eps1``, ``π²* < 0`` or
   ``‖π‖ = 0``, else ``r = √(π²*/‖π‖²)``.
3. unless a bounce is due: ``π ← r π − ½ Δt (V/E + E/V) g``; ``θ ← θ + Δt (V/E) π``; both
   counters +1; if ``V`` is below the smallest value seen, record it and reset the progress
   counter to 0.
4. a bounce is due when the fixed counter equals ``threshold0`` (while fewer than
   ``n_fixed_bounces`` fixed bounces were made) or the progress counter reaches ``threshold``:
   θ is unchanged; ``π ← u · ‖rπ‖ / ‖u‖`` with ``u ~ U(−½, ½)`` per entry from the optimiser's
   generator (the norm of the rescaled momentum is kept, so the invariant holds after the bounce);
   after a fixed bounce the fixed counter restarts from 0 only while fewer than
   ``n_fixed_bounces`` were made (otherwise it keeps counting past the threshold, so no further
   fixed bounce happens); the progress counter resets to 0.

With ``threshold0 = T0`` and ``n_fixed_bounces = N_b`` the fixed bounces fall on steps
``T0, 2T0 + 1, …, N_b T0 + N_b − 1`` (0-based, counting only non-skipped steps).
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

__all__ = ["BBI", "MOMENTUM_INITS"]

MOMENTUM_INITS = ("global", "per_tensor")


class BBI(K.ECDOptimizer):
    r"""Born-Infeld ECD optimiser (see the module docstring).

    Args:
        params: parameters or param-group dicts.
        lr: the time step Δt > 0 (per group; LR schedulers act on it).
        v0: ΔV, the expected minimum of the loss (``V = L − v0``).
        threshold0: T0 ≥ 1, the period of the fixed bounces.
        threshold: T1 ≥ 1, the number of steps without a new minimum of V that triggers a bounce.
        n_fixed_bounces: N_b ≥ 0, how many fixed bounces are made in total.
        deltaEn: δE ≥ 0, the extra energy: ``E = V0 + δE``.
        weight_decay: λ ≥ 0, an L2 term ``½λ‖θ‖²`` inside V (per group).
        consEn: rescale π every step so that the invariant holds exactly.
        eps1: tolerance below which no rescale is made. eps2: the step is skipped when ``V ≤ eps2``.
        momentum_init: ``"global"`` (default) or ``"per_tensor"`` (the published code's variant).
        seed: seed of the optimiser's ``torch.Generator`` (None: drawn once from the global RNG).
            Under ``torch.distributed`` rank 0's seed is broadcast to every rank.
        foreach: multi-tensor kernels (None: on). Both paths give identical numbers.
        fused: one read of π and g for the step's sums and one pass for kick and drift
            (hand-written CPU kernels, see :mod:`hamopt.optim.ecd._fused`; contiguous
            float32/float64 CPU tensors, one process); bounces are drawn as in the eager step, so
            the numbers equal the eager step's to float rounding.
        capturable: every per-step value (dt, the energies, the invariant, counters, the skip and
            bounce decisions, the non-finite guard) stays in device tensors: no host sync, the
            stats are 0-d tensors read when asked, and a non-finite loss or gradient leaves θ and
            the momenta untouched and sets ``stats["finite"]`` to False instead of raising. The
            bounce noise is drawn at every step (the counters that decide a bounce live on the
            device) and used only if the step bounces (see :mod:`hamopt.optim.ecd._tensor`). Not
            with ``fused=True``; one process.
        process_group: the ``torch.distributed`` process group the loss and the norms are reduced
            over (None: the default group; see :mod:`hamopt.optim.base`). Not saved in
            ``state_dict``; a pickled or deep-copied optimiser uses the default group.

    After each ``step(closure)`` ``opt.stats`` holds ``step, loss, potential (V), energy (E),
    invariant (V² + V‖π‖² after the rescale), invariant_error (|invariant / E² − 1|), rescale (r),
    P2, grad_norm, displacement_sq, kinetic, skipped, skip_reason, bounced, bounce_kind ("fixed",
    "progress" or None), counter0, counter, fixed_bounces, min_V, skipped_steps, bounces``.
    """

    _name = "BBI"
    _buffer = "momentum"
    GLOBAL_OPTIONS = ("v0", "threshold0", "threshold", "n_fixed_bounces", "deltaEn", "consEn", "eps1",
                      "eps2", "momentum_init", "foreach", "fused", "capturable")
    TENSOR_SCALARS = dict(K.ECDOptimizer.TENSOR_SCALARS, energy="optional", V0="optional", counter0="int",
                          counter="int", fixed_bounces="int", min_V="float")
    _tensor_program = staticmethod(_programs.bbi_program)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor,
        *,
        v0: float = 0.0,
        threshold0: int = 1000,
        threshold: int = 3000,
        n_fixed_bounces: int = 1,
        deltaEn: float = 0.0,
        weight_decay: float = 0.0,
        consEn: bool = True,
        eps1: float = 1e-10,
        eps2: float = 1e-40,
        momentum_init: str = "global",
        seed: int | None = None,
        foreach: bool | None = None,
        fused: bool = False,
        capturable: bool = False,
        process_group: Any = None,
    ) -> None:
        defaults = dict(lr=lr, v0=v0, threshold0=threshold0, threshold=threshold,
                        n_fixed_bounces=n_fixed_bounces, deltaEn=deltaEn, weight_decay=weight_decay,
                        consEn=consEn, eps1=eps1, eps2=eps2, momentum_init=momentum_init, foreach=foreach,
                        fused=fused, capturable=capturable)
        super().__init__(params, defaults, seed=seed, process_group=process_group)

    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        K.check_common(options, where)
        K.check_fused(options, where)
        K.check_finite(f"{where}v0", options["v0"])
        K.check_int_at_least(f"{where}threshold0", options["threshold0"], 1)
        K.check_int_at_least(f"{where}threshold", options["threshold"], 1)
        K.check_int_at_least(f"{where}n_fixed_bounces", options["n_fixed_bounces"], 0)
        V.check_nonnegative(f"{where}deltaEn", options["deltaEn"])
        V.check_choice(f"{where}momentum_init", options["momentum_init"], MOMENTUM_INITS)

    def _fresh_global_state(self) -> dict[str, Any]:
        glob = super()._fresh_global_state()
        glob.update(energy=None, V0=None, counter0=0, counter=0, fixed_bounces=0, min_V=math.inf)
        return glob

    # ------------------------------------------------------------------ initialisation
    def _init_momenta(self, moms: list[Tensor], grads: list[Tensor], gsq: float, magnitude: float,
                      per_tensor: bool) -> float | None:
        """Fill π on first use; return ‖π‖² when it is known without a reduction."""
        fe = self._foreach()
        for m, g in zip(moms, grads):
            m.copy_(g)
        if not per_tensor:
            if gsq > 0.0:
                kernels.scale(moms, -magnitude / math.sqrt(gsq), foreach=fe)
                return magnitude * magnitude
            kernels.scale(moms, 0.0, foreach=fe)
            return 0.0
        (norms_sq,) = self._reduce(torch.stack([torch.linalg.vector_norm(g).to(torch.float64).square() for g in grads]))
        norms = norms_sq.sqrt()
        factors = torch.where(norms > 0, -magnitude / torch.where(norms > 0, norms, 1.0), 0.0)
        for m, f in zip(moms, factors.unbind()):
            m.mul_(f.to(m.dtype))
        return None

    # ------------------------------------------------------------------ the tensor step
    def _tensor_config(self, sets: list[ParamSet]) -> dict[str, Any]:
        g = self.param_groups[0]
        return dict(v0=float(g["v0"]), delta=float(g["deltaEn"]), cons=bool(g["consEn"]), eps1=float(g["eps1"]),
                    eps2=float(g["eps2"]), t0=int(g["threshold0"]), t1=int(g["threshold"]),
                    nb=int(g["n_fixed_bounces"]), per_tensor_init=g["momentum_init"] == "per_tensor")

    def _tensor_noise(self, capturable: bool) -> tuple[str | None, bool]:
        if capturable:
            return "uniform", True
        glob, g = self._global, self.param_groups[0]
        due = (glob["counter0"] == int(g["threshold0"]) and glob["fixed_bounces"] < int(g["n_fixed_bounces"])) \
            or glob["counter"] >= int(g["threshold"])
        return "uniform", due

    def _tensor_host_stats(self, values: dict[str, Any], sets: list[ParamSet]) -> None:
        common = dict(loss=values["loss"], potential=values["potential"], grad_norm=values["grad_norm"])
        if values["skipped"]:
            self._skip(K.skip_reason(sets, values["potential"], self.param_groups[0]["eps2"], "V", "v0"), **common,
                       **self._counters())
            return
        bounced = bool(values["bounced"])
        kind = ("fixed" if values["fixed_bounce"] else "progress") if bounced else None
        self._finish(invariant=values["invariant"], invariant_error=values["invariant_error"],
                     energy=values["energy"], rescale=values["rescale"], P2=values["P2"],
                     displacement_sq=values["displacement_sq"], bounced=bounced, bounce_kind=kind, **common,
                     **self._counters())

    # ------------------------------------------------------------------ one step
    def _step(self, loss_t: Tensor) -> None:
        glob = self._global
        opt = self.param_groups[0]
        v0, delta, cons = float(opt["v0"]), float(opt["deltaEn"]), opt["consEn"]
        eps1, eps2 = float(opt["eps1"]), float(opt["eps2"])
        t0, t1, nb = int(opt["threshold0"]), int(opt["threshold"]), int(opt["n_fixed_bounces"])
        fe = self._foreach()
        groups = self._gather()
        moms = [m for g in groups for m in g.moms]
        grads = [t for g in groups for t in g.grads]

        fused = bool(opt.get("fused"))
        # sync 1: loss, ½λ‖θ‖², ‖π‖², ‖g‖² (fused: one read of π and g, per-tensor sums kept)
        if fused:
            wd, p2, gsq, sums = _fused.sums_for_step(self, groups)
            loss = float(loss_t)
        else:
            loss, wd, p2, gsq = self._to_host(*self._reduce_with_loss(loss_t, self._weight_decay_term(groups),
                                                                      self._sq_norm(moms), self._sq_norm(grads)))
        self._raise_if_nonfinite(loss, gsq)
        pot = loss + (wd or 0.0) - v0
        common = dict(loss=loss, potential=pot, grad_norm=math.sqrt(gsq))
        if not moms:
            self._skip("no parameter has a gradient this step", **common, **self._counters())
            return
        if not pot > eps2:
            self._skip(f"V = L + ½λ‖θ‖² − v0 = {pot:.6g} ≤ eps2 = {eps2:g}", **common,
                       **self._counters())
            return
        if not glob["initialized"]:
            glob["V0"] = pot
            glob["energy"] = pot + delta
            magnitude = math.sqrt(max(0.0, glob["energy"] ** 2 / pot - pot))
            known = self._init_momenta(moms, grads, gsq, magnitude, opt["momentum_init"] == "per_tensor")
            (p2,) = self._to_host(*self._reduce(self._sq_norm(moms))) if known is None else (known,)
            if fused:  # the momentum sums changed
                sums = _fused.sums_for_step(self, groups)[3]
            glob["initialized"] = True
        energy = glob["energy"]

        # 1. rescale
        target = pot * ((energy / pot) ** 2 - 1.0)
        r = 1.0
        if cons and p2 > 0.0 and not (abs(p2 - target) < eps1 or target < 0.0):
            r = math.sqrt(target / p2)
        p2_rescaled = r * r * p2
        invariant = pot * pot + pot * p2_rescaled
        error = abs(invariant / (energy * energy) - 1.0)

        fixed_due = glob["counter0"] == t0 and glob["fixed_bounces"] < nb
        progress_due = glob["counter"] >= t1
        disp = 0.0
        if not (fixed_due or progress_due):
            # 2. kick and drift
            v_over_e, e_over_v = pot / energy, energy / pot
            if fused:  # one pass; the kicked ‖π‖² per group from the sums
                kicks = [0.5 * g.lr * (v_over_e + e_over_v) for g in groups]
                group_p2 = _fused.kick_drift(self, groups, sums, r, kicks, [g.lr * v_over_e for g in groups])
            else:
                kernels.scale(moms, r, foreach=fe)
                for g in groups:
                    coef = 0.5 * g.lr * (v_over_e + e_over_v)
                    kernels.axpy(g.moms, g.grads, -coef, foreach=fe)
                    if g.option("weight_decay"):
                        kernels.axpy(g.moms, g.params, -coef * g.option("weight_decay"), foreach=fe)
                    kernels.axpy(g.params, g.moms, g.lr * v_over_e, foreach=fe)
                # sync 2: ‖π‖² per group (the displacement and the next P2)
                group_p2 = self._to_host(*self._reduce(*[self._sq_norm(g.moms) for g in groups]))
            p2 = sum(group_p2)
            disp = sum((g.lr * v_over_e) ** 2 * gp2 for g, gp2 in zip(groups, group_p2))
            glob["counter0"] += 1
            glob["counter"] += 1
            if pot < glob["min_V"]:
                glob["min_V"] = pot
                glob["counter"] = 0
            kind = None
        else:
            # 3. bounce: random direction, norm of the rescaled momentum kept; θ unchanged
            noise = moms  # drawn in place: the old direction is discarded
            self._fill(noise, [p for g in groups for p in g.owners], "uniform")
            self._renormalise(moms, p2_rescaled)
            p2 = p2_rescaled
            kind = "fixed" if fixed_due else "progress"
            if fixed_due:
                glob["fixed_bounces"] += 1
                glob["counter0"] = 0 if glob["fixed_bounces"] < nb else glob["counter0"] + 1
            glob["counter"] = 0
            glob["bounces"] += 1
        glob["P2"] = p2
        self._finish(invariant=invariant, invariant_error=error, energy=energy, rescale=r, P2=p2,
                     displacement_sq=disp, bounced=kind is not None, bounce_kind=kind, **common,
                     **self._counters())

    def _counters(self) -> dict[str, Any]:
        glob = self._global
        return dict(counter0=glob["counter0"], counter=glob["counter"], fixed_bounces=glob["fixed_bounces"],
                    min_V=glob["min_V"])

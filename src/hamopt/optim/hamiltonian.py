r"""Shared machinery of the integrators of ``H(θ, p) = ½ Σ_i m_i ‖p_i‖² + L(θ)``.

:class:`HamiltonianOptimizer` owns what :class:`~hamopt.optim.Leapfrog` and
:class:`~hamopt.optim.Euler` have in common: option validation per param group, momentum state,
the inverse-mass rule, the energy reference ``H0`` and the energy cap, the non-finite guard, the
per-step ``stats`` and a ``state_dict`` that carries every scalar of the dynamics.

State layout (``torch.optim`` conventions):

* ``opt.state[param] == {"momentum": p}`` — exactly one tensor shaped like the parameter.
* ``opt.state["hamopt"]`` — optimiser-wide scalars: ``step``, ``H0``, ``H_last``,
  ``cap_engagements``, and in streaming mode ``pending`` (the stored momentum is the half-step
  ``p_{t+½}`` and its closing half-kick waits for the next gradient) with ``pending_dt`` (the dt of
  that half-kick, per param group). ``Optimizer.state_dict`` keeps non-tensor keys as they are, so
  these survive ``state_dict``/``load_state_dict``, ``torch.save`` and ``deepcopy``.

Energy cap (spec §4): after a step, if ``H > α H0``, ``p ← p · sqrt(max(ε, α H0 − L) / max(ε, K))``
with ``ε = 1e-12``. The cap and the mode are optimiser-wide (``H`` is one number over all
parameters); every other option may differ per param group.
"""

from __future__ import annotations

import abc
import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..errors import NonFiniteError
from . import _validation as V
from . import kernels
from .mass import inverse_mass, validate_mass

CAP_EPS = 1e-12
MODES = ("exact", "streaming")
GLOBAL_OPTIONS = ("mode", "cap", "foreach", "track_energy", "check_finite")


@dataclass
class _Group:
    """The tensors of one param group that take part in this step."""

    params: list[Tensor]
    grads: list[Tensor]
    moms: list[Tensor]
    inv_masses: list[float]
    dt: float
    gamma: float
    index: int


class HamiltonianOptimizer(Optimizer, abc.ABC):
    """Base class: validation, state, energy reference, cap, non-finite guard, stats."""

    _name = "HamiltonianOptimizer"

    def __init__(
        self,
        params: Any,
        lr: float | Tensor,
        *,
        gamma: float = 1e-3,
        mass: Any = "fan_in",
        mass_clip: tuple[float, float] = (0.125, 8.0),
        cap: float | None = 2.0,
        mode: str = "exact",
        foreach: bool | None = None,
        track_energy: bool = True,
        check_finite: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr,
            gamma=gamma,
            mass=mass,
            mass_clip=mass_clip,
            cap=cap,
            mode=mode,
            foreach=foreach,
            track_energy=track_energy,
            check_finite=check_finite,
            differentiable=False,
        )
        self._validate_options(defaults, where="")
        super().__init__(params, defaults)
        self.state["hamopt"] = self._fresh_global_state()
        self.stats: dict[str, Any] = self._empty_stats()
        self._warned_no_loss = False

    # ------------------------------------------------------------------ validation
    def _validate_options(self, options: dict[str, Any], where: str) -> None:
        V.check_positive(f"{where}lr", options["lr"])
        V.check_nonnegative(f"{where}gamma", options["gamma"])
        clip = validate_mass(options["mass"], options["mass_clip"])
        options["mass_clip"] = clip
        cap = options["cap"]
        if cap is not None:
            c = V.as_float(f"{where}cap", cap)
            if not math.isfinite(c) or c <= 1.0:
                raise ValueError(f"{where}cap must be None (no cap) or a finite number > 1; got {cap!r}")
        V.check_choice(f"{where}mode", options["mode"], MODES)
        V.check_optional_bool(f"{where}foreach", options["foreach"])
        for flag in ("track_energy", "check_finite"):
            if not isinstance(options[flag], bool):
                raise TypeError(f"{where}{flag} must be True or False; got {options[flag]!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        self._validate_options(group, where=f"param_groups[{index}].")
        V.check_params_supported(group["params"], self._name)
        first = self.param_groups[0]
        for key in GLOBAL_OPTIONS:
            if group[key] != first[key]:
                raise ValueError(
                    f"param_groups[{index}].{key}={group[key]!r} differs from the first group's "
                    f"{first[key]!r}: {key} is optimiser-wide (the energy H is one number over all parameters)"
                )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("track_energy", True)
            group.setdefault("check_finite", True)
            group.setdefault("differentiable", False)
        self.state.setdefault("hamopt", self._fresh_global_state())
        if not hasattr(self, "stats"):
            self.stats = self._empty_stats()
        if not hasattr(self, "_warned_no_loss"):
            self._warned_no_loss = False

    # ------------------------------------------------------------------ state
    @staticmethod
    def _fresh_global_state() -> dict[str, Any]:
        return {
            "step": 0,
            "H0": None,
            "H_last": None,
            "cap_engagements": 0,
            "pending": False,
            "pending_dt": {},
        }

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
            "step": None,
            "mode": None,
            "loss": None,
            "loss_after": None,
            "kinetic_before": None,
            "kinetic": None,
            "hamiltonian": None,
            "delta_h": None,
            "grad_norm": None,
            "cap_engaged": False,
            "cap_engagements": 0,
        }

    @property
    def _global(self) -> dict[str, Any]:
        return self.state["hamopt"]

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["state"]["hamopt"] = copy.deepcopy(sd["state"]["hamopt"])
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        glob = self.state.get("hamopt")
        fresh = self._fresh_global_state()
        fresh.update(copy.deepcopy(glob) if isinstance(glob, dict) else {})
        # JSON-like round trips turn int keys into str: normalise the per-group dt table.
        fresh["pending_dt"] = {int(k): float(v) for k, v in fresh["pending_dt"].items()}
        self.state["hamopt"] = fresh

    @property
    def cap_engagements(self) -> int:
        """Number of steps on which the energy cap rescaled the momentum."""
        return int(self._global["cap_engagements"])

    @property
    def mode(self) -> str:
        return self.param_groups[0]["mode"]

    # ------------------------------------------------------------------ helpers
    def _foreach(self) -> bool:
        flag = self.param_groups[0]["foreach"]
        if flag is not None:
            return flag
        return True  # foreach kernels run on every device torch supports, the CPU included

    def _gather(self) -> list[_Group]:
        """Tensors with a gradient this step, group by group; momenta created on first use."""
        groups = []
        for index, group in enumerate(self.param_groups):
            params, grads, moms, masses = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError(f"{self._name} does not support sparse gradients")
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                moms.append(state["momentum"])
                masses.append(inverse_mass(p, group["mass"], group["mass_clip"]))
            groups.append(
                _Group(params, grads, moms, masses, V.as_float("lr", group["lr"]), float(group["gamma"]), index)
            )
        return groups

    @staticmethod
    def _refresh_grads(groups: list[_Group]) -> None:
        """Re-read ``.grad`` after a closure call (``zero_grad`` may have replaced the tensors)."""
        for g in groups:
            if any(p.grad is None for p in g.params):
                raise RuntimeError(
                    "exact mode: the second closure call left some parameters without a gradient; "
                    "both calls must back-propagate the same loss on the same batch"
                )
            g.grads = [p.grad for p in g.params]

    def _kinetic(self, groups: list[_Group]) -> Tensor:
        moms = [m for g in groups for m in g.moms]
        masses = [m for g in groups for m in g.inv_masses]
        return kernels.kinetic_energy(moms, masses, foreach=self._foreach())

    def _grad_sq_and_kinetic(self, groups: list[_Group]) -> tuple[Tensor, Tensor]:
        """``Σ‖g_i‖²`` and ``K = ½ Σ m_i ‖p_i‖²`` from one batched reduction (0-d float64 tensors)."""
        grads = [t for g in groups for t in g.grads]
        moms = [m for g in groups for m in g.moms]
        if not grads:
            zero = torch.zeros((), dtype=torch.float64)
            return zero, zero
        sq = kernels.squared_norms(grads + moms, foreach=self._foreach())
        masses = torch.tensor([m for g in groups for m in g.inv_masses], dtype=torch.float64, device=sq.device)
        return sq[: len(grads)].sum(), 0.5 * torch.dot(sq[len(grads) :], masses)

    def kinetic_energy(self) -> float:
        """``K = ½ Σ m_i ‖p_i‖²`` of the stored momenta (in streaming mode: the half-step ones)."""
        moms, masses = [], []
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st and "momentum" in st:
                    moms.append(st["momentum"])
                    masses.append(inverse_mass(p, group["mass"], group["mass_clip"]))
        if not moms:
            return 0.0
        return float(kernels.kinetic_energy(moms, masses, foreach=self._foreach()).item())

    @staticmethod
    def _loss_tensor(loss: Any) -> Tensor | None:
        if loss is None:
            return None
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                raise ValueError(f"loss must be a scalar, got a tensor of shape {tuple(loss.shape)}")
            return loss.detach().reshape(()).to(torch.float64)
        return torch.tensor(float(loss), dtype=torch.float64)

    def _raise_if_nonfinite(self, loss: float | None, grad_sq: float) -> None:
        step = self._global["step"]
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteError("loss", step, loss)
        if not math.isfinite(grad_sq):
            raise NonFiniteError("gradient", step, math.sqrt(grad_sq) if grad_sq >= 0 else grad_sq,
                                 "the global gradient norm is not finite")

    def _cap_factor(self, loss: float | None, kinetic: float) -> float:
        """Spec §4: the momentum factor the cap asks for (1.0 when it does not act).

        Counts an engagement when the factor is not 1.
        """
        alpha = self.param_groups[0]["cap"]
        h0 = self._global["H0"]
        if alpha is None or loss is None or h0 is None or kinetic + loss <= alpha * h0:
            return 1.0
        self._global["cap_engagements"] += 1
        return math.sqrt(max(CAP_EPS, alpha * h0 - loss) / max(CAP_EPS, kinetic))

    def _needs_energy(self) -> bool:
        g = self.param_groups[0]
        return g["track_energy"] or g["cap"] is not None

    def _finish_stats(self, **values: Any) -> None:
        stats = self._empty_stats()
        stats.update(values)
        stats["mode"] = self.mode
        stats["cap_engagements"] = self.cap_engagements
        self.stats = stats

    def _warn_no_loss(self) -> None:
        if self.param_groups[0]["cap"] is not None and not self._warned_no_loss:
            warnings.warn(
                f"{self._name}.step() got neither a closure nor loss=...: the energy cap cannot act and "
                "loss, hamiltonian and delta_h are None. Pass opt.step(loss=loss) after "
                "loss.backward(), or cap=None to silence this.",
                stacklevel=3,
            )
            self._warned_no_loss = True

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One integrator step; returns the loss at θ_t (the closure's value, or ``loss``).

        Args:
            closure: re-evaluates the model on the current batch: zero the gradients, compute
                the loss, ``backward()``, return the loss. Required in ``mode="exact"`` (it is
                called twice, at θ_t and at θ_{t+1}, and must use the same batch both times).
            loss: streaming mode without a closure: the loss value already back-propagated
                (``loss.backward(); opt.step(loss=loss)``). It lets the energy cap act and fills
                ``loss``, ``hamiltonian`` and ``delta_h`` in ``stats``.
        """
        if self.mode == "exact":
            if closure is None:
                raise ValueError(
                    f"{self._name}(mode='exact').step() needs a closure that zeroes the gradients, "
                    "computes the loss on the current batch, calls backward() and returns the loss "
                    "(it is called twice per step); use mode='streaming' for a plain "
                    "loss.backward(); opt.step() loop"
                )
            if loss is not None:
                raise ValueError("pass either closure or loss=, not both")
            return self._step_exact(closure)
        if closure is not None:
            if loss is not None:
                raise ValueError("pass either closure or loss=, not both")
            with torch.enable_grad():
                loss = closure()
        return self._step_streaming(loss)

    def _call_closure(self, closure: Callable[[], Any]) -> Any:
        with torch.enable_grad():
            return closure()

    # ------------------------------------------------------------------ rollback (exact mode)
    def _snapshot(self, groups: list[_Group]) -> None:
        """Copy θ and p into scratch buffers so a failed second evaluation can restore them."""
        params = [t for g in groups for t in g.params]
        moms = [t for g in groups for t in g.moms]
        scratch = getattr(self, "_scratch", None)
        if scratch is None or len(scratch[0]) != len(params) or any(
            s.shape != p.shape or s.dtype != p.dtype or s.device != p.device for s, p in zip(scratch[0], params)
        ):
            scratch = ([torch.empty_like(p) for p in params], [torch.empty_like(m) for m in moms])
            self._scratch = scratch
        kernels.copy(scratch[0], params, foreach=self._foreach())
        kernels.copy(scratch[1], moms, foreach=self._foreach())

    def _restore(self, groups: list[_Group]) -> None:
        params = [t for g in groups for t in g.params]
        moms = [t for g in groups for t in g.moms]
        kernels.copy(params, self._scratch[0], foreach=self._foreach())
        kernels.copy(moms, self._scratch[1], foreach=self._foreach())

    def _sync(self, *values: Tensor | None) -> list[float | None]:
        """One host transfer for several 0-d tensors (None passes through)."""
        present = [v for v in values if v is not None]
        if not present:
            return [None] * len(values)
        device = present[0].device
        floats = iter(torch.stack([v.to(device=device, dtype=torch.float64) for v in present]).tolist())
        return [None if v is None else next(floats) for v in values]

    def _step_exact(self, closure: Callable[[], Any]) -> Any:
        """Exact mode: both gradients of the step on the batch the closure evaluates.

        ``ΔH = H_B(θ_{t+1}, p_{t+1}) − H_B(θ_t, p_t)`` is measured before the cap acts.
        """
        glob = self._global
        loss0 = self._call_closure(closure)
        l0t = self._loss_tensor(loss0)
        if l0t is None:
            raise ValueError(f"{self._name}(mode='exact'): the closure must return the loss")
        groups = self._gather()
        l0, gsq0, k0 = self._sync(l0t, *self._grad_sq_and_kinetic(groups))
        self._raise_if_nonfinite(l0, gsq0)
        if glob["H0"] is None:
            glob["H0"] = k0 + l0
        self._snapshot(groups)
        self._exact_first_half(groups)
        loss1 = self._call_closure(closure)
        l1t = self._loss_tensor(loss1)
        if l1t is None:
            self._restore(groups)
            raise ValueError(f"{self._name}(mode='exact'): the closure must return the loss")
        self._refresh_grads(groups)
        self._exact_second_half(groups)
        l1, gsq1, k1 = self._sync(l1t, *self._grad_sq_and_kinetic(groups))
        if not (math.isfinite(l1) and math.isfinite(gsq1) and math.isfinite(k1)):
            self._restore(groups)
            what = "loss" if not math.isfinite(l1) else "gradient"
            raise NonFiniteError(what, glob["step"], l1 if what == "loss" else gsq1,
                                 "detected at θ_{t+1}; θ_t and p_t were restored")
        delta_h = (k1 + l1) - (k0 + l0)
        factor = self._cap_factor(l1, k1)
        engaged = factor != 1.0
        kernels.scale([m for g in groups for m in g.moms], factor, foreach=self._foreach())
        k_after = k1 * factor * factor
        glob["H_last"] = k_after + l1
        self._finish_stats(
            step=glob["step"], loss=l0, loss_after=l1, kinetic_before=k0, kinetic=k_after, hamiltonian=k_after + l1,
            delta_h=delta_h, grad_norm=math.sqrt(gsq0), cap_engaged=engaged,
        )
        glob["step"] += 1
        return loss0

    def _step_streaming(self, loss: Any) -> Any:
        """Streaming mode: one gradient per step, the one already in ``.grad``.

        Everything the step needs to decide (finiteness, K and H of the full-step state, the cap)
        is reduced from the untouched tensors and read in ONE host transfer; the update is then a
        single pass (see :meth:`_streaming_kinetic` and :meth:`_streaming_advance`).

        ``stats`` describe the state at θ_t with the full-step momentum p_t (after any deferred
        half-kick): ``kinetic`` and ``hamiltonian`` at (θ_t, p_t) on this call's batch after the
        cap, and ``delta_h = H_{B_t}(θ_t, p_t) − H_{B_{t−1}}(θ_{t−1}, p_{t−1})``, the trajectory
        change of the previous step (None on the first call or without a loss); ``loss_after``
        is None.
        """
        glob = self._global
        lt = self._loss_tensor(loss)
        if lt is None:
            self._warn_no_loss()
        groups = self._gather()
        fe = self._foreach()
        energy = self._needs_energy()
        reduce = energy or self.param_groups[0]["check_finite"]
        grad_sq = [kernels.squared_norms(g.grads, foreach=fe) if g.grads and reduce else None for g in groups]
        present = [v for v in grad_sq if v is not None]
        gsq_t = torch.stack([v.sum() for v in present]).sum() if present else None
        kin_t = self._streaming_kinetic(groups, grad_sq) if energy and present else None
        lval, gsq, kinetic = self._sync(lt, gsq_t, kin_t)
        self._raise_if_nonfinite(lval, 0.0 if gsq is None else gsq)
        hamiltonian = delta_h = None
        factor = 1.0
        if kinetic is not None and lval is not None:
            hamiltonian = kinetic + lval
            if glob["H0"] is None:
                glob["H0"] = hamiltonian
            if glob["H_last"] is not None:
                delta_h = hamiltonian - glob["H_last"]
            factor = self._cap_factor(lval, kinetic)
            kinetic *= factor * factor
            hamiltonian = kinetic + lval
            glob["H_last"] = hamiltonian
        self._streaming_advance(groups, cap_factor=factor)
        self._finish_stats(
            step=glob["step"], loss=lval, kinetic=kinetic, hamiltonian=hamiltonian, delta_h=delta_h,
            grad_norm=None if gsq is None else math.sqrt(gsq), cap_engaged=factor != 1.0,
        )
        glob["step"] += 1
        return loss

    # ------------------------------------------------------------------ integrator hooks
    @abc.abstractmethod
    def _exact_first_half(self, groups: list[_Group]) -> None:
        """Exact mode, with ∇L(θ_t) in ``groups``: move (θ_t, p_t) as far as one gradient allows."""

    @abc.abstractmethod
    def _exact_second_half(self, groups: list[_Group]) -> None:
        """Exact mode, with ∇L(θ_{t+1}) in ``groups``: finish p_{t+1}."""

    @abc.abstractmethod
    def _streaming_kinetic(self, groups: list[_Group], grad_sq: list[Tensor | None]) -> Tensor:
        """Streaming mode: K of the full-step momentum p_t as a 0-d tensor, computed from the
        stored state and the gradients without modifying them (``grad_sq[i]`` holds group i's
        per-tensor ``‖g‖²``)."""

    @abc.abstractmethod
    def _streaming_advance(self, groups: list[_Group], *, cap_factor: float) -> None:
        """Streaming mode: advance the stored state by one step, with p_t scaled by
        ``cap_factor`` first (1.0 when the cap does not act)."""

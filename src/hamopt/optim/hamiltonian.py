r"""Shared machinery of the integrators of ``H(θ, p) = ½ Σ_i m_i ‖p_i‖² + L(θ)``.

:class:`HamiltonianOptimizer` owns what :class:`~hamopt.optim.Leapfrog` and
:class:`~hamopt.optim.Euler` have in common on top of :class:`~hamopt.optim.base.HamoptOptimizer`:
their options, the inverse-mass rule (a callable is checked on every parameter at construction),
the energy reference ``H0`` and the energy cap, the two modes and the per-step ``stats``.

State layout (``torch.optim`` conventions):

* ``opt.state[param]["momentum"]`` — exactly one tensor shaped like the parameter.
* optimiser-wide scalars, read with ``opt.global_state`` (stored with the first parameter's state,
  see :mod:`hamopt.optim.base`): ``step``, ``H0``, ``H_last``, ``cap_engagements``, and in
  streaming mode ``pending`` (the stored momentum is the half-step ``p_{t+½}`` and its closing
  half-kick waits for the next gradient) with ``pending_dt`` (the dt of that half-kick, per param
  group). They survive ``state_dict``/``load_state_dict``, ``torch.save`` /
  ``torch.load(weights_only=True)``, ``deepcopy`` and distributed checkpointing.

Distributed training (see :mod:`hamopt.optim.base`): the loss each rank gives (the closure's
value or ``loss=``) is its local mean loss on an equal-sized local batch; ``stats``, the energy
reference and the cap use the mean over the ranks, the global loss, and the global K and ‖g‖²,
so every rank takes the same decisions. In exact mode both closure calls are reduced so.

Energy cap (spec §4): after a step, if ``H > α H0``, ``p ← p · sqrt(max(ε, α H0 − L) / max(ε, K))``
with ``ε = 1e-12``. The cap and the mode are optimiser-wide (``H`` is one number over all
parameters); every other option may differ per param group.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import NonFiniteError
from . import _distributed as D
from . import _validation as V
from . import fused_step, kernels, tensor_step
from .base import HamoptOptimizer, ParamSet
from .mass import check_mass_on, inverse_mass, validate_mass

CAP_EPS = 1e-12
MODES = ("exact", "streaming")
GLOBAL_OPTIONS = ("mode", "cap", "foreach", "track_energy", "check_finite", "capturable", "fused")


class HamiltonianOptimizer(HamoptOptimizer):
    """Base class of Leapfrog and Euler: options, mass, energy reference, cap, modes, stats."""

    _name = "HamiltonianOptimizer"
    _integrator = "leapfrog"  # which streaming update the tensor step applies
    _buffer = "momentum"
    GLOBAL_OPTIONS = GLOBAL_OPTIONS
    GLOBAL_REASON = "the energy H is one number over all parameters"
    LOAD_MUST_MATCH = ("mode",)
    LEGACY_STATE_KEY = "hamopt"

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
        capturable: bool = False,
        fused: bool = False,
        process_group: Any = None,
    ) -> None:
        defaults = dict(lr=lr, gamma=gamma, mass=mass, mass_clip=mass_clip, cap=cap, mode=mode, foreach=foreach,
                        track_energy=track_energy, check_finite=check_finite, capturable=capturable, fused=fused)
        super().__init__(params, defaults, process_group=process_group)
        self.stats: dict[str, Any] = self._empty_stats()
        self._warned_no_loss = False
        self._compiled_program: Callable[..., Any] | None = None

    # ------------------------------------------------------------------ validation
    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        V.check_positive(f"{where}lr", options["lr"])
        V.check_nonnegative(f"{where}gamma", options["gamma"])
        options["mass_clip"] = validate_mass(options["mass"], options["mass_clip"])
        cap = options["cap"]
        if cap is not None:
            c = V.as_float(f"{where}cap", cap)
            if not math.isfinite(c) or c <= 1.0:
                raise ValueError(f"{where}cap must be None (no cap) or a finite number > 1; got {cap!r}")
        V.check_choice(f"{where}mode", options["mode"], MODES)
        V.check_optional_bool(f"{where}foreach", options["foreach"])
        for flag in ("track_energy", "check_finite", "capturable", "fused"):
            if not isinstance(options[flag], bool):
                raise TypeError(f"{where}{flag} must be True or False; got {options[flag]!r}")
        for flag in ("capturable", "fused"):
            if options[flag] and options["mode"] != "streaming":
                raise ValueError(f"{where}{flag}=True needs mode='streaming' (the exact mode calls the closure "
                                 f"twice and decides on the host); got mode={options['mode']!r}")

    def _validate_params(self, params: list[Tensor], options: dict[str, Any], where: str) -> None:
        """A mass callable is evaluated on every parameter now, so a bad rule fails here."""
        if callable(options["mass"]):
            for i, p in enumerate(params):
                check_mass_on(options["mass"], p, f"{where}mass", i)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if not hasattr(self, "stats"):
            self.stats = self._empty_stats()
        if not hasattr(self, "_warned_no_loss"):
            self._warned_no_loss = False
        self._compiled_program = None

    # ------------------------------------------------------------------ state
    def _fresh_global_state(self) -> dict[str, Any]:
        # one pending_dt entry per group from the start (None: no half-kick owed yet), so that the
        # state of a fresh optimiser has the keys of a trained one's (distributed checkpointing
        # loads only the keys of the state it loads into)
        return {"step": 0, "H0": None, "H_last": None, "cap_engagements": 0, "pending": False,
                "pending_dt": {i: None for i in range(len(self.param_groups))}}

    def _after_load(self) -> None:
        # JSON-like round trips turn int keys into str: normalise the per-group dt table.
        # a capturable optimiser's scalars are tensors: every loaded state starts as Python numbers
        # (the capturable step turns them into device tensors on its first call)
        tensor_step.to_float_form(self._global)

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {"step": None, "mode": None, "loss": None, "loss_after": None, "kinetic_before": None, "kinetic": None,
                "hamiltonian": None, "delta_h": None, "grad_norm": None, "cap_engaged": False, "cap_engagements": 0}

    @property
    def cap_engagements(self) -> int:
        """Number of steps on which the energy cap rescaled the momentum."""
        return int(self._global["cap_engagements"])

    @property
    def mode(self) -> str:
        return self.param_groups[0]["mode"]

    # ------------------------------------------------------------------ helpers
    def _extend_set(self, pset: ParamSet) -> None:
        g = pset.options
        pset.inv_masses = [inverse_mass(p, g["mass"], g["mass_clip"]) for p in pset.owners]

    def _refresh_grads(self, sets: list[ParamSet]) -> None:
        """Re-read ``.grad`` after the second closure call."""
        for s in sets:
            missing = sum(p.grad is None for p in s.owners)
            if missing:
                raise RuntimeError(
                    f"{self._name}(mode='exact'): the second closure call left {missing} parameter(s) without a "
                    "gradient (did it call loss.backward()?); both calls must back-propagate the same loss on the "
                    "same batch. θ_t and p_t were restored"
                )
            s.grads = [D.local(p.grad) for p in s.owners] if self._sharded else [p.grad for p in s.owners]

    def _kinetic(self, sets: list[ParamSet]) -> Tensor:
        moms = [m for s in sets for m in s.moms]
        masses = [m for s in sets for m in s.inv_masses]
        return kernels.kinetic_energy(moms, masses, foreach=self._foreach())

    def _grad_sq_and_kinetic(self, sets: list[ParamSet]) -> list[Tensor]:
        """``Σ‖g_i‖²`` and ``K = ½ Σ m_i ‖p_i‖²`` of this process's elements from one batched norm
        (0-d float64, not yet reduced)."""
        grads = [t for s in sets for t in s.grads]
        moms = [m for s in sets for m in s.moms]
        if not grads:
            zero = torch.zeros((), dtype=torch.float64, device=self._device())
            return [zero, zero]
        sq = kernels.squared_norms(grads + moms, foreach=self._foreach())
        return [sq[: len(grads)].sum(), 0.5 * torch.dot(sq[len(grads):], self._mass_vector(sets, sq.device))]

    def _mass_vector(self, sets: list[ParamSet], device: torch.device) -> Tensor:
        """The sets' inverse masses as a float64 vector on ``device``, kept while they do not change
        (an exact step needs it twice; a new tensor per call is most of a small problem's cost)."""
        key = (tuple(m for s in sets for m in s.inv_masses), device)
        cached = getattr(self, "_mass_vector_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, torch.tensor(key[0], dtype=torch.float64, device=device))
            self._mass_vector_cache = cached
        return cached[1]

    def kinetic_energy(self) -> float:
        """``K = ½ Σ m_i ‖p_i‖²`` of the stored momenta (in streaming mode: the half-step ones).

        With sharded parameters under ``torch.distributed`` this is a collective (every rank must
        call it); with replicated ones (DDP) it is local and already global."""
        moms, masses = [], []
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st and "momentum" in st:
                    moms.append(D.local(st["momentum"]) if self._sharded else st["momentum"])
                    masses.append(inverse_mass(p, group["mass"], group["mass_clip"]))
        if not moms:
            return 0.0
        (k,) = self._reduce(kernels.kinetic_energy(moms, masses, foreach=self._foreach()))
        return float(k.item())

    def _cap_factor(self, loss: float | None, kinetic: float) -> float:
        """Spec §4: the momentum factor the cap asks for (1.0 when it does not act); counts an
        engagement when the factor is not 1."""
        alpha = self.param_groups[0]["cap"]
        h0 = self._global["H0"]
        if alpha is None or loss is None or h0 is None or kinetic + loss <= alpha * h0:
            return 1.0
        self._global["cap_engagements"] += 1
        return math.sqrt(max(CAP_EPS, alpha * h0 - loss) / max(CAP_EPS, kinetic))

    def _streaming_energy(
        self, loss: float | None, kinetic: float | None
    ) -> tuple[float | None, float | None, float | None, float]:
        """A streaming step's energy accounting before its update: H = K + L (the first sets
        H0), ΔH against the previous step's H, then the cap (spec §4) with factor f scales the
        momenta, so K ← f²K and H ← K + L becomes the new H_last. Returns ``(K, H, ΔH, f)``; all
        ``None`` (and f = 1) without a loss or a kinetic energy."""
        if kinetic is None or loss is None:
            return kinetic, None, None, 1.0
        glob = self._global
        hamiltonian = kinetic + loss
        if glob["H0"] is None:
            glob["H0"] = hamiltonian
        delta_h = None if glob["H_last"] is None else hamiltonian - glob["H_last"]
        factor = self._cap_factor(loss, kinetic)
        kinetic *= factor * factor
        hamiltonian = kinetic + loss
        glob["H_last"] = hamiltonian
        return kinetic, hamiltonian, delta_h, factor

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

        Under ``torch.compile``, and with ``capturable=True`` or ``fused=True``, a streaming step
        keeps every per-step value in device tensors (:mod:`hamopt.optim.tensor_step`); an exact
        step under ``torch.compile`` runs eagerly (one graph break).
        """
        if torch.compiler.is_compiling():
            return self._step_tensor(closure, loss)
        g = self.param_groups[0]
        if g["fused"] and not g["capturable"] and fused_step.applies(self):
            if closure is not None:
                if loss is not None:
                    raise ValueError("pass either closure or loss=, not both")
                return fused_step.streaming_step(self, self._call_closure(closure), source="the closure")
            return fused_step.streaming_step(self, loss, source="loss=")
        if g["capturable"] or g["fused"]:
            return self._step_tensor(closure, loss)
        return self._step_eager(closure, loss)

    def _step_eager(self, closure: Callable[[], Any] | None, loss: Any) -> Any:
        """The eager step: decisions on the host, in Python floats."""
        if self.mode == "exact":
            if closure is None:
                raise ValueError(
                    f"{self._name}(mode='exact').step() needs a closure that zeroes the gradients, "
                    "computes the loss on the current batch, calls backward() and returns the loss "
                    "(it is called twice per step); use mode='streaming' for a plain "
                    "loss.backward(); opt.step() loop"
                )
            if loss is not None:
                raise ValueError("mode='exact' takes the loss from the closure; do not pass loss=")
            return self._step_exact(closure)
        if closure is not None:
            if loss is not None:
                raise ValueError("pass either closure or loss=, not both")
            return self._step_streaming(self._call_closure(closure), source="the closure")
        return self._step_streaming(loss, source="loss=")

    def _step_tensor(self, closure: Callable[[], Any] | None, loss: Any) -> Any:
        """Streaming mode with every per-step value in a device tensor (see
        :mod:`hamopt.optim.tensor_step`): under ``torch.compile``, with ``capturable=True`` and
        with ``fused=True`` (the whole update compiled by Inductor into a few loops over memory).
        Only the program between :func:`~hamopt.optim.tensor_step.prepare` and
        :func:`~hamopt.optim.tensor_step.finish` is traced."""
        value, inputs, sets, config = tensor_step.prepare(self, closure, loss)
        if inputs is None:  # exact mode under torch.compile: the eager step ran
            return value
        integrator, cap, energy, check, fused = config
        program = tensor_step.streaming_program
        if fused and not torch.compiler.is_compiling():
            if tensor_step.fused_cpu_supported(inputs):
                program = tensor_step.fused_cpu_program
            else:
                if self._compiled_program is None:
                    self._compiled_program = tensor_step.compiled_program()
                program = self._compiled_program
        stats = program(inputs, integrator=integrator, cap=cap, energy=energy, check=check)
        tensor_step.finish(self, inputs, sets, stats)
        return value

    def _step_exact(self, closure: Callable[[], Any]) -> Any:
        """Exact mode: both gradients of the step on the batch the closure evaluates.

        ``ΔH = H_B(θ_{t+1}, p_{t+1}) − H_B(θ_t, p_t)`` is measured before the cap acts. Any failure
        after the first half (the second closure call raising or returning something other than a
        scalar loss, a missing gradient, a non-finite value) restores θ_t and p_t bit for bit.
        """
        glob = self._global
        loss0 = self._call_closure(closure)
        l0t = self._loss_tensor(loss0)
        if l0t is None:
            raise ValueError(f"{self._name}(mode='exact'): the closure must return the loss; it returned None")
        sets = self._gather()
        l0, gsq0, k0 = self._to_host(*self._reduce_with_loss(l0t, *self._grad_sq_and_kinetic(sets)))
        self._raise_if_nonfinite(l0, gsq0)
        with self._rollback_on_failure(sets):
            self._exact_first_half(sets)
            for s in sets:
                for p in s.owners:
                    p.grad = None  # a second call that skips backward() leaves them None
            loss1 = self._call_closure(closure)
            l1t = self._loss_tensor(loss1)
            if l1t is None:
                raise ValueError(f"{self._name}(mode='exact'): the closure must return the loss; the second call "
                                 "returned None. θ_t and p_t were restored")
            self._refresh_grads(sets)
            self._exact_second_half(sets)
            l1, gsq1, k1 = self._to_host(*self._reduce_with_loss(l1t, *self._grad_sq_and_kinetic(sets)))
            if not (math.isfinite(l1) and math.isfinite(gsq1) and math.isfinite(k1)):
                what = "loss" if not math.isfinite(l1) else "gradient"
                raise NonFiniteError(what, glob["step"], l1 if what == "loss" else gsq1,
                                     "detected at θ_{t+1}; θ_t and p_t were restored")
        if glob["H0"] is None:
            glob["H0"] = k0 + l0
        delta_h = (k1 + l1) - (k0 + l0)
        factor = self._cap_factor(l1, k1)
        kernels.scale([m for s in sets for m in s.moms], factor, foreach=self._foreach())
        k_after = k1 * factor * factor
        glob["H_last"] = k_after + l1
        self._finish_stats(
            step=glob["step"], loss=l0, loss_after=l1, kinetic_before=k0, kinetic=k_after, hamiltonian=k_after + l1,
            delta_h=delta_h, grad_norm=math.sqrt(gsq0), cap_engaged=factor != 1.0,
        )
        glob["step"] += 1
        return loss0

    def _step_streaming(self, loss: Any, *, source: str) -> Any:
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
        lt = self._loss_tensor(loss, source)
        if lt is None:
            self._warn_no_loss()
        sets = self._gather()
        fe = self._foreach()
        energy = self._needs_energy()
        reduce = energy or self.param_groups[0]["check_finite"]
        grad_sq = [kernels.squared_norms(s.grads, foreach=fe) if s.grads and reduce else None for s in sets]
        present = [v for v in grad_sq if v is not None]
        gsq_t = torch.stack([v.sum() for v in present]).sum() if present else None
        kin_t = self._streaming_kinetic(sets, grad_sq) if energy and present else None
        lval, gsq, kinetic = self._to_host(*self._reduce_with_loss(lt, gsq_t, kin_t))
        try:
            self._raise_if_nonfinite(lval, gsq)
        except NonFiniteError:
            # a buffer kept from a refused step would no longer count as new, and would owe a half-kick
            self._drop_fresh_buffers(sets)
            raise
        kinetic, hamiltonian, delta_h, factor = self._streaming_energy(lval, kinetic)
        self._streaming_advance(sets, cap_factor=factor)
        self._finish_stats(
            step=glob["step"], loss=lval, kinetic=kinetic, hamiltonian=hamiltonian, delta_h=delta_h,
            grad_norm=None if gsq is None else math.sqrt(gsq), cap_engaged=factor != 1.0,
        )
        glob["step"] += 1
        return loss

    # ------------------------------------------------------------------ integrator hooks
    @abc.abstractmethod
    def _exact_first_half(self, sets: list[ParamSet]) -> None:
        """Exact mode, with ∇L(θ_t) in ``sets``: move (θ_t, p_t) as far as one gradient allows."""

    @abc.abstractmethod
    def _exact_second_half(self, sets: list[ParamSet]) -> None:
        """Exact mode, with ∇L(θ_{t+1}) in ``sets``: finish p_{t+1}."""

    @abc.abstractmethod
    def _streaming_kinetic(self, sets: list[ParamSet], grad_sq: list[Tensor | None]) -> Tensor:
        """Streaming mode: K of the full-step momentum p_t as a 0-d tensor (not yet reduced),
        computed from the stored state and the gradients without modifying them (``grad_sq[i]``
        holds set i's per-tensor ``‖g‖²``)."""

    @abc.abstractmethod
    def _streaming_advance(self, sets: list[ParamSet], *, cap_factor: float) -> None:
        """Streaming mode: advance the stored state by one step, with p_t scaled by
        ``cap_factor`` first (1.0 when the cap does not act)."""

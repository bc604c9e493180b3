r"""What the Energy Conserving Descent optimisers (:class:`ECDSep`, :class:`BBI`, :class:`ECDq1`)
share on top of :class:`~hamopt.optim.base.HamoptOptimizer`: the owned random generator, the
optimiser-wide scalars of the family, the deferred bounce rescale, the closure/skip/stats plumbing
and the checks of their common options.

Reductions stay 0-d tensors on the parameters' device; each optimiser collects the few host floats
a step needs (the loss, the skip test, the rescale factor, the stats) with one host transfer per
sync point (:meth:`~hamopt.optim.base.HamoptOptimizer._to_host`), after combining them in
:meth:`~hamopt.optim.base.HamoptOptimizer._reduce`.

The norm-keeping bounce of ECDSep and ECDq1 adds the noise, ``p ← p + α z``, and defers the
rescale back to ``‖p‖² = P2`` to the next step's first multiply (``pending_norm_sq``): the next
step measures ``‖p‖²`` anyway, so this saves a reduction and a pass over the momenta.
:meth:`ECDOptimizer.finalize_bounce` applies it on demand.

Optimiser-wide scalars (read with ``opt.global_state``): ``step``, ``initialized``,
``skipped_steps``, ``bounces``, ``P2``, ``displacement_sq``, ``seed``, ``generator_state`` (a
``torch.uint8`` tensor, filled by ``state_dict``), ``pending_norm_sq`` and each optimiser's own.
The generator is created on first use, on the parameters' device, so an optimiser built on
``meta`` parameters works after ``module.to_empty(device=...)``.

Distributed training (see :mod:`hamopt.optim.base` for the reductions): the loss the closure
returns is each rank's local mean loss on an equal-sized local batch, and the dynamics use the
mean over the ranks. The seed is broadcast from rank 0 of the process group when the optimiser
is built (``seed=None``: every rank draws one from its global RNG, as in one process, and rank
0's draw is used), so every rank owns an identical generator and takes identical bounce
decisions. With sharded parameters each rank draws a bounce's noise for the full shape of every
tensor and keeps its own shard: the noise of a shard is the one-process noise restricted to it.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import _distributed as D
from .. import _validation as V
from .. import kernels
from .._checkpoint import GLOBAL_KEY
from ..base import HamoptOptimizer, ParamSet
from . import _tensor


class ECDOptimizer(HamoptOptimizer):
    """Generator, closure, skip and stats shared by the ECD optimisers.

    Subclasses set ``_name``, ``_buffer``, ``GLOBAL_OPTIONS`` and ``TENSOR_SCALARS`` and implement
    ``_validate_group``, ``_step`` and the hooks of the tensor step (:mod:`._tensor`):
    ``_tensor_program``, ``_tensor_config``, ``_tensor_noise`` and ``_tensor_host_stats``.
    """

    _name = "ECDOptimizer"
    GLOBAL_REASON = ("the potential and the invariant are one number over all parameters; only lr and "
                     "weight_decay may differ per group")
    LEGACY_STATE_KEY = "ecd"
    # the optimiser-wide scalars the tensor step keeps as tensors, and their Python types
    TENSOR_SCALARS: dict[str, str] = {
        "step": "int", "initialized": "bool", "skipped_steps": "int", "bounces": "int", "P2": "float",
        "displacement_sq": "float", "pending_norm_sq": "optional",
    }

    def __init__(self, params: Any, defaults: dict[str, Any], *, seed: int | None, process_group: Any = None) -> None:
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
            seed = int(seed)
        self._gen: torch.Generator | None = None
        super().__init__(params, defaults, process_group=process_group)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the global RNG, once
        if D.is_distributed(self.process_group):  # one generator stream on every rank
            seed = D.broadcast_int(seed, self.process_group)
        self._global["seed"] = seed
        self.stats: dict[str, Any] = {}
        self._noise: dict[Tensor, Tensor] = {}

    def _validate_params(self, params: list[Tensor], options: dict[str, Any], where: str) -> None:
        devices = {p.device for p in params} | {p.device for g in self.param_groups for p in g["params"]}
        if len(devices) > 1:
            raise ValueError(
                f"{where}params: {self._name} owns one torch.Generator, so all parameters must be on one "
                f"device; found {sorted(map(str, devices))}"
            )

    # ------------------------------------------------------------------ state
    def _fresh_global_state(self) -> dict[str, Any]:
        return {
            "step": 0,
            "initialized": False,
            "skipped_steps": 0,
            "bounces": 0,
            "P2": 0.0,
            "displacement_sq": 0.0,
            "seed": None,
            "generator_state": None,
            "pending_norm_sq": None,
        }

    @property
    def generator(self) -> torch.Generator:
        """The generator that draws every random number of the dynamics (created on first use, on
        the parameters' device, from the saved state or the seed)."""
        if self._gen is None:
            gen = torch.Generator(device=self._device())
            state = self._global["generator_state"]
            if state is not None:
                gen.set_state(state.to(device="cpu", dtype=torch.uint8))
            else:
                gen.manual_seed(self._global["seed"])
            self._gen = gen
        return self._gen

    def _before_state_dict(self) -> None:
        """The generator's state, stored on the parameters' device like every other tensor of the
        state. Saved even before the first draw (the generator is then made from the seed), so
        that a fresh optimiser's state has the same structure as a trained one's: distributed
        checkpointing loads into the structure of the state it is given."""
        self._global["generator_state"] = self.generator.get_state().to(self._device())

    def _after_load(self) -> None:
        # a capturable optimiser's scalars are tensors: every loaded state starts as Python numbers
        # (the capturable step turns them into device tensors on its first call)
        _tensor.to_float_form(self)
        self._gen = None
        self._noise = {}

    def state_dict(self) -> dict[str, Any]:
        """:meth:`HamoptOptimizer.state_dict` with the optimiser-wide scalars as Python numbers,
        also for a capturable optimiser (whose live scalars are device tensors): a checkpoint is
        the same whichever way it was made, and loads either way."""
        sd = super().state_dict()
        for entry in sd["state"].values():
            if GLOBAL_KEY in entry:
                _tensor.convert_to_float_form(entry[GLOBAL_KEY], self.TENSOR_SCALARS)
        return sd

    def __getstate__(self) -> dict[str, Any]:
        self._before_state_dict()
        return super().__getstate__()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._gen = None
        self._noise = {}
        if not hasattr(self, "stats"):
            self.stats = {}

    # ------------------------------------------------------------------ helpers
    def _noise_buffers(self, tensors: list[Tensor], *, keep_layout: bool = False) -> list[Tensor]:
        """Scratch buffers shaped like ``tensors`` (kept between steps, not state): contiguous, or
        with each tensor's own layout (``keep_layout``: a draw into the buffer then equals a
        draw into the tensor itself). New buffers are zero."""
        out = []
        fmt = torch.preserve_format if keep_layout else torch.contiguous_format
        for t in tensors:
            b = self._noise.get(t)
            if b is None or b.shape != t.shape or b.dtype != t.dtype or (keep_layout and b.stride() != t.stride()):
                b = torch.zeros_like(t, memory_format=fmt)
                self._noise[t] = b
            out.append(b)
        return out

    def _fill(self, bufs: list[Tensor], owners: list[Tensor], draw: str) -> None:
        """Fill ``bufs`` from the generator, in order: ``draw`` is ``"normal"`` (N(0, 1)) or
        ``"uniform"`` (U(−½, ½)). With sharded parameters every rank draws each tensor's full
        shape and keeps its shard (``owners`` are the parameters ``bufs`` belong to)."""
        gen = self.generator
        if not self._sharded:
            if draw == "normal":
                kernels.fill_normal(bufs, gen)
            else:
                kernels.fill_uniform(bufs, gen, -0.5, 0.5)
            return
        if draw == "normal":
            D.fill_as_full(bufs, owners, lambda t: t.normal_(generator=gen))
        else:
            D.fill_as_full(bufs, owners, lambda t: t.uniform_(-0.5, 0.5, generator=gen))

    # ------------------------------------------------------------------ deferred bounce rescale
    def _defer_bounce_rescale(self, norm_sq: float) -> None:
        """After ``p ← p + α z`` the spec rescales p back to ``‖p‖² = norm_sq``; that multiply is
        folded into the next step's rescale (one pass fewer), and recorded here until then."""
        self._global["pending_norm_sq"] = float(norm_sq)

    def _resolve_deferred(self, sets: list[ParamSet], measured_sq: float) -> tuple[float, float, bool]:
        """At the start of a step that will move: return ``(f, ‖p‖², applied)`` where ``f`` is the
        factor the stored buffers still owe to the last bounce (to fold into this step's first
        multiply) and ``‖p‖²`` the squared norm of the momenta the spec defines. When some
        parameter holding a momentum sits this step out, the factor is applied to all buffers now
        instead (``applied`` is True, ``f`` = 1 and ``‖p‖²`` re-measured: values measured from
        the buffers before this call are stale)."""
        glob = self._global
        pending = glob["pending_norm_sq"]
        if pending is None:
            return 1.0, measured_sq, False
        glob["pending_norm_sq"] = None
        stepping = sum(len(s.moms) for s in sets)
        if stepping == len(self._stored_buffers()):
            if measured_sq > 0.0:
                return math.sqrt(pending / measured_sq), pending, False
            return 1.0, measured_sq, False
        self._renormalise(self._stored_buffers(), pending)
        moms = [m for s in sets for m in s.moms]
        (now,) = self._to_host(*self._reduce(self._sq_norm(moms)))
        return 1.0, now, True

    @torch.no_grad()
    def finalize_bounce(self) -> None:
        """Apply the norm-restoring rescale of the last bounce to the stored momenta now.

        After a bounce the buffers hold ``p + α z`` and ``global_state["pending_norm_sq"]`` the
        squared norm the spec's momentum has; the next ``step`` folds the rescale into its own
        first multiply. Call this only to read ``opt.state[p]`` between steps with the exact norm
        (``state_dict`` does not need it: the pending value is saved)."""
        pending = self._global["pending_norm_sq"]
        if isinstance(pending, Tensor):  # capturable: NaN when none is pending (one host read, between steps)
            if not bool(torch.isnan(pending).item()):
                self._renormalise(self._stored_buffers(), pending.reshape(()))
                pending.fill_(math.nan)
            return
        if pending is not None:
            self._global["pending_norm_sq"] = None
            self._renormalise(self._stored_buffers(), pending)

    def _weight_decay_term(self, sets: list[ParamSet]) -> Tensor | None:
        """``½ Σ_groups λ ‖θ‖²`` over the stepping tensors (None when every λ is 0; not yet reduced)."""
        terms = [0.5 * s.option("weight_decay") * self._sq_norm(s.params)
                 for s in sets if s.option("weight_decay") and s.params]
        if not terms:
            return None
        return torch.stack(terms).sum()

    def _evaluate(self, closure: Callable[[], Any] | None) -> tuple[Any, Tensor]:
        """Call the closure (required) under grad mode; return (its value, the loss as 0-d float64)."""
        if closure is None:
            raise ValueError(
                f"{self._name}.step() needs closure: a function that zeroes the gradients, computes the "
                "loss on the current batch, calls backward() and returns the loss (the ECD dynamics "
                "use the loss value every step)"
            )
        value = self._call_closure(closure)
        loss = self._loss_tensor(value)
        if loss is None:
            raise ValueError(f"closure must return the loss; {self._name}.step() got None")
        return value, loss.to(self._device())

    def _finish(self, **values: Any) -> None:
        """Fill ``stats`` and advance the step counter."""
        glob = self._global
        stats = {
            "step": glob["step"],
            "loss": None,
            "potential": None,
            "invariant": None,
            "invariant_error": None,
            "skipped": False,
            "skip_reason": None,
            "bounced": False,
            "rescale": None,
            "P2": glob["P2"],
            "grad_norm": None,
            "displacement_sq": 0.0,
        }
        stats.update(values)
        glob["displacement_sq"] = float(stats["displacement_sq"])
        stats["kinetic"] = self.kinetic_energy()
        stats["skipped_steps"] = glob["skipped_steps"]
        stats["bounces"] = glob["bounces"]
        self.stats = stats
        glob["step"] += 1

    def _skip(self, reason: str, **values: Any) -> None:
        """Leave θ and the momenta unchanged and record why."""
        self._global["skipped_steps"] += 1
        self._finish(skipped=True, skip_reason=reason, **values)

    def kinetic_energy(self) -> float:
        r"""Displacement-form kinetic energy of the last step (leapfrog spec §5 with h = lr):
        ``K = ½ ‖θ_{t+1} − θ_t‖² / lr`` with the first param group's lr (0 after a skip or a
        bounce that left θ unchanged)."""
        lr = V.as_float("lr", self.param_groups[0]["lr"])
        disp = self._global["displacement_sq"]
        if isinstance(disp, Tensor):  # capturable: a device tensor, read when asked
            disp = float(disp.item())
        return 0.5 * disp / lr

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step; ``closure`` (required) zeroes the gradients, computes the loss on the current
        batch, calls ``backward()`` and returns the loss. Returns the closure's loss.

        Under ``torch.compile`` and with ``capturable=True`` the step keeps every per-step value
        in device tensors (:mod:`hamopt.optim.ecd._tensor`): it compiles once. ``fused=True``
        under ``torch.compile`` runs the fused step eagerly (one graph break).
        """
        if torch.compiler.is_compiling() or self.param_groups[0].get("capturable", False):
            return _tensor.step(self, closure)
        value, loss = self._evaluate(closure)
        self._step(loss)
        return value

    # ------------------------------------------------------------------ tensor step hooks
    _tensor_program: Callable[..., dict[str, Tensor]]

    @abc.abstractmethod
    def _tensor_config(self, sets: list[ParamSet]) -> dict[str, Any]:
        """The static options of :attr:`_tensor_program` (checks the gathered sets first)."""

    @abc.abstractmethod
    def _tensor_noise(self, capturable: bool) -> tuple[str | None, bool]:
        """``(kind, due)``: what the step may draw (``"normal"``, ``"uniform"`` or None) and
        whether to draw it now (see :mod:`hamopt.optim.ecd._tensor`)."""

    @abc.abstractmethod
    def _tensor_host_stats(self, values: dict[str, Any], sets: list[ParamSet]) -> None:
        """Fill ``stats`` from a tensor step's host values, as the eager step does."""

    @abc.abstractmethod
    def _step(self, loss: Tensor) -> None:
        """The optimiser's update for the evaluated loss (gradients are in ``.grad``)."""


# ---------------------------------------------------------------------- shared validation
_LOG_MAX = 700.0  # exp() of anything larger overflows a float64


def energy_rescale(log_c: float, log_v: float, p2: float, s: float, eps1: float,
                   cons: bool) -> tuple[float, float, float, float]:
    r"""The energy-restoring rescale ``p ← c p`` of step 1 (spec): with ``x = log C − log V``,
    the target ``‖p‖² = eˣ − s``; ``c = √(target/‖p‖²)`` unless ``consEn`` is off, ``‖p‖² = 0``,
    the target is negative or already within ``eps1``. Returns ``(c, c²‖p‖², invariant,
    |e^{invariant − log C} − 1|)`` with ``invariant = log(s + c²‖p‖²) + log V``."""
    c = 1.0
    if cons and p2 > 0.0:
        x = log_c - log_v
        target = math.exp(x) - s if x < _LOG_MAX else math.inf
        if not (abs(target - p2) < eps1 or target < 0.0):
            c = (math.sqrt(target / p2) if math.isfinite(target)
                 else math.exp(min(0.5 * (x - math.log(p2)), _LOG_MAX)))
    p2_rescaled = c * c * p2
    invariant = math.log(s + p2_rescaled) + log_v if s + p2_rescaled > 0 else -math.inf
    error = abs(math.expm1(invariant - log_c)) if math.isfinite(invariant) else math.inf
    return c, p2_rescaled, invariant, error


def skip_reason(sets: list[ParamSet], pot: float, eps2: float, name: str, offset: str) -> str:
    """The eager step's ``skip_reason`` of a skipped step (``name``: F or V; ``offset``: F0 or v0)."""
    if not any(s.moms for s in sets):
        return "no parameter has a gradient this step"
    return f"{name} = L + ½λ‖θ‖² − {offset} = {pot:.6g} ≤ eps2 = {float(eps2):g}"


def check_common(options: dict[str, Any], where: str) -> None:
    """lr > 0, weight_decay ≥ 0, eps1 ≥ 0, eps2 ≥ 0, consEn bool, foreach None/bool."""
    V.check_positive(f"{where}lr", options["lr"])
    V.check_nonnegative(f"{where}weight_decay", options["weight_decay"])
    V.check_nonnegative(f"{where}eps1", options["eps1"])
    V.check_nonnegative(f"{where}eps2", options["eps2"])
    if not isinstance(options["consEn"], bool):
        raise TypeError(f"{where}consEn must be True or False, got {options['consEn']!r}")
    V.check_optional_bool(f"{where}foreach", options["foreach"])


def check_fused(options: dict[str, Any], where: str) -> None:
    """``fused`` and ``capturable`` are True or False (missing in a state saved before the option
    existed: False), and not both True (the fused step decides on the host)."""
    for flag in ("fused", "capturable"):
        options.setdefault(flag, False)
        if not isinstance(options[flag], bool):
            raise TypeError(f"{where}{flag} must be True or False, got {options[flag]!r}")
    if options["fused"] and options["capturable"]:
        raise ValueError(f"{where}capturable=True cannot be combined with fused=True: the fused step reads its "
                         "decision values on the host; use one or the other")


def check_int_at_least(name: str, value: Any, low: int) -> int:
    """``value`` must be an int ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return value


def check_finite(name: str, value: Any) -> float:
    """``value`` must be a finite real number."""
    v = V.as_float(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return v

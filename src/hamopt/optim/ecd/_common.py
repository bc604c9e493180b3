r"""Pieces shared by the Energy Conserving Descent optimisers (:class:`ECDSep`, :class:`BBI`,
:class:`ECDq1`): tensor-list kernels, global reductions, the owned random generator, the
optimiser-wide scalar state and the closure/skip/stats plumbing.

Kernels (each a single-tensor and a multi-tensor ``torch._foreach_*`` body giving identical
numbers; on the CPU the foreach ops run the same per-tensor op in C++):

* :func:`axpy_`            ``y ← y + α x``
* :func:`scale_`           ``x ← c x`` (a Python float)
* :func:`scale_each_`      ``x_i ← c_i x_i`` (one float per tensor)
* :func:`scale_by_tensor_` ``x ← c x`` with ``c`` a 0-d device tensor (no host sync)
* :func:`sq_norm`          ``Σ_i ‖x_i‖²`` as a 0-d float64 device tensor
* :func:`dot`, :func:`dots` ``Σ_i ⟨x_i, y_i⟩`` (0-d) and the per-tensor ``⟨x_i, y_i⟩`` (1-d)
* :func:`fill_normal_`, :func:`fill_uniform_` draw from the optimiser's generator, tensor by
  tensor in parameter order, so both bodies consume the generator identically.
* :func:`renormalise_` ``x ← x · √(target / ‖x‖²)`` on the device (the norm-keeping bounce).

Reductions stay 0-d tensors on the parameters' device; the optimisers collect the few host floats
a step needs (the loss, the skip test, the rescale factor, the stats) with one
``torch.stack(...).tolist()`` per sync point (:func:`to_host`).

The norm-keeping bounce of ECDSep and ECDq1 adds the noise, ``p ← p + α z``, and defers the
rescale back to ``‖p‖² = P2`` to the next step's first multiply (``pending_norm_sq``): the next
step measures ``‖p‖²`` anyway, so this saves a reduction and a pass over the momenta.
:meth:`ECDOptimizer.finalize_bounce` applies it on demand.

Optimiser-wide scalars live in ``opt.state["ecd"]`` (a plain dict: ints, floats, bools, and the
generator state as a ``torch.uint8`` tensor), so ``state_dict``/``load_state_dict``,
``torch.save``/``torch.load(weights_only=True)`` and ``copy.deepcopy`` carry all of them.
"""

from __future__ import annotations

import abc
import copy
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ...errors import NonFiniteError
from .. import _validation as V
from .. import kernels

STATE_KEY = "ecd"


# ---------------------------------------------------------------------- kernels
def axpy_(ys: list[Tensor], xs: list[Tensor], alpha: float, *, foreach: bool) -> None:
    """``y ← y + α x`` for every pair (in place)."""
    if not ys or alpha == 0.0:
        return
    if foreach:
        torch._foreach_add_(ys, xs, alpha=alpha)
    else:
        for y, x in zip(ys, xs):
            y.add_(x, alpha=alpha)


def scale_(xs: list[Tensor], c: float, *, foreach: bool) -> None:
    """``x ← c x`` (in place); nothing to do when ``c == 1``."""
    kernels.scale(xs, c, foreach=foreach)


def scale_each_(xs: list[Tensor], cs: list[float], *, foreach: bool) -> None:
    """``x_i ← c_i x_i`` with one Python float per tensor (in place)."""
    if not xs:
        return
    if foreach:
        torch._foreach_mul_(xs, cs)
    else:
        for x, c in zip(xs, cs):
            x.mul_(c)


def scale_by_tensor_(xs: list[Tensor], c: Tensor, *, foreach: bool) -> None:
    """``x ← c x`` with ``c`` a 0-d tensor on the tensors' device (cast to their dtype)."""
    if not xs:
        return
    dtypes = {x.dtype for x in xs}
    if foreach and len(dtypes) == 1:
        torch._foreach_mul_(xs, c.to(xs[0].dtype))
    else:
        cast = {dt: c.to(dt) for dt in dtypes}
        for x in xs:
            x.mul_(cast[x.dtype])


def sq_norm(xs: list[Tensor], *, foreach: bool, device: torch.device | None = None) -> Tensor:
    """``Σ_i ‖x_i‖²`` as a 0-d float64 tensor (per-tensor norms, summed in float64)."""
    if not xs:
        return torch.zeros((), dtype=torch.float64, device=device)
    return kernels.squared_norm(xs, foreach=foreach)


def dots(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    """The per-tensor dot products ``⟨x_i, y_i⟩`` as a 1-d float64 tensor."""
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)).to(torch.float64) for x, y in zip(xs, ys)])


def dot(xs: list[Tensor], ys: list[Tensor], *, device: torch.device | None = None) -> Tensor:
    """``Σ_i ⟨x_i, y_i⟩`` as a 0-d float64 tensor."""
    if not xs:
        return torch.zeros((), dtype=torch.float64, device=device)
    return dots(xs, ys).sum()


def fill_normal_(bufs: list[Tensor], generator: torch.Generator) -> None:
    """``z ~ N(0, I)`` into every buffer, in order, from ``generator``."""
    for b in bufs:
        b.normal_(generator=generator)


def fill_uniform_(bufs: list[Tensor], generator: torch.Generator, low: float, high: float) -> None:
    """``u ~ U(low, high)`` per entry into every buffer, in order, from ``generator``."""
    for b in bufs:
        b.uniform_(low, high, generator=generator)


def renormalise_(xs: list[Tensor], target_sq: float | Tensor, *, foreach: bool) -> None:
    """``x ← x · √(target / ‖x‖²)`` over all tensors together, computed on the device
    (``x`` is left unchanged when ``‖x‖ = 0``)."""
    if not xs:
        return
    now = sq_norm(xs, foreach=foreach)
    target = torch.as_tensor(target_sq, dtype=torch.float64, device=now.device)
    factor = torch.where(now > 0, torch.sqrt(target / torch.where(now > 0, now, 1.0)), 1.0)
    scale_by_tensor_(xs, factor, foreach=foreach)


def to_host(values: Iterable[Tensor | float | None]) -> list[Any]:
    """One host transfer for several tensors: a 0-d tensor becomes a float, a 1-d tensor a list of
    floats; floats and None pass through."""
    values = list(values)
    tensors = [v for v in values if isinstance(v, Tensor)]
    if not tensors:
        return [None if v is None else float(v) for v in values]
    device = tensors[0].device
    flat = torch.cat([t.to(device=device, dtype=torch.float64).reshape(-1) for t in tensors]).tolist()
    out: list[Any] = []
    pos = 0
    for v in values:
        if isinstance(v, Tensor):
            n = v.numel()
            out.append(flat[pos] if v.dim() == 0 else flat[pos:pos + n])
            pos += n
        else:
            out.append(None if v is None else float(v))
    return out


# ---------------------------------------------------------------------- per-step tensors
@dataclass
class Group:
    """The tensors of one param group that take part in this step (``.grad`` is not None)."""

    params: list[Tensor]
    grads: list[Tensor]
    moms: list[Tensor]
    fresh: list[bool]
    lr: float
    weight_decay: float
    index: int

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


# ---------------------------------------------------------------------- base class
class ECDOptimizer(Optimizer, abc.ABC):
    """Validation, state, generator, closure and stats shared by the ECD optimisers.

    Subclasses set ``_name``, ``_buffer`` (the per-parameter momentum key), ``GLOBAL_OPTIONS``
    (hyperparameters that must agree across param groups: the potential and the invariant are one
    number over all parameters) and implement ``_validate_group`` and ``_step``.
    """

    _name = "ECDOptimizer"
    _buffer = "momentum"
    GLOBAL_OPTIONS: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any], *, seed: int | None) -> None:
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
            seed = int(seed)
        defaults = dict(defaults, differentiable=False)
        self._validate_group(defaults, where="")
        super().__init__(params, defaults)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the global RNG, once
        self._generator = torch.Generator(device=self._device()).manual_seed(seed)
        self.state[STATE_KEY] = self._fresh_global_state(seed)
        self.stats: dict[str, Any] = {}
        self._noise: dict[Tensor, Tensor] = {}

    # ------------------------------------------------------------------ validation
    @abc.abstractmethod
    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        """Check one param group's options; errors name ``where + key`` and the allowed range."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        self._validate_group(group, where=f"param_groups[{index}].")
        V.check_params_supported(group["params"], self._name)
        first = self.param_groups[0]
        for key in self.GLOBAL_OPTIONS:
            if group[key] != first[key]:
                raise ValueError(
                    f"param_groups[{index}].{key}={group[key]!r} differs from the first group's "
                    f"{first[key]!r}: {key} is optimiser-wide (the potential and the invariant are one "
                    "number over all parameters); only lr and weight_decay may differ per group"
                )
        devices = {p.device for g in self.param_groups for p in g["params"]}
        if len(devices) > 1:
            raise ValueError(
                f"params: {self._name} owns one torch.Generator, so all parameters must be on one "
                f"device; found {sorted(map(str, devices))}"
            )

    def _device(self) -> torch.device:
        for g in self.param_groups:
            for p in g["params"]:
                return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ state
    def _fresh_global_state(self, seed: int) -> dict[str, Any]:
        return {
            "step": 0,
            "initialized": False,
            "skipped_steps": 0,
            "bounces": 0,
            "P2": 0.0,
            "displacement_sq": 0.0,
            "seed": seed,
            "generator_state": None,
            "pending_norm_sq": None,
        }

    @property
    def _global(self) -> dict[str, Any]:
        return self.state[STATE_KEY]

    @property
    def generator(self) -> torch.Generator:
        """The generator that draws every random number of the dynamics."""
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        self._global["generator_state"] = self._generator.get_state()
        sd = super().state_dict()
        sd["state"][STATE_KEY] = copy.deepcopy(sd["state"][STATE_KEY])
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if STATE_KEY not in state_dict.get("state", {}):
            raise ValueError(
                f"state_dict: no '{STATE_KEY}' entry in state_dict['state']; it was not saved by {self._name}"
            )
        super().load_state_dict(state_dict)
        glob = copy.deepcopy(self.state[STATE_KEY])
        self.state[STATE_KEY] = glob
        if glob.get("generator_state") is not None:
            self._generator.set_state(glob["generator_state"].cpu())
        self._noise = {}

    def __getstate__(self) -> dict[str, Any]:
        self._global["generator_state"] = self._generator.get_state()
        return super().__getstate__()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("differentiable", False)
        glob = self.state[STATE_KEY]
        self._generator = torch.Generator(device=self._device())
        if glob.get("generator_state") is not None:
            self._generator.set_state(glob["generator_state"].cpu())
        else:
            self._generator.manual_seed(glob["seed"])
        self._noise = {}
        if not hasattr(self, "stats"):
            self.stats = {}

    # ------------------------------------------------------------------ helpers
    def _foreach(self) -> bool:
        flag = self.param_groups[0]["foreach"]
        return True if flag is None else flag

    def _gather(self) -> list[Group]:
        """Tensors with a gradient this step, group by group; momentum buffers created (zero)
        on first use, with ``fresh`` marking them."""
        out = []
        for index, group in enumerate(self.param_groups):
            params, grads, moms, fresh = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError(f"{self._name} does not support sparse gradients")
                st = self.state[p]
                is_new = self._buffer not in st
                if is_new:
                    st[self._buffer] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                moms.append(st[self._buffer])
                fresh.append(is_new)
            out.append(Group(params, grads, moms, fresh, V.as_float("lr", group["lr"]),
                             float(group["weight_decay"]), index))
        return out

    def _noise_buffers(self, tensors: list[Tensor]) -> list[Tensor]:
        """Scratch buffers shaped like ``tensors`` (kept between steps, not state)."""
        out = []
        for t in tensors:
            b = self._noise.get(t)
            if b is None or b.shape != t.shape or b.dtype != t.dtype:
                b = torch.empty_like(t, memory_format=torch.contiguous_format)
                self._noise[t] = b
            out.append(b)
        return out

    # ------------------------------------------------------------------ deferred bounce rescale
    def _all_buffers(self) -> list[Tensor]:
        return [self.state[p][self._buffer] for g in self.param_groups for p in g["params"]
                if p in self.state and self._buffer in self.state[p]]

    def _defer_bounce_rescale(self, norm_sq: float) -> None:
        """After ``p ← p + α z`` the spec rescales p back to ``‖p‖² = norm_sq``; that multiply is
        folded into the next step's rescale (one pass fewer), and recorded here until then."""
        self._global["pending_norm_sq"] = float(norm_sq)

    def _resolve_deferred(self, groups: list[Group], measured_sq: float) -> tuple[float, float, bool]:
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
        stepping = sum(len(g.moms) for g in groups)
        if stepping == len(self._all_buffers()):
            if measured_sq > 0.0:
                return math.sqrt(pending / measured_sq), pending, False
            return 1.0, measured_sq, False
        self._apply_deferred(pending)
        moms = [m for g in groups for m in g.moms]
        (now,) = to_host([sq_norm(moms, foreach=self._foreach(), device=self._device())])
        return 1.0, now, True

    def _apply_deferred(self, pending: float) -> None:
        renormalise_(self._all_buffers(), pending, foreach=self._foreach())

    @torch.no_grad()
    def finalize_bounce(self) -> None:
        """Apply the norm-restoring rescale of the last bounce to the stored momenta now.

        After a bounce the buffers hold ``p + α z`` and ``state["ecd"]["pending_norm_sq"]`` the
        squared norm the spec's momentum has; the next ``step`` folds the rescale into its own
        first multiply. Call this only to read ``opt.state[p]`` between steps with the exact norm
        (``state_dict`` does not need it: the pending value is saved)."""
        pending = self._global["pending_norm_sq"]
        if pending is not None:
            self._global["pending_norm_sq"] = None
            self._apply_deferred(pending)

    def _weight_decay_term(self, groups: list[Group]) -> Tensor | None:
        """``½ Σ_groups λ ‖θ‖²`` over the stepping tensors (None when every λ is 0)."""
        terms = [0.5 * g.weight_decay * sq_norm(g.params, foreach=self._foreach())
                 for g in groups if g.weight_decay and g.params]
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
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        with torch.enable_grad():
            value = closure()
        if value is None:
            raise ValueError(f"closure must return the loss; {self._name}.step() got None")
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"closure must return a scalar loss, got a tensor of shape {tuple(value.shape)}")
            loss = value.detach().reshape(()).to(torch.float64)
        else:
            loss = torch.tensor(V.as_float("closure's loss", value), dtype=torch.float64)
        return value, loss.to(self._device())

    def _check_finite(self, loss: float, grad_sq: float | None) -> None:
        step = self._global["step"]
        if not math.isfinite(loss):
            raise NonFiniteError("loss", step, loss)
        if grad_sq is not None and not math.isfinite(grad_sq):
            raise NonFiniteError("gradient", step, math.sqrt(grad_sq) if grad_sq >= 0 else grad_sq,
                                 "the global gradient norm is not finite")

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
        return 0.5 * self._global["displacement_sq"] / lr

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step; ``closure`` (required) zeroes the gradients, computes the loss on the current
        batch, calls ``backward()`` and returns the loss. Returns the closure's loss."""
        value, loss = self._evaluate(closure)
        self._step(loss)
        return value

    @abc.abstractmethod
    def _step(self, loss: Tensor) -> None:
        """The optimiser's update for the evaluated loss (gradients are in ``.grad``)."""


# ---------------------------------------------------------------------- shared validation
def check_common(options: dict[str, Any], where: str) -> None:
    """lr > 0, weight_decay ≥ 0, eps1 ≥ 0, eps2 ≥ 0, consEn bool, foreach None/bool."""
    V.check_positive(f"{where}lr", options["lr"])
    V.check_nonnegative(f"{where}weight_decay", options["weight_decay"])
    V.check_nonnegative(f"{where}eps1", options["eps1"])
    V.check_nonnegative(f"{where}eps2", options["eps2"])
    if not isinstance(options["consEn"], bool):
        raise TypeError(f"{where}consEn must be True or False, got {options['consEn']!r}")
    V.check_optional_bool(f"{where}foreach", options["foreach"])


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

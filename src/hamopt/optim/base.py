r"""The one base class of hamopt's optimisers: :class:`HamoptOptimizer`.

Every integrator (:class:`~hamopt.optim.Leapfrog`, :class:`~hamopt.optim.Euler`,
:class:`~hamopt.optim.ECDSep`, :class:`~hamopt.optim.BBI`, :class:`~hamopt.optim.ECDq1`) is a
``torch.optim.Optimizer`` whose bookkeeping lives here, once:

* option checks per param group, and the optimiser-wide options (``GLOBAL_OPTIONS``) that must
  agree across groups; :meth:`add_param_group` checks a group completely *before* adding it, and
  refuses a parameter listed twice (it would be updated twice per step);
* gathering the tensors that step (:class:`ParamSet`), the ``foreach`` choice;
* the optimiser-wide scalars (step counter, energy reference, seed, ...), read through the
  public :attr:`HamoptOptimizer.global_state`;
* ``state_dict``/``load_state_dict``: a state saved by another optimiser type, in another mode,
  or for parameters of other shapes is refused at load time, naming both sides;
* loss checks (what a closure must return), the non-finite guard, the one host-sync helper
  (:meth:`HamoptOptimizer._to_host`) and the one place where per-step reductions are combined
  (:meth:`HamoptOptimizer._reduce`);
* snapshot/restore of ``(θ, p)``, used by every failure that happens after parameters moved;
* the process group (``process_group=``) and the distributed reductions (:mod:`._distributed`).

Distributed training (``torch.distributed`` initialised, the process group has more than one
rank): see :mod:`hamopt.optim._distributed` — in short, the loss is each rank's local mean loss
on an equal-sized local batch and the optimiser uses the mean over the ranks; norms, dot products
and K of replicated (DDP) parameters are already global, those of sharded (FSDP2) ones are summed
over the group; at most one ``all_reduce`` per reduction point. In one process nothing changes.

Where the optimiser-wide scalars live: in the per-parameter state of the *anchor* parameter (the
first parameter of the first non-empty param group), under the key ``"hamopt_global"``:
``opt.state[anchor]["hamopt_global"]``. The entry is created at construction, so ``opt.state`` is
never empty and distributed checkpointing never runs its "initialise the optimiser state" dummy
step. :meth:`HamoptOptimizer.state_dict` saves them with the first parameter that requires a
gradient at save time, and gives every parameter an entry (empty when it has no state yet): that
is what ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` /
``set_optimizer_state_dict`` keep (they map every key of the state to a parameter name, drop the
entries of frozen parameters and insist on one for every trained parameter), and
``torch.save``/``torch.load(weights_only=True)`` and ``copy.deepcopy`` carry them too. Older
checkpoints kept the scalars under a non-parameter key (``state["hamopt"]`` / ``state["ecd"]``);
:meth:`HamoptOptimizer.load_state_dict` still reads them.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..errors import NonFiniteError
from . import _checkpoint, kernels
from . import _distributed as D
from . import _validation as V
from ._checkpoint import GLOBAL_KEY, SAVED_BY_KEY


@dataclass
class ParamSet:
    """The tensors of one param group that take part in this step (``.grad`` is not None).

    ``owners`` are the parameters as registered; ``params``, ``grads`` and ``moms`` the tensors
    this process holds of them, on which every kernel works (the same tensors in one process or
    under DDP, the local shards of ``DTensor`` parameters under FSDP2). ``fresh[i]`` is True when
    the state buffer of ``owners[i]`` was created (zero) by this step's gather; ``options`` is the
    param group itself; ``inv_masses`` is filled by optimisers with a mass rule.
    """

    owners: list[Tensor]
    params: list[Tensor]
    grads: list[Tensor]
    moms: list[Tensor]
    fresh: list[bool]
    lr: float
    index: int
    options: dict[str, Any]
    inv_masses: list[float] = field(default_factory=list)

    @property
    def numel(self) -> int:
        """The number of elements of the parameters (over all shards)."""
        return sum(p.numel() for p in self.owners)

    def option(self, key: str) -> float:
        """A numeric option of the group as a Python float."""
        return float(self.options[key])


class HamoptOptimizer(Optimizer, abc.ABC):
    """Bookkeeping shared by every hamopt optimiser (see the module docstring).

    Subclasses set ``_name``, ``_buffer`` (the per-parameter state key of the momentum),
    ``GLOBAL_OPTIONS`` (options that must agree across param groups), ``LOAD_MUST_MATCH`` (options
    whose saved value must equal the optimiser's at load time), ``LEGACY_STATE_KEY``, and implement
    :meth:`_validate_group` and :meth:`_fresh_global_state`.
    """

    _name = "HamoptOptimizer"
    _buffer = "momentum"
    GLOBAL_OPTIONS: tuple[str, ...] = ()
    GLOBAL_REASON = "it is one setting for all parameters"
    LOAD_MUST_MATCH: tuple[str, ...] = ()
    LEGACY_STATE_KEY: str | None = None

    def __init__(self, params: Any, defaults: dict[str, Any], *, process_group: Any = None) -> None:
        defaults = dict(defaults, differentiable=False)
        self._validate_group(defaults, where="")
        if process_group is not None and (D.dist is None or not isinstance(process_group, D.dist.ProcessGroup)):
            raise TypeError("process_group must be None (the default group) or a torch.distributed.ProcessGroup; "
                            f"got {type(process_group).__name__}")
        self.process_group = process_group
        self._sharded = False
        self._placeholders: dict[int, Tensor] = {}
        super().__init__(params, defaults)
        self._anchor_state()[GLOBAL_KEY] = self._fresh_global_state()

    # ------------------------------------------------------------------ validation
    @abc.abstractmethod
    def _validate_group(self, options: dict[str, Any], where: str) -> None:
        """Check one group's options (may normalise them); errors name ``where + key``."""

    def _validate_params(self, params: list[Tensor], options: dict[str, Any], where: str) -> None:
        """Checks of a group's parameters against its options (e.g. a mass callable)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Check the group completely, then add it (a refused group is not added)."""
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param group must have a 'params' entry")
        candidate = dict(param_group)
        raw = candidate["params"]
        if isinstance(raw, set):
            raise TypeError("params must be an ordered collection (list, tuple or generator), not a set: "
                            "the order of the parameters must be the same between runs")
        candidate["params"] = [raw] if isinstance(raw, Tensor) else list(raw)
        tensors = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in candidate["params"]]
        index = len(self.param_groups)
        where = f"param_groups[{index}]."
        for key, value in self.defaults.items():
            candidate.setdefault(key, value)
        self._validate_group(candidate, where=where)
        V.check_params_supported(tensors, self._name)
        existing = [p for g in self.param_groups for p in g["params"]]
        V.check_no_duplicates(tensors, where, [g["params"] for g in self.param_groups])
        sharded = D.check_layout(existing + tensors, where, self._name)
        if self.param_groups:
            first = self.param_groups[0]
            for key in self.GLOBAL_OPTIONS:
                if candidate[key] != first[key]:
                    raise ValueError(
                        f"{where}{key}={candidate[key]!r} differs from the first group's {first[key]!r}: "
                        f"{key} is optimiser-wide ({self.GLOBAL_REASON})"
                    )
        self._validate_params(tensors, candidate, where)
        super().add_param_group(candidate)
        self._sharded = sharded

    # ------------------------------------------------------------------ optimiser-wide state
    @abc.abstractmethod
    def _fresh_global_state(self) -> dict[str, Any]:
        """The optimiser-wide scalars of a new optimiser."""

    def _anchor(self) -> Tensor:
        for group in self.param_groups:
            if group["params"]:
                return group["params"][0]
        raise ValueError(f"params: {self._name} needs at least one parameter")

    def _anchor_state(self) -> dict[str, Any]:
        return self.state[self._anchor()]

    @property
    def _global(self) -> dict[str, Any]:
        return self.state[self._anchor()][GLOBAL_KEY]

    @property
    def global_state(self) -> dict[str, Any]:
        """A copy of the optimiser-wide scalars (step counter, energy reference, seed, ...).

        Read-only in effect: changing the returned dict does not change the optimiser. The keys
        are listed in each optimiser's module docstring.
        """
        self._before_state_dict()
        return copy.deepcopy(self._global)

    def _before_state_dict(self) -> None:
        """Bring values that live outside the state (e.g. a generator) into it."""

    def _after_load(self) -> None:
        """Rebuild what lives outside the state after ``load_state_dict``."""

    def state_dict(self) -> dict[str, Any]:
        """``Optimizer.state_dict`` with a private copy of the optimiser-wide scalars, tagged with the
        name of the optimiser that saved them.

        Every parameter has an entry (empty when it has no state yet), and the scalars are saved
        with the first parameter that requires a gradient *now*: distributed checkpointing keeps
        only the entries of such parameters, and insists on one for each of them.
        """
        self._before_state_dict()
        sd = super().state_dict()
        params = [p for g in self.param_groups for p in g["params"]]
        ids = [i for g in sd["param_groups"] for i in g["params"]]
        state = {i: dict(sd["state"].get(i, {})) for i in ids}
        glob = copy.deepcopy(state[ids[0]].pop(GLOBAL_KEY))
        glob[SAVED_BY_KEY] = self._name
        holder = next((i for i, p in zip(ids, params) if p.requires_grad), ids[0])
        state[holder][GLOBAL_KEY] = glob
        sd["state"] = state
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by the same optimiser type, in the same mode, for parameters of the
        same shapes; anything else is refused before the optimiser changes. Checkpoints of older
        versions (scalars under ``state["hamopt"]`` / ``state["ecd"]``) load too."""
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups', as Optimizer.state_dict() "
                             f"returns; got {type(state_dict).__name__}")
        saved_groups = list(state_dict["param_groups"])
        saved_state = dict(state_dict["state"])
        keys = [k for g in saved_groups for k in g.get("params", [])]
        legacy_keys = [k for k in ("hamopt", "ecd") if k in saved_state and k not in keys]
        glob: Any = None
        if self.LEGACY_STATE_KEY in legacy_keys:
            glob = saved_state.pop(self.LEGACY_STATE_KEY)
        else:
            holder = next((k for k in keys if isinstance(saved_state.get(k), Mapping) and GLOBAL_KEY in saved_state[k]),
                          None)
            if holder is not None:
                entry = dict(saved_state[holder])
                glob = entry.pop(GLOBAL_KEY)
                saved_state[holder] = entry
        _checkpoint.check_saved_by(self, glob, saved_groups)
        _checkpoint.check_saved_options(self, saved_groups)
        _checkpoint.check_saved_shapes(self, saved_state, keys)
        glob = dict(copy.deepcopy(glob))
        glob.pop(SAVED_BY_KEY, None)
        super().load_state_dict({**state_dict, "state": saved_state})
        self._placeholders = {}
        fresh = self._fresh_global_state()
        fresh.update(glob)
        self._anchor_state()[GLOBAL_KEY] = fresh
        self._after_load()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also used by ``load_state_dict``: every option missing from a group gets its default.
        A copy made by pickling or ``copy.deepcopy`` (which never carry the process group, a
        handle that cannot be pickled) reduces over the default group."""
        super().__setstate__(state)
        defaults = getattr(self, "defaults", {})
        for group in self.param_groups:
            for key, value in defaults.items():
                group.setdefault(key, value)
        if not hasattr(self, "process_group"):
            self.process_group = None
        self._placeholders = {}
        self._sharded = any(D.is_sharded(p) for g in self.param_groups for p in g["params"])

    @torch.no_grad()
    def materialize_state(self) -> None:
        """Give every parameter that requires a gradient its (zero) state buffer now, so that the
        state has the structure of a trained optimiser's.

        For loading a ``torch.distributed.checkpoint`` into a fresh optimiser: ``dcp.load`` reads
        only the entries of the state it is given, so call this before
        ``get_optimizer_state_dict``/``get_state_dict`` builds that state. A buffer made here is
        zero, is still treated as new by the first step that uses it (exactly as if it had not
        existed), and is replaced by the loaded one.
        """
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if p.requires_grad and self._buffer not in st:
                    st[self._buffer] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    self._placeholders[id(st[self._buffer])] = st[self._buffer]

    # ------------------------------------------------------------------ per-step helpers
    def _foreach(self) -> bool:
        flag = self.param_groups[0]["foreach"]
        return True if flag is None else flag  # the foreach kernels run on every device, the CPU included

    def _device(self) -> torch.device:
        return self._anchor().device

    def _gather(self, *, read_lr: bool = True) -> list[ParamSet]:
        """Tensors with a gradient this step, group by group; state buffers created (zero) on
        first use, marked ``fresh``. ``read_lr=False`` leaves ``lr`` NaN (a tensor ``lr`` is then
        not read on the host)."""
        out = []
        for index, group in enumerate(self.param_groups):
            lr = V.as_float("lr", group["lr"]) if read_lr else math.nan
            pset = ParamSet([], [], [], [], [], lr, index, group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError(f"{self._name} does not support sparse gradients")
                st = self.state[p]
                is_new = self._buffer not in st
                if is_new:
                    st[self._buffer] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif self._placeholders and self._placeholders.pop(id(st[self._buffer]), None) is not None:
                    is_new = True  # made by materialize_state and never used: still new
                pset.owners.append(p)
                if self._sharded:
                    pset.params.append(D.local(p))
                    pset.grads.append(D.local(p.grad))
                    pset.moms.append(D.local(st[self._buffer]))
                else:
                    pset.params.append(p)
                    pset.grads.append(p.grad)
                    pset.moms.append(st[self._buffer])
                pset.fresh.append(is_new)
            self._extend_set(pset)
            out.append(pset)
        return out

    def _drop_fresh_buffers(self, sets: list[ParamSet]) -> None:
        """Undo the buffer creation of this step's :meth:`_gather` (for a refused step)."""
        for s in sets:
            for p, new in zip(s.owners, s.fresh):
                if new:
                    del self.state[p][self._buffer]

    def _extend_set(self, pset: ParamSet) -> None:
        """Add optimiser-specific per-tensor values (e.g. inverse masses) to a gathered set."""

    def _stored_buffers(self) -> list[Tensor]:
        """Every momentum buffer in the state, as the tensors this process holds (no membership
        test on tensor keys, so the step traces under ``torch.compile``)."""
        buffers = [st[self._buffer] for st in self.state.values()
                   if self._buffer in st and id(st[self._buffer]) not in self._placeholders]
        return [D.local(b) for b in buffers] if self._sharded else buffers

    def _reduce(self, *values: Tensor | None) -> list[Tensor | None]:
        """The one place where per-step reductions are combined.

        ``values`` are float64 tensors (0-d sums, or 1-d per-tensor vectors), each a sum over the
        elements this process holds; the result is the global value. Every reduction an
        optimiser uses (norms, dot products, energies) passes through here, batched into as few
        calls as the algorithm allows. With sharded parameters under ``torch.distributed`` the
        values are summed over the process group in ONE ``all_reduce``; with replicated ones (DDP)
        they are already global and nothing is communicated. In one process it returns the
        values unchanged. None passes through.
        """
        if not D.is_distributed(self.process_group):
            return list(values)
        sums, _ = D.all_reduce_sums(values, (), self.process_group, sum_over_ranks=self._sharded)
        return sums

    def _reduce_with_loss(self, loss: Tensor | None, *values: Tensor | None) -> list[Tensor | None]:
        """``[global loss, *global values]``: :meth:`_reduce` of ``values`` and, in the same single
        ``all_reduce``, the mean over the process group of ``loss`` (each rank's local mean loss on
        an equal-sized local batch). In one process ``[loss, *_reduce(*values)]``: the values
        unchanged."""
        if not D.is_distributed(self.process_group):
            return [loss, *self._reduce(*values)]
        sums, (mean,) = D.all_reduce_sums(values, (loss,), self.process_group, sum_over_ranks=self._sharded)
        return [mean, *sums]

    def _sq_norm(self, tensors: list[Tensor]) -> Tensor:
        """``Σ_i ‖x_i‖²`` of this process's elements as a 0-d float64 tensor (not yet reduced)."""
        if not tensors:
            return torch.zeros((), dtype=torch.float64, device=self._device())
        return kernels.squared_norm(tensors, foreach=self._foreach())

    def _renormalise(self, tensors: list[Tensor], target_sq: float | Tensor) -> None:
        """``x ← x · √(target / ‖x‖²)`` over all tensors together, on the device (no change when
        ``‖x‖ = 0``)."""
        if not tensors:
            return
        (now,) = self._reduce(self._sq_norm(tensors))
        target = torch.as_tensor(target_sq, dtype=torch.float64, device=now.device)
        factor = torch.where(now > 0, torch.sqrt(target / torch.where(now > 0, now, 1.0)), 1.0)
        kernels.scale_by_tensor(tensors, factor, foreach=self._foreach())

    @staticmethod
    def _to_host(*values: Tensor | float | None) -> list[Any]:
        """The one host transfer of a step's decision values: a 0-d tensor becomes a float, a 1-d
        tensor a list of floats; floats and None pass through."""
        tensors = [v for v in values if isinstance(v, Tensor)]
        if not tensors:
            return [None if v is None else float(v) for v in values]
        if all(t.dtype == torch.float64 and t.dim() == 0 and t.device.type == "cpu" for t in tensors):
            # CPU float64 scalars: no transfer to batch, and item() reads the same bits as the cat
            return [v.item() if isinstance(v, Tensor) else (None if v is None else float(v)) for v in values]
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

    # ------------------------------------------------------------------ losses and closures
    def _loss_tensor(self, value: Any, source: str = "the closure") -> Tensor | None:
        """The loss as a 0-d float64 tensor (None stays None); anything but a scalar is refused with
        a message saying what ``source`` must return."""
        if isinstance(value, Tensor) and value.dtype == torch.float64 and value.dim() == 0 and not value.requires_grad:
            return value  # already what the checks and the cast would make of it (the common small case)
        return V.loss_tensor(value, f"{self._name}: {source}")

    @staticmethod
    def _call_closure(closure: Callable[[], Any]) -> Any:
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        with torch.enable_grad():
            return closure()

    def _raise_if_nonfinite(self, loss: float | None, grad_sq: float | None) -> None:
        """The non-finite guard: raise :class:`~hamopt.NonFiniteError` before anything changes."""
        step = self._global["step"]
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteError("loss", step, loss)
        if grad_sq is not None and not math.isfinite(grad_sq):
            raise NonFiniteError("gradient", step, math.sqrt(grad_sq) if grad_sq >= 0 else grad_sq,
                                 "the global gradient norm is not finite")

    # ------------------------------------------------------------------ rollback
    def _snapshot(self, sets: list[ParamSet]) -> None:
        """Copy θ and p of the stepping tensors into scratch buffers (kept between steps)."""
        params = [t for s in sets for t in s.params]
        moms = [t for s in sets for t in s.moms]
        scratch = getattr(self, "_scratch", None)
        if scratch is None or len(scratch[0]) != len(params) or any(
            a.shape != p.shape or a.dtype != p.dtype or a.device != p.device for a, p in zip(scratch[0], params)
        ):
            scratch = ([torch.empty_like(p) for p in params], [torch.empty_like(m) for m in moms])
            self._scratch = scratch
        kernels.copy(scratch[0], params, foreach=self._foreach())
        kernels.copy(scratch[1], moms, foreach=self._foreach())

    def _restore(self, sets: list[ParamSet]) -> None:
        params = [t for s in sets for t in s.params]
        moms = [t for s in sets for t in s.moms]
        kernels.copy(params, self._scratch[0], foreach=self._foreach())
        kernels.copy(moms, self._scratch[1], foreach=self._foreach())

    @contextlib.contextmanager
    def _rollback_on_failure(self, sets: list[ParamSet]) -> Iterator[None]:
        """Snapshot θ_t and p_t; if anything inside the block raises (a closure error, a bad
        return value, a missing gradient, a non-finite value, an interrupt), restore them bit for
        bit, put back the gradients of θ_t, and re-raise. The step counter is not advanced."""
        self._snapshot(sets)
        grads = [(p, p.grad) for s in sets for p in s.owners]
        try:
            yield
        except BaseException:
            self._restore(sets)
            for p, g in grads:
                p.grad = g
            raise

r"""The tensor-valued step of the ECD family (:class:`ECDSep`, :class:`ECDq1`, :class:`BBI`):
the path taken under ``torch.compile`` and with ``capturable=True``.

The eager step decides on the host: it reads the loss, ‖p‖², ‖g‖² (and the kicked ‖p‖²) as
Python floats and branches on them (skip, rescale, bounce). Traced by ``torch.compile``, every
such float would become a constant of the graph, so each new dt, energy or counter would compile
a new graph. Here, as for Leapfrog and Euler (:mod:`hamopt.optim.tensor_step`, whose helpers this
reuses), every value that changes from step to step is a float64 tensor of shape (1,) on the
parameters' device and every decision is a ``torch.where``. A step has three parts:

1. :func:`prepare` (eager, never traced): call the closure, gather the tensors that step, turn
   ``lr`` (float or tensor) and the optimiser-wide scalars (``step``, ``P2``, ``log_C``, BBI's
   counters, ...) into tensors, and **draw the bounce noise** from the optimiser's
   ``torch.Generator`` into scratch buffers (drawing from a generator cannot be traced). The
   noise is drawn in the eager step's order and count: ECDSep and ECDq1 (ν > 0) draw one
   ``N(0, I)`` per element at every step, BBI one ``U(−½, ½)`` per element on a step whose
   bounce is due by its counters. Whether the step will be skipped (``F ≤ eps2``) or refused
   (non-finite) is not known before the program runs:

   * without ``capturable`` the generator's state is kept, and :func:`finish` puts it back when
     the step did not bounce: the generator then advances exactly as in the eager step, and the
     numbers equal the eager step's, skipped steps and bounces included;
   * with ``capturable=True`` nothing may be read on the host, so the draw of a step is made
     whatever the outcome and used only if the step bounces: a skipped or refused ECDSep/ECDq1
     step consumes one draw that the eager step would not, and BBI draws at every step (its
     counters live on the device). The run is deterministic given the seed and equals the eager
     one up to the first skipped step (BBI: up to its first bounce).

2. the traced program (:mod:`hamopt.optim.ecd._programs`): reductions, the skip test, the
   deferred bounce rescale, initialisation, the rescale, kick, drift and bounce, with every
   write masked on the device so that a skipped or non-finite step changes nothing.
3. :func:`finish` (eager, never traced): ``capturable=True`` keeps the results as 0-d tensors
   in ``opt.stats`` (``skip_reason`` and BBI's ``bounce_kind``, strings, are None); otherwise
   the one host transfer of the step: the scalars are written back as Python numbers, the
   stats filled exactly as the eager step fills them, and a non-finite loss or gradient raises
   :class:`~hamopt.NonFiniteError` (nothing has changed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .. import _distributed as D
from ..base import ParamSet
from ..tensor_step import F64, _as_f64, host_number, never_traced

if TYPE_CHECKING:
    from ._common import ECDOptimizer

# stats the programs return for the host side only
INTERNAL_STATS = ("inputs_finite", "grad_sq", "kick_finite")


@dataclass
class ECDInputs:
    """What :func:`prepare` hands to a program: per param group the tensors, the weight decay
    (a static float) and dt (a tensor); the stored momenta that sit this step out (``others``);
    the noise buffers per group (None when the optimiser draws none); the optimiser-wide
    scalars as (1,) float64 tensors; the loss; group 0's ``lr`` (for the kinetic stat)."""

    params: list[list[Tensor]]
    grads: list[list[Tensor]]
    moms: list[list[Tensor]]
    decays: list[float]
    dts: list[Tensor]
    others: list[Tensor]
    noise: list[list[Tensor]] | None
    scalars: dict[str, Tensor]
    loss: Tensor
    lr0: Tensor


def _plain(value: Any) -> Any:
    """A bool as 0/1 (None, numbers and tensors unchanged), for :func:`_as_f64`."""
    return float(value) if isinstance(value, bool) else value


def to_tensor_form(opt: ECDOptimizer) -> None:
    """Capturable mode: the optimiser-wide scalars of ``opt.TENSOR_SCALARS`` as (1,) float64
    device tensors (None ↔ NaN, bools as 0/1); each converted once."""
    glob = opt._global
    device = opt._device()
    for key in opt.TENSOR_SCALARS:
        v = glob[key]
        if not (isinstance(v, Tensor) and v.device == device and v.dtype == F64 and v.shape == (1,)):
            glob[key] = _as_f64(_plain(v), device)


def to_float_form(opt: ECDOptimizer) -> None:
    """The optimiser-wide scalars as Python numbers, of the types the eager step keeps (after
    ``load_state_dict``, and in the checkpoints of a capturable optimiser)."""
    convert_to_float_form(opt._global, opt.TENSOR_SCALARS)


def convert_to_float_form(glob: dict[str, Any], kinds: dict[str, str]) -> None:
    """:func:`to_float_form` on a dict of scalars, ``kinds`` naming each key's type."""
    for key, kind in kinds.items():
        v = glob.get(key)
        if not isinstance(v, Tensor):
            continue
        if kind == "optional":
            glob[key] = host_number(v)
        elif kind == "int":
            glob[key] = int(v.item())
        elif kind == "bool":
            glob[key] = bool(v.item())
        else:
            glob[key] = float(v.item())


@never_traced
def prepare(opt: ECDOptimizer, closure: Callable[[], Any] | None
            ) -> tuple[Any, ECDInputs | None, list[ParamSet], tuple[Any, dict[str, Any]] | None]:
    """Part 1 (eager). Returns ``(value, inputs, sets, (generator state to restore or None,
    the program's static options))``. Under ``torch.compile`` with ``fused=True``, or with a
    process group of more than one rank, the fused or eager step runs here (one graph break) and
    ``inputs`` is None."""
    group = opt.param_groups[0]
    distributed = D.is_distributed(opt.process_group) or opt._sharded
    if distributed and group.get("capturable", False):
        raise NotImplementedError(
            f"{opt._name}: capturable=True is not available with a process group of more than one rank or sharded "
            "parameters; use the eager step (capturable=False)")
    if group.get("fused", False) or distributed:
        value, loss = opt._evaluate(closure)
        opt._step(loss)
        return value, None, [], None
    value, loss = opt._evaluate(closure)
    sets = opt._gather(read_lr=False)
    config = opt._tensor_config(sets)
    device = opt._device()
    capturable = bool(group.get("capturable", False))
    glob = opt._global
    if capturable:
        to_tensor_form(opt)
        scalars = {k: glob[k] for k in opt.TENSOR_SCALARS}
    else:
        scalars = {k: _as_f64(_plain(glob[k]), device) for k in opt.TENSOR_SCALARS}
    stepping = {id(m) for s in sets for m in s.moms}
    others = [b for b in opt._stored_buffers() if id(b) not in stepping]
    kind, due = opt._tensor_noise(capturable)
    noise, saved = None, None
    if kind is not None and stepping:
        noise = [opt._noise_buffers(s.moms, keep_layout=kind == "uniform") for s in sets]
        if due:
            if not capturable:
                saved = opt.generator.get_state()
            opt._fill([b for bufs in noise for b in bufs], [p for s in sets for p in s.owners], kind)
    inputs = ECDInputs(
        params=[s.params for s in sets], grads=[s.grads for s in sets], moms=[s.moms for s in sets],
        decays=[s.option("weight_decay") for s in sets], dts=[_as_f64(s.options["lr"], device) for s in sets],
        others=others, noise=noise, scalars=scalars, loss=loss.reshape(1),
        lr0=_as_f64(opt.param_groups[0]["lr"], device),
    )
    return value, inputs, sets, (saved, config)


@never_traced
def finish(opt: ECDOptimizer, inputs: ECDInputs, sets: list[ParamSet], stats: dict[str, Tensor],
           saved: Tensor | None) -> None:
    """Part 3 (eager). Capturable: keep the stats as 0-d tensors. Otherwise the one host
    transfer: restore the generator if the step drew noise it did not use, raise on a
    non-finite loss or gradient (nothing has changed), write the scalars back as Python numbers
    and fill ``opt.stats`` as the eager step does."""
    glob = opt._global
    if opt.param_groups[0].get("capturable", False):
        opt.stats = {k: v for k, v in stats.items() if k not in INTERNAL_STATS}
        opt.stats.update(skip_reason=None, **({"bounce_kind": None} if "fixed_bounce" in stats else {}))
        return
    names = list(stats)
    keys = list(opt.TENSOR_SCALARS)
    host = opt._to_host(*[stats[k] for k in names], *[inputs.scalars[k].reshape(()) for k in keys])
    values = dict(zip(names, host[:len(names)]))
    if saved is not None and not values["bounced"]:
        opt.generator.set_state(saved)
    if not values["inputs_finite"]:
        opt._raise_if_nonfinite(values["loss"], values["grad_sq"])
    if not values["kick_finite"]:
        raise FloatingPointError(f"{opt._name}: ‖p‖² = {values['P2']} after the kick at step {glob['step']} "
                                 "(nothing was changed)")
    scalars = dict(zip(keys, host[len(names):]))
    for key, kind in opt.TENSOR_SCALARS.items():
        if key in ("step", "skipped_steps", "displacement_sq"):
            continue  # advanced by _finish / _skip below, as in the eager step
        x = scalars[key]
        glob[key] = (None if math.isnan(x) else x) if kind == "optional" else (
            int(x) if kind == "int" else bool(x) if kind == "bool" else x)
    opt._tensor_host_stats(values, sets)


def step(opt: ECDOptimizer, closure: Callable[[], Any] | None) -> Any:
    """One step through :func:`prepare`, the optimiser's traced program and :func:`finish`."""
    value, inputs, sets, extra = prepare(opt, closure)
    if inputs is None or extra is None:  # under torch.compile, the fused or distributed eager step ran
        return value
    saved, config = extra
    stats = type(opt)._tensor_program(inputs, **config)
    finish(opt, inputs, sets, stats, saved)
    return value

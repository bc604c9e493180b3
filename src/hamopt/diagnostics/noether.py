r"""Noether charges of attention heads and rescale charges of homogeneous MLP units.

**Rotation charges.** In a head of dimension ``d`` the attention scores are invariant under
``W_Q,h → R W_Q,h, W_K,h → R W_K,h`` and the output under ``W_V,h → R W_V,h, W_O,h → W_O,h Rᵀ``
(R orthogonal; learned biases rotate with their rows). Write each tensor's slice as a ``d × n``
matrix ``X`` whose rows are the head axis — ``W_Q,h`` and ``W_K,h`` rows, the learned q/k biases as
one more column, ``W_V,h`` rows with the v bias as a column, and ``W_O,h`` columns transposed — and
``P`` the same slice of the momentum. The charges are the antisymmetric ``d × d`` matrices::

    J_QK = Σ_{X ∈ {W_Q,h, b_q,h, W_K,h, b_k,h}} (X Pᵀ − P Xᵀ)
    J_VO = Σ_{X ∈ {W_V,h, b_v,h, W_O,hᵀ}}       (X Pᵀ − P Xᵀ)

*When are they conserved?* For ``H = ½ Σ_i m_i ‖p_i‖² + L(θ)`` integrated by Leapfrog:

* a kick adds ``−c ∇`` to P and ``Σ (X ∇ᵀ − ∇ Xᵀ) = 0`` whenever L is invariant under the
  rotation (the symmetric variant; L2 weight decay is rotation invariant too), for any batch —
  so streaming mode and changing mini-batches conserve J as well as exact mode does;
* a drift adds ``h m_i P_i`` to each tensor's slice and changes J by ``h Σ_i m_i (P_i P_iᵀ −
  P_i P_iᵀ) = 0`` exactly, for *any* scalar inverse mass per tensor (W_Q, W_K and the biases may
  have different masses, e.g. the fan-in rule, because each tensor's term is symmetric on its
  own). A mass that varied along the head axis (an element-wise preconditioner such as Adam's)
  would break this;
* damping multiplies P by ``e^{−γ dt/2}`` at each half-kick, so in exact mode the stored
  momentum after t steps gives ``J_t = e^{−γ dt t} J_0``; in streaming mode the stored momentum
  is the half-step ``p_{t−½}`` (one opening half-kick, then t−1 merged closing + opening
  half-kicks), so the stored charge is ``J_t = e^{−γ dt (t−½)} J_0``;
* the energy cap (spec §4) rescales P and J with it: conservation holds on steps where it does
  not engage (``cap=None`` in the tests).

So with γ = 0 the charges of the symmetric model are constant up to rounding; the unlearned
biases of ``bq`` (breaks J_QK) and ``bq+bv`` (breaks both) make them drift — the monitor's
headline number. Note that Leapfrog and SGD-momentum start from zero charge (p_0 = 0, resp. a
buffer along the first gradient), so for the symmetric model they stay at zero to rounding.

**Where P comes from** (``source=``):

* ``"momentum"``: the optimiser's own momentum, read by its optimiser family
  (:meth:`hamopt.families.Family.momentum_reader`): Leapfrog/Euler their stored momentum; SGD
  with momentum μ and dampening d ``P = −√(lr/(1−d)) · b`` (velocity ``−lr b`` over
  ``h = √(lr(1−d))``, the convention of :mod:`hamopt.energy`).
* ``"displacement"``: ``P = (θ_{t+1} − θ_t) / h`` with ``h = convention_for(opt).time_step(opt)``;
  this needs :meth:`NoetherMonitor.before_step`. (``X Δᵀ − Δ Xᵀ`` is the same at θ_t and θ_{t+1}.)
* ``"auto"``: momentum where a reader exists, displacement otherwise (AdamW, ECD).

**Distributed training.** Under DDP the parameters and momenta are replicated, so every rank
measures the global charges. Under FSDP2 (``DTensor`` parameters and momenta) each tensor a
charge reads is gathered whole first (``DTensor.full_tensor()``, once per tensor per
measurement): the monitor is then a collective, and every rank must call it. It reads the
parameters it found when it was built (the sharded ones the optimiser updates), not the gathered
copies FSDP2 puts on the modules between a forward pass and the next backward pass.

**Rescale charges.** For a hidden unit i of ``proj(act(fc(x)))`` with ReLU or PReLU (positively
homogeneous), scaling ``(w_in,i, b_in,i) → α (w_in,i, b_in,i)``, ``w_out,i → w_out,i / α`` leaves
the function unchanged; ``Q_i = ‖w_in,i‖² + b_in,i² − ‖w_out,i‖²`` is conserved by gradient flow
(it moves by O(lr²) per gradient-descent step). The scaling is not an isometry of the kinetic
energy, so momentum dynamics do not conserve it: it is monitored, not expected constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..energy import conventions as C
from ..errors import UnregisteredOptimizerError
from ..optim import _distributed as D

__all__ = [
    "HeadCharge",
    "NoetherMonitor",
    "NoetherRecord",
    "RotationGroup",
    "SliceBlock",
    "attention_rotation_groups",
    "charge_matrix",
    "momentum_reader",
    "noether_charges",
    "rescale_charges",
    "rescale_pairs",
]

SOURCES = ("auto", "momentum", "displacement")


# ---------------------------------------------------------------------- structure
@dataclass(frozen=True)
class SliceBlock:
    """How one tensor contributes a ``d × n`` matrix whose rows are a head's axis.

    ``rows`` indexes the head axis: dim 0 of a weight (Q/K/V rows, or a 1-D bias, which becomes
    one column) or, with ``transpose=True``, dim 1 (the head's columns of W_O, transposed).
    """

    param: Tensor
    rows: slice
    transpose: bool = False

    def take(self, t: Tensor) -> Tensor:
        t = D.full(t.detach())
        if t.ndim == 1:
            m = t[self.rows].unsqueeze(1)
        elif self.transpose:
            m = t[:, self.rows].transpose(0, 1)
        else:
            m = t[self.rows, :]
        return m.to(torch.float64)


@dataclass(frozen=True)
class RotationGroup:
    """The tensors one head's rotation acts on: ``kind`` is ``"qk"`` or ``"vo"``."""

    layer: int
    head: int
    kind: str
    blocks: tuple[SliceBlock, ...]


def attention_rotation_groups(model: nn.Module) -> list[RotationGroup]:
    """Per layer and head, the Q/K and V/O rotation groups of every
    :class:`~hamopt.models.gpt.CausalSelfAttention` in ``model`` (in module order)."""
    from ..models.gpt import CausalSelfAttention

    groups = []
    attns = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    for layer, attn in enumerate(attns):
        w, d = attn.width, attn.head_dim
        qkv_w, qkv_b = attn.qkv.weight, attn.qkv.bias
        proj_w = attn.proj.weight
        for h in range(attn.n_head):
            q, k, v = (slice(o + h * d, o + (h + 1) * d) for o in (0, w, 2 * w))
            qk = [SliceBlock(qkv_w, q), SliceBlock(qkv_w, k)]
            vo = [
                SliceBlock(qkv_w, v),
                SliceBlock(proj_w, slice(h * d, (h + 1) * d), transpose=True),
            ]
            if qkv_b is not None:
                qk += [SliceBlock(qkv_b, q), SliceBlock(qkv_b, k)]
                vo.append(SliceBlock(qkv_b, v))
            groups.append(RotationGroup(layer, h, "qk", tuple(qk)))
            groups.append(RotationGroup(layer, h, "vo", tuple(vo)))
    return groups


def rescale_pairs(model: nn.Module) -> list[tuple[nn.Linear, nn.Linear]]:
    """``(fc, proj)`` of every :class:`~hamopt.models.gpt.MLP` with a homogeneous activation."""
    from ..models.gpt import MLP

    return [(m.fc, m.proj) for m in model.modules() if isinstance(m, MLP) and m.homogeneous]


# ---------------------------------------------------------------------- charges
def _charge_parts(
    blocks: Sequence[SliceBlock],
    momentum_of: Callable[[Tensor], Tensor],
    value_of: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``J`` and the 0-d tensors ``‖X‖_F²``, ``‖P‖_F²`` (no host synchronisation); ``value_of``
    maps a parameter to the tensor its slices are read from (default: the parameter)."""
    s = xsq = psq = None
    for b in blocks:
        x = b.take(b.param if value_of is None else value_of(b.param))
        p = b.take(momentum_of(b.param))
        term = x @ p.transpose(0, 1)
        s = term if s is None else s + term
        xsq = x.square().sum() if xsq is None else xsq + x.square().sum()
        psq = p.square().sum() if psq is None else psq + p.square().sum()
    assert s is not None and xsq is not None and psq is not None
    return s - s.transpose(0, 1), xsq, psq


def charge_matrix(
    blocks: Sequence[SliceBlock], momentum_of: Callable[[Tensor], Tensor]
) -> tuple[Tensor, float]:
    """``J = Σ_b X_b P_bᵀ − P_b X_bᵀ`` (float64, ``d × d``) and the scale ``2 ‖X‖_F ‖P‖_F``
    (``‖J‖_F ≤`` scale, so their ratio is a charge fraction in [0, 1])."""
    j, xsq, psq = _charge_parts(blocks, momentum_of)
    return j, 2.0 * math.sqrt(float(xsq) * float(psq))


def _memoised(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Evaluate ``fn`` once per parameter (the heads of a layer share one packed tensor)."""
    cache: dict[int, Tensor] = {}

    def get(p: Tensor) -> Tensor:
        key = id(p)
        if key not in cache:
            cache[key] = fn(p)
        return cache[key]

    return get


def rescale_charges(pairs: Sequence[tuple[nn.Linear, nn.Linear]]) -> list[Tensor]:
    """Per pair, the vector ``Q_i = ‖w_in,i‖² + b_in,i² − ‖w_out,i‖²`` over hidden units."""
    out = []
    for fc, proj in pairs:
        q = D.full(fc.weight.detach()).double().square().sum(1)
        if fc.bias is not None:
            q = q + D.full(fc.bias.detach()).double().square()
        out.append(q - D.full(proj.weight.detach()).double().square().sum(0))
    return out


@dataclass(frozen=True)
class HeadCharge:
    """One head's charge: ``matrix`` (antisymmetric, float64), its Frobenius ``norm`` and
    ``scale = 2 ‖X‖_F ‖P‖_F`` (``relative = norm / scale`` ∈ [0, 1])."""

    layer: int
    head: int
    kind: str
    matrix: Tensor
    norm: float
    scale: float

    @property
    def relative(self) -> float:
        return self.norm / self.scale if self.scale > 0 else 0.0


@dataclass(frozen=True)
class NoetherRecord:
    """All charges of one step. ``source`` is ``"momentum"`` or ``"displacement"``."""

    step: int
    source: str
    qk: tuple[HeadCharge, ...]
    vo: tuple[HeadCharge, ...]
    rescale: tuple[Tensor, ...] = field(default=())

    @staticmethod
    def _total(charges: Sequence[HeadCharge]) -> tuple[float, float]:
        norm = math.sqrt(sum(c.norm**2 for c in charges))
        scale = math.sqrt(sum(c.scale**2 for c in charges))
        return norm, (norm / scale if scale > 0 else 0.0)

    def matrices(self, kind: str) -> Tensor:
        """``(n_heads_total, d, d)`` stack of the ``"qk"`` or ``"vo"`` matrices."""
        charges = {"qk": self.qk, "vo": self.vo}[kind]
        return torch.stack([c.matrix for c in charges])

    def summary(self) -> dict[str, Any]:
        """Flat numbers for a per-step table: total norms ``sqrt(Σ_heads ‖J‖²)``, the total
        charge fractions, per-head norms (lists, layer-major) and the rescale charges' norm."""
        qk_norm, qk_rel = self._total(self.qk)
        vo_norm, vo_rel = self._total(self.vo)
        resc = (
            torch.cat(list(self.rescale)) if self.rescale else torch.zeros(0, dtype=torch.float64)
        )
        return {
            "noether_source": self.source,
            "j_qk_norm": qk_norm,
            "j_vo_norm": vo_norm,
            "j_qk_rel": qk_rel,
            "j_vo_rel": vo_rel,
            "j_qk_head_norms": [c.norm for c in self.qk],
            "j_vo_head_norms": [c.norm for c in self.vo],
            "rescale_norm": float(torch.linalg.vector_norm(resc)) if resc.numel() else None,
            "rescale_mean": float(resc.mean()) if resc.numel() else None,
        }


def noether_charges(
    model: nn.Module,
    momentum_of: Callable[[Tensor], Tensor],
    *,
    step: int = 0,
    source: str = "momentum",
    pairs: Sequence[tuple[nn.Linear, nn.Linear]] | None = None,
    groups: Sequence[RotationGroup] | None = None,
) -> NoetherRecord:
    """Charges of ``model`` with the momentum of each parameter given by ``momentum_of(param)``.

    ``groups`` (default: :func:`attention_rotation_groups` of ``model`` now) name the parameter
    objects to read; pass the groups found when training started where a wrapper swaps a
    module's parameter attributes (FSDP2 shows gathered copies between a forward pass and the
    next backward pass)."""
    groups = attention_rotation_groups(model) if groups is None else list(groups)
    if not groups:
        raise ValueError(
            "model has no CausalSelfAttention module: there are no rotation charges to measure"
        )
    raw_momentum = momentum_of
    momentum_of = _memoised(lambda p: D.full(raw_momentum(p).detach()))
    value_of = _memoised(lambda p: D.full(p.detach()))
    parts = [_charge_parts(g.blocks, momentum_of, value_of) for g in groups]
    # one host transfer for all norms and scales
    numbers = torch.stack(
        [torch.stack([torch.linalg.matrix_norm(j), 2.0 * (x * p).sqrt()]) for j, x, p in parts]
    ).tolist()
    qk, vo = [], []
    for g, (matrix, _, _), (norm, scale) in zip(groups, parts, numbers, strict=True):
        hc = HeadCharge(g.layer, g.head, g.kind, matrix, norm, scale)
        (qk if g.kind == "qk" else vo).append(hc)
    pairs = rescale_pairs(model) if pairs is None else pairs
    return NoetherRecord(step, source, tuple(qk), tuple(vo), tuple(rescale_charges(pairs)))


# ---------------------------------------------------------------------- momentum readers
def momentum_reader(optimizer: Optimizer) -> Callable[[Tensor], Tensor] | None:
    """``param -> P`` for ``optimizer`` from its optimiser family
    (:meth:`hamopt.families.Family.momentum_reader`), or None when it keeps no momentum state or
    has a registered energy convention but no family."""
    from .. import families

    try:
        family = families.for_optimizer(optimizer)
    except UnregisteredOptimizerError:
        return None
    return family.momentum_reader(optimizer)


# ---------------------------------------------------------------------- monitor
class NoetherMonitor:
    """Measure the charges of ``model`` after every step of ``optimizer``.

    Args:
        model: contains :class:`~hamopt.models.gpt.CausalSelfAttention` modules.
        optimizer: any optimiser registered in :mod:`hamopt.energy`.
        source: ``"auto"``, ``"momentum"`` or ``"displacement"`` (see the module docstring).
        pairs: ``(fc, proj)`` Linear pairs for rescale charges (default: the ReLU/PReLU MLPs).

    Use ``monitor.before_step(); opt.step(...); record = monitor.after_step()`` or, next to the
    energy record, ``energy_record, charges = monitor.step(tracker, batch_loss)``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        *,
        source: str = "auto",
        pairs: Sequence[tuple[nn.Linear, nn.Linear]] | None = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(
                f"source must be one of {', '.join(map(repr, SOURCES))}; got {source!r}"
            )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}"
            )
        self.model = model
        self.optimizer = optimizer
        self.convention = C.convention_for(optimizer)
        self.groups = attention_rotation_groups(model)
        if not self.groups:
            raise ValueError(
                "model has no CausalSelfAttention module: there are no rotation charges to measure"
            )
        self.pairs = rescale_pairs(model) if pairs is None else list(pairs)
        reader = momentum_reader(optimizer)
        if source == "momentum" and reader is None:
            raise ValueError(
                f"source='momentum' needs momentum state, and optimizer {type(optimizer).__name__} "
                f"(energy convention {C.label(optimizer)!r}) keeps none; use source='displacement' "
                "(P = (θ_{t+1} − θ_t)/h) or source='auto'"
            )
        self.source = (
            "momentum"
            if (source == "momentum" or (source == "auto" and reader is not None))
            else "displacement"
        )
        self._reader = reader
        self._params = list({id(b.param): b.param for g in self.groups for b in g.blocks}.items())
        self._before: dict[int, Tensor] | None = None
        self._steps = 0
        self.records: list[NoetherRecord] = []

    def before_step(self) -> None:
        """Copy the head tensors θ_t (needed for ``source="displacement"``; cheap otherwise)."""
        if self.source == "displacement":
            self._before = {k: p.detach().clone() for k, p in self._params}

    def charges(self, *, step: int | None = None) -> NoetherRecord:
        """The charges of the current state (after a step)."""
        if self.source == "momentum":
            momentum_of = self._reader
        else:
            if self._before is None:
                raise RuntimeError(
                    "source='displacement' has no displacement to read: call before_step() before "
                    "optimizer.step() (or an optimiser with momentum state and source='momentum')"
                )
            h = float(self.convention.time_step(self.optimizer))
            before = self._before

            def momentum_of(p: Tensor) -> Tensor:
                return (p.detach() - before[id(p)]) / h

        assert momentum_of is not None
        return noether_charges(
            self.model,
            momentum_of,
            step=self._steps if step is None else step,
            source=self.source,
            pairs=self.pairs,
            groups=self.groups,
        )

    def after_step(self) -> NoetherRecord:
        """The charges after the step just taken; appended to :attr:`records`."""
        record = self.charges()
        self._before = None
        self.records.append(record)
        self._steps += 1
        return record

    def step(self, tracker: Any, batch_loss: Callable[[], Tensor]) -> tuple[Any, NoetherRecord]:
        """One :class:`~hamopt.energy.EnergyTracker` step and the charges after it."""
        if tracker.optimizer is not self.optimizer:
            raise ValueError("tracker must wrap the same optimizer as the monitor")
        self.before_step()
        energy = tracker.step(batch_loss)
        return energy, self.after_step()

r"""Hybrid schedules: one ``torch.optim.Optimizer`` that runs a sequence of optimiser phases.

A :class:`Hybrid` runs phase 0's optimiser, then phase 1's, ... (:class:`~hamopt.optim.Phase`):
each phase is a family of the registry (:mod:`hamopt.families`) with its own step size and
hyper-parameters, and ends after its length (``steps`` or ``fraction`` of ``total_steps``) or
when its switch rule fires (:mod:`hamopt.optim.switch_rules`). Typical use: explore with
Leapfrog in its band, converge with AdamW, perhaps return to Leapfrog to refine::

    opt = hamopt.Hybrid(model.parameters(), [
        Phase("leapfrog", 0.3, hyper={"gamma": 0.1}, fraction=0.5),
        Phase("adamw", 1e-3, switch=Plateau(window=20, rel_tol=1e-3)),
        Phase("leapfrog", 0.1),
    ], total_steps=1000)

**Switching.** After step ``k`` (0-based) the phase ends when it has run its length, or when its
rule, shown the loss of step ``k``, fires; step ``k + 1`` then runs in the next phase. The switch
happens at the end of ``step()``: the new optimiser is built over the same parameters, takes the
old state over (``handover``), and ``stats["switched"]`` is True for step ``k``. The last phase
runs until training stops. ``switch_steps`` lists the first step of every phase after the first.

**Hand-over** (:mod:`hamopt.optim.handover`): ``"velocity"`` (default) writes the new state with
the old velocity ``θ̇ = M⁻¹p`` under the energy conventions (Leapfrog ``p`` ↔ SGD ``b = −θ̇/c``
↔ Adam ``m̂ = −(√v̂+ε) θ̇/c``, ``c = √(lr/k)``); ``"reset"`` starts the new optimiser fresh.

**LR schedulers.** Each Hybrid param group holds ``lr``, a dimensionless *schedule factor*
``s`` (default 1.0). The active phase steps with ``phase.lr · s`` in each group, so any
``torch.optim.lr_scheduler`` on the Hybrid scales every phase's own step size by the same curve,
whatever its units (``dt`` ≈ 0.3 for Leapfrog, ``lr`` ≈ 1e-3 for AdamW). The factor applies to
the step about to run; ``group["step_size"]`` shows that step size (read-only: it is rewritten
before every step).

**Closures and losses.** ``step(closure)`` passes the closure to the active optimiser (exact
Leapfrog calls it twice per step; torch's optimisers once); ``step(loss=...)`` gives the loss of
a plain ``loss.backward(); opt.step(loss=loss)`` loop to a switch rule (and to a streaming
Leapfrog phase, whose cap needs it). Exact Leapfrog without a closure raises its own error.

**state_dict.** ``state_dict()`` holds the torch param groups, the schedule position (phase,
step within the phase, global step, switch steps), the active rule's state and the active
optimiser's own ``state_dict``; ``load_state_dict`` into a Hybrid with the same phases rebuilds
that optimiser and continues bit for bit. A state saved with other phases is refused.

**Energy.** The Hybrid's family (``families.get("hybrid")``) delegates its energy convention to
the active optimiser, so :class:`hamopt.energy.EnergyTracker` reports every step under its
phase's convention; ``stats`` gives ``phase``, ``label`` and ``switched`` for each step (the
kinetic energy jumps at a switch when the mass changes; see :mod:`hamopt.optim.handover`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from .handover import HANDOVERS, transfer_velocity
from .hybrid_phases import Phase, PhaseError, ResolvedPhase, resolve_phases
from .switch_rules import Plateau, StabilityCrossing, SwitchRule

__all__ = ["HANDOVERS", "Hybrid", "Phase", "PhaseError", "Plateau", "StabilityCrossing", "SwitchRule"]

_GROUP_KEYS = ("params", "lr", "step_size", "name")


def _as_factor(where: str, value: Any) -> float:
    v = float(value.item() if isinstance(value, Tensor) else value)
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{where}lr (the schedule factor) must be a finite number > 0; got {value!r}")
    return v


class Hybrid(Optimizer):
    r"""A sequence of optimiser phases as one ``torch.optim.Optimizer`` (see the module docstring).

    Args:
        params: parameters or param groups (a group may set its own ``lr`` schedule factor; phase
            options are per phase, not per group).
        phases: :class:`~hamopt.optim.Phase` objects or mappings of their fields, in order.
        lr: the schedule factor ``s`` of each group's step size ``phase.lr · s`` (default 1.0).
        total_steps: the step budget that ``fraction`` lengths refer to (None: no fractions).
        handover: default hand-over of every phase after the first: ``"velocity"`` or ``"reset"``.
        seed: seeds the generator of a seeded family (the ECD bounces): phase ``i`` gets
            ``derive_seed(seed, i)``; None: the family's default.
        fused: torch's fused kernels for the torch optimisers (SGD, AdamW): None uses them on
            CPU and CUDA (as the lab does), False never.

    Every phase is checked before anything is built or computed; a bad one raises
    :class:`~hamopt.optim.PhaseError` naming ``phases[i].<field>``.
    """

    def __init__(
        self,
        params: Any,
        phases: Sequence[Phase | Mapping[str, Any]],
        *,
        lr: float = 1.0,
        total_steps: int | None = None,
        handover: str = "velocity",
        seed: int | None = None,
        fused: bool | None = None,
    ) -> None:
        resolved = resolve_phases(phases, total_steps=total_steps, handover=handover)
        if fused is not None and not isinstance(fused, bool):
            raise ValueError(f"fused: must be True, False or None; got {fused!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed: must be an integer >= 0 or None; got {seed!r}")
        _as_factor("", lr)
        self.phases: tuple[ResolvedPhase, ...] = tuple(resolved)
        self.total_steps = total_steps
        self.handover = handover
        self.seed = seed
        self.fused = fused
        super().__init__(params, {"lr": lr, "step_size": None})
        self._phase = 0
        self._phase_step = 0
        self._step = 0
        self._switch_steps: list[int] = []
        self._active = self._build(0)
        self._start_rule()
        self.stats: dict[str, Any] = self._stats(None, switched=False)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (keys ``params`` and ``lr``, the schedule factor); the active optimiser and
        every later phase get it too."""
        where = f"param_groups[{len(self.param_groups)}]."
        unknown = [k for k in param_group if k not in _GROUP_KEYS]
        if unknown:
            raise ValueError(
                f"{where}{unknown[0]}: unknown key; a Hybrid group takes params and lr (the schedule "
                "factor); per-optimiser options belong to the phases"
            )
        _as_factor(where, param_group.get("lr", self.defaults["lr"]))
        super().add_param_group(param_group)
        active = getattr(self, "_active", None)
        if active is not None:
            group = self.param_groups[-1]
            active.add_param_group({"params": group["params"]})
            self._sync_step_sizes()

    # ------------------------------------------------------------------ phases
    @property
    def active_optimizer(self) -> Optimizer:
        """The optimiser of the phase now running, its step sizes set from the current schedule
        factors (so a read after ``scheduler.step()`` sees the step size of the next step)."""
        self._sync_step_sizes(mirror=False)
        return self._active

    @property
    def phase(self) -> ResolvedPhase:
        """The phase now running."""
        return self.phases[self._phase]

    @property
    def phase_index(self) -> int:
        return self._phase

    @property
    def phase_step(self) -> int:
        """Steps the current phase has run."""
        return self._phase_step

    @property
    def switch_steps(self) -> tuple[int, ...]:
        """The first (0-based) step of every phase after the first that has started."""
        return tuple(self._switch_steps)

    def _phase_seed(self, index: int) -> int | None:
        if self.seed is None:
            return None
        from ..data.stream import derive_seed

        return derive_seed(self.seed, index)

    def _build(self, index: int) -> Optimizer:
        ph = self.phases[index]
        device = self.param_groups[0]["params"][0].device.type if self.param_groups[0]["params"] else "cpu"
        groups = [{"params": g["params"]} for g in self.param_groups]
        opt = ph.family.construct(groups, ph.phase.lr, ph.hyper, seed=self._phase_seed(index), mode=ph.mode,
                                  device=device, fused=self.fused)
        self._sync_step_sizes(opt, ph, mirror=False)
        return opt

    def _sync_step_sizes(self, opt: Optimizer | None = None, ph: ResolvedPhase | None = None, *,
                         mirror: bool = True) -> None:
        """Each group of the optimiser (default: the active one) steps with ``phase.lr · s``
        (``s``: the group's schedule factor ``lr``); with ``mirror`` (only before a step) also
        recorded in the Hybrid group's ``step_size``, which then holds the size of the step run."""
        opt = opt or self._active
        ph = ph or self.phase
        key = ph.family.step_size_name
        for i, (mine, theirs) in enumerate(zip(self.param_groups, opt.param_groups, strict=True)):
            size = ph.phase.lr * _as_factor(f"param_groups[{i}].", mine["lr"])
            theirs[key] = size
            if mirror:
                mine["step_size"] = size

    def _start_rule(self) -> None:
        rule = self.phase.switch
        if rule is not None:
            rule.reset()

    def _switch(self) -> None:
        """End the current phase: build the next optimiser and hand the state over."""
        new_index = self._phase + 1
        new = self._build(new_index)
        if self.phases[new_index].handover == "velocity":
            transfer_velocity(self._active, new)
        self._active = new
        self._phase = new_index
        self._phase_step = 0
        self._switch_steps.append(self._step)
        self._start_rule()

    def _phase_over(self, loss: float | None) -> bool:
        ph = self.phase
        if ph.index == len(self.phases) - 1:
            return False
        over = ph.length is not None and self._phase_step >= ph.length
        if ph.switch is not None:
            try:
                fired = ph.switch.observe(loss=loss, phase_step=self._phase_step - 1)
            except ValueError as exc:
                raise PhaseError(ph.index, "switch", str(exc)) from None
            over = over or fired
        return over

    # ------------------------------------------------------------------ step
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:  # type: ignore[override]
        """One step of the active phase; returns what its optimiser returns (the closure's loss).

        Args:
            closure: re-evaluates the loss on the current batch (zero_grad, forward, backward,
                return the loss); required while an exact-mode Leapfrog/Euler phase runs.
            loss: without a closure, the loss already back-propagated: for a switch rule, and
                for a streaming Leapfrog/Euler phase.
        """
        if closure is not None and loss is not None:
            raise ValueError("pass either closure or loss=, not both")
        if closure is None and loss is None and isinstance(self.phase.switch, Plateau):
            raise PhaseError(self._phase, "switch", "plateau needs the training loss of every step: pass a "
                                                     "closure to step() or step(loss=...)")
        self._sync_step_sizes()
        inner = self._active
        streaming = getattr(inner, "mode", None) == "streaming"
        result = inner.step(loss=loss) if closure is None and loss is not None and streaming else inner.step(closure)
        inner_stats = getattr(inner, "stats", None)
        value = result if result is not None else loss
        seen = None if value is None else float(value.item() if isinstance(value, Tensor) else value)
        step, phase, label = self._step, self._phase, self.phase.label
        self._step += 1
        self._phase_step += 1
        switched = self._phase_over(seen)
        if switched:
            self._switch()
        self.stats = self._stats(seen, switched=switched, step=step, phase=phase, label=label,
                                 inner=inner_stats)
        return result

    def _stats(self, loss: float | None, *, switched: bool, step: int | None = None, phase: int | None = None,
               label: str | None = None, inner: Any = None) -> dict[str, Any]:
        """``step``, ``phase`` and ``label`` of the step just run, ``switched`` (it was the last
        step of its phase), its ``loss``, ``next_phase`` and the phase optimiser's own ``stats``."""
        return {
            "step": step,
            "phase": self._phase if phase is None else phase,
            "label": self.phase.label if label is None else label,
            "switched": switched,
            "loss": loss,
            "next_phase": self._phase,
            "inner": dict(inner) if isinstance(inner, Mapping) else None,
        }

    # ------------------------------------------------------------------ state
    def _signature(self) -> list[dict[str, Any]]:
        return [
            {"family": p.family.name, "lr": p.phase.lr, "hyper": p.hyper, "mode": p.mode, "length": p.length,
             "switch": None if p.switch is None else p.switch.describe(), "handover": p.handover}
            for p in self.phases
        ]

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` plus ``"hybrid"``: the schedule position, the active rule's
        state and the active optimiser's ``state_dict``."""
        sd = super().state_dict()
        rule = self.phase.switch
        sd["hybrid"] = {
            "phases": copy.deepcopy(self._signature()),
            "phase": self._phase,
            "phase_step": self._phase_step,
            "step": self._step,
            "switch_steps": list(self._switch_steps),
            "rule": None if rule is None else rule.state_dict(),
            "active": self._active.state_dict(),
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by a Hybrid with the same phases (refused otherwise, before any
        change); the active phase's optimiser is rebuilt and loaded."""
        if not isinstance(state_dict, Mapping) or "hybrid" not in state_dict:
            raise ValueError("state_dict: not saved by hamopt.Hybrid (no 'hybrid' entry)")
        saved = state_dict["hybrid"]
        mine = self._signature()
        if list(saved["phases"]) != mine:
            raise ValueError(
                "state_dict: it was saved with other phases; saved "
                f"{[(p['family'], p['lr']) for p in saved['phases']]}, this Hybrid has "
                f"{[(p['family'], p['lr']) for p in mine]}"
            )
        index = int(saved["phase"])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "hybrid"})
        self._phase = index
        self._active = self._build(index)
        self._active.load_state_dict(saved["active"])
        self._phase_step = int(saved["phase_step"])
        self._step = int(saved["step"])
        self._switch_steps = [int(s) for s in saved["switch_steps"]]
        rule = self.phase.switch
        if rule is not None:
            rule.reset()
            if saved["rule"] is not None:
                rule.load_state_dict(saved["rule"])
        self._sync_step_sizes()

    def __repr__(self) -> str:
        parts = ", ".join(f"{p.label}@{p.phase.lr:g}" + (f"×{p.length}" if p.length else "") for p in self.phases)
        return f"Hybrid([{parts}], phase {self._phase}, step {self._step})"


def phases_of(items: Iterable[Any]) -> list[Phase]:
    """Plain-data phases (e.g. from YAML) as :class:`Phase` objects."""
    return [Phase.coerce(v, i) for i, v in enumerate(items)]

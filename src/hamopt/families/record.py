r"""The record of one optimiser family: everything the rest of hamopt needs to know about it.

A :class:`Family` says how to build its optimiser from ``(params, step_size, hyper, seed, mode,
device)``, which hyper-parameters it takes (:meth:`Family.validate_hyper` builds the optimiser on
a dummy parameter, so the lab accepts exactly what the optimiser accepts), its step-size axis
(``dt`` or ``lr``) and Hamiltonian time step ``h``, its energy convention
(:class:`hamopt.energy.EnergyConvention`), how to read its momentum for the Noether monitor, what
a run manifest records about it, its :class:`SharpnessRule` (the largest stable
``λ_max(P⁻¹H)`` at a step size, with the preconditioner ``P`` read from the optimiser's state)
and its :class:`StabilityRule` for band placement, derived from the sharpness rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor
from torch.optim import Optimizer

from ..energy.conventions import EnergyConvention
from .hyper import HyperError, normalise

__all__ = ["Family", "PlaygroundEntry", "SharpnessRule", "StabilityRule"]

Construct = Callable[..., Optimizer]
MomentumReader = Callable[[Optimizer], "Callable[[Tensor], Tensor] | None"]
ThresholdFormula = Callable[[float, Mapping[str, Any]], float]
#: ``optimizer -> (param -> P⁻¹)``: the inverse preconditioner of each parameter, a number or a
#: tensor of the parameter's shape (see :mod:`hamopt.families.state`).
PreconditionerReader = Callable[[Optimizer], "Callable[[Tensor], Tensor | float]"]


@dataclass(frozen=True)
class SharpnessRule:
    r"""The optimiser-aware sharpness threshold: the update is linearly stable iff
    ``λ_max(P⁻¹H) < threshold(step_size, hyper)`` (:mod:`hamopt.diagnostics.thresholds`).

    Attributes:
        threshold: ``(step size, hyper or param group) -> threshold``, or None when the family has
            no threshold (``description`` then says why).
        description: the rule as a formula, or the reason there is none.
        preconditioned: True when the eigenvalue is of ``P⁻¹H`` with the family's preconditioner
            (:attr:`Family.preconditioner`), False for the plain Hessian.
    """

    threshold: ThresholdFormula | None
    description: str
    preconditioned: bool = False

    def value(self, step_size: float, hyper: Mapping[str, Any]) -> float | None:
        """The threshold at ``step_size`` with ``hyper`` (None: no threshold)."""
        return None if self.threshold is None else float(self.threshold(step_size, hyper))

    def stability_rule(
        self,
        *,
        power: int,
        description: str,
        requirement: Callable[[Mapping[str, Any]], str | None] | None = None,
        at: Mapping[str, Any] | None = None,
    ) -> StabilityRule:
        """The band-placement rule this threshold implies: the step-size limit for a measured
        eigenvalue is the step size at which the threshold equals it (``at`` overrides hyper
        values first, e.g. ``{"gamma": 0.0}`` to place bands in units of the undamped limit)."""
        from ..diagnostics.thresholds import step_size_at

        if self.threshold is None:
            raise ValueError(f"no threshold to derive a stability rule from: {self.description}")
        formula, fixed = self.threshold, dict(at or {})
        return StabilityRule(
            eigenvalue="lambda_preconditioned" if self.preconditioned else "lambda_hessian",
            limit=lambda lam, hyper: step_size_at(formula, lam, {**hyper, **fixed}),
            power=power,
            description=description,
            requirement=requirement,
        )


@dataclass(frozen=True)
class StabilityRule:
    r"""How band placement turns a measured top eigenvalue into a step-size limit.

    The lab measures ``λ_max`` at initialisation (:mod:`hamopt.experiments.calibrate`) and a
    spec's stability fraction ``f`` is a fraction of the limit in units of the Hamiltonian time
    step ``h``: with ``step size = h^power``, ``step size = f^power · limit(λ_max, hyper)``.

    Attributes:
        eigenvalue: which eigenvalue the limit needs, named as in the calibration record:
            ``"lambda_preconditioned"`` (``λ_max(M⁻¹H)``) or ``"lambda_hessian"`` (``λ_max(H)``).
        limit: ``(λ_max, hyper) -> step-size limit`` (e.g. ``2/√λ`` or ``2(1+μ)/λ``).
        power: the step size is ``h**power`` (1 for ``dt``, 2 for ``lr = h²``).
        description: the rule as a formula, for manifests and docs.
        requirement: ``hyper -> message or None``: why the rule does not apply to this hyper
            (e.g. heavy-ball SGD needs momentum > 0).
    """

    eigenvalue: str
    limit: Callable[[float, Mapping[str, Any]], float]
    power: int
    description: str
    requirement: Callable[[Mapping[str, Any]], str | None] | None = None

    def __post_init__(self) -> None:
        if self.eigenvalue not in ("lambda_preconditioned", "lambda_hessian"):
            raise ValueError(
                "eigenvalue must be 'lambda_preconditioned' or 'lambda_hessian', "
                f"got {self.eigenvalue!r}"
            )
        if self.power not in (1, 2):
            raise ValueError(f"power must be 1 (step size h) or 2 (step size h²), got {self.power!r}")

    def check(self, hyper: Mapping[str, Any]) -> None:
        """Raise :class:`ValueError` when the rule does not apply to ``hyper``."""
        why = None if self.requirement is None else self.requirement(hyper)
        if why:
            raise ValueError(why)

    def step_size(self, fraction: float, eigenvalue: float, hyper: Mapping[str, Any]) -> float:
        """``fraction^power · limit(eigenvalue, hyper)``."""
        if not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"fraction must be finite and > 0, got {fraction!r}")
        if not (math.isfinite(eigenvalue) and eigenvalue > 0):
            raise ValueError(f"eigenvalue must be finite and > 0, got {eigenvalue!r}")
        self.check(hyper)
        return fraction**self.power * float(self.limit(eigenvalue, hyper))


@dataclass(frozen=True)
class PlaygroundEntry:
    """How the 2-D optimiser playground (:mod:`hamopt.playground`) offers a family.

    Attributes:
        key: the playground's name of the optimiser (``sgd_momentum``).
        label: the menu label (``SGD-momentum``).
        uses: the :class:`~hamopt.playground.PlaygroundConfig` fields it reads besides the step size.
        hyper: ``config -> hyper`` from those fields (the family's defaults fill the rest).
        suggested_step: one step size suggested on every landscape, or None for the playground's
            per-landscape tables (integrator or baseline).
    """

    key: str
    label: str
    uses: tuple[str, ...]
    hyper: Callable[[Any], dict[str, Any]]
    suggested_step: float | None = None


def _dummy() -> list[Tensor]:
    """A 2×2 matrix parameter: accepted by element-wise optimisers and by matrix ones alike."""
    return [torch.zeros(2, 2, requires_grad=True)]


@dataclass(frozen=True)
class Family:
    r"""One optimiser family (one spec ``type``).

    Attributes:
        name: the spec type (``leapfrog``, ``sgd``, ...), unique in the registry.
        display_name: for tables and menus (``Leapfrog``, ``SGD``).
        optimizer_class: the ``torch.optim.Optimizer`` subclass; :func:`for_optimizer` finds the
            family of an optimiser by its class (nearest registered base in the MRO).
        step_size_name: the keyword of the step size and the drift plot's axis (``dt`` is the
            ``lr`` argument of Leapfrog/Euler; see :attr:`step_size_axis`).
        energy: the energy convention (kinetic energy K, step size, time step h, displacement form).
        hyper_model: the schema of ``hyper`` (defaults, types, unknown keys); see
            :mod:`hamopt.families.hyper`.
        construct: ``(params, step_size, hyper, *, seed, mode, device, fused) -> Optimizer``
            with a complete hyper; :meth:`build` validates first.
        modes: the optimiser's modes, first the default (``("exact", "streaming")``), or ``()``.
        stability: the band-placement rule, or None (no calibrated threshold: a spec must give
            literal step sizes).
        momentum: ``optimizer -> (param -> P) or None`` for the Noether monitor; None when the
            family keeps no momentum (the monitor then uses the displacement).
        manifest_extras: ``optimizer -> dict`` added to :meth:`manifest`.
        labeller: ``hyper or param group -> label`` (``sgd-momentum`` vs ``sgd``); None: ``name``.
        refuse: ``hyper -> message or None``: a valid hyper the family still refuses.
        seeded: the optimiser owns a generator seeded from ``build(seed=...)``.
        keeps_own_values: the normalised hyper records the values the optimiser keeps
            (``optimizer.defaults``), which may differ from the ones given.
        has_energy_cap: the family has an energy cap (``hyper.cap``) whose engagements count.
        integrator: a Hamiltonian integrator with explicit momentum (reversibility round trips).
        step_axis: the drift plot's axis label, ``dt`` or ``lr``.
        description: one line for docs and menus.
        playground: how the 2-D playground offers the family, or None (not offered).
        sharpness: the sharpness threshold rule, or None (no rule known for this family).
        preconditioner: ``optimizer -> (param -> P⁻¹)`` for the sharpness ``λ_max(P⁻¹H)``;
            None: ``P = I``.
    """

    name: str
    display_name: str
    optimizer_class: type[Optimizer]
    step_size_name: str
    energy: EnergyConvention
    hyper_model: type[BaseModel]
    construct: Construct
    modes: tuple[str, ...] = ()
    stability: StabilityRule | None = None
    momentum: MomentumReader | None = None
    manifest_extras: Callable[[Optimizer], dict[str, Any]] | None = None
    labeller: Callable[[Mapping[str, Any]], str] | None = None
    refuse: Callable[[Mapping[str, Any]], str | None] | None = None
    seeded: bool = False
    keeps_own_values: bool = False
    has_energy_cap: bool = False
    integrator: bool = False
    step_axis: str = "lr"
    description: str = ""
    playground: PlaygroundEntry | None = None
    sharpness: SharpnessRule | None = None
    preconditioner: PreconditionerReader | None = None

    # ------------------------------------------------------------------ hyper-parameters
    def defaults(self) -> dict[str, Any]:
        """The default hyper (required keys, such as ECDSep's ``eta``, are absent)."""
        fields = self.hyper_model.model_fields
        return {k: f.default for k, f in fields.items() if not f.is_required()}

    def check_mode(self, mode: str | None) -> str | None:
        """The mode to use (``modes[0]`` when None); a clear error when it does not apply."""
        if not self.modes:
            if mode is not None:
                from .registry import families_with_modes

                raise HyperError(
                    f"mode applies only to {'/'.join(families_with_modes())}, not to type "
                    f"{self.name!r}; remove mode"
                )
            return None
        if mode is None:
            return self.modes[0]
        if mode not in self.modes:
            raise HyperError(
                f"mode must be one of {', '.join(map(repr, self.modes))} for {self.name}, got {mode!r}"
            )
        return mode

    def validate_hyper(self, hyper: Mapping[str, Any] | None = None, *, mode: str | None = None) -> dict[str, Any]:
        """The normalised, complete hyper dict (JSON-compatible), or a one-line :class:`HyperError`
        naming ``hyper.<key>`` and the allowed values.

        The schema fills the defaults and rejects unknown keys; then the optimiser is built on a
        dummy parameter (warnings count as errors: an argument it would ignore is refused), so
        the hyper accepted is exactly what the optimiser accepts.
        """
        hyper = {} if hyper is None else hyper
        mode = self.check_mode(mode)
        if self.seeded and isinstance(hyper, Mapping) and "seed" in hyper:
            raise HyperError(
                "hyper.seed is not a hyper-parameter: each run seeds the optimiser's generator from "
                "the run's own seed (the spec's seeds), so a run is reproducible from its seed alone"
            )
        values = normalise(self.hyper_model, hyper)
        if self.refuse is not None:
            why = self.refuse(values)
            if why:
                raise HyperError(why)
        opt = self._build_on_dummy(values, mode, given=list(hyper))
        if self.keeps_own_values:
            for key in values:
                if key in opt.defaults:
                    values[key] = opt.defaults[key]
        return values

    def _build_on_dummy(self, values: dict[str, Any], mode: str | None, given: Sequence[str]) -> Optimizer:
        try:
            return self._construct_checked(_dummy(), values, mode)
        except HyperError as exc:
            if str(exc).startswith("hyper."):
                raise
            first = str(exc)
        # find the key responsible: the first one given that fails on its own
        for key in given:
            if key not in values:
                continue
            alone = {**self.defaults(), **{k: v for k, v in values.items() if k not in self.defaults()}}
            alone[key] = values[key]
            try:
                self._construct_checked(_dummy(), alone, mode)
            except HyperError as exc:
                msg = str(exc)
                raise HyperError(msg if msg.startswith("hyper.") else f"hyper.{key}: {msg}") from None
        raise HyperError(f"hyper: {first} (with {', '.join(given) or 'the defaults'})") from None

    def _construct_checked(self, params: list[Tensor], values: dict[str, Any], mode: str | None) -> Optimizer:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an argument the optimiser would ignore is an error here
            try:
                return self.construct(params, 1.0, values, seed=0, mode=mode, device="cpu")
            except (ValueError, TypeError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                key = msg.split(" ", 1)[0].split("=", 1)[0]
                if key in values:  # the optimiser's message names the key ("eta must be ...")
                    raise HyperError(f"hyper.{msg}") from None
                raise HyperError(msg) from None
            except UserWarning as exc:  # e.g. ECDSep: s != 1 forces deltaEn = 1
                raise HyperError(f"hyper.{exc}; give the value it implies (or leave it out)") from None

    # ------------------------------------------------------------------ building and reading
    def build(
        self,
        params: Any,
        step_size: float,
        hyper: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        mode: str | None = None,
        device: str = "cpu",
        fused: bool | None = None,
    ) -> Optimizer:
        """The optimiser over ``params`` with ``step_size`` and ``hyper`` (validated first; missing
        keys take their defaults). ``seed`` seeds a seeded family's generator (others ignore it);
        ``mode`` applies to families with modes; the torch baselines use fused kernels when
        ``fused`` is True, or, when it is None (the lab), on ``device`` ``cpu``/``cuda``."""
        mode = self.check_mode(mode)
        values = self.validate_hyper(hyper, mode=mode)
        return self.construct(params, step_size, values, seed=seed, mode=mode, device=device, fused=fused)

    def step_size(self, optimizer: Optimizer) -> float:
        """The step size (``dt`` or ``lr``) of the first param group."""
        return float(self.energy.step_size(optimizer))

    def time_step(self, optimizer: Optimizer) -> float:
        """The Hamiltonian time step ``h`` of the energy convention (``dt``, or ``√lr``)."""
        return float(self.energy.time_step(optimizer))

    def momentum_reader(self, optimizer: Optimizer) -> Callable[[Tensor], Tensor] | None:
        """``param -> P`` in the convention's units, or None when this optimiser keeps none."""
        return None if self.momentum is None else self.momentum(optimizer)

    def inverse_preconditioner(self, optimizer: Optimizer) -> Callable[[Tensor], Tensor | float] | None:
        """``param -> P⁻¹`` from the optimiser's current state, or None for ``P = I``."""
        return None if self.preconditioner is None else self.preconditioner(optimizer)

    def sharpness_threshold(self, step_size: float, hyper: Mapping[str, Any]) -> Any:
        """The :class:`hamopt.diagnostics.thresholds.Threshold` at ``step_size`` with ``hyper``
        (a param group or a hyper dict)."""
        from ..diagnostics.thresholds import Threshold

        if isinstance(step_size, Tensor):
            step_size = float(step_size.item())
        rule = self.sharpness
        if rule is None:
            return Threshold(None, self.name, f"no threshold: no sharpness rule is known for {self.name}")
        kind = "preconditioned" if rule.preconditioned else "hessian"
        return Threshold(rule.value(step_size, hyper), self.name, rule.description, kind)

    def label(self, optimizer_or_hyper: Optimizer | Mapping[str, Any]) -> str:
        """A short label: ``sgd-momentum`` vs ``sgd``, else the family name."""
        if self.labeller is None:
            return self.name
        if isinstance(optimizer_or_hyper, Optimizer):
            return self.labeller(optimizer_or_hyper.param_groups[0])
        return self.labeller(optimizer_or_hyper)

    def displacement_form(self, optimizer: Optimizer) -> bool:
        """True when K is the step's displacement ``½‖θ_{t+1} − θ_t‖²/lr`` (the tracker measures it)."""
        form = self.energy.displacement_form
        return bool(form(optimizer)) if callable(form) else bool(form)

    def manifest(self, optimizer: Optimizer | None) -> dict[str, Any]:
        """What a run manifest records about the optimiser: family, label, energy convention and
        the family's own extras (e.g. the ECD seed and bounce counts, the cap count and ``H0``)."""
        out: dict[str, Any] = {"family": self.name, "step_size_name": self.step_axis}
        if optimizer is None:
            out["energy_convention"] = None
            return out
        out["energy_convention"] = {
            "name": self.energy.name,
            "label": self.label(optimizer),
            "displacement_form": self.displacement_form(optimizer),
            "description": self.energy.description,
        }
        if self.manifest_extras is not None:
            out.update(self.manifest_extras(optimizer))
        return out

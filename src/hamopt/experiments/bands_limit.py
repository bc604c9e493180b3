r"""The measured stability limit of one optimiser on a band search's problem, at initialisation.

:func:`measure_limit` is the one place a band search asks for a limit; everything else sees only
the frozen :class:`StepLimit` (``step_size(f)`` for a fraction ``f`` of the limit in units of the
Hamiltonian time step ``h``). Linearised about the initial parameters θ₀ on one fixed batch
(``calibration.batch_size``, first seed), with Hessian ``H``:

* **Leapfrog/Euler** (and any family whose :class:`~hamopt.families.StabilityRule` reads
  ``λ_max(M⁻¹H)``): ``dt_c = 2/√λ_max(M⁻¹H)`` with the optimiser's own mass rule; ``dt = f·dt_c``.
* **SGD with momentum μ, dampening d** (rule on ``λ_max(H)``): ``lr_c = 2(1+μ)/((1−d)·λ_max(H))``;
  ``lr = f²·lr_c``.
* **Adam/AdamW** (no family rule): Adam with first-moment decay β₁ is heavy-ball momentum on the
  preconditioned gradient ``P g`` with ``P = diag(1/(√v̂+ε))``: ``m ← β₁m + (1−β₁)g`` and
  ``θ ← θ − lr·P m`` is ``θ_{t+1} = θ_t − lr(1−β₁)·P g_t + β₁(θ_t − θ_{t−1})``, stable on the
  quadratic iff ``lr(1−β₁)·λ_max(P H) < 2(1+β₁)``, so ``lr_c = (2+2β₁)/((1−β₁)·λ_max(PH))``
  (38/λ at β₁ = 0.9); ``lr = f²·lr_c`` (``h = √(lr(1−β₁))``). ``v̂`` is frozen at its value early
  in training, estimated as the mean of ``g²`` over :data:`ADAM_PRECONDITIONER_BATCHES` batches at
  θ₀ (``v̂`` is the average of past ``g²`` after bias correction); AdamW's decoupled weight decay
  adds ``lr·wd`` to the contraction and is left out (it only makes the step more stable).

λ usually grows in training (progressive sharpening), so a fraction below 1 can still diverge
later; the band search reports where runs actually diverged. The eigenvalues of ``S H S`` with
``S = diag(√s)`` equal those of ``diag(s) H``; both come from power iteration on Hessian–vector
products (:func:`top_scaled_eigenvalue`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import families
from ..errors import SpecError
from .spec import ExperimentSpec, OptimizerSpec

__all__ = ["ADAM_PRECONDITIONER_BATCHES", "StepLimit", "measure_limit", "top_scaled_eigenvalue",
           "supports_limit"]

ADAM_PRECONDITIONER_BATCHES = 8
_ADAM_TYPES = ("adam", "adamw")


@dataclass(frozen=True)
class StepLimit:
    """The step-size limit of one optimiser: ``step_size(f) = f**power · limit``."""

    optimizer: str
    limit: float
    power: int
    eigenvalue: float
    eigenvalue_name: str
    rule: str
    iterations: int

    def step_size(self, fraction: float) -> float:
        """The step size at ``fraction`` of the limit, rounded to four significant digits."""
        return float(f"{fraction**self.power * self.limit:.4g}")

    def fraction(self, step_size: float) -> float:
        """The fraction of the limit a step size sits at (inverse of :meth:`step_size`)."""
        return (step_size / self.limit) ** (1.0 / self.power)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepLimit:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def supports_limit(o: OptimizerSpec) -> str | None:
    """Why optimiser entry ``o`` has no measurable limit (a message), or None when it has one."""
    family = families.get(o.type)
    if family.stability is not None:
        why = None if family.stability.requirement is None else family.stability.requirement(o.hyper)
        return why
    if o.type in _ADAM_TYPES:
        return None
    with_rule = [*families.families_with_stability(), *_ADAM_TYPES]
    return (f"type {o.type!r} has no stability limit to search in units of; band search supports "
            f"{', '.join(with_rule)}")


def top_scaled_eigenvalue(
    params: Sequence[Tensor],
    loss_fn: Callable[[], Tensor],
    scale: Sequence[Tensor | float],
    *,
    iterations: int,
    seed: int,
) -> float:
    """``|λ|_max`` of ``S H S`` with ``S = diag(√scale)`` (a tensor or a scalar per parameter),
    by power iteration from a seeded Gaussian start: the lab's calibration
    (:func:`hamopt.experiments.calibrate.top_eigenvalue`) on every parameter given."""
    from .calibrate import top_eigenvalue

    return top_eigenvalue(params, loss_fn, scale=scale, iterations=iterations, seed=seed)


def _adam_scale(model: torch.nn.Module, params: list[Tensor], spec: ExperimentSpec, dataset: Any,
                eps: float) -> list[Tensor]:
    """``1/(√v̂+ε)`` with ``v̂`` the mean of ``g²`` over the first batches at θ₀."""
    from ..data import BatchStream
    from .drift_setup import DTYPES

    stream = BatchStream(dataset, batch_size=spec.batch_size, seed=spec.seeds[0], augment=False,
                         device=spec.device)
    v = [torch.zeros_like(p) for p in params]
    for t in range(ADAM_PRECONDITIONER_BATCHES):
        x, y = stream.batch(t)
        grads = torch.autograd.grad(F.cross_entropy(model(x.to(DTYPES[spec.dtype])), y), params)
        for acc, g in zip(v, grads):
            acc.add_(g.detach() ** 2, alpha=1.0 / ADAM_PRECONDITIONER_BATCHES)
    return [1.0 / (acc.sqrt() + eps) for acc in v]


def measure_limit(spec: ExperimentSpec, o: OptimizerSpec, dataset: Any) -> StepLimit:
    """The step-size limit of optimiser entry ``o`` on ``spec``'s problem (module docstring)."""
    from ..optim.mass import inverse_mass
    from .drift_setup import build, calibration_batch

    why = supports_limit(o)
    if why:
        raise SpecError(f"optimizers[{o.name}]: {why}")
    family = families.get(o.type)
    model = build(spec, dataset, spec.seeds[0])
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = calibration_batch(spec, dataset, spec.calibration.batch_size)
    iterations = spec.calibration.iterations

    def loss() -> Tensor:
        return F.cross_entropy(model(x), y)

    def top(scale: Sequence[Tensor | float]) -> float:
        lam = top_scaled_eigenvalue(params, loss, scale, iterations=iterations, seed=spec.seeds[0])
        if not lam > 0:
            raise FloatingPointError("the top Hessian eigenvalue is zero; the stability limit is undefined")
        return lam

    if family.stability is not None:
        rule = family.stability
        if rule.eigenvalue == "lambda_preconditioned":
            scale: list[Any] = [inverse_mass(p, o.hyper["mass"], tuple(o.hyper["mass_clip"])) for p in params]
        else:
            scale = [1.0] * len(params)
        lam = top(scale)
        return StepLimit(o.name, float(rule.limit(lam, o.hyper)), rule.power, lam, rule.eigenvalue,
                         rule.description, iterations)
    beta1 = float(o.hyper["betas"][0])
    lam = top(_adam_scale(model, params, spec, dataset, float(o.hyper["eps"])))
    limit = (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lam)
    return StepLimit(o.name, limit, 2, lam, "lambda_adam_preconditioned",
                     "lr = f² · (2+2β1)/((1−β1)·λ_max(diag(1/(√v̂+ε))·H)), v̂ = mean g² over "
                     f"{ADAM_PRECONDITIONER_BATCHES} batches at θ0", iterations)

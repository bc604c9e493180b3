r"""SOAP (Shampoo with Adam in the preconditioner's eigenbasis) as the optimiser family ``soap``,
from the maintained ``pytorch-optimizer`` package (``pytorch_optimizer.SOAP``, extra ``soap``).

SOAP (Vyas et al., 2024) keeps, for each matrix parameter ``W ∈ R^{m×n}``, Shampoo's Kronecker
factors ``L = E[G Gᵀ]`` (m×m) and ``R = E[Gᵀ G]`` (n×n), their eigenbases ``Q_L``, ``Q_R``
(refreshed every ``precondition_frequency`` steps), and Adam's moments in the rotated frame:
``G' = Q_Lᵀ G Q_R``, ``m ← β1 m + (1−β1) G'``, ``v ← β2 v + (1−β2) G'²``, and the update
``W ← W − lr · Q_L (m̂ / (√v̂ + ε)) Q_Rᵀ`` (decoupled weight decay as in AdamW). One-dimensional
parameters (biases, LayerNorm) get plain Adam unless ``precondition_1d``. Its state is therefore
``2·mn + 2(m² + n²)`` numbers per matrix: far more than Adam's ``2·mn`` when m and n are similar
(the study records the bytes per parameter of every optimiser's state).

**Energy by displacement.** SOAP's rotated, element-wise mass has no kinetic energy in its state
that the Hamiltonian conventions could read, so the family uses the displacement form
``K = ½‖θ_{t+1} − θ_t‖²/lr`` with ``h = √lr``, which :class:`hamopt.energy.EnergyTracker`
measures across each step; the Noether monitor likewise uses the displacement ``(θ_{t+1} − θ_t)/h``
as the momentum. No stability rule is known (a spec gives literal step sizes).

**Why this package.** ``pytorch_optimizer.SOAP`` runs eagerly on the CPU, in float32 and float64,
is bit-for-bit deterministic run to run, and its ``state_dict`` round trip resumes bit-for-bit
(checked in ``tests/families/test_soap.py``). ``heavyball`` (3.2.1), the other maintained SOAP,
is compile-first: on a CPU a toy model spent ~30 s in ``torch.compile`` for 12 steps and float64
parameters failed inside its compiled einsum, so it is not a reproducible CPU baseline.

The family is registered only when ``pytorch_optimizer`` is importable
(``pip install 'hamopt[soap]'``); :data:`AVAILABLE` says whether it is, and
:data:`INSTALL_HINT` is the line to show otherwise.
"""

from __future__ import annotations

from .record import Family
from .registry import register_optimizer

__all__ = ["AVAILABLE", "INSTALL_HINT", "SOAP_FAMILY", "soap_family"]

INSTALL_HINT = (
    "the SOAP baseline needs the pytorch-optimizer package: pip install 'hamopt[soap]' "
    "(or pip install pytorch-optimizer==4.1.0)"
)


def soap_family() -> Family | None:
    """Register ``pytorch_optimizer.SOAP`` as family ``soap`` (None when not installed)."""
    try:
        from pytorch_optimizer import SOAP
    except ImportError:
        return None
    return register_optimizer(
        SOAP,
        name="soap",
        display_name="SOAP",
        description="SOAP (pytorch_optimizer.SOAP): Adam in Shampoo's eigenbasis; energy by displacement",
    )


SOAP_FAMILY: Family | None = soap_family()
AVAILABLE = SOAP_FAMILY is not None

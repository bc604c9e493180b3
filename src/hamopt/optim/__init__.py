"""hamopt optimisers: Hamiltonian integrators as ``torch.optim.Optimizer`` subclasses."""

from .base import HamoptOptimizer
from .ecd import BBI, ECDq1, ECDSep
from .euler import Euler
from .hamiltonian import HamiltonianOptimizer
from .hybrid import Hybrid, Phase, PhaseError, Plateau, StabilityCrossing, SwitchRule
from .leapfrog import Leapfrog
from .mass import fan_in, fan_in_inverse_mass

__all__ = [
    "BBI", "ECDSep", "ECDq1", "Euler", "HamiltonianOptimizer", "HamoptOptimizer", "Hybrid", "Leapfrog", "Phase",
    "PhaseError", "Plateau", "StabilityCrossing", "SwitchRule", "fan_in", "fan_in_inverse_mass",
]

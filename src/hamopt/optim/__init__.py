"""hamopt optimisers: Hamiltonian integrators as ``torch.optim.Optimizer`` subclasses."""

from .euler import Euler
from .hamiltonian import HamiltonianOptimizer
from .leapfrog import Leapfrog
from .mass import fan_in, fan_in_inverse_mass

__all__ = ["Euler", "HamiltonianOptimizer", "Leapfrog", "fan_in", "fan_in_inverse_mass"]

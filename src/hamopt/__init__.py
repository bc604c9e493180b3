"""hamopt: Hamiltonian optimisation of neural networks in PyTorch.

Symplectic and energy-conserving optimisers as drop-in ``torch.optim`` replacements, and a
dynamics lab that measures the energy of any optimiser under one convention.
"""

from . import energy, testfunctions
from .errors import NonFiniteError, UnregisteredOptimizerError
from .optim import BBI, ECDq1, ECDSep, Euler, Hybrid, Leapfrog, Phase

__version__ = "0.1.0"

__all__ = [
    "BBI", "ECDSep", "ECDq1", "Euler", "Hybrid", "Leapfrog", "Phase", "NonFiniteError", "UnregisteredOptimizerError",
    "energy", "testfunctions", "__version__",
]

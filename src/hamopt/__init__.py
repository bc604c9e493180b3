"""hamopt: Hamiltonian optimisation of neural networks in PyTorch.

Symplectic and energy-conserving optimisers as drop-in ``torch.optim`` replacements, and a
dynamics lab that measures the energy of any optimiser under one convention.
"""

from . import energy
from .errors import NonFiniteError, UnregisteredOptimizerError
from .optim import Euler, Leapfrog

__version__ = "0.1.0"

__all__ = ["Euler", "Leapfrog", "NonFiniteError", "UnregisteredOptimizerError", "energy", "__version__"]

"""The Energy Conserving Descent family: :class:`ECDSep`, :class:`BBI` and :class:`ECDq1`.

Each is a ``torch.optim.Optimizer`` whose ``step(closure)`` needs the loss value every step,
owns a seeded ``torch.Generator`` (its state is in ``state_dict``), and reports its invariant and
the invariant's error per step in ``opt.stats``.
"""

from .bbi import BBI
from .ecdq1 import ECDq1
from .ecdsep import ECDSep

__all__ = ["BBI", "ECDSep", "ECDq1"]

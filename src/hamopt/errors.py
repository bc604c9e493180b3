"""Exceptions raised by hamopt."""

from __future__ import annotations

__all__ = ["NonFiniteError", "UnregisteredOptimizerError"]


class NonFiniteError(FloatingPointError):
    """A loss or gradient is NaN or infinite.

    Raised by hamopt optimisers *before* any parameter or momentum is modified, so the
    model and optimiser state still hold the last finite step and can be saved or inspected.

    Attributes:
        what: ``"loss"`` or ``"gradient"``.
        step: index of the step (0-based) that was refused.
        value: the offending scalar (the loss, or the global gradient norm).
    """

    def __init__(self, what: str, step: int, value: float, detail: str = "") -> None:
        self.what = what
        self.step = step
        self.value = value
        msg = f"non-finite {what} at step {step} (value {value!r}); no parameter or momentum was modified"
        if detail:
            msg += f"; {detail}"
        super().__init__(msg)


class UnregisteredOptimizerError(TypeError):
    """An optimiser class has no energy convention in :mod:`hamopt.energy`."""

"""Exceptions raised by hamopt."""

from __future__ import annotations

__all__ = ["NonFiniteError", "OptionError", "SpecError", "UnregisteredOptimizerError", "UserError"]


class UserError(Exception):
    """An error the user can fix (a bad spec, option or path), not a bug in hamopt.

    The command line prints the message of any subclass as one line on stderr and exits with
    status 2, without a traceback; other exceptions keep their traceback. Subclass it (alone or
    together with a built-in class such as ``ValueError``) for any new error of that kind.
    """


class SpecError(UserError, ValueError):
    """An experiment spec is invalid; the message names each offending key and its allowed values."""


class OptionError(UserError, ValueError):
    """A command-line option is out of range or names something unusable (a busy port, an
    unknown host); the message names the option and its allowed values."""


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

"""Argument checks shared by the model builders; each error names the argument and its range."""

from __future__ import annotations

from collections.abc import Collection


class ModelOptionError(ValueError):
    """A model option is out of range; ``option`` names it (``depth``, ``width``...)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


def check_int(name: str, value: object, low: int, high: int, *, model: str) -> int:
    """``value`` must be an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelOptionError(
            name, f"{model}: {name} must be an integer in [{low}, {high}], got {value!r}"
        )
    return value


def check_in(name: str, value: object, allowed: Collection[object], *, model: str) -> object:
    """``value`` must be one of ``allowed``."""
    if value not in allowed:
        raise ModelOptionError(
            name, f"{model}: {name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )
    return value


def check_image_shape(
    input_shape: tuple[int, ...], *, model: str, min_side: int = 1
) -> tuple[int, int, int]:
    """``input_shape`` must be ``(C, H, W)`` with ``H, W >= min_side``."""
    if len(input_shape) != 3 or min(input_shape[1:]) < min_side:
        raise ModelOptionError(
            "input_shape",
            f"{model}: input_shape must be (channels, height, width) with height and width >= "
            f"{min_side}, got {tuple(input_shape)}"
        )
    c, h, w = input_shape
    return c, h, w

"""Checks that :meth:`hamopt.optim.base.HamoptOptimizer.load_state_dict` makes before it changes
anything: the saving optimiser's type (named in the state, or guessed from the options its param
groups carry), the options that must match (the mode) and the shapes of the per-parameter state.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer

if TYPE_CHECKING:
    from .base import HamoptOptimizer

GLOBAL_KEY = "hamopt_global"
SAVED_BY_KEY = "optimizer"


def _base() -> type:
    from .base import HamoptOptimizer

    return HamoptOptimizer


# constructor arguments that are not param-group options (the seed lives in the optimiser-wide
# state, the process group is not saved at all)
_NOT_OPTIONS = ("self", "params", "seed", "process_group")
# options added after checkpoints were first written: a saved group may lack them (their defaults
# then apply), so they take no part in recognising the saver
_LATER_OPTIONS = ("capturable", "fused")


def _signature_options(cls: type) -> set[str]:
    names = set()
    for name, par in inspect.signature(cls.__init__).parameters.items():
        skipped = name in _NOT_OPTIONS or name in _LATER_OPTIONS
        if not skipped and par.kind not in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            names.add(name)
    return names


def _concrete_subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        if not inspect.isabstract(sub):
            yield sub
        yield from _concrete_subclasses(sub)


def guess_saver(groups: list[Any], base: type) -> str | None:
    """The optimiser class(es) whose options a saved state's param groups carry (None if unknown).

    A class (a concrete subclass of ``base`` or a ``torch.optim`` optimiser) matches when every
    argument of its constructor is a key of the saved groups (that is how ``torch.optim``
    optimisers build their defaults); the most specific matches win.
    """
    keys: set[str] = set()
    for g in groups:
        if isinstance(g, Mapping):
            keys |= {k for k in g if isinstance(k, str)}
    candidates = list(_concrete_subclasses(base))
    candidates += [c for c in vars(torch.optim).values()
                   if isinstance(c, type) and issubclass(c, Optimizer) and c is not Optimizer]
    best: list[str] = []
    size = 0
    for cls in candidates:
        try:
            names = _signature_options(cls)
        except (TypeError, ValueError):
            continue
        if names and names <= keys:
            if len(names) > size:
                best, size = [cls.__name__], len(names)
            elif len(names) == size and cls.__name__ not in best:
                best.append(cls.__name__)
    return " or ".join(sorted(best)) or None



def check_saved_by(self: HamoptOptimizer, glob: Any, saved_groups: list[Any]) -> None:
    """Refuse a state saved by another optimiser type, naming both."""
    saved_by = glob.get(SAVED_BY_KEY) if isinstance(glob, Mapping) else None
    if saved_by is None:
        keys = {k for g in saved_groups if isinstance(g, Mapping) for k in g}
        if set(self.defaults) - {"differentiable", *_LATER_OPTIONS} <= keys:
            if isinstance(glob, Mapping):
                return  # an older checkpoint of this optimiser (or of one with the same options)
            raise ValueError(
                f"state_dict has no optimiser-wide entry ('{GLOBAL_KEY}' in the state of a parameter); "
                f"it was not made by {self._name}.state_dict(), or that entry was dropped"
            )
        saved_by = guess_saver(saved_groups, _base()) or f"another optimiser (not {self._name})"
    if saved_by != self._name:
        raise TypeError(
            f"state_dict was saved by {saved_by}; it cannot be loaded into {self._name}: the state "
            f"buffers and options mean different things. Load it into a {saved_by.split(' or ')[0]}, "
            f"or start {self._name} from a fresh state"
        )

def check_saved_options(self: HamoptOptimizer, saved_groups: list[Any]) -> None:
    """Refuse a state saved with another value of an option in ``LOAD_MUST_MATCH`` (the mode)."""
    for key in self.LOAD_MUST_MATCH:
        mine = self.param_groups[0][key]
        for g in saved_groups:
            if key in g and g[key] != mine:
                raise ValueError(
                    f"state_dict was saved by {self._name}({key}={g[key]!r}); this optimiser has "
                    f"{key}={mine!r}, and its stored state means something else in the other {key}. "
                    f"Build the optimiser with {key}={g[key]!r} to resume this state"
                )

def check_saved_shapes(self: HamoptOptimizer, saved_state: dict[Any, Any], keys: list[Any]) -> None:
    """Refuse per-parameter state tensors whose shape is not the parameter's."""
    params = [p for g in self.param_groups for p in g["params"]]
    if len(params) != len(keys):
        return  # Optimizer.load_state_dict reports the different group sizes
    for i, (key, p) in enumerate(zip(keys, params)):
        entry = saved_state.get(key)
        if not isinstance(entry, Mapping):
            continue
        for name, value in entry.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != p.shape:
                raise ValueError(
                    f"state_dict: the saved {name!r} of parameter {i} has shape {tuple(value.shape)} but the "
                    f"parameter has shape {tuple(p.shape)}; the state was saved for other parameters"
                )


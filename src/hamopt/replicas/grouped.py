r"""A grouped forward pass for stacks of plain multilayer perceptrons (no ``vmap``).

A model that is a chain of ``Linear`` layers, element-wise activations and a ``Flatten`` (an
``nn.Sequential`` of them, or :class:`hamopt.models.mlp.MLP`) is evaluated for all R replicas at
once on the stacked weights: with ``h`` of shape ``[R, B, n_in]``, ``W`` of shape
``[R, n_out, n_in]`` and ``b`` of shape ``[R, n_out]``,

    Linear:      h ← b[:, None, :] + h Wᵀ          (one ``torch.baddbmm`` over the R replicas)
    activation:  h ← σ(h)                          (one element-wise kernel over all replicas)
    Flatten:     h ← h.flatten(2)                  (each sample's features, per replica)

so replica r computes exactly ``b_r + x_r W_rᵀ``, the unbatched ``Linear``'s product, and
autograd through ``baddbmm`` gives slice r of each weight's gradient from replica r's batch only.
This skips ``vmap``'s per-call dispatch (several milliseconds per step on the quick preset's
64-unit MLP at R = 12). :func:`grouped_plan` returns None for any other model, which then runs
through ``vmap(functional_call)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["grouped_plan"]

_ACTIVATIONS: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.Tanh: torch.tanh,
    nn.ReLU: torch.relu,
    nn.Sigmoid: torch.sigmoid,
    nn.Identity: lambda h: h,
}

# One step of the plan: ("linear", weight name, bias name or None), ("act", function), ("flatten",).
Step = tuple


def _chain(model: nn.Module) -> tuple[str, nn.Sequential] | None:
    """The ``nn.Sequential`` whose forward *is* the model's forward, with its parameter prefix."""
    from ..models.mlp import MLP

    if type(model) is nn.Sequential:
        return "", model
    if type(model) is MLP and type(model.net) is nn.Sequential:
        return "net.", model.net
    return None


def _has_hooks(module: nn.Module) -> bool:
    return any(bool(getattr(module, name)) for name in ("_forward_hooks", "_forward_pre_hooks",
                                                        "_backward_hooks", "_backward_pre_hooks"))


def _steps(prefix: str, chain: nn.Sequential) -> list[Step] | None:
    steps: list[Step] = []
    for name, layer in chain.named_children():
        if _has_hooks(layer):
            return None
        if type(layer) is nn.Sequential:
            inner = _steps(f"{prefix}{name}.", layer)
            if inner is None:
                return None
            steps += inner
        elif type(layer) is nn.Linear:
            steps.append(("linear", f"{prefix}{name}.weight", None if layer.bias is None else f"{prefix}{name}.bias"))
        elif type(layer) in _ACTIVATIONS:
            steps.append(("act", _ACTIVATIONS[type(layer)]))
        elif type(layer) is nn.Flatten and layer.start_dim == 1 and layer.end_dim == -1:
            steps.append(("flatten",))
        else:
            return None
    return steps


def grouped_plan(model: nn.Module) -> Callable[[dict[str, Tensor], Tensor], Tensor] | None:
    """``forward(params, x)`` → ``[R, B, n_out]`` for a stack of ``model`` (stacked ``params`` by
    name, ``x`` of shape ``[R, B, *features]``), or None when the model is not a plain chain of
    ``Linear``/activation/``Flatten`` layers without buffers or hooks."""
    found = _chain(model)
    if found is None or _has_hooks(model) or any(True for _ in model.buffers()):
        return None
    steps = _steps(*found)
    if steps is None or not any(s[0] == "linear" for s in steps):
        return None
    used = {name for s in steps if s[0] == "linear" for name in s[1:] if name is not None}
    if used != {name for name, _ in model.named_parameters()}:
        return None

    def forward(params: dict[str, Tensor], x: Tensor) -> Tensor:
        h = x
        for s in steps:
            if s[0] == "linear":
                weight = params[s[1]].transpose(1, 2)
                shape = h.shape  # nn.Linear acts on the last axis of any [R, B, ..., n_in]
                rows = h.reshape(shape[0], -1, shape[-1])
                out = torch.bmm(rows, weight) if s[2] is None else torch.baddbmm(params[s[2]].unsqueeze(1), rows,
                                                                                  weight)
                h = out if h.dim() == 3 else out.reshape(*shape[:-1], out.shape[-1])
            elif s[0] == "act":
                h = s[1](h)
            else:
                h = h.flatten(2)
        return h

    return forward

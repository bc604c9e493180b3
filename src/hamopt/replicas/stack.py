r"""R copies of one architecture as one vectorised model.

:class:`ReplicaStack` holds the parameters of R models of the same architecture stacked along a
new leading axis (``[R, *shape]``, :func:`torch.func.stack_module_state`) and evaluates all of
them at once: a plain chain of ``Linear``/activation layers (e.g. the quick preset's MLP) by
grouped matrix products on the stacked weights (:mod:`hamopt.replicas.grouped`), any other model
with ``vmap(functional_call)``. Either way replica ``r`` sees only its own parameters, its own
buffers and its own batch ``x[r]``, so

    losses(x, y)[r] = loss_fn(model_r(x[r]), y[r])

and, because the replicas share nothing, the gradient of ``Σ_r losses[r]`` with respect to the
stacked parameters holds, in slice ``r``, exactly the gradient of replica r's own loss.

Batch normalisation keeps per-replica statistics: the running means and variances are stacked
like the parameters and each replica updates only its own slice (training mode normalises each
replica's batch with that batch's statistics, as the unbatched model does).

Channels-last inputs cannot be queried inside ``vmap``; a model built with a channels-last input
hook is refused with a message naming it (build it with ``channels_last=False``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .grouped import grouped_plan

__all__ = ["ReplicaStack"]


def _describe(model: nn.Module) -> str:
    return type(model).__name__


class ReplicaStack:
    """R models of one architecture, stacked.

    Args:
        models: the R replicas (same architecture, parameter names, shapes and dtypes); their
            current values become the stacked values (the modules themselves are not used again).
        loss_fn: ``(output, target) -> scalar`` per replica (default: cross-entropy, the mean over
            each replica's batch; computed as one call over the stacked outputs).

    Attributes:
        params: name → stacked parameter ``[R, *shape]`` (leaf tensors that require a gradient).
        buffers: name → stacked buffer (e.g. batch-norm running statistics), updated in place.
    """

    def __init__(self, models: Sequence[nn.Module], *,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> None:
        models = list(models)
        if not models:
            raise ValueError("models: a replica stack needs at least one model; got none")
        first = models[0]
        names = [(n, tuple(p.shape), p.dtype) for n, p in first.named_parameters()]
        for i, m in enumerate(models[1:], start=1):
            other = [(n, tuple(p.shape), p.dtype) for n, p in m.named_parameters()]
            if type(m) is not type(first) or other != names:
                raise ValueError(f"models: replica {i} ({_describe(m)}) does not have the architecture of "
                                 f"replica 0 ({_describe(first)}); every replica must have the same parameter "
                                 "names, shapes and dtypes")
        if any(getattr(h, "__name__", "") == "_inputs_channels_last" for h in first._forward_pre_hooks.values()):
            raise ValueError(f"models: {_describe(first)} converts its inputs to channels-last, which vmap cannot "
                             "do; build the replicas with channels_last=False")
        self.size = len(models)
        params, buffers = stack_module_state(models)
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self.training = first.training
        self._template = copy.deepcopy(first).to("meta")
        self._loss_fn = loss_fn

        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self._loss_fn(functional_call(self._template, (p, b), (x,)), y)

        self._losses = vmap(one)
        self._grouped = grouped_plan(first)
        if self._grouped is not None:
            grouped = self._grouped
            self._outputs = lambda p, b, x: grouped(p, x)
            self._losses = lambda p, b, x, y: vmap(self._loss_fn)(grouped(p, x), y)
        else:
            self._outputs = vmap(lambda p, b, x: functional_call(self._template, (p, b), (x,)))
        self._cross_entropy = loss_fn is F.cross_entropy

    @property
    def grouped(self) -> bool:
        """Whether the replicas are evaluated by grouped matrix products (else ``vmap``)."""
        return self._grouped is not None

    # ------------------------------------------------------------------ evaluation
    def parameters(self) -> list[Tensor]:
        """The stacked parameters in the order of ``named_parameters`` of one replica."""
        return list(self.params.values())

    def losses(self, x: Tensor, y: Tensor) -> Tensor:
        """``[loss_fn(model_r(x[r]), y[r]) for r]`` as one ``[R]`` tensor (differentiable)."""
        if x.shape[0] != self.size or y.shape[0] != self.size:
            raise ValueError(f"x, y: the leading axis must be the replica axis of size {self.size}; got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        if self._grouped is None:
            self._template.train(self.training)
        if self._cross_entropy and y.dim() == 2:
            # the model vectorised, the loss as one call over all rows (a row's mean per replica)
            out = self._outputs(self.params, self.buffers, x)
            rows = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
            return rows.view(self.size, -1).mean(1)
        return self._losses(self.params, self.buffers, x, y)

    def outputs(self, x: Tensor) -> Tensor:
        """``[model_r(x[r]) for r]`` stacked."""
        if self._grouped is None:
            self._template.train(self.training)
        return self._outputs(self.params, self.buffers, x)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    # ------------------------------------------------------------------ replicas one by one
    @torch.no_grad()
    def load_into(self, model: nn.Module, replica: int) -> nn.Module:
        """Copy replica ``replica``'s parameters and buffers into ``model`` (same architecture)."""
        if not 0 <= replica < self.size:
            raise ValueError(f"replica must be in 0..{self.size - 1}; got {replica}")
        for n, p in model.named_parameters():
            p.copy_(self.params[n][replica])
        for n, b in model.named_buffers():
            if n in self.buffers:
                b.copy_(self.buffers[n][replica])
        return model

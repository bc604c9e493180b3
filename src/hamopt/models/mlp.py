r"""A multilayer perceptron: flatten → ``depth`` × (linear to ``width``, activation) → linear head.

``f(x) = W_out σ(… σ(W_1 vec(x) + b_1) …) + b_out`` with σ = tanh (default) or ReLU. With the
defaults (width 64, depth 1, tanh) on 8×8 digits this is the 64 → 64 → 10 network of the quick
demonstration (4,810 parameters). ``depth = 0`` is multinomial logistic regression.
Initialisation is PyTorch's default for ``Linear``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._checks import check_in, check_int

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(nn.Module):
    """Flatten, ``depth`` hidden layers of ``width`` units, linear head."""

    def __init__(
        self, *, in_features: int, num_classes: int, width: int, depth: int, activation: str
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        n = in_features
        for _ in range(depth):
            layers += [nn.Linear(n, width), ACTIVATIONS[activation]()]
            n = width
        layers.append(nn.Linear(n, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def mlp(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    activation: str | None = None,
) -> MLP:
    """MLP on ``prod(input_shape)`` inputs; ``width`` default 64, ``depth`` default 1, tanh."""
    if len(input_shape) < 1:
        raise ValueError(
            f"mlp: input_shape must have at least one dimension, got {tuple(input_shape)}"
        )
    w = check_int("width", 64 if width is None else width, 1, 65536, model="mlp")
    d = check_int("depth", 1 if depth is None else depth, 0, 64, model="mlp")
    act = check_in("activation", activation or "tanh", tuple(ACTIVATIONS), model="mlp")
    return MLP(
        in_features=math.prod(input_shape),
        num_classes=num_classes,
        width=w,
        depth=d,
        activation=act,
    )

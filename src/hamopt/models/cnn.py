r"""A small convolutional network: ``depth`` blocks of conv3×3 → activation → 2×2 max-pool, then a
linear head on the flattened features.

Block ``i`` (0-based) has ``width·2^i`` channels, so at the default ``width = 32``, ``depth = 2``
a 3×32×32 input gives 32×16×16 then 64×8×8 features and a 4096 → classes head (60,362 parameters
for 10 classes). No normalisation layers: the loss on a batch is a function of the parameters
and that batch only. Initialisation is PyTorch's default for ``Conv2d``/``Linear``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import ModelOptionError, check_image_shape, check_in, check_int

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
MAX_DEPTH = 6


class SmallCNN(nn.Module):
    """``depth`` × (conv3×3, activation, max-pool 2) → flatten → linear."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int,
        depth: int,
        activation: str,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c, c_out, 3, padding=1),
                ACTIVATIONS[activation](),
                nn.MaxPool2d(2),
            ]
            c, h, w = c_out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


def small_cnn(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    activation: str | None = None,
) -> SmallCNN:
    """Small CNN; ``width`` first-block channels (default 32), ``depth`` conv blocks (default 2,
    at most 6 and at most ``log2`` of the smaller image side: 3 on 8×8 digits, 5 on 32×32)."""
    shape = check_image_shape(input_shape, model="small_cnn", min_side=2)
    # each block halves the image, so the smaller side bounds the depth: 2^depth <= side
    max_depth = min(MAX_DEPTH, min(shape[1:]).bit_length() - 1)
    d = 2 if depth is None else depth
    if isinstance(d, int) and not isinstance(d, bool) and max_depth < d <= MAX_DEPTH:
        raise ModelOptionError(
            "depth",
            f"small_cnn: depth must be an integer in [1, {max_depth}] on input_shape "
            f"{shape} (each block halves the image: 2^depth <= {min(shape[1:])}), got {d}",
        )
    d = check_int("depth", d, 1, MAX_DEPTH, model="small_cnn")
    w = check_int("width", 32 if width is None else width, 1, 1024, model="small_cnn")
    act = check_in("activation", activation or "relu", tuple(ACTIVATIONS), model="small_cnn")
    return SmallCNN(input_shape=shape, num_classes=num_classes, width=w, depth=d, activation=act)

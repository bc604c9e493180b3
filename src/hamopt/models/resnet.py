r"""CIFAR residual networks: ResNet-18 (3×3 stem, no max-pool) and the ResNet-20 family.

Both are ``stem → stages of BasicBlocks → global average pool → linear``, where a BasicBlock is
``y = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + shortcut(x))`` and the first block of a stage may
halve the resolution with stride 2.

* ``resnet18``: stem conv3×3 (C → w) + BN + ReLU, stages of [2, 2, 2, 2] blocks with widths
  w·(1, 2, 4, 8) and strides (1, 2, 2, 2), 1×1 conv + BN projection shortcuts where the shape
  changes. At w = 64 and 10 classes: 62 parameter tensors, 11,173,962 parameters.
* ``resnet20`` (He et al. 2016, §4.2): stem conv3×3 (C → w) + BN + ReLU, three stages of
  n = (depth − 2) / 6 blocks with widths w·(1, 2, 4) (w = 16 by default) and strides (1, 2, 2),
  parameter-free shortcuts (stride-2 subsampling and zero-padded channels, "option A").
  At depth 20, w = 16 and 10 classes: 269,722 parameters.

Convolutions are initialised with Kaiming-normal (fan-out, ReLU gain), BatchNorm with γ = 1,
β = 0, the head with PyTorch's default.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import ModelOptionError, check_image_shape, check_in, check_int


class PointwiseProjection(nn.Conv2d):
    """1×1 convolution with stride s, computed as a 1×1 convolution of ``x[..., ::s, ::s]``.

    The two are the same map (a 1×1 kernel with no padding reads exactly the subsampled pixels).
    The stride-1 form is used because torch 2.13's CPU (oneDNN) backward of the strided 1×1
    convolution in channels-last memory format corrupts the heap for some small shapes (e.g.
    3×8×16×16 → 16 channels), crashing the process.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride[0]
        return F.conv2d(x[:, :, ::s, ::s], self.weight)


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers with a residual connection (projection or zero-padding shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.shortcut: nn.Module = nn.Identity()
        self.zero_pad_shortcut = False
        self.pad_channels = c_out - c_in
        if stride != 1 or c_in != c_out:
            if shortcut == "projection":
                self.shortcut = nn.Sequential(
                    PointwiseProjection(c_in, c_out, stride), nn.BatchNorm2d(c_out)
                )
            else:  # "zero-pad": subsample spatially, pad the new channels with zeros
                self.zero_pad_shortcut = True

    def residual(self, x: Tensor) -> Tensor:
        if not self.zero_pad_shortcut:
            return self.shortcut(x)
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.pad_channels // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.pad_channels - lo))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.residual(x))


class CifarResNet(nn.Module):
    """3×3 stem, stages of :class:`BasicBlock`, global average pool, linear head."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        strides: tuple[int, ...],
        shortcut: str,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers = []
        c_in = widths[0]
        for c_out, n, stride in zip(widths, blocks, strides, strict=True):
            stage = [
                BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, shortcut)
                for i in range(n)
            ]
            layers.append(nn.Sequential(*stage))
            c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.pool(x).flatten(1))


def resnet18(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    activation: str | None = None,
) -> CifarResNet:
    """CIFAR ResNet-18; ``width`` is the stem width w (default 64), ``depth`` must be 18."""
    c, _, _ = check_image_shape(input_shape, model="resnet18")
    w = check_int("width", 64 if width is None else width, 1, 512, model="resnet18")
    check_in("depth", 18 if depth is None else depth, (18,), model="resnet18")
    check_in("activation", activation or "relu", ("relu",), model="resnet18")
    return CifarResNet(
        in_channels=c,
        num_classes=num_classes,
        widths=(w, 2 * w, 4 * w, 8 * w),
        blocks=(2, 2, 2, 2),
        strides=(1, 2, 2, 2),
        shortcut="projection",
    )


def resnet20(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    activation: str | None = None,
) -> CifarResNet:
    """ResNet-20 family: ``depth`` = 6n + 2 (default 20), ``width`` of stage 1 (default 16)."""
    c, _, _ = check_image_shape(input_shape, model="resnet20")
    w = check_int("width", 16 if width is None else width, 1, 512, model="resnet20")
    d = check_int("depth", 20 if depth is None else depth, 8, 1202, model="resnet20")
    if (d - 2) % 6:
        raise ModelOptionError(
            "depth",
            f"resnet20: depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...), got {d}"
        )
    check_in("activation", activation or "relu", ("relu",), model="resnet20")
    n = (d - 2) // 6
    return CifarResNet(
        in_channels=c,
        num_classes=num_classes,
        widths=(w, 2 * w, 4 * w),
        blocks=(n, n, n),
        strides=(1, 2, 2),
        shortcut="zero-pad",
    )

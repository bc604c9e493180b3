r"""Model registry and :func:`build_model`: name → builder, seeded initialisation, memory format.

A builder is a function ``builder(*, num_classes, input_shape, width, depth, activation)`` that
validates its own options and returns an ``nn.Module``; adding a model is one entry in
:data:`MODEL_BUILDERS` (or a call to :func:`register_model`).

Channels-last (NHWC) memory format. ``channels_last=None`` uses :data:`CHANNELS_LAST_ON_CPU`,
which records, per convolutional model, whether NHWC was measured faster than NCHW for a
training step (forward + backward) on the project's reference CPU. Measured with
``python -m hamopt.models.measure_channels_last --batch B --rounds R [--models ...]`` (input
3×32×32, 2 threads, interleaved medians of forward + cross-entropy + backward; AMD EPYC, 2 cores
shared with other work, torch 2.13.0 CPU). Ratio NHWC / NCHW, below 1 = channels-last faster:

=========  =====  =================  ==============================
model      batch  quiet (load ≈ 1)   loaded (load 6–9), repeated
=========  =====  =================  ==============================
resnet18   32     0.875              0.857, 0.908
resnet18   128    0.307              0.824
resnet20   32     0.839              1.128, 0.840
resnet20   128    0.801              1.024, 0.962
small_cnn  32     0.676              0.844, 0.335
small_cnn  128    0.878              0.351, 0.777
=========  =====  =================  ==============================

(R = 10–15 at batch 32, 5 at batch 128; quiet run: ResNet-18 347 → 304 ms per step at batch 32.
The quiet ResNet-18 rows predate :class:`~hamopt.models.resnet.PointwiseProjection`; the loaded
ones include it.) Channels-last was faster in 15 of 17 comparisons and in every quiet one, so the
automatic choice is channels-last for the three convolutional models; ResNet-20's margin is
small (median ratio ≈ 0.9). The MLP has no convolutions and stays NCHW. Re-run the command on
another machine before relying on the table there.

A model built channels-last has its 4-D weights in NHWC strides and converts its inputs itself
(a forward pre-hook calls ``x.contiguous(memory_format=torch.channels_last)``), so callers pass
ordinary NCHW tensors. Its parameters are then not all contiguous: flatten them with
``p.reshape(-1)``, not ``p.view(-1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ._checks import ModelOptionError, check_int
from .cnn import small_cnn
from .mlp import mlp
from .resnet import resnet18, resnet20

ModelBuilder = Callable[..., nn.Module]

MODEL_BUILDERS: dict[str, ModelBuilder] = {
    "resnet18": resnet18,
    "resnet20": resnet20,
    "small_cnn": small_cnn,
    "mlp": mlp,
}

# Whether NHWC beat NCHW for forward + backward on the reference CPU (see the table above).
CHANNELS_LAST_ON_CPU: dict[str, bool] = {
    "resnet18": True,
    "resnet20": True,
    "small_cnn": True,
    "mlp": False,
}


def register_model(name: str, builder: ModelBuilder, *, channels_last_on_cpu: bool = False) -> None:
    """Add ``builder`` under ``name`` (which must be new)."""
    if not isinstance(name, str) or not name or name in MODEL_BUILDERS:
        raise ValueError(
            f"name must be a new non-empty string, got {name!r} "
            f"(taken: {', '.join(MODEL_BUILDERS)})"
        )
    MODEL_BUILDERS[name] = builder
    CHANNELS_LAST_ON_CPU[name] = bool(channels_last_on_cpu)


def model_names() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(MODEL_BUILDERS)


def _inputs_channels_last(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, Tensor) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
    activation: str | None = None,
) -> nn.Module:
    """Build model ``name`` with parameters initialised from ``seed`` (global RNG untouched).

    ``width``/``depth``/``activation`` default per model (see each module). ``channels_last``:
    True/False force the memory format; None uses the measured per-model choice.
    """
    if name not in MODEL_BUILDERS:
        raise ModelOptionError(
            "name", f"name must be one of {', '.join(map(repr, MODEL_BUILDERS))}; got {name!r}"
        )
    check_int("num_classes", num_classes, 2, 1_000_000, model=name)
    if (
        not isinstance(input_shape, (tuple, list))
        or not input_shape
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_shape)
    ):
        raise ValueError(
            f"{name}: input_shape must be a non-empty tuple of positive integers, "
            f"got {input_shape!r}"
        )
    check_int("seed", seed, 0, 2**63 - 1, model=name)
    if channels_last is not None and not isinstance(channels_last, bool):
        raise ModelOptionError(
            "channels_last",
            f"{name}: channels_last must be True, False or None, got {channels_last!r}"
        )
    builder = MODEL_BUILDERS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(
            num_classes=num_classes,
            input_shape=tuple(input_shape),
            width=width,
            depth=depth,
            activation=activation,
        )
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    use_nhwc = CHANNELS_LAST_ON_CPU.get(name, False) if channels_last is None else channels_last
    if use_nhwc and not has_conv:
        if channels_last:
            raise ModelOptionError(
                "channels_last", f"{name}: channels_last=True applies only to convolutional models"
            )
        use_nhwc = False
    if use_nhwc:
        model = model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_inputs_channels_last)
    model.channels_last = use_nhwc
    return model


class _SkipMetaFills(TorchFunctionMode):
    """Return a ``meta`` tensor unchanged from the in-place fills that initialisers call."""

    FILLS = frozenset(
        {"normal_", "uniform_", "fill_", "zero_", "erfinv_", "exponential_", "bernoulli_", "random_"}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        target = args[0] if args else None
        if getattr(func, "__name__", "") in self.FILLS and isinstance(target, Tensor) and target.is_meta:
            return target
        return func(*args, **(kwargs or {}))


def check_model_options(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    depth: int | None = None,
    channels_last: bool | None = None,
    activation: str | None = None,
) -> None:
    """Raise :class:`ModelOptionError` (its ``option`` names the argument) exactly when
    :func:`build_model` would refuse these options; allocate nothing.

    It runs :func:`build_model` itself with every tensor on PyTorch's ``meta`` device (shapes
    without storage) and the initialisers' random fills skipped (on ``meta`` they would fill
    nothing, and the first one imports torch's compiler), so the rules checked are the builders'
    own, not a copy of them.
    """
    with torch.device("meta"), _SkipMetaFills():
        build_model(
            name,
            num_classes=num_classes,
            input_shape=input_shape,
            width=width,
            depth=depth,
            channels_last=channels_last,
            activation=activation,
        )

"""Models for the dynamics lab: CIFAR ResNet-18, the ResNet-20 family, a small CNN and an MLP.

``build_model(name, num_classes=..., input_shape=..., width=..., depth=..., seed=...)`` builds one
deterministically from ``seed``; :data:`MODEL_NAMES` lists the registered names.
"""

from __future__ import annotations

from ._checks import ModelOptionError
from .builder import (
    CHANNELS_LAST_ON_CPU,
    MODEL_BUILDERS,
    build_model,
    check_model_options,
    model_names,
    register_model,
)
from .cnn import SmallCNN
from .gpt import GPT, GPTConfig, build_gpt  # registers "gpt" in MODEL_BUILDERS
from .mlp import MLP
from .resnet import BasicBlock, CifarResNet

MODEL_NAMES: tuple[str, ...] = model_names()

__all__ = [
    "GPT",
    "GPTConfig",
    "build_gpt",
    "CHANNELS_LAST_ON_CPU",
    "MLP",
    "MODEL_BUILDERS",
    "MODEL_NAMES",
    "BasicBlock",
    "CifarResNet",
    "SmallCNN",
    "ModelOptionError",
    "build_model",
    "check_model_options",
    "model_names",
    "register_model",
]

import os

import pytest
import torch

from hamopt.energy import conventions as C
from hamopt.families import registry as R


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Each test starts from the same global RNG state and default dtype."""
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    yield
    torch.set_default_dtype(prev)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def restore_registry():
    """Undo registrations a test makes (the registries are process-wide)."""
    families, by_class, conventions = dict(R._FAMILIES), dict(R._BY_CLASS), dict(C._REGISTRY)
    yield
    R._FAMILIES.clear()
    R._FAMILIES.update(families)
    R._BY_CLASS.clear()
    R._BY_CLASS.update(by_class)
    C._REGISTRY.clear()
    C._REGISTRY.update(conventions)

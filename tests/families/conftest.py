import pytest

from hamopt.energy import conventions as C
from hamopt.families import registry as R


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

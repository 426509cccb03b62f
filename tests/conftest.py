"""Shared fixtures: ``backend`` runs a test on every JIT backend."""

from __future__ import annotations

import pytest

from scalar_autograd.backends import BACKENDS as _BACKENDS

BACKENDS = list(_BACKENDS)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend by name; ``"vm"`` is the native tape VM, whatever the size."""
    return str(request.param)

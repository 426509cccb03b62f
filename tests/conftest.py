"""Shared fixtures: ``backend`` runs a test on every JIT backend."""

from __future__ import annotations

import pytest

from scalar_autograd.backends import llvm as llvm_backend
from scalar_autograd.runtime.cache import KERNELS

BACKENDS = ["interpreter", "python", "llvm", "llvm-vm"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each backend; ``llvm-vm`` is the llvm backend forced onto its tape VM."""
    name = request.param
    if name == "llvm-vm":
        monkeypatch.setattr(llvm_backend, "VM_THRESHOLD", -1)
        KERNELS.clear()  # kernels cached as native code must not be reused here
        request.addfinalizer(KERNELS.clear)
        return "llvm"
    return name

"""Shared fixtures: seeded randomness for tests (never for anything but tests), and a compiled
kernel module made unimportable."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from types import ModuleType
from typing import Callable, ContextManager, Iterator

import pytest

from mpc.prg import PRG


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> bytes:
    """A 16-byte seed derived from the test's name, so each test is reproducible."""
    return hashlib.sha256(request.node.nodeid.encode()).digest()[:16]


@pytest.fixture
def prg(seed: bytes) -> PRG:
    """A PRG seeded per test."""
    return PRG(seed)


@pytest.fixture
def missing_kernels(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Callable[[str, ModuleType], ContextManager[None]]:
    """``missing_kernels(module, loader)``: a context in which importing the kernel module
    ``module`` fails, as without numba. On entry ``loader`` (the module whose cached
    ``_kernels()`` imports it) must report ``load_kernels() is False`` with a warning that
    names numpy; on exit the kernels are back (``load_kernels() is True``)."""

    @contextlib.contextmanager
    def missing(module: str, loader: ModuleType) -> Iterator[None]:
        package, _, name = module.rpartition(".")
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
        monkeypatch.delattr(sys.modules[package], name, raising=False)
        loader._kernels.cache_clear()
        try:
            with caplog.at_level("WARNING", logger=loader.__name__):
                assert loader.load_kernels() is False
            assert "numpy" in caplog.text
            yield
        finally:
            monkeypatch.undo()
            loader._kernels.cache_clear()
        assert loader.load_kernels() is True

    return missing

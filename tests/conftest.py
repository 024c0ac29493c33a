"""Shared fixtures: seeded randomness for tests (never for anything but tests)."""

from __future__ import annotations

import hashlib

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

"""Fixtures of the transport tests: a federation's identities, generated per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from transport.identity import Federation, Identity, PeerInfo, generate_identity


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def identities(keydir: Path) -> dict[str, Identity]:
    return {name: generate_identity(name, keydir) for name in ("alpha", "beta", "gamma")}


@pytest.fixture(scope="module")
def federation(identities: dict[str, Identity]) -> Federation:
    return Federation(
        tuple(
            PeerInfo.from_certificate(name, "127.0.0.1", 7000 + i, ident.cert_path)
            for i, (name, ident) in enumerate(identities.items())
        )
    )

"""Secure sum: pure round functions, then the protocol on the in-memory mesh, against numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from protocols.secure_sum import (
    add_shares,
    check_array,
    check_receivers,
    secure_sum,
    secure_sum_int,
    secure_sum_to,
)
from transport.memory import MemoryNetwork

SHAPES = [(), (7,), (3, 4)]


@pytest.fixture
def prg() -> PRG:
    return PRG(b"secure-sum-tests")


def names(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def seeds_for(prg: PRG, parties: list[str]) -> dict[str, bytes]:
    return {name: prg.bytes(16) for name in parties}


def ring_inputs(prg: PRG, parties: list[str], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Uniform inputs, so sums wrap around 2^64 with overwhelming probability."""
    return {name: prg.uint64(shape) for name in parties}


def numpy_sum(inputs: dict[str, np.ndarray]) -> np.ndarray:
    total = np.zeros_like(next(iter(inputs.values())))
    for x in inputs.values():
        total += x  # uint64 arithmetic wraps modulo 2^64
    return total


# -- pure functions -------------------------------------------------------------------------


def test_check_receivers() -> None:
    assert check_receivers(None, 3) == (0, 1, 2)
    assert check_receivers([2, 0], 3) == (0, 2)
    for bad in ([], [0, 0], [3], [-1], [True], ["0"]):
        with pytest.raises(ConfigError):
            check_receivers(bad, 3)  # type: ignore[arg-type]


def test_check_array_rejects_wrong_dtype_and_shape() -> None:
    good = np.zeros((2, 3), dtype=np.uint64)
    assert check_array(good, (2, 3), 1) is good
    with pytest.raises(ProtocolViolation, match="shape"):
        check_array(good, (3, 2), 1)
    with pytest.raises(ProtocolViolation, match="uint64"):
        check_array(good.astype(np.int64), (2, 3), 1)
    with pytest.raises(ProtocolViolation, match="uint64"):
        check_array([0, 0], (2,), 1)


def test_add_shares_wraps_and_does_not_alias(prg: PRG) -> None:
    own = np.array([2**64 - 1, 5], dtype=np.uint64)
    received = {1: np.array([2, 2**63], dtype=np.uint64), 2: np.array([0, 2**63], dtype=np.uint64)}
    total = add_shares(own, received)
    np.testing.assert_array_equal(total, np.array([1, 5], dtype=np.uint64))
    assert own[0] == 2**64 - 1  # the input is not modified


# -- on the memory mesh ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=["0d", "1d", "2d"])
async def test_secure_sum_matches_numpy(prg: PRG, n: int, shape: tuple[int, ...]) -> None:
    parties = names(n)
    inputs = ring_inputs(prg, parties, shape)
    expected = numpy_sum(inputs)
    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        out = await net.run(secure_sum, inputs, seeds=seeds_for(prg, parties))
    for name in parties:
        assert out[name].dtype == np.uint64
        assert out[name].shape == shape
        np.testing.assert_array_equal(out[name], expected)


async def test_secure_sum_traffic_matches_docstring(prg: PRG) -> None:
    parties = names(3)
    m = 50
    inputs = ring_inputs(prg, parties, (m,))
    stats: dict[str, Any] = {}

    async def program(session: Session, x: np.ndarray) -> np.ndarray:
        result = await secure_sum(session, x)
        stats[session.parties[session.party_id]] = session.stats
        return result

    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        await net.run(program, inputs, seeds=seeds_for(prg, parties))
    for name in parties:
        st = stats[name]
        assert st.rounds == 2
        assert st.messages_sent == 4 and st.messages_received == 4
        # 2 (n - 1) * 8m payload bytes plus framing overhead.
        assert st.bytes_sent >= 2 * 2 * 8 * m
        assert st.bytes_sent < 2 * 2 * 8 * m + 4 * 200


@pytest.mark.parametrize("receivers", [[0], [1, 3], [3]])
async def test_secure_sum_to_receivers_only(prg: PRG, receivers: list[int]) -> None:
    parties = names(4)
    inputs = ring_inputs(prg, parties, (2, 3))
    expected = numpy_sum(inputs)

    async def program(session: Session, x: np.ndarray) -> Any:
        return await secure_sum_to(session, x, receivers)

    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, parties))
        # Non-receivers got nothing in round 2: each party received only n-1 round-1 shares.
        received = {name: net[name].stats()["router"] for name in parties}
    for i, name in enumerate(parties):
        if i in receivers:
            np.testing.assert_array_equal(out[name], expected)
        else:
            assert out[name] is None
    assert all(r["dropped"] == {} for r in received.values())


async def test_secure_sum_to_everyone_equals_secure_sum(prg: PRG) -> None:
    parties = names(3)
    inputs = ring_inputs(prg, parties, (4,))

    async def program(session: Session, x: np.ndarray) -> Any:
        return await secure_sum_to(session, x, None)

    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, parties))
    for name in parties:
        np.testing.assert_array_equal(out[name], numpy_sum(inputs))


async def test_secure_sum_int_signed(prg: PRG) -> None:
    parties = names(3)
    inputs = {
        "p0": np.array([-5, 2**62, -(2**63)], dtype=np.int64),
        "p1": np.array([3, 2**62, 0], dtype=np.int64),
        "p2": np.array([-1, -1, 1], dtype=np.int64),
    }

    async def program(session: Session, x: np.ndarray) -> Any:
        return await secure_sum_int(session, x, receivers=[0, 2])

    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, parties))
    # 2^62 + 2^62 - 1 = 2^63 - 1 fits; -2^63 + 1 fits.
    expected = np.array([-3, 2**63 - 1, -(2**63) + 1], dtype=np.int64)
    np.testing.assert_array_equal(out["p0"], expected)
    np.testing.assert_array_equal(out["p2"], expected)
    assert out["p0"].dtype == np.int64
    assert out["p1"] is None


async def test_secure_sum_int_wraps_on_overflow(prg: PRG) -> None:
    parties = names(2)
    inputs = {"p0": np.array(2**63 - 1, dtype=np.int64), "p1": np.array(1, dtype=np.int64)}
    async with MemoryNetwork(parties, recv_timeout=2.0) as net:
        out = await net.run(secure_sum_int, inputs, seeds=seeds_for(prg, parties))
    assert out["p0"] == np.int64(-(2**63))


async def test_shape_mismatch_raises_protocol_violation(prg: PRG) -> None:
    parties = names(3)
    inputs = {"p0": prg.uint64((3,)), "p1": prg.uint64((3,)), "p2": prg.uint64((4,))}
    async with MemoryNetwork(parties, recv_timeout=0.5) as net:
        out = await net.run(
            secure_sum, inputs, seeds=seeds_for(prg, parties), return_exceptions=True
        )
    # Every party sees a peer whose round-1 share has another shape than its own input.
    for name in parties:
        assert isinstance(out[name], ProtocolViolation), out[name]
        assert "shape" in str(out[name])


async def test_one_party_with_other_shape_among_two(prg: PRG) -> None:
    parties = names(2)
    inputs = {"p0": prg.uint64((2, 2)), "p1": prg.uint64((4,))}
    async with MemoryNetwork(parties, recv_timeout=0.5) as net:
        out = await net.run(
            secure_sum, inputs, seeds=seeds_for(prg, parties), return_exceptions=True
        )
    assert all(isinstance(v, ProtocolViolation) for v in out.values())


async def test_secure_sum_rejects_float_input(prg: PRG) -> None:
    parties = names(2)
    inputs = {"p0": np.ones(2), "p1": np.ones(2)}
    async with MemoryNetwork(parties, recv_timeout=0.5) as net:
        out = await net.run(
            secure_sum, inputs, seeds=seeds_for(prg, parties), return_exceptions=True
        )
    assert all(isinstance(v, ConfigError) for v in out.values())


async def test_silent_party_raises_peer_unavailable(prg: PRG) -> None:
    parties = names(3)
    inputs = ring_inputs(prg, parties, (2,))

    async def program(session: Session, x: np.ndarray) -> Any:
        if session.party_id == 2:
            return None  # runs nothing: stays silent
        return await secure_sum(session, x)

    async with MemoryNetwork(parties, recv_timeout=0.5) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, parties), return_exceptions=True)
    for name in ("p0", "p1"):
        assert isinstance(out[name], PeerUnavailable)
        assert out[name].peer == "p2"

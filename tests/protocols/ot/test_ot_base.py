"""Masny-Rindal base OT: pure steps, the protocol on the memory mesh, invalid group elements."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rbcl

from mpc.errors import ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from protocols.ot.base import (
    _hash_to_point,
    base_ot_recv,
    base_ot_send,
    check_point,
    receiver_choose,
    receiver_keys,
    sender_keys,
)
from transport.memory import MemoryNetwork

CTX = b"test-context"
NON_CANONICAL = b"\xff" * 32  # field element >= p: not a canonical ristretto255 encoding


def seeds_for(prg: PRG, names: list[str]) -> dict[str, bytes]:
    return {n: prg.bytes(16) for n in names}


def run_pure(prg: PRG, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    choices = prg.bits(n)
    scalars, r0, r1 = receiver_choose(CTX, choices, prg.bytes(128 * n))
    a_pub, k0, k1 = sender_keys(CTX, r0, r1, n, prg.bytes(64))
    kc = receiver_keys(CTX, scalars, choices, r0, r1, np.frombuffer(a_pub, dtype=np.uint8).copy())
    return choices, k0, k1, kc


def test_pure_steps_give_chosen_keys(prg: PRG) -> None:
    choices, k0, k1, kc = run_pure(prg, 16)
    np.testing.assert_array_equal(kc, np.where(choices[:, None] == 1, k1, k0))
    # the other key is unrelated to the receiver's
    assert not np.any(np.all(np.where(choices[:, None] == 1, k0, k1) == kc, axis=1))
    assert len({row.tobytes() for row in np.concatenate([k0, k1])}) == 32


def test_check_point_rejects_identity_and_non_canonical() -> None:
    g = bytes(rbcl.crypto_scalarmult_ristretto255_base(rbcl.crypto_core_ristretto255_scalar_reduce(b"\x07" * 64)))
    assert check_point(g) == g
    for bad in (bytes(32), NON_CANONICAL, g[:31], "x" * 32):
        with pytest.raises(ProtocolViolation):
            check_point(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["identity", "non-canonical"])
@pytest.mark.parametrize("side", ["r0", "r1"])
def test_sender_rejects_bad_receiver_elements(prg: PRG, which: str, side: str) -> None:
    choices = prg.bits(4)
    _, r0, r1 = receiver_choose(CTX, choices, prg.bytes(128 * 4))
    target = r0 if side == "r0" else r1
    target[2] = np.frombuffer(bytes(32) if which == "identity" else NON_CANONICAL, dtype=np.uint8)
    with pytest.raises(ProtocolViolation):
        sender_keys(CTX, r0, r1, 4, prg.bytes(64))


def test_sender_rejects_degenerate_evaluation(prg: PRG) -> None:
    # r0 = -Hp(0, 0, r1) makes Eval(phi, 0) the identity: a malicious receiver's trick.
    _, r0, r1 = receiver_choose(CTX, prg.bits(2), prg.bytes(256))
    h = _hash_to_point(CTX, 0, 0, r1[0].tobytes())
    neg = bytes(rbcl.crypto_core_ristretto255_sub(bytes(32), h))  # -h
    r0[0] = np.frombuffer(neg, dtype=np.uint8)
    with pytest.raises(ProtocolViolation):
        sender_keys(CTX, r0, r1, 2, prg.bytes(64))


def test_sender_rejects_wrong_shapes(prg: PRG) -> None:
    _, r0, r1 = receiver_choose(CTX, prg.bits(4), prg.bytes(512))
    for a, b, n in ((r0[:3], r1[:3], 4), (r0, r1, 5), (r0.astype(np.int16), r1, 4), (r0.tolist(), r1, 4)):
        with pytest.raises(ProtocolViolation):
            sender_keys(CTX, a, b, n, prg.bytes(64))


@pytest.mark.parametrize("a_pub", [bytes(32), NON_CANONICAL])
def test_receiver_rejects_bad_sender_key(prg: PRG, a_pub: bytes) -> None:
    choices = prg.bits(3)
    scalars, r0, r1 = receiver_choose(CTX, choices, prg.bytes(384))
    with pytest.raises(ProtocolViolation):
        receiver_keys(CTX, scalars, choices, r0, r1, np.frombuffer(a_pub, dtype=np.uint8))
    with pytest.raises(ProtocolViolation):
        receiver_keys(CTX, scalars, choices, r0, r1, np.zeros(31, dtype=np.uint8))


# -- on the memory mesh ---------------------------------------------------------------------


async def base_program(session: Session, choices: Any) -> Any:
    if session.party_id == 0:
        return await base_ot_send(session, 1, 128)
    return await base_ot_recv(session, 0, choices)


async def test_base_ot_on_memory_mesh(prg: PRG) -> None:
    names = ["s", "r"]
    choices = prg.bits(128)
    async with MemoryNetwork(names, recv_timeout=5.0) as net:
        out = await net.run(base_program, {"s": None, "r": choices}, seeds=seeds_for(prg, names))
    k0, k1 = out["s"]
    np.testing.assert_array_equal(out["r"], np.where(choices[:, None] == 1, k1, k0))


async def identity_receiver(session: Session, _: Any) -> Any:
    """A malicious receiver: sends the identity as r0 of OT 5."""
    if session.party_id == 0:
        return await base_ot_send(session, 1, 8)
    sub = session.child("base_ot")
    rnd_r, _rnd_s = sub.round("mr-r"), sub.round("mr-s")
    _, r0, r1 = receiver_choose(b"whatever", np.zeros(8, dtype=np.uint8), session.prg.bytes(128 * 8))
    r0[5] = 0
    await rnd_r.send(0, {"r0": r0, "r1": r1})
    return "sent"


async def identity_sender(session: Session, choices: Any) -> Any:
    """A malicious sender: answers with the identity as A."""
    if session.party_id == 1:
        return await base_ot_recv(session, 0, choices)
    sub = session.child("base_ot")
    rnd_r, rnd_s = sub.round("mr-r"), sub.round("mr-s")
    await rnd_r.recv(1)
    await rnd_s.send(1, np.zeros(32, dtype=np.uint8))
    return "sent"


async def test_identity_from_receiver_is_a_protocol_violation(prg: PRG) -> None:
    names = ["s", "r"]
    async with MemoryNetwork(names, recv_timeout=1.0) as net:
        out = await net.run(identity_receiver, {"s": None, "r": None}, seeds=seeds_for(prg, names), return_exceptions=True)
    assert isinstance(out["s"], ProtocolViolation)


async def test_identity_from_sender_is_a_protocol_violation(prg: PRG) -> None:
    names = ["s", "r"]
    async with MemoryNetwork(names, recv_timeout=1.0) as net:
        out = await net.run(identity_sender, {"s": None, "r": prg.bits(8)}, seeds=seeds_for(prg, names), return_exceptions=True)
    assert isinstance(out["r"], ProtocolViolation)


async def test_silent_sender_gives_peer_unavailable(prg: PRG) -> None:
    async def program(session: Session, choices: Any) -> Any:
        if session.party_id == 0:
            return None
        return await base_ot_recv(session, 0, choices)

    names = ["s", "r"]
    async with MemoryNetwork(names, recv_timeout=0.3) as net:
        out = await net.run(program, {"s": None, "r": prg.bits(4)}, seeds=seeds_for(prg, names), return_exceptions=True)
    assert isinstance(out["r"], PeerUnavailable)


async def test_bad_parameters_are_config_errors(prg: PRG) -> None:
    async def program(session: Session, arg: Any) -> Any:
        if session.party_id == 0:
            return await base_ot_send(session, 1, arg)
        return await base_ot_recv(session, 0, arg)

    names = ["s", "r"]
    async with MemoryNetwork(names, recv_timeout=0.3) as net:
        out = await net.run(program, {"s": 0, "r": np.array([0, 2])}, seeds=seeds_for(prg, names), return_exceptions=True)
    assert isinstance(out["s"], ConfigError) and isinstance(out["r"], ConfigError)


def test_check_point_rejects_the_high_bit() -> None:
    from mpc.errors import ProtocolViolation
    from protocols.ot.base import check_point
    from protocols.sodium import rbcl

    good = rbcl.crypto_core_ristretto255_from_hash(bytes(range(64)))
    assert check_point(good) == good
    bad = good[:31] + bytes([good[31] | 0x80])
    with pytest.raises(ProtocolViolation):
        check_point(bad)

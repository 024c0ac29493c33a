"""OT extension against deviating peers: the KOS check, tampering, mismatches, silence, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import AbortError, ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from protocols.ot import OTExtReceiver, OTExtSender, ot_pair
from protocols.ot.crhash import pack_bits, transpose_bits
from protocols.ot.extension import fs_challenge, kos_receiver_check, receiver_columns
from transport.faults import Fault, FaultPlan
from transport.memory import MemoryNetwork

NAMES = ["sender", "receiver"]
CHEAT_COLUMN = 5


def seeds_for(prg: PRG) -> dict[str, bytes]:
    return {n: prg.bytes(16) for n in NAMES}


def delta_with_cheat_bit(prg: PRG) -> np.ndarray:
    d = prg.buffer(16)
    d[0] |= 1 | (1 << CHEAT_COLUMN)  # Delta_5 = 1: the cheat below changes the sender's rows
    return d


class CheatingReceiver(OTExtReceiver):
    """Uses another choice vector in column 5 (flips the choice of OT 3 there), honest check.

    This is the KOS attack that would reveal Delta_5 through the hashed outputs.
    """

    async def _extend(self, kind: str, c: np.ndarray) -> tuple[np.ndarray, int]:
        n = c.shape[0]
        rnd, first, m = self._start(n)
        g0, g1 = self._streams0.next(m // 8), self._streams1.next(m // 8)
        packed = pack_bits(np.concatenate([c, self._session.prg.bits(m - n)]))
        u = receiver_columns(g0, g1, packed)
        u[CHEAT_COLUMN, 0] ^= 1 << 3
        t = transpose_bits(g0)
        msg: dict[str, Any] = {"kind": kind, "n": n, "u": u}
        if self.active:
            msg["check"] = kos_receiver_check(t, packed, m, fs_challenge(self._context(rnd, kind, n), u))
        await rnd.send(self.peer, msg)
        return t[:n], first


def make_cheat_program(delta: np.ndarray, kind: str, active: bool = True) -> Any:
    async def program(session: Session, c: Any) -> Any:
        if session.party_id == 0:
            ot = await OTExtSender.setup(session, 1, delta=delta, active=active)
            if kind == "random":
                return await ot.send_random(len(c))
            return await ot.send_chosen(np.zeros((len(c), 4), np.uint8), np.ones((len(c), 4), np.uint8))
        cheat = await CheatingReceiver.setup(session, 0, active=active)
        if kind == "random":
            return await cheat.recv_random(c)
        return await cheat.recv_chosen(c)

    return program


async def test_kos_check_catches_inconsistent_receiver(prg: PRG) -> None:
    c = prg.bits(1000)
    async with MemoryNetwork(NAMES, recv_timeout=1.0) as net:
        out = await net.run(make_cheat_program(delta_with_cheat_bit(prg), "random"), {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], AbortError)


async def test_passive_mode_does_not_see_the_same_deviation(prg: PRG) -> None:
    """Without the check the deviation goes through, and OT 3's outputs no longer match: IKNP
    alone is only passively secure (that mismatch is what leaks Delta_5 to the cheater)."""
    c = prg.bits(1000)
    async with MemoryNetwork(NAMES, recv_timeout=1.0) as net:
        out = await net.run(make_cheat_program(delta_with_cheat_bit(prg), "random", active=False), {"sender": c, "receiver": c}, seeds=seeds_for(prg))
    r0, r1 = out["sender"]
    chosen = np.where(c[:, None] == 1, r1, r0)
    mismatch = np.flatnonzero(np.any(chosen != out["receiver"], axis=1))
    assert mismatch.tolist() == [3]


async def test_failed_check_in_chosen_ot_aborts_both_sides(prg: PRG) -> None:
    c = prg.bits(1000)
    async with MemoryNetwork(NAMES, recv_timeout=5.0) as net:
        out = await net.run(make_cheat_program(delta_with_cheat_bit(prg), "chosen"), {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], AbortError)
    assert isinstance(out["receiver"], AbortError)  # told by the sender, not a timeout


def honest_program(active: bool = True) -> Any:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1, active=active)
        if isinstance(ot, OTExtSender):
            return await ot.send_random(len(c))
        return await ot.recv_random(c)

    return program


@pytest.mark.parametrize("offset", [-1, -40, -5000])  # in the check, at the end of u, inside u
async def test_tampered_extension_message_is_caught(prg: PRG, offset: int) -> None:
    # Receiver's data frames: #0 base OT message, #1 the extension message (one frame).
    plan = FaultPlan([Fault("tamper", src="receiver", dst="sender", after=1, offset=offset, mask=0x10)])
    c = prg.bits(1000)
    async with MemoryNetwork(NAMES, recv_timeout=1.0, faults=plan) as net:
        out = await net.run(honest_program(), {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
        assert net.faults_fired() == {"tamper": 1}
    assert isinstance(out["sender"], AbortError)


async def test_mismatched_calls_are_protocol_violations(prg: PRG) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return await ot.send_random(len(c))
        return await ot.recv_correlated(c)  # another kind

    c = prg.bits(100)
    async with MemoryNetwork(NAMES, recv_timeout=0.5) as net:
        out = await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], ProtocolViolation)


async def test_batch_size_mismatch_is_a_protocol_violation(prg: PRG) -> None:
    c = prg.bits(100)
    async with MemoryNetwork(NAMES, recv_timeout=0.5) as net:
        out = await net.run(honest_program(), {"sender": c[:99], "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], ProtocolViolation)


async def test_active_passive_mismatch_is_a_protocol_violation(prg: PRG) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1, active=session.party_id == 0)
        if isinstance(ot, OTExtSender):
            return await ot.send_random(len(c))
        return await ot.recv_random(c)

    c = prg.bits(100)
    async with MemoryNetwork(NAMES, recv_timeout=0.5) as net:
        out = await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], ProtocolViolation)


@pytest.mark.parametrize("bad", ["shape", "dtype", "keys"])
async def test_malformed_sender_answer_is_a_protocol_violation(prg: PRG, bad: str) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            _, _, rnd = await ot._second("chosen", len(c))  # a malicious sender's answer
            y = np.zeros((len(c), 4), dtype=np.uint8)
            msg = {
                "shape": {"y0": y, "y1": np.zeros((len(c), 5), dtype=np.uint8)},
                "dtype": {"y0": y, "y1": y.astype(np.uint16)},
                "keys": {"y0": y},
            }[bad]
            await rnd.send(1, msg)
            return None
        return await ot.recv_chosen(c)

    c = prg.bits(50)
    async with MemoryNetwork(NAMES, recv_timeout=1.0) as net:
        out = await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["receiver"], ProtocolViolation)


async def test_malformed_ring_correction_is_a_protocol_violation(prg: PRG) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            _, _, rnd = await ot._second("ring-z2_64", len(c))
            await rnd.send(1, {"tau": np.zeros((len(c), 2), dtype=np.uint64)})
            return None
        return await ot.recv_correlated_ring(c)

    c = prg.bits(50)
    async with MemoryNetwork(NAMES, recv_timeout=1.0) as net:
        out = await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["receiver"], ProtocolViolation)


async def test_silent_receiver_gives_peer_unavailable(prg: PRG) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return await ot.send_random(len(c))
        return None  # set up, then silent

    c = prg.bits(10)
    async with MemoryNetwork(NAMES, recv_timeout=0.3) as net:
        out = await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
    assert isinstance(out["sender"], PeerUnavailable)


async def test_bad_local_input_is_a_config_error(prg: PRG) -> None:
    async def program(session: Session, _: Any) -> Any:
        errors = []
        with pytest.raises(ConfigError):
            await ot_pair(session, sender=0, receiver=0)
        if session.party_id == 0:
            with pytest.raises(ConfigError):
                await ot_pair(session, sender=0, receiver=1, delta=b"short")
        ot = await ot_pair(session, sender=0, receiver=1)
        calls: list[Any]
        if isinstance(ot, OTExtSender):
            calls = [
                lambda: ot.send_random(-1),
                lambda: ot.send_random(5, nbytes=0),
                lambda: ot.send_chosen(np.zeros((3, 2), np.uint8), np.zeros((3, 3), np.uint8)),
                lambda: ot.send_chosen(np.zeros((3, 2), np.int8), np.zeros((3, 2), np.int8)),
                lambda: ot.send_correlated_ring(np.zeros(3, np.int64)),
                lambda: ot.send_correlated_ring(np.zeros(3, np.uint64), ring="z2_128"),
                lambda: ot.send_correlated_ring(np.zeros(3, np.uint64), ring="z3"),
            ]
        else:
            calls = [
                lambda: ot.recv_random(np.array([0, 1, 2])),
                lambda: ot.recv_random(np.zeros((2, 2), np.uint8)),
                lambda: ot.recv_random(np.array([0.0, 1.0])),
                lambda: ot.recv_chosen(np.array([-1, 0])),
            ]
        for call in calls:
            try:
                await call()
            except ConfigError:
                errors.append(True)
        return len(errors) == len(calls)

    async with MemoryNetwork(NAMES, recv_timeout=0.5) as net:
        out = await net.run(program, {"sender": None, "receiver": None}, seeds=seeds_for(prg))
    assert out == {"sender": True, "receiver": True}

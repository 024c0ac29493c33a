"""Large OT-extension batches take the KOS challenge interactively (no hash over ``u``).

From ``_INTERACTIVE_ROWS`` padded rows the receiver sends ``u`` alone, the sender answers with a
fresh challenge, the receiver with the check values. These tests lower the threshold to 2^16
rows (the code path is the same) and run batches just over it: the correlations hold for every
flavour, the traffic is as documented, and a receiver that deviates (inconsistent columns, a
tampered or missing check, the Fiat-Shamir form where the interactive one is due) is caught
with a typed error on both sides where the flavour lets the receiver hear of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import AbortError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from protocols.ot import OTExtReceiver, OTExtSender, ot_pair
from protocols.ot.crhash import pack_bits
from protocols.ot import extension
from protocols.ot.extension import KOS_PAD, kos_receiver_check, padded_rows, receiver_batch
from transport.faults import Fault, FaultPlan
from transport.memory import MemoryNetwork

from test_ot_adversarial import honest_program

NAMES = ["sender", "receiver"]
ROWS = 1 << 16
"""The threshold in these tests (the real one, 2^20 rows, is the same code with 16x the data)."""
N = ROWS  # padded to N + 256 rows: interactive
CHEAT_COLUMN = 5


@pytest.fixture(autouse=True)
def smaller_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    assert extension._INTERACTIVE_ROWS >= ROWS
    monkeypatch.setattr(extension, "_INTERACTIVE_ROWS", ROWS)


def seeds_for(prg: PRG) -> dict[str, bytes]:
    return {n: prg.bytes(16) for n in NAMES}


async def run2(prg: PRG, program: Any, c: np.ndarray, *, timeout: float = 10.0) -> dict[str, Any]:
    async with MemoryNetwork(NAMES, recv_timeout=timeout) as net:
        return await net.run(program, {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)


def select(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(c.reshape((-1,) + (1,) * (a.ndim - 1)) == 1, b, a)


def test_the_batches_here_take_the_interactive_challenge() -> None:
    assert padded_rows(N, True) >= extension._INTERACTIVE_ROWS > padded_rows(N // 2, True)


async def test_every_flavour_satisfies_its_correlation(prg: PRG) -> None:
    x = prg.uint64((N, 2))

    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return {
                "r": await ot.send_random(N),
                "q": await ot.send_correlated(N),
                "s": await ot.send_correlated_ring(x, ring="z2_64"),
                "delta": ot.delta,
            }
        assert isinstance(ot, OTExtReceiver)
        return {
            "r": await ot.recv_random(c),
            "t": await ot.recv_correlated(c),
            "v": await ot.recv_correlated_ring(c, shape=(2,), ring="z2_64"),
        }

    c = prg.bits(N)
    out = await run2(prg, program, c)
    s, r = out["sender"], out["receiver"]
    np.testing.assert_array_equal(r["r"], select(c, *s["r"]))
    np.testing.assert_array_equal(r["t"], s["q"] ^ (c[:, None] * s["delta"]))
    np.testing.assert_array_equal(r["v"], s["s"] + c[:, None].astype(np.uint64) * x)  # mod 2^64


async def test_traffic_is_u_then_a_challenge_and_the_check(prg: PRG) -> None:
    sent: dict[int, int] = {}

    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        before, rounds = session.stats.bytes_sent, session.stats.rounds
        if isinstance(ot, OTExtSender):
            await ot.send_random(N)
        else:
            await ot.recv_random(c)
        sent[session.party_id] = session.stats.bytes_sent - before
        return session.stats.rounds - rounds

    out = await run2(prg, program, prg.bits(N))
    m = padded_rows(N, True)
    assert N + KOS_PAD <= m < N + KOS_PAD + 128
    assert 16 * m + 32 <= sent[1] < 16 * m + 32 + 600  # u, then the 32-byte check (+ framing)
    assert 16 <= sent[0] < 600  # the 16-byte challenge (+ framing and acknowledgements)
    assert out["sender"] == out["receiver"] == 3  # ext, ext-chal, ext-check


class InconsistentReceiver(OTExtReceiver):
    """Flips OT 3's choice in column 5 of ``u`` (the KOS attack on Delta_5), then answers the
    challenge honestly; with ``fiat_shamir=True`` it instead sends the check with ``u`` (the
    small-batch form), where the interactive form is due."""

    fiat_shamir = False
    skip_check = False

    async def _extend(self, kind: str, c: np.ndarray, held: Any = None) -> tuple[np.ndarray, int]:
        n = c.shape[0]
        rnd, first, m = self._start(n)
        challenge = self._challenge_rounds(m)
        assert challenge is not None
        g0, g1 = self._streams0.next(m // 8), self._streams1.next(m // 8)
        pad = self._session.prg.bits(m - n)
        u, _, t = receiver_batch(g0, g1, c, pad, b"", False)
        packed = pack_bits(np.concatenate([c, pad]), m)
        msg: dict[str, Any] = {"kind": kind, "n": n, "u": u}
        if self.fiat_shamir:
            msg["check"] = kos_receiver_check(t, packed, m, 1)
            await rnd.send(self.peer, msg)
            await self._answer(challenge[0], ("alpha",))  # the sender's answer: its error
            return t[:n], first
        u[CHEAT_COLUMN, 0] ^= 1 << 3
        await rnd.send(self.peer, msg)
        alpha = (await self._answer(challenge[0], ("alpha",)))["alpha"]
        if not self.skip_check:
            await challenge[1].send(self.peer, {"check": kos_receiver_check(t, packed, m, int.from_bytes(alpha, "little"))})
        return t[:n], first


def cheat_program(delta: np.ndarray, kind: str, **behaviour: bool) -> Any:
    async def program(session: Session, c: Any) -> Any:
        if session.party_id == 0:
            ot = await OTExtSender.setup(session, 1, delta=delta)
            if kind == "random":
                return await ot.send_random(len(c))
            return await ot.send_correlated_ring(np.zeros((len(c), 1), np.uint64))
        cheat = await InconsistentReceiver.setup(session, 0)
        for name, value in behaviour.items():
            setattr(cheat, name, value)
        if kind == "random":
            return await cheat.recv_random(c)
        return await cheat.recv_correlated_ring(c, shape=(1,))

    return program


def delta_with_cheat_bit(prg: PRG) -> np.ndarray:
    d = prg.buffer(16)
    d[0] |= 1 | (1 << CHEAT_COLUMN)  # Delta_5 = 1: the cheat changes the sender's rows
    return d


@pytest.mark.parametrize("kind", ["random", "ring"])
async def test_inconsistent_columns_are_caught(prg: PRG, kind: str) -> None:
    out = await run2(prg, cheat_program(delta_with_cheat_bit(prg), kind), prg.bits(N))
    assert isinstance(out["sender"], AbortError)
    if kind == "ring":
        assert isinstance(out["receiver"], AbortError)  # told by the sender, not a timeout


async def test_a_check_sent_with_u_is_a_protocol_violation_on_both_sides(prg: PRG) -> None:
    out = await run2(prg, cheat_program(delta_with_cheat_bit(prg), "random", fiat_shamir=True), prg.bits(N), timeout=2.0)
    assert isinstance(out["sender"], ProtocolViolation)
    assert isinstance(out["receiver"], ProtocolViolation)  # reported in place of the challenge


async def test_a_missing_check_leaves_the_sender_waiting_then_unavailable(prg: PRG) -> None:
    out = await run2(prg, cheat_program(delta_with_cheat_bit(prg), "random", skip_check=True), prg.bits(N), timeout=0.5)
    assert isinstance(out["sender"], PeerUnavailable)


async def test_a_tampered_check_is_caught(prg: PRG) -> None:
    # Receiver's data frames: #0 the base OTs' message, #1 the u matrix (1 MB, one frame), #2
    # the check message, whose last byte is flipped.
    plan = FaultPlan([Fault("tamper", src="receiver", dst="sender", after=2, offset=-1, mask=0x10)])
    c = prg.bits(N)
    async with MemoryNetwork(NAMES, recv_timeout=10.0, faults=plan) as net:
        out = await net.run(honest_program(), {"sender": c, "receiver": c}, seeds=seeds_for(prg), return_exceptions=True)
        assert net.faults_fired() == {"tamper": 1}
    assert isinstance(out["sender"], AbortError)

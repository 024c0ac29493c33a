"""PSI under bad input and misbehaving peers: every case ends in a typed error, never a wrong result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rbcl

from mpc.errors import ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import PartyOutcome, run_parties_async
from protocols.psi import PsiConfig, psi_cardinality, psi_intersection, psi_join
from protocols.psi.group import hash_to_group

SALT = b"psi-adversarial-tests"
CFG = PsiConfig(salt=SALT, chunk_size=16, max_wait_seconds=0.6)
TWO_PARTY = "ecdh-ristretto255-2p"
RING = "ecdh-ristretto255-ring"


async def run(program: Any, inputs: list[Any], prg: PRG) -> list[PartyOutcome]:
    names = [f"p{i}" for i in range(len(inputs))]
    return await run_parties_async(
        program, dict(zip(names, inputs)), seeds={n: prg.bytes(16) for n in names}, recv_timeout=0.3
    )


def ids(prefix: str, m: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(m)]


def points(prg: PRG, m: int) -> np.ndarray:
    blob, _ = hash_to_group(b"", prg.bytes(64 * m))
    return np.frombuffer(blob, dtype=np.uint8).reshape(m, 32).copy()


async def honest(session: Session, inp: dict[str, Any]) -> Any:
    config = inp.get("config", CFG)
    mode = inp.get("mode", "intersection")
    if mode == "join":
        return await psi_join(session, inp["ids"], config)
    fn = psi_cardinality if mode == "cardinality" else psi_intersection
    return await fn(session, inp["ids"], config, receivers=inp.get("receivers"))


# -- local bad input: ConfigError before any message -------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"ids": ids("a", 40), "config": PsiConfig(salt=SALT, max_set_size=39, max_wait_seconds=0.6)},
        {"ids": [b"ok", b"\xc3\x28"]},
        {"ids": ["ok", "x" * 300]},
        {"ids": ["dup", "dup"]},
        {"ids": ["ok", None]},
        {"ids": ids("a", 5), "receivers": [7]},
        {"ids": ids("a", 5), "receivers": []},
    ],
    ids=["over-limit", "non-utf8", "over-long", "duplicate", "not-text", "bad-receiver", "no-receiver"],
)
async def test_bad_local_input_fails_before_sending(prg: PRG, bad: dict[str, Any]) -> None:
    outcomes = await run(honest, [bad, {"ids": ids("a", 5)}], prg)
    assert isinstance(outcomes[0].error, ConfigError), outcomes[0].error
    assert outcomes[0].stats["bytes_sent"] == 0 and outcomes[0].stats["messages_sent"] == 0
    assert isinstance(outcomes[1].error, PeerUnavailable)


async def test_session_of_one_is_refused(prg: PRG) -> None:
    outcomes = await run(honest, [{"ids": ids("a", 3)}], prg)
    assert isinstance(outcomes[0].error, ConfigError)


# -- parties that disagree --------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        {"config": PsiConfig(salt=SALT + b"-other", chunk_size=16, max_wait_seconds=0.6)},
        {"config": PsiConfig(salt=SALT, chunk_size=17, max_wait_seconds=0.6)},
        {"mode": "cardinality"},
        {"receivers": [0]},
    ],
    ids=["salt", "chunk", "mode", "receivers"],
)
@pytest.mark.parametrize("n", [2, 3])
async def test_parameter_mismatch_is_a_protocol_violation(prg: PRG, n: int, other: dict[str, Any]) -> None:
    inputs: list[dict[str, Any]] = [{"ids": ids("a", 20)} for _ in range(n)]
    inputs[1].update(other)
    outcomes = await run(honest, inputs, prg)
    for o in outcomes:
        assert isinstance(o.error, ProtocolViolation) and "other parameters" in str(o.error), o.error


async def test_silent_peer_raises_peer_unavailable(prg: PRG) -> None:
    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id == 2:
            return None
        return await honest(session, inp)

    outcomes = await run(program, [{"ids": ids("a", 20)} for _ in range(3)], prg)
    for o in outcomes[:2]:
        assert isinstance(o.error, PeerUnavailable), o.error


# -- a malicious peer -------------------------------------------------------------------------


def hello_for(session: Session, mode: str = "intersection", receivers: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    protocol = TWO_PARTY if session.n_parties == 2 else RING
    digest = CFG.digest(protocol=protocol, mode=mode, receivers=receivers, n_parties=session.n_parties)
    return {"params": digest, "size": 20}


async def play_hello(sub: Session, hello: Any) -> None:
    rnd = sub.round("hello")
    for p in sub.others:
        await rnd.send(p, hello)
    for p in sub.others:
        await rnd.recv(p)


@pytest.mark.parametrize(
    ("hello", "match"),
    [
        ({"params": b"x" * 32}, "malformed"),
        ([1, 2], "malformed"),
        ("size", "other parameters"),
        ("negative", "invalid set size"),
        ("huge", "invalid set size"),
    ],
)
async def test_bad_hello(prg: PRG, hello: Any, match: str) -> None:
    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id == 0:
            return await honest(session, inp)
        msg = hello
        if isinstance(hello, str):
            msg = hello_for(session)
            if hello == "size":
                msg["params"] = b"\x00" * 32
            msg["size"] = {"negative": -1, "huge": CFG.max_set_size + 1}.get(hello, msg["size"])
        await play_hello(session.child("psi"), msg)
        return None

    outcomes = await run(program, [{"ids": ids("a", 20)}] * 2, prg)
    assert isinstance(outcomes[0].error, ProtocolViolation) and match in str(outcomes[0].error), outcomes[0].error


def tamper(prg: PRG, kind: str, rows: int) -> Any:
    """A first chunk of ``rows`` elements, spoiled in one way."""
    good = points(prg, rows)
    if kind == "identity":
        good[3] = 0
    elif kind == "bit-255":
        good[3, 31] |= 0x80
    elif kind == "not-on-curve":
        good[3] = np.frombuffer((2**255 - 19 + 2).to_bytes(32, "little"), dtype=np.uint8)
    elif kind == "odd":
        good[3] = np.frombuffer((1).to_bytes(32, "little"), dtype=np.uint8)
    elif kind == "repeated":
        good[5] = good[3]
    elif kind == "too-few":
        return good[:-1]
    elif kind == "too-many":
        return points(prg, rows + 1)
    elif kind == "short-elements":
        return good[:, :31].copy()
    elif kind == "dtype":
        return good.astype(np.uint16)
    elif kind == "flat":
        return good.ravel()
    elif kind == "bytes":
        return good.tobytes()
    assert rbcl  # the valid points above come from libsodium
    return good


KINDS = ["identity", "bit-255", "not-on-curve", "odd", "too-few", "too-many", "short-elements", "dtype", "flat", "bytes"]


@pytest.mark.parametrize("kind", KINDS)
async def test_malicious_masked_set(prg: PRG, kind: str) -> None:
    """Party 1 sends a bad chunk where its masked set belongs; party 0 must refuse it."""
    bad = tamper(prg, kind, CFG.chunk_size)

    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id == 0:
            return await honest(session, inp)
        sub = session.child("psi")
        await play_hello(sub, hello_for(sub))
        await sub.round("m1").send(0, bad)
        return None

    outcomes = await run(program, [{"ids": ids("a", 20)}] * 2, prg)
    assert isinstance(outcomes[0].error, ProtocolViolation), outcomes[0].error


@pytest.mark.parametrize("kind", ["identity", "bit-255", "repeated", "too-many", "dtype"])
async def test_malicious_returned_set(prg: PRG, kind: str) -> None:
    """Party 1 follows the protocol but returns bad doubly-masked elements to party 0."""
    good_set = points(prg, 20)
    bad = tamper(prg, kind, CFG.chunk_size)

    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id == 0:
            return await honest(session, inp)
        sub = session.child("psi")
        await play_hello(sub, hello_for(sub))
        for lo in (0, 16):
            await sub.round("m1").send(0, good_set[lo : lo + 16])
        await sub.round("m0").recv(0)  # party 0's first chunk
        await sub.round("d0").send(0, bad)
        if kind == "repeated":  # repeats are checked once the whole set has arrived
            await sub.round("d0").send(0, points(prg, 4))
        return None

    outcomes = await run(program, [{"ids": ids("a", 20)}] * 2, prg)
    assert isinstance(outcomes[0].error, ProtocolViolation), outcomes[0].error


async def test_repeated_elements_in_a_masked_set(prg: PRG) -> None:
    """Repeats are only visible across chunks of a whole set: checked once the set is complete."""
    good_set = points(prg, 20)
    good_set[17] = good_set[2]

    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id == 0:
            return await honest(session, inp)
        sub = session.child("psi")
        await play_hello(sub, hello_for(sub))
        for lo in (0, 16):
            await sub.round("m1").send(0, good_set[lo : lo + 16])
        return None

    outcomes = await run(program, [{"ids": ids("a", 20)}] * 2, prg)
    assert isinstance(outcomes[0].error, ProtocolViolation) and "repeated" in str(outcomes[0].error)


@pytest.mark.parametrize("kind", ["identity", "not-on-curve", "too-few"])
async def test_malicious_ring_member(prg: PRG, kind: str) -> None:
    """In a 3-party ring, party 2 starts its set with a bad chunk; party 0 (next hop) refuses it."""
    bad = tamper(prg, kind, CFG.chunk_size)

    async def program(session: Session, inp: dict[str, Any]) -> Any:
        if session.party_id != 2:
            return await honest(session, inp)
        sub = session.child("psi")
        await play_hello(sub, hello_for(sub, receivers=(0, 1, 2)))
        await sub.round("s2h0").send(0, bad)
        return None

    outcomes = await run(program, [{"ids": ids("a", 20)}] * 3, prg)
    assert isinstance(outcomes[0].error, ProtocolViolation), outcomes[0].error
    assert isinstance(outcomes[1].error, (ProtocolViolation, PeerUnavailable)), outcomes[1].error

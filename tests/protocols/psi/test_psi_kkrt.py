"""OT-based PSI (KKRT): cuckoo hashing, exact results in every mode, malformed messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import PartyOutcome, run_parties_async
from protocols.ot.base import base_ot_recv, base_ot_send
from protocols.psi import PsiConfig, prepare_identifiers, psi_cardinality, psi_intersection, psi_join
from protocols.psi.kkrt import (
    BLOCK_BINS,
    CODE_BITS,
    HASHES,
    _receiver,
    bin_indices,
    cuckoo_insert,
    oprf_hash,
    output_bytes,
    table_size,
)
from protocols.psi.streams import Patience, n_chunks, permutation

SALT = b"psi-kkrt-tests-salt!"
CFG = PsiConfig(salt=SALT, max_wait_seconds=5.0)
QUICK = PsiConfig(salt=SALT, max_wait_seconds=0.6)
OT = "kkrt-ot-2p"


def make_pair(prg: PRG, n_a: int, n_b: int, common: int) -> tuple[list[str], list[str]]:
    pool = [f"MRN-{x:016x}" for x in prg.uint64(n_a + n_b - common).tolist()]
    a = pool[:n_a]
    b = pool[:common] + pool[n_a:]
    return [a[i] for i in permutation(prg, n_a)], [b[i] for i in permutation(prg, n_b)]


def rows_of(items: list[str], other: list[str]) -> list[int]:
    theirs = set(other)
    return [i for i, x in enumerate(items) if x in theirs]


async def run(program: Any, inputs: list[Any], prg: PRG, timeout: float = 5.0) -> list[PartyOutcome]:
    names = ["r", "s"]
    return await run_parties_async(
        program, dict(zip(names, inputs)), seeds={n: prg.bytes(16) for n in names}, recv_timeout=timeout
    )


# -- pure functions ---------------------------------------------------------------------------


def test_parameters() -> None:
    assert table_size(0) == 64 and table_size(1000) == 1272 and table_size(10**6) % 8 == 0
    assert output_bytes(10**6, 10**6) == 11  # 40 + log2(3e12) = 81.5 bits
    assert 8 <= output_bytes(1, 1) <= output_bytes(10**3, 10**3) <= 32


@pytest.mark.parametrize("n", [1, 50, 3000])
def test_cuckoo_places_every_item_in_one_of_its_bins(prg: PRG, n: int) -> None:
    digests = prg.buffer(64 * n).reshape(n, 64)
    m = table_size(n)
    bins = bin_indices(digests, m, 0)
    assert bins.shape == (n, HASHES) and bins.min() >= 0 and bins.max() < m
    assert not np.array_equal(bins, bin_indices(digests, m, 1))  # seeds give other functions
    placed = cuckoo_insert(bins, m)
    assert placed is not None
    table, choice = placed
    items = table[table >= 0]
    np.testing.assert_array_equal(np.sort(items), np.arange(n))  # each exactly once
    where = np.flatnonzero(table >= 0)
    np.testing.assert_array_equal(bins[items, choice[items]], where)


def test_cuckoo_reports_an_impossible_table() -> None:
    bins = np.zeros((5, HASHES), dtype=np.int64)  # five items, all wanting bin 0
    assert cuckoo_insert(bins, 8, max_rounds=50) is None


def test_oprf_hash_binds_the_bin(prg: PRG) -> None:
    v = prg.buffer(64 * 4).reshape(4, 64)
    a = oprf_hash(np.array([0, 1, 2, 3]), v, 10)
    b = oprf_hash(np.array([0, 1, 2, 4]), v, 10)
    assert a.shape == (4, 10)
    np.testing.assert_array_equal(a[:3], b[:3])
    assert a[3].tobytes() != b[3].tobytes()


# -- the protocol -----------------------------------------------------------------------------


async def program(session: Session, inp: dict[str, Any]) -> Any:
    if inp["mode"] == "join":
        return await psi_join(session, inp["ids"], CFG, protocol="ot")
    return await psi_intersection(session, inp["ids"], CFG, receivers=inp["receivers"], protocol="ot")


@pytest.mark.parametrize(
    ("sizes", "receivers", "mode"),
    [
        ((300, 500, 120), [0], "intersection"),
        ((300, 500, 120), [1], "intersection"),
        ((900, 40, 17), [0, 1], "intersection"),
        ((BLOCK_BINS, 2 * BLOCK_BINS // 3, 999), [0, 1], "intersection"),  # several OPRF blocks
        ((250, 260, 200), None, "join"),
        ((0, 30, 0), [0, 1], "intersection"),
        ((30, 0, 0), None, "join"),
    ],
)
async def test_ot_psi_is_exact(prg: PRG, sizes: tuple[int, int, int], receivers: list[int] | None, mode: str) -> None:
    a, b = make_pair(prg, *sizes)
    outcomes = await run(program, [{"ids": a, "receivers": receivers, "mode": mode}, {"ids": b, "receivers": receivers, "mode": mode}], prg)
    for o in outcomes:
        assert o.error is None, o.error
    out = [o.result for o in outcomes]
    who = [0, 1] if receivers is None else receivers
    for p, (mine, theirs) in enumerate(((a, b), (b, a))):
        if p not in who:
            assert out[p] is None
            continue
        assert out[p].dtype == np.int64
        if mode == "join":
            assert sorted(out[p].tolist()) == rows_of(mine, theirs)
        else:
            np.testing.assert_array_equal(out[p], rows_of(mine, theirs))
    if mode == "join":
        assert [a[r] for r in out[0]] == [b[r] for r in out[1]]
    if sizes[0] == BLOCK_BINS:
        m = table_size(sizes[0])
        assert n_chunks(m, BLOCK_BINS) > 1
        # R sends U (64 bytes per bin) plus the base OTs; S sends 3 lists of l-byte values.
        assert 64 * m < outcomes[0].stats["bytes_sent"] < 64 * m + 64 * CODE_BITS + 50_000
        ell = output_bytes(sizes[0], sizes[1])
        assert 3 * ell * sizes[1] < outcomes[1].stats["bytes_sent"] < 3 * ell * sizes[1] + 50_000


async def test_ot_refuses_cardinality_and_more_parties(prg: PRG) -> None:
    async def cardinality(session: Session, ids: list[str]) -> Any:
        return await psi_cardinality(session, ids, CFG)

    async def three(session: Session, ids: list[str]) -> Any:
        return await psi_intersection(session, ids, CFG, protocol="ot")

    async def unknown(session: Session, ids: list[str]) -> Any:
        return await psi_intersection(session, ids, CFG, protocol="rsa")  # type: ignore[arg-type]

    from protocols.psi.kkrt import kkrt_psi

    with pytest.raises(ConfigError, match="cardinality"):
        await kkrt_psi(None, None, mode="cardinality", receivers=[0], sizes=[1, 1], patience=Patience(1))  # type: ignore[arg-type]
    outcomes = await run_parties_async(three, [["a"], ["a"], ["a"]], recv_timeout=0.3)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)
    outcomes = await run(unknown, [["a"], ["a"]], prg, timeout=0.3)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)
    # ECDH and OT jobs disagree in the hello.
    async def mixed(session: Session, ids: list[str]) -> Any:
        proto = "ot" if session.party_id == 0 else "ecdh"
        return await psi_intersection(session, ids, QUICK, protocol=proto)  # type: ignore[arg-type]

    outcomes = await run(mixed, [["a"], ["a"]], prg, timeout=0.3)
    assert all(isinstance(o.error, ProtocolViolation) for o in outcomes)


# -- malformed messages -----------------------------------------------------------------------


def hello(receivers: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    return {"params": QUICK.digest(protocol=OT, mode="intersection", receivers=receivers, n_parties=2), "size": 20}


async def play_hello(sub: Session, receivers: tuple[int, ...] = (0, 1)) -> None:
    rnd = sub.round("hello")
    await rnd.send(1 - sub.party_id, hello(receivers))
    await rnd.recv(1 - sub.party_id)


async def honest(session: Session, ids: list[str]) -> Any:
    return await psi_intersection(session, ids, QUICK, protocol="ot")


@pytest.mark.parametrize("bad", ["seed", "u-shape", "u-dtype"])
async def test_malicious_receiver(prg: PRG, bad: str) -> None:
    async def program(session: Session, ids: list[str]) -> Any:
        if session.party_id == 1:
            return await honest(session, ids)
        sub = session.child("psi")
        await play_hello(sub)
        await sub.round("seed").send(1, 999 if bad == "seed" else 0)
        if bad != "seed":
            await base_ot_send(sub, 1, CODE_BITS)
            u = np.zeros((CODE_BITS, 7), dtype=np.uint8 if bad == "u-shape" else np.uint16)
            await sub.round("u").send(1, u)
        return None

    outcomes = await run(program, [[], [f"x{i}" for i in range(20)]], prg, timeout=0.3)
    assert isinstance(outcomes[1].error, ProtocolViolation), outcomes[1].error


@pytest.mark.parametrize("bad", ["short-list", "wide-list", "back-outside", "back-repeated", "back-width"])
async def test_malicious_messages_to_either_side(prg: PRG, bad: str) -> None:
    ids = [f"x{i}" for i in range(20)]

    async def program(session: Session, inp: list[str]) -> Any:
        me = session.party_id
        if bad.startswith("back") and me == 0:
            # A receiver that runs the OPRF honestly, then returns made-up result values.
            sub = session.child("psi")
            await play_hello(sub)
            prepared = prepare_identifiers(inp, QUICK)
            await _receiver(sub, prepared, 1, table_size(20), output_bytes(20, 20), 20, "intersection", False, Patience(5))
            ell = output_bytes(20, 20)
            values = {
                "back-outside": np.full((1, ell), 7, dtype=np.uint8),
                "back-repeated": np.zeros((2, ell), dtype=np.uint8),
                "back-width": np.zeros((1, ell + 1), dtype=np.uint8),
            }[bad]
            await sub.round("back").send(1, values)
            return None
        if bad.endswith("list") and me == 1:
            # A sender that answers the OPRF with a list of the wrong shape.
            sub = session.child("psi")
            await play_hello(sub)
            await sub.round("seed").recv(0)
            await base_ot_recv(sub, 0, np.zeros(CODE_BITS, dtype=np.uint8))
            for _ in range(n_chunks(table_size(20), BLOCK_BINS)):
                await sub.round("u").recv(0)
            ell = output_bytes(20, 20)
            shape = (19, ell) if bad == "short-list" else (20, ell + 1)
            await sub.round("f0").send(0, np.zeros(shape, dtype=np.uint8))
            return None
        return await honest(session, inp)

    outcomes = await run(program, [ids, ids], prg, timeout=0.3)
    victim = outcomes[1] if bad.startswith("back") else outcomes[0]
    assert isinstance(victim.error, ProtocolViolation), victim.error


async def test_silent_sender(prg: PRG) -> None:
    async def program(session: Session, ids: list[str]) -> Any:
        if session.party_id == 1:
            return None
        return await honest(session, ids)

    outcomes = await run(program, [["a"], ["a"]], prg, timeout=0.3)
    assert isinstance(outcomes[0].error, PeerUnavailable)

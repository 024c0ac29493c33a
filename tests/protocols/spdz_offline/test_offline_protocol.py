"""The dealer-free offline phase on the in-memory mesh: material checked against plaintext."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from offline_testkit import alpha_of, open_checked, party_seeds

from mpc import ring128 as r128
from mpc.errors import (
    AbortError,
    ConfigError,
    MacCheckFailure,
    PeerUnavailable,
    PreprocessingExhausted,
    ProtocolViolation,
)
from mpc.ring128 import Z128
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols.spdz.preprocessing import Requirements
from protocols.spdz_offline import Behaviour, DealerFreePreprocessing

M64 = 1 << 64
M128 = 1 << 128


async def prog_material(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Produce a mix of material and hand back this party's shares of it."""
    p = await DealerFreePreprocessing.create(s, batch=inp.get("batch", 1 << 13), lanes=inp.get("lanes", 1))
    need = Requirements(**inp["need"])
    await p.produce(need)
    p.reserve(need)
    out: dict[str, Any] = {"key": p.mac_key_share(), "remaining": p.remaining()}
    if need.triples:
        out["triples"] = p.triples((need.triples,))
    if need.bits:
        out["bits"] = p.bits((need.bits,))
    for f, count in need.truncation_pairs.items():
        out["trunc"] = p.truncation_pairs((count,), f)
    for owner, count in need.input_masks.items():
        out[f"mask{owner}"] = p.input_masks(owner, (count,))
    if need.random_values:
        out["random"] = p.random_values((need.random_values,))
    for (m, k, n), count in need.matrix_triples.items():
        out["matrix"] = [p.matrix_triple(m, k, n) for _ in range(count)]
    out["left"] = p.remaining()
    return out


def run(n: int, need: dict[str, Any], seed: bytes, **extra: Any) -> list[dict[str, Any]]:
    inp = {"need": need, **extra}
    return run_local(prog_material, [inp] * n, seeds=party_seeds(seed, n))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_triples_are_products_with_valid_macs(n: int, seed: bytes) -> None:
    count = 40 if n < 5 else 12
    res = run(n, {"triples": count}, seed, batch=16, lanes=2 if n == 2 else 1)  # several batches
    alpha = alpha_of(res)
    a, b, c = (open_checked([r["triples"].__getattribute__(f) for r in res], alpha) for f in "abc")
    assert all((int(x) * int(y) - int(z)) % M64 == 0 for x, y, z in zip(a, b, c))
    assert len(set(a)) == count  # fresh values
    assert res[0]["remaining"] == {"triples": count} and res[0]["left"] == {}


def test_bits_truncation_masks_random_values(seed: bytes) -> None:
    need = {"bits": 200, "truncation_pairs": {16: 3}, "input_masks": {0: 5, 1: 4}, "random_values": 6}
    res = run(3, need, seed)
    alpha = alpha_of(res)
    bits = open_checked([r["bits"] for r in res], alpha)
    assert set(int(b) for b in bits) == {0, 1}
    r = open_checked([r["trunc"].r for r in res], alpha)
    high = open_checked([r_["trunc"].r_high for r_ in res], alpha)
    msb = open_checked([r_["trunc"].r_msb for r_ in res], alpha)
    assert all(int(h) == (int(v) % (1 << 63)) >> 16 and int(m) == int(v) >> 63 for v, h, m in zip(r, high, msb))
    for owner, count in ((0, 5), (1, 4)):
        value = open_checked([r_[f"mask{owner}"].mask for r_ in res], alpha)
        known = res[owner][f"mask{owner}"].value
        assert known is not None and known.shape == (count,)
        assert [int(v) for v in value] == [int(v) for v in known]
        assert all(r_[f"mask{owner}"].value is None for i, r_ in enumerate(res) if i != owner)
    rv = open_checked([r_["random"] for r_ in res], alpha)
    assert len(set(rv)) == 6


@pytest.mark.parametrize("n", [2, 3])
def test_matrix_triples(n: int, seed: bytes) -> None:
    res = run(n, {"matrix_triples": {(3, 4, 2): 2}}, seed)
    alpha = alpha_of(res)
    for i in range(2):
        a = open_checked([r["matrix"][i].a for r in res], alpha)
        b = open_checked([r["matrix"][i].b for r in res], alpha)
        c = open_checked([r["matrix"][i].c for r in res], alpha)
        assert a.shape == (3, 4) and b.shape == (4, 2) and c.shape == (3, 2)
        assert ((a.dot(b) - c) % M64 == 0).all()


# -- malicious producers --------------------------------------------------------------------------


class CheatMultiply(Behaviour):
    """Adds an error to every multiplication correlation of the first entries (selective failure)."""

    def mult_correlation(self, peer: int, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[:4, :, 0] += np.uint64(1)  # entries 0..3, in all their tau OTs
        return x


class PerOT(Behaviour):
    """Honest, but hands the multiplication one correlation per OT (``repeat=1`` in the OT layer)."""

    def mult_correlation(self, peer: int, x: np.ndarray) -> np.ndarray:
        return np.repeat(x, 256, axis=0)


async def prog_per_ot(s: Session, inp: None) -> Any:
    p = await DealerFreePreprocessing.create(s, behaviour=PerOT() if s.party_id == 1 else None)
    await p.produce(Requirements(triples=8))
    p.reserve(Requirements(triples=8))
    return {"key": p.mac_key_share(), "triples": p.triples((8,))}


def test_correlations_per_ot_equal_repeated_ones(seed: bytes) -> None:
    """The compact correlations (each sent in tau OTs) and the materialized ones are the same OTs."""
    res = run_local(prog_per_ot, [None] * 2, seeds=party_seeds(seed, 2))
    alpha = alpha_of(res)
    a, b, c = (open_checked([r["triples"].__getattribute__(f) for r in res], alpha) for f in "abc")
    assert all((int(x) * int(y) - int(z)) % M64 == 0 for x, y, z in zip(a, b, c))


class CheatAuthenticate(Behaviour):
    """Authenticates with inconsistent values in the vOLE (a different x per key bit)."""

    def vole_correlation(self, peer: int, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[:, 0, 0] += np.arange(1, 65, dtype=np.uint64)
        return x


class CheatCheck(Behaviour):
    """Lies about its share of the sacrificed difference ``rho``."""

    def opened_share(self, name: str, share: Z128) -> Z128:
        if "-rho" in name:
            return r128.add(share, r128.from_u64(np.ones(share.shape, dtype=np.uint64)))
        return share


class CheatBits(Behaviour):
    """Lies about its share of the opened squares of the bit protocol (bit 64 only)."""

    def opened_share(self, name: str, share: Z128) -> Z128:
        if name.endswith("-square"):
            return r128.add(share, r128.shl(r128.from_u64(np.ones(share.shape, dtype=np.uint64)), 64))
        return share


class MalformedOpen(Behaviour):
    """Sends a share of the wrong shape in an opening."""

    def opened_share(self, name: str, share: Z128) -> Z128:
        return r128.zeros((share.shape[0] + 1,))


CHEATS = {"malformed": MalformedOpen, "multiply": CheatMultiply, "authenticate": CheatAuthenticate, "check": CheatCheck, "bits": CheatBits}


async def prog_cheater(s: Session, inp: dict[str, Any]) -> None:
    behaviour = CHEATS[inp["cheat"]]() if s.party_id == inp["cheater"] else None
    p = await DealerFreePreprocessing.create(s, behaviour=behaviour)
    await p.produce(Requirements(**inp["need"]))


@pytest.mark.parametrize(
    ("cheat", "n", "need"),
    [
        ("multiply", 2, {"triples": 8}),
        ("multiply", 3, {"triples": 8}),
        ("authenticate", 2, {"triples": 8}),
        ("authenticate", 3, {"input_masks": {1: 4}}),
        ("check", 3, {"triples": 8}),
        ("bits", 2, {"bits": 8}),
    ],
)
def test_cheater_is_caught(cheat: str, n: int, need: dict[str, Any], seed: bytes) -> None:
    """Every honest party raises MacCheckFailure (never a wrong triple)."""
    inp = {"cheat": cheat, "cheater": 1, "need": need}
    outcomes = run_parties(prog_cheater, [inp] * n, seeds=party_seeds(seed, n), recv_timeout=5.0)
    honest = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(o.error, MacCheckFailure) for o in honest), [o.error for o in outcomes]


def test_malformed_message_is_protocol_violation(seed: bytes) -> None:
    inp = {"cheat": "malformed", "cheater": 1, "need": {"triples": 4}}
    outcomes = run_parties(prog_cheater, [inp] * 3, seeds=party_seeds(seed, 3), recv_timeout=5.0)
    assert all(isinstance(o.error, ProtocolViolation) for i, o in enumerate(outcomes) if i != 1)


async def prog_after_abort(s: Session, inp: None) -> str:
    behaviour = CheatCheck() if s.party_id == 1 else None
    p = await DealerFreePreprocessing.create(s, behaviour=behaviour)
    with pytest.raises(MacCheckFailure):
        await p.produce(Requirements(triples=4))
    with pytest.raises(AbortError):
        p.triples((1,))
    with pytest.raises(AbortError):
        await p.produce(Requirements(triples=4))
    return "refused"


def test_provider_refuses_after_a_failed_check(seed: bytes) -> None:
    assert run_local(prog_after_abort, [None, None], seeds=party_seeds(seed, 2)) == ["refused"] * 2


# -- accounting, scheduling, faults ---------------------------------------------------------------


async def prog_accounting(s: Session, inp: None) -> list[Any]:
    p = await DealerFreePreprocessing.create(s)
    with pytest.raises(PreprocessingExhausted):
        p.reserve(Requirements(triples=1))
    with pytest.raises(PreprocessingExhausted):
        p.triples((1,))
    with pytest.raises(PreprocessingExhausted):
        await p.wait_for(Requirements(triples=1))
    # Two productions started concurrently (the second first awaited) run in call order.
    first = p.produce_in_background(Requirements(triples=6))
    second = p.produce(Requirements(random_values=3))
    await second
    await p.wait_for(Requirements(triples=6, random_values=3))
    await first
    p.reserve(Requirements(triples=4))
    with pytest.raises(PreprocessingExhausted):
        p.reserve(Requirements(triples=3))
    t = p.triples((2, 2))
    left = p.remaining()
    with pytest.raises(PreprocessingExhausted):
        p.triples((3,))
    with pytest.raises(ConfigError):
        p.input_masks(5, (1,))
    return [t.a.shape, left]


def test_accounting_and_concurrent_productions(seed: bytes) -> None:
    res = run_local(prog_accounting, [None, None], seeds=party_seeds(seed, 2))
    assert res[0] == [(2, 2), {"random_values": 3, "triples": 2}]


async def prog_dropout(s: Session, inp: None) -> None:
    p = await DealerFreePreprocessing.create(s)
    if s.party_id == 1:
        return  # party 1 leaves before the production
    await p.produce(Requirements(triples=8))


def test_dropped_peer_is_peer_unavailable(seed: bytes) -> None:
    outcomes = run_parties(prog_dropout, [None, None, None], recv_timeout=1.0, seeds=party_seeds(seed, 3))
    assert outcomes[1].ok
    assert all(isinstance(outcomes[i].error, PeerUnavailable) for i in (0, 2)), [o.error for o in outcomes]


def test_bad_parameters() -> None:
    async def main() -> None:
        from mpc.contracts import ChannelStats

        class Stub:
            party_id, n_parties, parties, session_id, stats = 0, 2, ("a", "b"), "x", ChannelStats()

        sess = Session(Stub())  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            DealerFreePreprocessing(sess, np.asarray(np.uint64(1)), bytes(16), tau=128)
        with pytest.raises(ConfigError):
            DealerFreePreprocessing(sess, np.asarray(np.uint64(1)), bytes(16), batch=0)
        p = DealerFreePreprocessing(sess, np.asarray(np.uint64(1)), bytes(16))
        with pytest.raises(ConfigError):
            p.produce(Requirements(triples=-1))
        with pytest.raises(ConfigError):
            p.truncation_pairs((1,), 70)
        with pytest.raises(ConfigError):
            p.produce(Requirements(truncation_pairs={70: 1}))
        with pytest.raises(ConfigError):
            p.produce(Requirements(input_masks={2: 1}))

    asyncio.run(main())

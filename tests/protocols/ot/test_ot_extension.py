"""IKNP/KOS OT extension on the memory mesh (and real processes): every flavour against numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_parties
from protocols.ot import OTExtReceiver, OTExtSender, ot_pair
from protocols.ot.extension import KOS_PAD, padded_rows
from transport.memory import MemoryNetwork

N = 100_000


def seeds_for(prg: PRG, names: list[str]) -> dict[str, bytes]:
    return {n: prg.bytes(16) for n in names}


async def run2(prg: PRG, program: Any, receiver_input: Any, sender_input: Any = None, timeout: float = 10.0) -> tuple[Any, Any]:
    names = ["sender", "receiver"]
    async with MemoryNetwork(names, recv_timeout=timeout) as net:
        out = await net.run(program, {"sender": sender_input, "receiver": receiver_input}, seeds=seeds_for(prg, names))
    return out["sender"], out["receiver"]


def select(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(c.reshape((-1,) + (1,) * (a.ndim - 1)) == 1, b, a)


# -- random, correlated, chosen ---------------------------------------------------------------


def make_all_flavours(active: bool) -> Any:
    async def program(session: Session, arg: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1, active=active)
        if isinstance(ot, OTExtSender):
            m0, m1 = arg
            r = await ot.send_random(N)
            r_wide = await ot.send_random(1000, nbytes=40)
            q = await ot.send_correlated(N)
            await ot.send_chosen(m0, m1)
            return {"r": r, "r_wide": r_wide, "q": q, "delta": ot.delta}
        assert isinstance(ot, OTExtReceiver)
        c = arg
        return {
            "r": await ot.recv_random(c),
            "r_wide": await ot.recv_random(c[:1000], nbytes=40),
            "t": await ot.recv_correlated(c),
            "m": await ot.recv_chosen(c, nbytes=24),
        }

    return program


@pytest.mark.parametrize("active", [True, False], ids=["active", "passive"])
async def test_all_flavours_satisfy_their_correlations(prg: PRG, active: bool) -> None:
    c = prg.bits(N)
    m0, m1 = prg.buffer(N * 24).reshape(N, 24), prg.buffer(N * 24).reshape(N, 24)
    s, r = await run2(prg, make_all_flavours(active), c, (m0, m1))
    r0, r1 = s["r"]
    assert r0.shape == (N, 16) and r0.dtype == np.uint8
    np.testing.assert_array_equal(r["r"], select(c, r0, r1))
    assert not np.any(np.all(r0 == r1, axis=1))  # the two messages differ everywhere
    w0, w1 = s["r_wide"]
    assert w0.shape == (1000, 40)
    np.testing.assert_array_equal(r["r_wide"], select(c[:1000], w0, w1))
    delta = s["delta"]
    assert delta[0] & 1 == 1  # point-and-permute bit of the default Delta
    np.testing.assert_array_equal(r["t"], s["q"] ^ (c[:, None] * delta))
    np.testing.assert_array_equal(r["m"], select(c, m0, m1))


async def test_outputs_are_fresh_across_calls_and_pairs(prg: PRG) -> None:
    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return [await ot.send_random(64) for _ in range(2)]
        return [await ot.recv_random(c) for _ in range(2)]

    c = np.zeros(64, dtype=np.uint8)
    s, r = await run2(prg, program, c)
    np.testing.assert_array_equal(r[0], s[0][0])
    np.testing.assert_array_equal(r[1], s[1][0])
    rows = np.concatenate([s[0][0], s[0][1], s[1][0], s[1][1]])
    assert len({row.tobytes() for row in rows}) == 4 * 64


@pytest.mark.parametrize("ring", ["z2_64", "z2_128"])
async def test_ring_correlated_ot_shares_c_times_x(prg: PRG, ring: str) -> None:
    n, shape = 5000, (3,)
    limbs = (2,) if ring == "z2_128" else ()
    x = prg.uint64((n, *shape, *limbs))
    c = prg.bits(n)

    async def program(session: Session, arg: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return await ot.send_correlated_ring(arg, ring=ring)
        return await ot.recv_correlated_ring(arg, shape=shape, ring=ring)

    s, v = await run2(prg, program, c, x)
    assert v.shape == x.shape and v.dtype == np.uint64
    if ring == "z2_64":
        np.testing.assert_array_equal(v - s, x * c[:, None].astype(np.uint64))
    else:
        to_int = lambda a: [int(lo) | (int(hi) << 64) for lo, hi in a.reshape(-1, 2)]  # noqa: E731
        cx = x * c[:, None, None].astype(np.uint64)
        mod = 1 << 128
        assert [(a - b) % mod for a, b in zip(to_int(v), to_int(s), strict=True)] == to_int(cx)


async def test_gilboa_product_over_z2_64(prg: PRG) -> None:
    """Gilboa multiplication: sender holds x, receiver y; 64 OTs per product give shares of x*y."""
    k, n = 64, 500
    x, y = prg.uint64(n), prg.uint64(n)
    bits = ((y[:, None] >> np.arange(k, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8).reshape(-1)
    corr = (x[:, None] << np.arange(k, dtype=np.uint64)).reshape(-1)

    async def program(session: Session, arg: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            s = await ot.send_correlated_ring(arg)
            return (-s).reshape(n, k).sum(axis=1, dtype=np.uint64)
        return (await ot.recv_correlated_ring(arg)).reshape(n, k).sum(axis=1, dtype=np.uint64)

    a, b = await run2(prg, program, bits, corr)
    np.testing.assert_array_equal(a + b, x * y)


async def test_custom_delta_and_cache_reuse(prg: PRG) -> None:
    delta = prg.buffer(16)
    delta[0] |= 1

    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1, delta=delta if session.party_id == 0 else None)
        rounds = session.stats.rounds
        again = await ot_pair(session, sender=0, receiver=1)
        assert again is ot and session.stats.rounds == rounds  # cached: no new base OTs
        if isinstance(ot, OTExtSender):
            np.testing.assert_array_equal(ot.delta, delta)
            with pytest.raises(ConfigError):
                await ot_pair(session, sender=0, receiver=1, active=False)
            return await ot.send_correlated(len(c))
        return await ot.recv_correlated(c)

    c = prg.bits(300)
    q, t = await run2(prg, program, c, c)
    np.testing.assert_array_equal(t, q ^ (c[:, None] * delta))


async def test_three_parties_three_pairs_concurrently(prg: PRG) -> None:
    """Pairs 0->1, 1->2, 2->0 in one session, every party both sender and receiver at once."""
    import asyncio

    n = 2000

    async def program(session: Session, c: Any) -> Any:
        pairs = [(0, 1), (1, 2), (2, 0)]

        async def one(sender: int, receiver: int) -> Any:
            ot = await ot_pair(session, sender=sender, receiver=receiver)
            if ot is None:
                return None
            if isinstance(ot, OTExtSender):
                return (await ot.send_correlated(n), ot.delta)
            return await ot.recv_correlated(c)

        results = await asyncio.gather(*(one(s, r) for s, r in pairs))
        return {f"{s}->{r}": v for (s, r), v in zip(pairs, results, strict=True) if v is not None}

    names = ["p0", "p1", "p2"]
    cs = {name: prg.bits(n) for name in names}
    async with MemoryNetwork(names, recv_timeout=10.0) as net:
        out = await net.run(program, cs, seeds=seeds_for(prg, names))
    for s, r in [(0, 1), (1, 2), (2, 0)]:
        q, delta = out[f"p{s}"][f"{s}->{r}"]
        t = out[f"p{r}"][f"{s}->{r}"]
        np.testing.assert_array_equal(t, q ^ (cs[f"p{r}"][:, None] * delta))


async def test_traffic_matches_docstring(prg: PRG) -> None:
    n = 10_000
    stats: dict[int, Any] = {}

    async def program(session: Session, c: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        before = session.stats.bytes_sent
        if isinstance(ot, OTExtSender):
            await ot.send_random(n)
        else:
            await ot.recv_random(c)
        stats[session.party_id] = session.stats.bytes_sent - before
        return None

    await run2(prg, program, prg.bits(n))
    m = padded_rows(n, True)
    assert n + KOS_PAD <= m < n + KOS_PAD + 128
    assert 16 * m + 32 <= stats[1] < 16 * m + 32 + 400  # u matrix + check + framing
    assert stats[0] < 400  # the sender sends nothing but acknowledgements in random OT


async def test_empty_batches_need_no_rounds(prg: PRG) -> None:
    async def program(session: Session, _: Any) -> Any:
        ot = await ot_pair(session, sender=0, receiver=1)
        rounds = session.stats.rounds
        if isinstance(ot, OTExtSender):
            out = (await ot.send_random(0))[0], await ot.send_correlated(0)
        else:
            out = await ot.recv_random([]), await ot.recv_correlated(np.zeros(0, dtype=bool))
        assert session.stats.rounds == rounds
        return [o.shape for o in out]

    s, r = await run2(prg, program, None)
    assert s == r == [(0, 16), (0, 16)]


# -- real processes ---------------------------------------------------------------------------


async def processes_program(session: Session, arg: dict[str, Any]) -> dict[str, Any]:
    """Module level, for the 'processes' transport: random + chosen OT, 20,000 each."""
    ot = await ot_pair(session, sender=0, receiver=1)
    if isinstance(ot, OTExtSender):
        r0, r1 = await ot.send_random(arg["n"])
        await ot.send_chosen(arg["m0"], arg["m1"])
        return {"r0": r0, "r1": r1}
    assert isinstance(ot, OTExtReceiver)
    return {"rc": await ot.recv_random(arg["c"]), "m": await ot.recv_chosen(arg["c"])}


def test_random_and_chosen_ot_between_processes(prg: PRG) -> None:
    n = 20_000
    c = prg.bits(n)
    m0, m1 = prg.buffer(n * 8).reshape(n, 8), prg.buffer(n * 8).reshape(n, 8)
    outcomes = run_parties(
        processes_program, [{"n": n, "m0": m0, "m1": m1}, {"c": c}], transport="processes", recv_timeout=20.0
    )
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    s, r = outcomes[0].result, outcomes[1].result
    np.testing.assert_array_equal(r["rc"], select(c, s["r0"], s["r1"]))
    np.testing.assert_array_equal(r["m"], select(c, m0, m1))


async def test_concurrent_ot_pair_calls_share_one_setup(prg: PRG) -> None:
    import asyncio

    async def program(session: Session, c: Any) -> Any:
        a, b = await asyncio.gather(ot_pair(session, 0, 1), ot_pair(session, 0, 1))
        assert a is b
        if isinstance(a, OTExtSender):
            return await a.send_correlated(len(c)), a.delta
        return await a.recv_correlated(c)

    c = prg.bits(500)
    (q, delta), t = await run2(prg, program, c, c)
    np.testing.assert_array_equal(t, q ^ (c[:, None] * delta))


# -- where the work runs ------------------------------------------------------------------------


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "on-loop"])
async def test_session_offload_decides_where_large_batches_compute(
    prg: PRG, offload: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches over ``_INLINE_ROWS`` rows go to a worker thread only if the session offloads;
    the outputs are the same either way."""
    import asyncio

    from protocols.ot import extension

    threaded: list[str] = []
    to_thread = asyncio.to_thread

    async def spy(fn: Any, *args: Any) -> Any:
        threaded.append(fn.__name__)
        return await to_thread(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    n = 2 * extension._INLINE_ROWS
    x, c = prg.uint64((n, 2)), prg.bits(n)

    async def program(session: Session, arg: Any) -> Any:
        mine = Session(session.channel, prg=session.prg, offload=offload)
        assert mine.child("ot").offload is offload
        ot = await ot_pair(mine, sender=0, receiver=1)
        if isinstance(ot, OTExtSender):
            return await ot.send_correlated_ring(arg, ring="z2_64")
        return await ot.recv_correlated_ring(arg, shape=(2,), ring="z2_64")

    s, v = await run2(prg, program, c, x)
    np.testing.assert_array_equal(v - s, x * c[:, None].astype(np.uint64))
    if offload:
        assert {"sender_batch", "receiver_batch", "ring_send", "ring_recv"} <= set(threaded)
    else:
        assert threaded == []

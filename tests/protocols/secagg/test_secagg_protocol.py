"""SecAgg on the in-memory mesh (and once over real processes), checked against numpy sums."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import AbortError, ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_parties
from protocols.secagg import SecAggParams, collect, open_run, run_party, secure_aggregate, send_each
from protocols.secagg import messages
from protocols.secagg.protocol import (
    run_client_consistency,
    run_client_mask,
    run_client_result,
    run_client_setup,
    run_client_share_keys,
    run_client_unmask,
)
from protocols.secagg.client import survivors_digest
from protocols.secagg.server import (
    server_collect_keys,
    server_collect_masked,
    server_relay_shares,
)
from transport.memory import MemoryNetwork

STAGES = ("advertise", "shares", "masked", "unmask")


def names(n_clients: int) -> list[str]:
    return ["agg"] + [f"c{i}" for i in range(n_clients)]


def ring_inputs(prg: PRG, n_clients: int, dim: int, bits: int = 32) -> dict[str, Any]:
    dtype = {12: np.uint16, 32: np.uint32, 64: np.uint64}[bits]
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(2**64 - 1)
    parties = names(n_clients)
    return {"agg": None, **{p: (prg.uint64(dim) & mask).astype(dtype) for p in parties[1:]}}


def plain_sum(inputs: dict[str, Any], party_ids: tuple[int, ...], bits: int = 32) -> np.ndarray:
    parties = list(inputs)
    total = np.zeros_like(inputs[parties[1]], dtype=np.uint64)
    for i in party_ids:
        total += inputs[parties[i]].astype(np.uint64)
    if bits < 64:
        total &= np.uint64((1 << bits) - 1)
    return total


def seeds_for(prg: PRG, parties: list[str]) -> dict[str, bytes]:
    return {p: prg.bytes(16) for p in parties}


def dropping(params: SecAggParams, drops: dict[int, str], net: MemoryNetwork | None) -> Any:
    """A program whose clients in ``drops`` stop instead of sending the named stage's message,
    once the previous round proved their last message arrived: killed (``net`` given:
    receives from them fail at once) or silent (the aggregator times out). ``"consistency"``:
    stop on the survivor list, before sending digests; ``"unmask"``: after the consistency
    round, before revealing shares."""

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        me = session.party_id
        if me == run.plan.server:
            return await run_party(run, None)
        stop_at = drops.get(me)

        async def drop(after: str | None) -> str:
            if after is not None:
                await run.rounds[after].recv(run.plan.server)
            if net is not None:
                net.kill(session.parties[me])
            return "dropped"

        if stop_at == "advertise":
            return await drop(None)
        s0 = await run_client_setup(run)
        if stop_at == "shares":
            return await drop("roster")
        s1 = await run_client_share_keys(run, s0)
        if stop_at == "masked":
            return await drop("forward")
        s2 = await run_client_mask(run, s1, x)
        if stop_at == "consistency":
            return await drop("survivors")
        agreed = await run_client_consistency(run, s2)
        if stop_at == "unmask":
            return await drop(None)
        await run_client_unmask(run, agreed)
        return await run_client_result(run, s2) if params.release else None

    return program


@pytest.mark.parametrize("n_clients", [2, 3, 5])
@pytest.mark.parametrize("bits", [12, 32, 64])
async def test_sum_matches_numpy(prg: PRG, n_clients: int, bits: int) -> None:
    inputs = ring_inputs(prg, n_clients, 33, bits)
    params = SecAggParams(dim=33, bits=bits, release=True)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(lambda s, x: secure_aggregate(s, x, params), inputs, seeds=seeds_for(prg, list(inputs)))
    everyone = tuple(range(1, n_clients + 1))
    expected = plain_sum(inputs, everyone, bits)
    for name, res in out.items():
        assert res.survivors == everyone
        assert res.total.dtype == params.plan(n_clients + 1).dtype
        np.testing.assert_array_equal(res.total.astype(np.uint64), expected)
    assert out["agg"].live["unmask"] == everyone


@pytest.mark.parametrize("stage", STAGES + ("consistency",))
async def test_a_client_killed_at_each_stage(prg: PRG, stage: str) -> None:
    inputs = ring_inputs(prg, 5, 16)
    params = SecAggParams(dim=16, max_dropouts=1, release=True)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(dropping(params, {3: stage}, net), inputs, seeds=seeds_for(prg, list(inputs)))
    expected_survivors = (1, 2, 4, 5) if stage in ("advertise", "shares", "masked") else (1, 2, 3, 4, 5)
    res = out["agg"]
    assert res.survivors == expected_survivors
    np.testing.assert_array_equal(res.total, plain_sum(inputs, expected_survivors))
    for p in ("c0", "c1", "c3", "c4"):
        np.testing.assert_array_equal(out[p].total, res.total)
    assert out["c2"] == "dropped"


async def test_hundred_clients_killed_at_every_stage(prg: PRG) -> None:
    n, dim = 100, 200
    inputs = ring_inputs(prg, n, dim)
    drops = {pid: STAGES[(pid - 1) // 3] for pid in range(1, 13)}  # 3 clients per stage
    params = SecAggParams(dim=dim, max_dropouts=12, stage_timeout=5.0)
    async with MemoryNetwork(list(inputs), recv_timeout=10.0) as net:
        out = await net.run(dropping(params, drops, net), inputs, seeds=seeds_for(prg, list(inputs)))
    res = out["agg"]
    expected = tuple(p for p in range(1, n + 1) if drops.get(p) not in ("advertise", "shares", "masked"))
    assert res.survivors == expected and len(expected) == 91
    assert len(res.live["advertise"]) == 97 and len(res.live["unmask"]) == 88
    np.testing.assert_array_equal(res.total, plain_sum(inputs, expected))


async def test_hundred_clients_secagg_plus_killed_at_every_stage(prg: PRG) -> None:
    n, dim = 100, 300
    inputs = ring_inputs(prg, n, dim)
    drops = {pid: STAGES[k // 2] for k, pid in enumerate((5, 17, 33, 48, 61, 77, 84, 96))}
    params = SecAggParams(dim=dim, neighbors=16, max_dropouts=8)
    async with MemoryNetwork(list(inputs), recv_timeout=10.0) as net:
        out = await net.run(dropping(params, drops, net), inputs, seeds=seeds_for(prg, list(inputs)))
    res = out["agg"]
    expected = tuple(p for p in range(1, n + 1) if drops.get(p) not in ("advertise", "shares", "masked"))
    assert res.survivors == expected
    np.testing.assert_array_equal(res.total, plain_sum(inputs, expected))


async def test_silent_clients_at_every_stage_time_out(prg: PRG) -> None:
    n, dim = 10, 50
    inputs = ring_inputs(prg, n, dim)
    drops = {2: "advertise", 4: "shares", 6: "masked", 8: "unmask"}
    params = SecAggParams(dim=dim, max_dropouts=4, stage_timeout=0.5, release=True)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(dropping(params, drops, None), inputs, seeds=seeds_for(prg, list(inputs)))
    res = out["agg"]
    expected = (1, 3, 5, 7, 8, 9, 10)
    assert res.survivors == expected
    assert res.live["advertise"] == (1, 3, 4, 5, 6, 7, 8, 9, 10)
    assert res.live["unmask"] == (1, 3, 5, 7, 9, 10)
    np.testing.assert_array_equal(res.total, plain_sum(inputs, expected))
    for p in ("c0", "c2", "c9"):
        np.testing.assert_array_equal(out[p].total, res.total)


async def test_fewer_than_t_shares_refuses_to_reconstruct(prg: PRG) -> None:
    inputs = ring_inputs(prg, 5, 8)  # t = 3 of 4 holders
    params = SecAggParams(dim=8, max_dropouts=1, release=True)
    drops = {1: "unmask", 2: "unmask", 3: "unmask"}  # all masked inputs in, 2 shares per secret
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(dropping(params, drops, net), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert isinstance(out["agg"], AbortError) and "refusing to reconstruct" in str(out["agg"])
    assert isinstance(out["c3"], AbortError) and isinstance(out["c4"], AbortError)


async def test_too_many_dropouts_abort_before_unmasking(prg: PRG) -> None:
    inputs = ring_inputs(prg, 5, 8)
    params = SecAggParams(dim=8, max_dropouts=1, min_survivors=4)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(
            dropping(params, {1: "masked", 2: "masked"}, net), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True
        )
    assert isinstance(out["agg"], AbortError)
    for p in ("c2", "c3", "c4"):
        assert isinstance(out[p], AbortError) and "aborted" in str(out[p])


async def test_aggregator_dropping_leaves_clients_with_peer_unavailable(prg: PRG) -> None:
    inputs = ring_inputs(prg, 3, 8)
    params = SecAggParams(dim=8)

    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:

        async def program(session: Session, x: Any) -> Any:
            if session.party_id == 0:
                run = open_run(session, params)
                await collect(run.rounds["advertise"], [1, 2, 3], 5.0)
                net.kill("agg")
                return "gone"
            return await secure_aggregate(session, x, params)

        out = await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    for p in ("c0", "c1", "c2"):
        assert isinstance(out[p], PeerUnavailable) and out[p].peer == "agg"


async def test_malformed_masked_vector_aborts_the_run(prg: PRG) -> None:
    inputs = ring_inputs(prg, 3, 8)
    params = SecAggParams(dim=8)

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        if session.party_id != 2:
            return await run_party(run, x)
        await run_client_share_keys(run, await run_client_setup(run))
        await run.rounds["forward"].recv(0)
        await run.rounds["masked"].send(0, np.zeros(7, dtype=np.uint32))  # wrong length
        return await run.rounds["survivors"].recv(0)

    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert isinstance(out["agg"], ProtocolViolation)
    assert isinstance(out["c0"], AbortError) and isinstance(out["c2"], AbortError)
    assert out["c1"] == messages.stop(ProtocolViolation.code)  # only the error's code is sent


async def test_aggregator_tampering_with_a_relayed_share_is_detected(prg: PRG) -> None:
    inputs = ring_inputs(prg, 4, 8)
    params = SecAggParams(dim=8)

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        if session.party_id != 0:
            return await run_party(run, x)
        clients = list(run.plan.clients)
        got = await collect(run.rounds["advertise"], clients, 5.0)
        keys, rosters = server_collect_keys(run.plan, run.context, run.graph, got)
        await send_each(run.rounds["roster"], rosters)
        got = await collect(run.rounds["shares"], clients, 5.0)
        _, forward = server_relay_shares(keys, got)
        ct = forward[2]["ct"].copy()
        ct[0, 20] ^= 0x40
        forward[2] = {**forward[2], "ct": ct}
        await send_each(run.rounds["forward"], forward)
        return "tampered"

    async with MemoryNetwork(list(inputs), recv_timeout=1.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert isinstance(out["c1"], ProtocolViolation)


async def test_bad_client_input_is_refused_before_sending(prg: PRG) -> None:
    inputs = ring_inputs(prg, 4, 8)
    inputs["c1"] = np.ones(8)  # floats are not ring elements
    params = SecAggParams(dim=8, max_dropouts=1, stage_timeout=0.5)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(lambda s, x: secure_aggregate(s, x, params), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert isinstance(out["c1"], ConfigError)
    assert out["agg"].survivors == (1, 3, 4)
    np.testing.assert_array_equal(out["agg"].total, plain_sum(inputs, (1, 3, 4)))

    async def with_data(session: Session, x: Any) -> Any:
        return await secure_aggregate(session, np.zeros(8, dtype=np.uint32), params)

    async with MemoryNetwork(list(inputs), recv_timeout=0.5) as net:
        out = await net.run(with_data, inputs, return_exceptions=True)
    assert isinstance(out["agg"], ConfigError)


async def test_bytes_per_client_match_the_docstring(prg: PRG) -> None:
    n, dim = 5, 1000
    inputs = ring_inputs(prg, n, dim)
    params = SecAggParams(dim=dim)
    stats: dict[str, Any] = {}

    async def program(session: Session, x: Any) -> Any:
        res = await secure_aggregate(session, x, params)
        stats[session.parties[session.party_id]] = session.stats
        return res

    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)))
    h = a = e = n - 1  # complete graph: every other client is a neighbour and a digest peer
    payload = 96 + 104 * h + 4 * dim + 32 * a + 52 * (h - a) + 64 * h + 32 * e
    for p in list(inputs)[1:]:
        st = stats[p]
        # 4 to the aggregator, 1 direct key message per neighbour, 1 digest per peer
        assert st.messages_sent == 4 + h + e
        assert payload <= st.bytes_sent < payload + (4 + h + e) * 200  # framing and msgpack keys
        for q in list(inputs)[1:]:
            if q != p:
                assert 64 + 32 <= st.per_peer_bytes_sent[q] < 64 + 32 + 2 * 200


def secagg_program(session: Session, x: Any) -> Any:
    """A module-level program for the multi-process harness."""
    return secure_aggregate(session, x, SecAggParams(dim=16, release=True))


async def _as_dict(session: Session, x: Any) -> Any:
    res = await secagg_program(session, x)
    return {"total": res.total, "survivors": list(res.survivors)}


def test_processes_transport(prg: PRG) -> None:
    inputs = ring_inputs(prg, 3, 16)
    outcomes = run_parties(_as_dict, list(inputs.values()), names=list(inputs), transport="processes", recv_timeout=20.0)
    expected = plain_sum(inputs, (1, 2, 3))
    for o in outcomes:
        assert o.ok, o.error
        np.testing.assert_array_equal(o.result["total"], expected)
        assert list(o.result["survivors"]) == [1, 2, 3]


def key_substituting_server(params: SecAggParams, victim: int, ignore_reports: bool) -> Any:
    """An active aggregator that relays its own mask key in place of ``victim``'s to every
    other client (the attack that would let it unmask ``victim``'s input)."""

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        if session.party_id != run.plan.server:
            return await run_party(run, x)
        clients = list(run.plan.clients)
        got = await collect(run.rounds["advertise"], clients, params.stage_timeout)
        keys, rosters = server_collect_keys(run.plan, run.context, run.graph, got)
        fake = PRG(b"\x07" * 16).bytes(32)  # not secret: a stand-in for the server's own key
        for u, roster in rosters.items():
            ids = list(roster["ids"])
            if victim in ids:
                s = roster["s"].copy()
                s[ids.index(victim)] = np.frombuffer(fake, dtype=np.uint8)
                rosters[u] = {**roster, "s": s}
        await send_each(run.rounds["roster"], rosters)
        got = await collect(run.rounds["shares"], clients, params.stage_timeout)
        if ignore_reports:
            got = {u: m for u, m in got.items() if "stop" not in m}
        _, forward = server_relay_shares(keys, got)  # raises: a report, or too few clients
        return "unreachable"

    return program


@pytest.mark.parametrize("ignore_reports", [False, True])
async def test_substituted_public_key_aborts_and_releases_nothing(prg: PRG, ignore_reports: bool) -> None:
    inputs = ring_inputs(prg, 4, 8)
    params = SecAggParams(dim=8, release=True, stage_timeout=0.5)
    async with MemoryNetwork(list(inputs), recv_timeout=1.5) as net:
        out = await net.run(key_substituting_server(params, 2, ignore_reports), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert isinstance(out["agg"], AbortError)  # a client reported, or too few clients left
    for p in ("c0", "c2", "c3"):  # every client that was sent the substituted key
        assert type(out[p]) is AbortError and "differ from the keys they sent us directly" in str(out[p])
    # The victim shared only to holders it was never told a false key for; it gets no sum.
    assert isinstance(out["c1"], (AbortError, PeerUnavailable))
    assert not any(hasattr(o, "total") for o in out.values())


async def test_server_listing_a_client_that_never_sent_keys_aborts(prg: PRG) -> None:
    inputs = ring_inputs(prg, 4, 8)
    params = SecAggParams(dim=8, max_dropouts=1, release=True, stage_timeout=0.5)
    ghost = 3  # silent from the start: never advertises to anyone

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        me = session.party_id
        if me == ghost:
            return "silent"
        if me != run.plan.server:
            return await run_party(run, x)
        clients = list(run.plan.clients)
        got = await collect(run.rounds["advertise"], clients, params.stage_timeout)
        assert ghost not in got
        fake = PRG(b"\x09" * 16)  # not secret: keys the server makes up for the ghost
        got[ghost] = {"c": fake.bytes(32), "s": fake.bytes(32)}
        keys, rosters = server_collect_keys(run.plan, run.context, run.graph, got)
        await send_each(run.rounds["roster"], {u: r for u, r in rosters.items() if u != ghost})
        got = await collect(run.rounds["shares"], [1, 2, 4], 2.0)  # past the clients' wait
        return {u: m for u, m in got.items()}

    async with MemoryNetwork(list(inputs), recv_timeout=3.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    for p in ("c0", "c1", "c3"):
        assert type(out[p]) is AbortError and "did not reach us directly" in str(out[p])
    assert out["agg"] == {u: messages.stop(AbortError.code) for u in (1, 2, 4)}  # only the code


@pytest.mark.parametrize("killed", [True, False])
async def test_secagg_plus_client_gone_before_advertising_is_dropped_as_before(prg: PRG, killed: bool) -> None:
    inputs = ring_inputs(prg, 7, 8)
    params = SecAggParams(dim=8, neighbors=4, threshold=3, max_dropouts=1, release=True, stage_timeout=0.5)
    async with MemoryNetwork(list(inputs), recv_timeout=5.0) as net:
        out = await net.run(dropping(params, {4: "advertise"}, net if killed else None), inputs, seeds=seeds_for(prg, list(inputs)))
    expected = (1, 2, 3, 5, 6, 7)
    assert out["agg"].survivors == expected and out["agg"].live["advertise"] == expected
    for p in ("agg", "c0", "c1", "c2", "c4", "c5", "c6"):
        np.testing.assert_array_equal(out[p].total, plain_sum(inputs, expected))


async def _honest_until_survivors(run: Any) -> Any:
    """The aggregator's stages 0-2, honestly; returns the masked-input state."""
    plan, wait = run.plan, run.plan.params.stage_timeout
    clients = list(plan.clients)
    keys, out = server_collect_keys(plan, run.context, run.graph, await collect(run.rounds["advertise"], clients, wait))
    await send_each(run.rounds["roster"], out)
    shares, out = server_relay_shares(keys, await collect(run.rounds["shares"], clients, wait))
    await send_each(run.rounds["forward"], out)
    masked, _ = server_collect_masked(shares, await collect(run.rounds["masked"], clients, wait))
    return masked


def equivocating_server(params: SecAggParams, lists: dict[int, list[int]], corrupt: dict[int, Any] | None = None) -> Any:
    """An active aggregator that sends client ``u`` the survivor list ``lists[u]`` and returns
    every unmask message it then receives. ``corrupt``: colluding clients -> a function of
    (run, lists) sending their digests."""
    corrupt = corrupt or {}

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        me = session.party_id
        if me in corrupt:  # a colluding client: honest up to its masked input
            s1 = await run_client_share_keys(run, await run_client_setup(run))
            await run_client_mask(run, s1, x)
            await run.rounds["survivors"].recv(run.plan.server)
            await corrupt[me](run, lists)
            return "colluder"
        if me != run.plan.server:
            return await run_party(run, x)
        await _honest_until_survivors(run)
        await send_each(run.rounds["survivors"], {u: {"u3": np.array(v, dtype=np.int64)} for u, v in lists.items()})
        return await collect(run.rounds["unmask"], list(run.plan.clients), 2 * params.stage_timeout)

    return program


def revealed_both(unmask: dict[int, Any], honest: set[int]) -> set[int]:
    """Clients of which honest holders revealed shares of both secrets, across their messages."""
    b = {int(u) for h, m in unmask.items() if h in honest and "b_from" in m for u in m["b_from"]}
    sk = {int(u) for h, m in unmask.items() if h in honest and "sk_from" in m for u in m["sk_from"]}
    return b & sk


async def test_different_survivor_lists_make_the_holders_abort(prg: PRG) -> None:
    inputs = ring_inputs(prg, 5, 8)  # k = 4, t = 3, quorum 3
    params = SecAggParams(dim=8, max_dropouts=1, stage_timeout=0.5)
    a, b = [1, 2, 3, 4, 5], [2, 3, 4, 5]  # 1, 2, 3 are told 1 survived; 4, 5 that it dropped
    lists = {1: a, 2: a, 3: a, 4: b, 5: b}
    async with MemoryNetwork(list(inputs), recv_timeout=3.0) as net:
        out = await net.run(equivocating_server(params, lists), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    unmask = out["agg"]
    assert unmask == {u: messages.stop(AbortError.code) for u in (1, 2, 3, 4, 5)}  # nothing revealed
    assert not revealed_both(unmask, {1, 2, 3, 4, 5})
    for p in ("c1", "c2", "c3", "c4"):  # they got the other side's digests: named
        assert type(out[p]) is AbortError and "hold another survivor list" in str(out[p])
    # 1 is on no list of 4 and 5, so it hears only from 2 and 3: too few vouchers.
    assert type(out["c0"]) is AbortError and "fewer than 3 holders" in str(out["c0"])


def _split_digests(told: dict[int, list[int]]) -> Any:
    """A colluder vouching, to each honest client, for the list it was told."""

    async def send(run: Any, lists: dict[int, list[int]]) -> None:
        digests = {u: survivors_digest(run.context, np.array(v, dtype=np.int64)) for u, v in told.items()}
        await send_each(run.rounds["consistency"], digests)

    return send


@pytest.mark.parametrize("max_dropouts", [0, 1])
async def test_a_partition_with_colluders_reveals_nothing_of_the_victim(prg: PRG, max_dropouts: int) -> None:
    """Victim 1; 2, 3 told it survived, 4, 5, 6 that it dropped; colluders 7, 8 vouch for both
    lists (k = 7, t = 4: with their shares, t of each secret). The quorum (7, or 6 with one
    dropout allowed) exceeds (k + 2) / 2, so neither side may reveal."""
    inputs = ring_inputs(prg, 8, 8)
    params = SecAggParams(dim=8, max_dropouts=max_dropouts, stage_timeout=1.0)  # generous: nine nodes under a loaded CI machine
    a, b = [1, 2, 3, 7, 8], [2, 3, 4, 5, 6, 7, 8]
    told = {1: a, 2: a, 3: a, 4: b, 5: b, 6: b}
    colluder = _split_digests(told)
    program = equivocating_server(params, {**told, 7: a, 8: b}, corrupt={7: colluder, 8: colluder})
    async with MemoryNetwork(list(inputs), recv_timeout=3.0) as net:
        out = await net.run(program, inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    honest = set(told)
    unmask = {u: m for u, m in out["agg"].items() if u in honest}
    assert unmask == {u: messages.stop(AbortError.code) for u in honest}
    assert not revealed_both(unmask, honest)
    for p in ("c0", "c1", "c2", "c3", "c4", "c5"):
        assert type(out[p]) is AbortError and "refusing to reveal" in str(out[p])


def _equivocating_client(params: SecAggParams, liar: int, fooled: int, payload: Any) -> Any:
    """Client ``liar`` sends ``payload`` instead of its digest to ``fooled``, the true digest
    to everyone else, and then unmasks honestly."""

    async def program(session: Session, x: Any) -> Any:
        run = open_run(session, params)
        if session.party_id != liar:
            return await run_party(run, x)
        s1 = await run_client_share_keys(run, await run_client_setup(run))
        s2 = await run_client_mask(run, s1, x)
        listing = await run.rounds["survivors"].recv(run.plan.server)
        digest = survivors_digest(run.context, listing["u3"])
        peers = [u for u in listing["u3"].tolist() if u != liar]
        await send_each(run.rounds["consistency"], {u: payload if u == fooled else digest for u in peers})
        await collect(run.rounds["consistency"], peers, params.stage_timeout)
        return "liar"

    return program


@pytest.mark.parametrize("payload, error", [(b"\x01" * 32, AbortError), (b"short", ProtocolViolation), ({"d": 1}, ProtocolViolation)])
async def test_a_client_equivocating_digests_makes_its_peer_abort(prg: PRG, payload: Any, error: type) -> None:
    inputs = ring_inputs(prg, 4, 8)
    params = SecAggParams(dim=8, stage_timeout=0.5)
    async with MemoryNetwork(list(inputs), recv_timeout=3.0) as net:
        out = await net.run(_equivocating_client(params, 4, 1, payload), inputs, seeds=seeds_for(prg, list(inputs)), return_exceptions=True)
    assert type(out["c0"]) is error  # named: the sender of the bad digest
    assert "party 4 " in str(out["c0"]) or "parties [4]" in str(out["c0"])
    assert out["c1"] is None and out["c2"] is None  # the others agreed and unmasked
    assert type(out["agg"]) is AbortError and "party 1 aborted at stage consistency" in str(out["agg"])


async def test_a_client_silent_in_the_consistency_round_is_tolerated(prg: PRG) -> None:
    inputs = ring_inputs(prg, 5, 16)
    params = SecAggParams(dim=16, max_dropouts=1, stage_timeout=0.3, release=True)
    async with MemoryNetwork(list(inputs), recv_timeout=3.0) as net:
        out = await net.run(dropping(params, {2: "consistency"}, None), inputs, seeds=seeds_for(prg, list(inputs)))
    res = out["agg"]
    assert res.survivors == (1, 2, 3, 4, 5) and res.live["unmask"] == (1, 3, 4, 5)
    np.testing.assert_array_equal(res.total, plain_sum(inputs, res.survivors))
    for p in ("c0", "c2", "c3", "c4"):
        np.testing.assert_array_equal(out[p].total, res.total)

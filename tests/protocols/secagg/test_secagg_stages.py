"""SecAgg without a network: parameters, graph, crypto, and the pure stages driven by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import AbortError, ConfigError, InsecureConfiguration, ProtocolViolation
from mpc.prg import PRG
from protocols.secagg import crypto
from protocols.secagg.client import (
    check_input,
    client_check_digests,
    client_mask,
    client_setup,
    client_share_keys,
    client_survivors,
    client_unmask,
    survivors_digest,
    two_hop,
)
from protocols.secagg.params import SecAggParams, harary_neighbors, ring_dtype
from protocols.secagg.server import (
    prune,
    server_collect_keys,
    server_collect_masked,
    server_relay_shares,
    server_unmask,
)

CONTEXT = b"test-session\x00/secagg#0"


def test_params_validation() -> None:
    plan = SecAggParams(dim=10).plan(6)
    assert plan.clients == (1, 2, 3, 4, 5) and plan.degree == 4 and plan.threshold == 3
    assert plan.min_survivors == 3 and plan.dtype == np.uint32 and plan.complete
    assert SecAggParams(dim=3, bits=12).plan(4).dtype == np.uint16
    assert [ring_dtype(b) for b in (1, 8, 9, 33, 64)] == [np.uint8, np.uint8, np.uint16, np.uint64, np.uint64]
    sparse = SecAggParams(dim=10, neighbors=4).plan(21)
    assert sparse.degree == 4 and sparse.threshold == 3 and not sparse.complete
    for kwargs, n in (
        (dict(dim=0), 5),
        (dict(dim=3, bits=0), 5),
        (dict(dim=3, bits=65), 5),
        (dict(dim=3), 2),  # one client
        (dict(dim=3, server=5), 5),
        (dict(dim=3, stage_timeout=0.0), 5),
        (dict(dim=3, neighbors=3), 10),  # odd sparse degree
        (dict(dim=3, neighbors=12), 10),
        (dict(dim=3, threshold=5), 5),  # above the 3 neighbours
        (dict(dim=3, max_dropouts=4), 5),
        (dict(dim=3, threshold=3, max_dropouts=1), 5),  # 3 > 3 - 1 holders left
        (dict(dim=3, min_survivors=1), 5),
        (dict(dim=3, max_dropouts=2, min_survivors=3), 5),
        (dict(dim=True), 5),
    ):
        with pytest.raises(ConfigError):
            SecAggParams(**kwargs).plan(n)
    with pytest.raises(InsecureConfiguration):
        SecAggParams(dim=3, threshold=2).plan(6)  # 2 of 4 neighbours is not a majority
    assert SecAggParams(dim=3).plan(3).threshold == 1  # two clients: one neighbour each


def test_harary_graph() -> None:
    clients = tuple(range(1, 31))
    graph = harary_neighbors(clients, 6, b"public")
    assert graph == harary_neighbors(clients, 6, b"public")
    assert graph != harary_neighbors(clients, 6, b"other")
    for c, nbrs in graph.items():
        assert len(nbrs) == 6 and c not in nbrs
        assert all(c in graph[v] for v in nbrs)
    with pytest.raises(ConfigError):
        harary_neighbors(clients, 5, b"x")


def test_prune_keeps_clients_with_enough_live_neighbours() -> None:
    graph = {1: frozenset({2, 3}), 2: frozenset({1, 3}), 3: frozenset({1, 2, 4}), 4: frozenset({3})}
    assert prune({1, 2, 3, 4}, graph, 2) == {1, 2, 3}
    assert prune({1, 2, 4}, graph, 2) == set()


def test_crypto_binding(prg: PRG) -> None:
    a_sk, a_pk = crypto.keypair(prg)
    b_sk, b_pk = crypto.keypair(prg)
    assert crypto.agree(a_sk, b_pk) == crypto.agree(b_sk, a_pk)
    key = crypto.derive(crypto.agree(a_sk, b_pk), "label", b"ctx", 32)
    sealed = crypto.seal(key, b"share", b"ad", prg)
    assert crypto.open_sealed(key, sealed, b"ad") == b"share"
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    for bad, ad in ((bytes(tampered), b"ad"), (sealed, b"other ad"), (sealed[:10], b"ad")):
        with pytest.raises(ProtocolViolation):
            crypto.open_sealed(key, bad, ad)
    with pytest.raises(ProtocolViolation):
        crypto.agree(a_sk, bytes(32))  # small-order point: all-zero shared secret
    with pytest.raises(ProtocolViolation):
        crypto.agree(a_sk, b"short")


def test_check_input() -> None:
    plan = SecAggParams(dim=3, bits=8).plan(3)
    np.testing.assert_array_equal(check_input([1, 2, 255], plan), np.array([1, 2, 255], dtype=np.uint8))
    for bad in ([1, 2], [1.0, 2.0, 3.0], [-1, 0, 0], [256, 0, 0], [[1, 2, 3]]):
        with pytest.raises(ConfigError):
            check_input(np.array(bad), plan)


class Driver:
    """All parties' pure stages run in one place, with hooks to drop or tamper."""

    def __init__(self, prg: PRG, n_clients: int, dim: int, **kwargs: Any) -> None:
        self.plan = SecAggParams(dim=dim, **kwargs).plan(n_clients + 1)
        self.graph = self.plan.graph(b"graph")
        self.prg = prg
        self.inputs = {c: prg.uint64(dim).astype(np.uint32) for c in self.plan.clients}

    def run(self, drop: dict[str, set[int]] | None = None, tamper: Any = None, until: str | None = None) -> Any:
        drop = drop or {}
        prg, plan = self.prg, self.plan
        tamper = tamper or (lambda stage, msgs: msgs)
        states = {}
        msgs = {}
        for c in plan.clients:
            if c in drop.get("advertise", set()):
                continue
            states[c], msgs[c] = client_setup(plan, c, CONTEXT, self.graph, prg)
        adverts = dict(msgs)  # what each client sent its neighbours directly (untampered)

        def direct(c: int) -> dict[int, Any]:
            return {v: adverts[v] for v in self.graph[c] if v in adverts}

        keys, out = server_collect_keys(plan, CONTEXT, self.graph, tamper("advertise", msgs))
        out = tamper("roster", out)
        msgs = {}
        for c, roster in out.items():
            if c not in drop.get("shares", set()):
                states[c], msgs[c] = client_share_keys(states[c], roster, direct(c), prg)
        shares, out = server_relay_shares(keys, tamper("shares", msgs))
        out = tamper("forward", out)
        msgs = {}
        for c, fwd in out.items():
            if c not in drop.get("masked", set()):
                states[c], msgs[c] = client_mask(states[c], fwd, check_input(self.inputs[c], plan))
        masked, out = server_collect_masked(shares, tamper("masked", msgs))
        out = tamper("survivors", out)
        if until == "survivors":  # the clients' masked states and the survivor lists
            return states, out
        views, digests = {}, {}
        for c, listing in out.items():
            if c not in drop.get("consistency", set()):
                views[c], digests[c] = client_survivors(states[c], listing)
        # Digests travel directly: receiver -> {sender: digest}, only from senders still live.
        inbox = {c: {w: digests[w] for w in view.peers if w in digests} for c, view in views.items()}
        inbox = tamper("consistency", inbox)
        agreed = {c: client_check_digests(view, inbox[c]) for c, view in views.items()}
        msgs = {c: client_unmask(a) for c, a in agreed.items() if c not in drop.get("unmask", set())}
        return server_unmask(masked, tamper("unmask", msgs))

    def expected(self, survivors: tuple[int, ...]) -> np.ndarray:
        total = np.zeros(self.plan.dim, dtype=np.uint32)
        for c in survivors:
            total += self.inputs[c]
        return total


def test_pure_stages_sum_exactly_with_drops_at_every_stage(prg: PRG) -> None:
    d = Driver(prg, 12, 50, max_dropouts=5)
    drops = {"advertise": {1}, "shares": {4}, "masked": {7}, "consistency": {12}, "unmask": {10}}
    result = d.run(drops)
    assert result.survivors == (2, 3, 5, 6, 8, 9, 10, 11, 12)
    assert result.live["advertise"] == (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    assert result.live["unmask"] == (2, 3, 5, 6, 8, 9, 11)
    np.testing.assert_array_equal(result.total, d.expected(result.survivors))


def test_masked_vectors_hide_the_inputs(prg: PRG) -> None:
    d = Driver(prg, 4, 2000)
    seen: dict[int, np.ndarray] = {}

    def spy(stage: str, msgs: Any) -> Any:
        if stage == "masked":
            seen.update(msgs)
        return msgs

    d.run(tamper=spy)
    for c, y in seen.items():
        # each masked vector looks uniform and is unrelated to the client's input
        assert abs(y.astype(np.float64).mean() / 2**32 - 0.5) < 0.03
        assert np.mean(y == d.inputs[c]) < 0.01


def test_unmask_reveals_one_secret_per_partner(prg: PRG) -> None:
    d = Driver(prg, 6, 4, max_dropouts=1)
    revealed: dict[int, Any] = {}

    def spy(stage: str, msgs: Any) -> Any:
        if stage == "unmask":
            revealed.update(msgs)
        return msgs

    d.run({"masked": {3}}, tamper=spy)
    for c, msg in revealed.items():
        b_from, sk_from = set(msg["b_from"].tolist()), set(msg["sk_from"].tolist())
        assert not b_from & sk_from
        assert sk_from == ({3} - {c})


def flip(arr: np.ndarray, row: int = 0) -> np.ndarray:
    out = arr.copy()
    out[row, -1] ^= 1
    return out


def test_tampered_forwarded_share_is_a_protocol_violation(prg: PRG) -> None:
    d = Driver(prg, 4, 8)

    def tamper(stage: str, msgs: Any) -> Any:
        if stage == "forward":
            msgs[2] = {**msgs[2], "ct": flip(msgs[2]["ct"])}
        return msgs

    with pytest.raises(ProtocolViolation, match="authentication"):
        d.run(tamper=tamper)


def test_share_relayed_to_the_wrong_client_fails_authentication(prg: PRG) -> None:
    d = Driver(prg, 4, 8)

    def swap(stage: str, msgs: Any) -> Any:
        if stage == "forward":  # give client 1 the ciphertexts meant for client 2
            msgs[1] = {**msgs[1], "ct": msgs[2]["ct"]}
        return msgs

    with pytest.raises(ProtocolViolation):
        d.run(tamper=swap)


@pytest.mark.parametrize(
    "stage, change, error",
    [
        ("advertise", lambda m: {**m, 1: {"c": b"x", "s": m[1]["s"]}}, ProtocolViolation),
        ("shares", lambda m: {**m, 1: {**m[1], "to": m[1]["to"][:-1]}}, ProtocolViolation),
        ("shares", lambda m: {**m, 1: {**m[1], "ct": m[1]["ct"][:, :-1]}}, ProtocolViolation),
        ("masked", lambda m: {**m, 1: m[1][:-1]}, ProtocolViolation),
        ("masked", lambda m: {**m, 1: m[1].astype(np.uint64)}, ProtocolViolation),
        ("unmask", lambda m: {**m, 1: {**m[1], "b": m[1]["b"][:, :-1]}}, ProtocolViolation),
        ("unmask", lambda m: {**m, 1: {**m[1], "b_from": m[1]["b_from"][::-1].copy()}}, ProtocolViolation),
        ("roster", lambda m: {**m, 1: {**m[1], "ids": m[1]["ids"] + 100}}, ProtocolViolation),
        ("survivors", lambda m: {**m, 1: {"u3": m[1]["u3"][:1]}}, AbortError),  # too few
        ("survivors", lambda m: {**m, 1: {"u3": m[1]["u3"][1:]}}, ProtocolViolation),  # not us
        ("survivors", lambda m: {**m, 1: {"u3": m[1]["u3"].astype(np.int32)}}, ProtocolViolation),
        ("survivors", lambda m: {**m, 1: {"u3": np.append(m[1]["u3"], 9)}}, ProtocolViolation),
        ("survivors", lambda m: {**m, 1: {"alive": m[1]["u3"]}}, ProtocolViolation),
        ("consistency", lambda m: {**m, 1: {**m[1], 2: m[1][2][:-1]}}, ProtocolViolation),
        ("consistency", lambda m: {**m, 1: {**m[1], 2: [m[1][2]]}}, ProtocolViolation),
        ("consistency", lambda m: {**m, 1: {**m[1], 2: bytes(32)}}, AbortError),
    ],
)
def test_malformed_messages_raise_typed_errors(prg: PRG, stage: str, change: Any, error: type) -> None:
    d = Driver(prg, 4, 8)
    with pytest.raises(error):
        d.run(tamper=lambda s, m: change(m) if s == stage else m)


def test_tampered_share_is_caught_at_reconstruction(prg: PRG) -> None:
    d = Driver(prg, 5, 8)  # t = 3, 4 holders per secret: surplus shares are checked

    def corrupt(stage: str, msgs: Any) -> Any:
        if stage == "unmask":
            b = msgs[1]["b"].copy()
            b[0, 0] = (int(b[0, 0]) + 1) % (2**31 - 1)
            msgs[1] = {**msgs[1], "b": b}
        return msgs

    with pytest.raises(AbortError, match="inconsistent"):
        d.run(tamper=corrupt)


def test_too_few_shares_refuse_to_reconstruct(prg: PRG) -> None:
    d = Driver(prg, 5, 8, max_dropouts=1)  # t = 3
    with pytest.raises(AbortError, match="refusing to reconstruct"):
        d.run({"unmask": {1, 2, 3}})


def test_too_few_masked_inputs_refuse_to_unmask(prg: PRG) -> None:
    d = Driver(prg, 5, 8, max_dropouts=1, min_survivors=4)
    with pytest.raises(AbortError, match="masked-input"):
        d.run({"masked": {1, 2}})


def _advertised(prg: PRG, n_clients: int) -> tuple[Any, dict[int, Any], dict[int, Any], dict[int, Any]]:
    plan = SecAggParams(dim=4).plan(n_clients + 1)
    graph = plan.graph(b"graph")
    states, adverts = {}, {}
    for c in plan.clients:
        states[c], adverts[c] = client_setup(plan, c, CONTEXT, graph, prg)
    _, rosters = server_collect_keys(plan, CONTEXT, graph, adverts)
    return plan, states, adverts, rosters


def test_relayed_keys_must_match_the_direct_keys(prg: PRG) -> None:
    _, states, adverts, rosters = _advertised(prg, 4)
    direct = {v: adverts[v] for v in (2, 3, 4)}
    client_share_keys(states[1], rosters[1], direct, prg)  # consistent: fine
    for key in ("c", "s"):  # the aggregator substitutes party 3's key in party 1's roster
        rows = rosters[1][key].copy()
        rows[1] ^= 1
        with pytest.raises(AbortError, match=r"parties \[3\] that differ"):
            client_share_keys(states[1], {**rosters[1], key: rows}, direct, prg)
    # A client equivocating (other keys to its neighbour than to the aggregator): same abort.
    with pytest.raises(AbortError, match="differ"):
        client_share_keys(states[1], rosters[1], {**direct, 4: {**adverts[4], "s": adverts[2]["s"]}}, prg)


def test_listed_neighbour_without_direct_keys_aborts(prg: PRG) -> None:
    _, states, adverts, rosters = _advertised(prg, 4)
    with pytest.raises(AbortError, match=r"parties \[4\] as live"):
        client_share_keys(states[1], rosters[1], {v: adverts[v] for v in (2, 3)}, prg)


def test_malformed_direct_keys_are_a_protocol_violation(prg: PRG) -> None:
    _, states, adverts, rosters = _advertised(prg, 3)
    with pytest.raises(ProtocolViolation, match="party 3"):
        client_share_keys(states[1], rosters[1], {2: adverts[2], 3: {"c": b"short", "s": adverts[3]["s"]}}, prg)


def test_every_survivor_gets_the_same_list(prg: PRG) -> None:
    d = Driver(prg, 6, 4, max_dropouts=1)
    _, out = d.run({"masked": {3}}, until="survivors")
    assert sorted(out) == [1, 2, 4, 5, 6]
    for listing in out.values():
        assert listing.keys() == {"u3"}
        np.testing.assert_array_equal(listing["u3"], [1, 2, 4, 5, 6])


def test_a_differing_digest_aborts_naming_its_sender(prg: PRG) -> None:
    d = Driver(prg, 4, 4)
    states, out = d.run(until="survivors")
    view, digest = client_survivors(states[1], out[1])
    assert view.peers == (2, 3, 4) and view.alive.all()
    other = survivors_digest(CONTEXT, np.array([1, 2, 3], dtype=np.int64))
    with pytest.raises(AbortError, match=r"parties \[3\] hold another survivor list"):
        client_check_digests(view, {2: digest, 3: other, 4: digest})
    with pytest.raises(ProtocolViolation):
        client_check_digests(view, {2: digest, 7: digest})  # not one of our peers


def test_missing_digests_are_tolerated_down_to_the_quorum(prg: PRG) -> None:
    d = Driver(prg, 5, 4, max_dropouts=1)  # k = 4, t = 3, quorum max(3, 4 - 1) = 3
    assert d.plan.quorum == 3
    states, out = d.run(until="survivors")
    view, digest = client_survivors(states[1], out[1])
    agreed = client_check_digests(view, {w: digest for w in (2, 3, 4)})  # 5 silent: tolerated
    assert agreed.vouchers == (2, 3, 4)
    msg = client_unmask(agreed)
    assert msg["b_from"].tolist() == [2, 3, 4, 5] and msg["sk_from"].size == 0
    with pytest.raises(AbortError, match="fewer than 3 holders"):  # 2's holders: only 1 and 3
        client_check_digests(view, {w: digest for w in (2, 3)})


def test_survivor_list_names_the_partners_statuses(prg: PRG) -> None:
    d = Driver(prg, 5, 4, max_dropouts=1)
    states, out = d.run({"masked": {4}}, until="survivors")
    view, digest = client_survivors(states[1], out[1])
    agreed = client_check_digests(view, {w: digest for w in view.peers})
    msg = client_unmask(agreed)
    assert msg["b_from"].tolist() == [2, 3, 5] and msg["sk_from"].tolist() == [4]
    assert msg["b"].shape == (3, 6) and msg["sk"].shape == (1, 11)


def test_two_hop_peers_of_the_secagg_plus_graph(prg: PRG) -> None:
    plan = SecAggParams(dim=4, neighbors=4).plan(21)
    graph = plan.graph(b"graph")
    for c in plan.clients:
        hop = two_hop(graph, c)
        assert c not in hop and len(hop) == 2 * plan.degree  # ring positions within distance k
        assert all(c in two_hop(graph, w) for w in hop)


@pytest.mark.parametrize("max_dropouts, split_passes", [(0, False), (3, True)])
def test_a_partition_of_the_holders_needs_2q_minus_k_colluders(prg: PRG, max_dropouts: int, split_passes: bool) -> None:
    """The documented bound at work: 8 clients (k = 7, t = 4), victim 1, colluders 7 and 8
    vouching for both lists. The aggregator tells 2, 3 "1 survived" (they would reveal shares of
    b_1) and 4, 5, 6 "1 dropped" (shares of its mask key); with the colluders' shares that is
    ``t`` of each. With max_dropouts = 0 the quorum is k = 7 and every honest holder aborts;
    with max_dropouts = 3 it is t = 4, the guarantee c_v < 2 q - k = 1 does not cover two
    colluders, and the split passes, as the threat model states."""
    d = Driver(prg, 8, 4, max_dropouts=max_dropouts)
    assert d.plan.quorum == (7 if max_dropouts == 0 else 4)
    states, _ = d.run(until="survivors")
    lists = {"A": [1, 2, 3, 7, 8], "B": [2, 3, 4, 5, 6, 7, 8]}
    told = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "B"}
    digest = {k: survivors_digest(CONTEXT, np.array(v, dtype=np.int64)) for k, v in lists.items()}
    outcomes = {}
    for c, name in told.items():
        view, mine = client_survivors(states[c], {"u3": np.array(lists[name], dtype=np.int64)})
        # Honest peers send their own digest to the clients of their own list; 7 and 8 send
        # each client the digest that matches its list.
        inbox = {w: digest[told[w]] for w in view.peers if w in told and c in lists[told[w]]}
        inbox.update({w: mine for w in (7, 8)})
        try:
            outcomes[c] = client_unmask(client_check_digests(view, inbox))
        except AbortError:
            outcomes[c] = None
    b_1 = [c for c, m in outcomes.items() if m is not None and 1 in m["b_from"].tolist()]
    sk_1 = [c for c, m in outcomes.items() if m is not None and 1 in m["sk_from"].tolist()]
    if split_passes:
        assert b_1 == [2, 3] and sk_1 == [4, 5, 6]
    else:
        assert outcomes == {c: None for c in told}

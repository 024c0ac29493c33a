"""The aggregator side of SecAgg: one state dataclass per stage and a pure function per step.

Each ``server_*`` function takes the previous state and the messages that arrived in time (by
client id; a client missing from them dropped), checks them, shrinks the set of live clients,
and returns the new state and the messages to send (by client id). No I/O here.

Live sets, as in Bonawitz et al.: ``U1`` advertised keys, ``U2`` shared keys, ``U3`` sent masked
inputs, ``U4`` answered the unmask request. Every set is pruned so that each member keeps at
least ``t`` partners among the set (a client with fewer could never have its secrets recovered),
and the run aborts when fewer than ``min_survivors`` clients remain.

The sum: ``z = sum_{u in U3} y_u - sum_{u in U3} PRG(b_u)
- sum_{w in U2 \\ U3} sum_{u in U3, u ~ w} s(u, w) PRG(k_uw)``, where ``b_u`` is rebuilt from
``t`` shares and checked against ``u``'s commitment, and the dropped ``w``'s mask key is rebuilt
from ``t`` shares, checked against its advertised public key, and used to recompute ``k_uw``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mpc.errors import AbortError, ProtocolViolation
from protocols.secagg import crypto, messages
from protocols.secagg.masking import apply_masks, pairwise_seed, pairwise_sign
from protocols.secagg.messages import B_LIMBS, CT_BYTES, SK_LIMBS
from protocols.secagg.params import SecAggPlan
from protocols.secagg.result import SecAggResult
from protocols.secagg.shamir import reconstruct_secret

__all__ = [
    "ServerKeys",
    "ServerShares",
    "ServerMasked",
    "prune",
    "server_collect_keys",
    "server_relay_shares",
    "server_collect_masked",
    "server_unmask",
    "result_message",
]


def prune(
    candidates: set[int], graph: Mapping[int, frozenset[int]], threshold: int
) -> set[int]:
    """The largest subset in which every member has at least ``threshold`` neighbours."""
    live = set(candidates)
    changed = True
    while changed:  # a fixpoint over clients; each pass is O(n k)
        changed = False
        for u in sorted(live):
            if len(graph[u] & live) < threshold:
                live.discard(u)
                changed = True
    return live


def _check_enough(live: set[int], plan: SecAggPlan, stage: str) -> None:
    if len(live) < plan.min_survivors:
        raise AbortError(
            f"only {len(live)} clients left after stage {stage}, {plan.min_survivors} required"
        )


@dataclass(frozen=True)
class ServerKeys:
    """After stage 0: ``U1`` and the public keys.

    Attributes:
        plan: the run's parameters.
        context: bytes naming the run.
        graph: client -> neighbours.
        enc_pks: client in ``U1`` -> encryption public key.
        mask_pks: client in ``U1`` -> mask public key.
        rosters: client in ``U1`` -> the holders it was told to share to (ascending).
    """

    plan: SecAggPlan
    context: bytes
    graph: Mapping[int, frozenset[int]]
    enc_pks: dict[int, bytes]
    mask_pks: dict[int, bytes]
    rosters: dict[int, tuple[int, ...]]

    @property
    def u1(self) -> tuple[int, ...]:
        """Clients that advertised keys (after pruning)."""
        return tuple(sorted(self.rosters))


@dataclass(frozen=True)
class ServerShares:
    """After stage 1: ``U2``, the commitments, and each member's partners.

    Attributes:
        keys: stage 0 state.
        commits: client in ``U2`` -> commitment to its self-mask seed.
        partners: client in ``U2`` -> its neighbours in ``U2`` (whose shares it holds and
            with whom it masks), ascending.
    """

    keys: ServerKeys
    commits: dict[int, bytes]
    partners: dict[int, tuple[int, ...]]

    @property
    def u2(self) -> tuple[int, ...]:
        """Clients whose shares were relayed."""
        return tuple(sorted(self.partners))


@dataclass(frozen=True)
class ServerMasked:
    """After stage 2: ``U3`` and the sum of their masked inputs.

    Attributes:
        shares: stage 1 state.
        masked_sum: ``sum_{u in U3} y_u`` in the container dtype.
        alive: client in ``U3`` -> its partners in ``U3``.
    """

    shares: ServerShares
    masked_sum: np.ndarray
    alive: dict[int, tuple[int, ...]]

    @property
    def u3(self) -> tuple[int, ...]:
        """Clients whose masked inputs are in the sum."""
        return tuple(sorted(self.alive))


def server_collect_keys(
    plan: SecAggPlan,
    context: bytes,
    graph: Mapping[int, frozenset[int]],
    received: Mapping[int, Any],
) -> tuple[ServerKeys, dict[int, Any]]:
    """Stage 0 -> 1: check the advertised keys, fix ``U1``, send each member its roster.

    Raises:
        ProtocolViolation: a malformed advertisement.
        AbortError: fewer than ``min_survivors`` clients in ``U1``.
    """
    enc_pks: dict[int, bytes] = {}
    mask_pks: dict[int, bytes] = {}
    for u, msg in received.items():
        enc_pks[u] = messages.bytes_field(messages.field(msg, "c", u), 32, u, "a public key")
        mask_pks[u] = messages.bytes_field(messages.field(msg, "s", u), 32, u, "a public key")
    u1 = prune(set(received), graph, plan.threshold)
    _check_enough(u1, plan, "advertise")
    rosters = {u: tuple(sorted(graph[u] & u1)) for u in sorted(u1)}
    out: dict[int, Any] = {}
    for u, roster in rosters.items():
        out[u] = {
            "ids": np.array(roster, dtype=np.int64),
            "c": _key_rows([enc_pks[v] for v in roster]),
            "s": _key_rows([mask_pks[v] for v in roster]),
        }
    state = ServerKeys(
        plan,
        context,
        graph,
        {u: enc_pks[u] for u in u1},
        {u: mask_pks[u] for u in u1},
        rosters,
    )
    return state, out


def _key_rows(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32).copy()


def server_relay_shares(
    state: ServerKeys, received: Mapping[int, Any]
) -> tuple[ServerShares, dict[int, Any]]:
    """Stage 1 -> 2: check the encrypted shares, fix ``U2``, forward each holder its shares.

    Raises:
        ProtocolViolation: a malformed message, or shares addressed to other holders than the
            roster the client was sent.
        AbortError: a client reported an abort (a key inconsistency), or fewer than
            ``min_survivors`` clients in ``U2``.
    """
    plan = state.plan
    commits: dict[int, bytes] = {}
    rows: dict[int, dict[int, np.ndarray]] = {}
    for u, msg in received.items():
        if u not in state.rosters:
            continue  # pruned from U1; its late message is ignored
        if isinstance(msg, dict) and "stop" in msg:
            # The client found the relayed keys inconsistent with its neighbours' direct ones
            # (or a neighbour's missing): an honest aggregator stops the whole run.
            raise AbortError(f"party {u} aborted at stage share-keys ({str(msg['stop'])[:40]})")
        to = messages.ids_array(messages.field(msg, "to", u), u, "holders")
        if tuple(int(v) for v in to) != state.rosters[u]:
            raise ProtocolViolation(f"party {u} shared to other holders than its roster")
        ct = messages.uint8_rows(messages.field(msg, "ct", u), to.size, CT_BYTES, u, "shares")
        commits[u] = messages.bytes_field(messages.field(msg, "commit", u), 32, u, "a commitment")
        rows[u] = {v: ct[i] for i, v in enumerate(state.rosters[u])}
    u2 = prune(set(rows), state.graph, plan.threshold)
    _check_enough(u2, plan, "share-keys")
    partners = {v: tuple(sorted(state.graph[v] & u2)) for v in sorted(u2)}
    out: dict[int, Any] = {}
    for v, senders in partners.items():  # a loop over (holder, sender) pairs
        ct = np.empty((len(senders), CT_BYTES), dtype=np.uint8)
        for i, u in enumerate(senders):
            ct[i] = rows[u][v]
        out[v] = {"from": np.array(senders, dtype=np.int64), "ct": ct}
    return ServerShares(state, {u: commits[u] for u in u2}, partners), out


def server_collect_masked(
    state: ServerShares, received: Mapping[int, Any]
) -> tuple[ServerMasked, dict[int, Any]]:
    """Stage 2 -> 3: check and add the masked inputs, fix ``U3``, send every member ``U3``.

    Raises:
        ProtocolViolation: a malformed vector.
        AbortError: fewer than ``min_survivors`` masked inputs (refusing to unmask a sum of
            too few clients), or a survivor left with fewer than ``t`` partners.
    """
    plan = state.keys.plan
    vectors = {
        u: messages.vector(y, plan.dtype, plan.dim, plan.bits, u)
        for u, y in received.items()
        if u in state.partners
    }
    u3 = set(vectors)
    _check_enough(u3, plan, "masked-input")
    total = np.zeros(plan.dim, dtype=plan.dtype)
    for u in sorted(u3):  # a loop over clients, vectorized over the vector
        total += vectors[u]
    alive = {v: tuple(u for u in state.partners[v] if u in u3) for v in sorted(u3)}
    # Everyone gets the whole U3 (not only its partners' statuses): the clients compare it in
    # the consistency round, so one list must serve all.
    listing = {"u3": np.array(sorted(u3), dtype=np.int64)}
    out = {v: listing for v in alive}
    return ServerMasked(state, total, alive), out


def server_unmask(state: ServerMasked, received: Mapping[int, Any]) -> SecAggResult:
    """Stage 3 -> sum: rebuild the secrets from ``t`` shares each, remove the masks.

    Raises:
        ProtocolViolation: a malformed message, or shares for other clients than requested.
        AbortError: a client reported an abort (survivor lists inconsistent), fewer than ``t``
            shares of some secret, inconsistent shares, or a rebuilt secret that does not
            match its commitment or public key.
    """
    shares, keys = state.shares, state.shares.keys
    plan, context = keys.plan, keys.context
    b_points: dict[int, list[int]] = {u: [] for u in state.alive}
    b_rows: dict[int, list[np.ndarray]] = {u: [] for u in state.alive}
    dropped = [w for w in shares.u2 if w not in state.alive]
    sk_points: dict[int, list[int]] = {w: [] for w in dropped}
    sk_rows: dict[int, list[np.ndarray]] = {w: [] for w in dropped}
    responders = sorted(v for v in received if v in state.alive)
    for v in responders:
        msg = received[v]
        if isinstance(msg, dict) and "stop" in msg:
            # The client found the survivor lists inconsistent: an honest aggregator stops.
            raise AbortError(f"party {v} aborted at stage consistency ({str(msg['stop'])[:40]})")
    for v in responders:  # a loop over (holder, owner) pairs
        msg = received[v]
        alive = state.alive[v]
        gone = tuple(u for u in shares.partners[v] if u not in set(alive))
        b_from = messages.ids_array(messages.field(msg, "b_from", v), v, "share owners")
        sk_from = messages.ids_array(messages.field(msg, "sk_from", v), v, "share owners")
        if tuple(int(u) for u in b_from) != alive or tuple(int(u) for u in sk_from) != gone:
            raise ProtocolViolation(f"party {v} revealed shares for other clients than asked")
        b = messages.share_rows(messages.field(msg, "b", v), len(alive), B_LIMBS, v, "shares")
        sk = messages.share_rows(messages.field(msg, "sk", v), len(gone), SK_LIMBS, v, "shares")
        for i, u in enumerate(alive):
            b_points[u].append(v + 1)
            b_rows[u].append(b[i])
        for i, w in enumerate(gone):
            sk_points[w].append(v + 1)
            sk_rows[w].append(sk[i])
    minus: list[bytes] = []
    plus: list[bytes] = []
    for u in sorted(state.alive):
        seed = _rebuild(b_points[u], b_rows[u], B_LIMBS, plan.threshold, crypto.SEED_BYTES, u, "self-mask seed")
        expected = shares.commits[u]
        if crypto.commit(seed, "secagg-self-seed", context + crypto.party_bytes(u)) != expected:
            raise AbortError(f"rebuilt self-mask seed of party {u} does not match its commitment")
        minus.append(seed)
    for w in dropped:
        sk_w = _rebuild(sk_points[w], sk_rows[w], SK_LIMBS, plan.threshold, crypto.KEY_BYTES, w, "mask key")
        if crypto.public_key(sk_w) != keys.mask_pks[w]:
            raise AbortError(f"rebuilt mask key of party {w} does not match its public key")
        key_w = crypto.private_key(sk_w)
        for u in shares.partners[w]:
            if u not in state.alive:
                continue
            seed = pairwise_seed(key_w, keys.mask_pks[u], w, u, context)
            # y_u contains s(u, w) PRG(k_uw): take it out.
            (minus if pairwise_sign(u, w) > 0 else plus).append(seed)
    total = np.array(state.masked_sum, copy=True)
    plan.reduce(apply_masks(total, plus, minus, plan))
    live = {
        "advertise": keys.u1,
        "share-keys": shares.u2,
        "masked-input": state.u3,
        "unmask": tuple(responders),
    }
    return SecAggResult(total=total, survivors=state.u3, live=live)


def _rebuild(
    points: list[int],
    rows: list[np.ndarray],
    limbs: int,
    threshold: int,
    n_bytes: int,
    owner: int,
    what: str,
) -> bytes:
    if len(points) < threshold:
        raise AbortError(
            f"only {len(points)} shares of the {what} of party {owner}, {threshold} needed: "
            "refusing to reconstruct"
        )
    stacked = np.stack(rows).reshape(len(points), limbs) if rows else np.empty((0, limbs))
    return reconstruct_secret(np.array(points, dtype=np.int64), stacked, threshold, n_bytes)


def result_message(result: SecAggResult) -> dict[str, Any]:
    """The message releasing the sum to the surviving clients."""
    return {"sum": result.total, "survivors": np.array(result.survivors, dtype=np.int64)}

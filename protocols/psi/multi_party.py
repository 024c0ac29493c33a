"""Multi-party ECDH PSI (3 or more parties) over ristretto255: a keyed ring with a leader and a helper.

Every party ``i`` of ``n >= 3`` holds a set ``X_i``; the receivers learn which of their own rows
are in ``X_0 ∩ ... ∩ X_{n-1}`` (*intersection*, *join*) or only its size (*cardinality*).
Party 0 is the *leader*, party 1 the *helper*. Every party ``i`` draws a secret scalar ``k_i``;
``K = k_0 k_1 ... k_{n-1}`` and ``G(x) = K H(x)`` is the *complete* mask of ``x``. The recipe
arranges that nobody ever holds complete masks of two parties' sets while able to link one of
them to identifiers.

1. *hello* (in :mod:`protocols.psi.api`): parameter digest and set sizes, all to all.
2. *ring* — each set travels a path of parties, each multiplying every element by its scalar,
   as pipelined streams (stream ``s{j}h{t}`` is hop ``t`` of set ``j``); every owner first
   permutes its set with a CSPRNG permutation.

   - Set 0 (leader): 0 applies ``k_0``, then 2, 3, ..., n-1 apply theirs; the result
     ``L_0 = (K / k_1) H(X_0)`` (everything but the helper's key) goes to the leader, who
     keeps it in its own order, and to the helper, who completes it to ``G(X_0)``, shuffles it
     and sends it to the leader.
   - Set 1 (helper): symmetric: ``L_1 = (K / k_0) H(X_1)`` to the helper (kept in order) and to
     the leader, who completes it to ``G(X_1)`` (in the helper's secret order).
   - Set ``j >= 2``: ``j`` applies a one-time blind ``t_j`` (not ``k_j``), every other party
     applies its key in ring order ``j+1, ..., n-1, 0, 1, ..., j-1``, the last one returns the
     set to ``j``, who applies ``k_j / t_j``: ``G(X_j)`` in ``j``'s order. ``j`` shuffles a
     copy and sends it to the leader.
3. *intersect* — the leader computes ``I = ∩_i G(X_i)`` (sorted by value).
4. *output* — *cardinality*: the leader sends ``|I|`` to the receivers. *intersection* and
   *join*: the leader sends ``|I|`` and then ``I`` to each receiver ``j >= 2``; ``I / k_0`` to
   the helper if it receives; and ``I`` to the helper, who returns ``I / k_1`` to the leader,
   if the leader receives. Each receiver finds its rows by looking the received values up in
   its in-order ``G(X_j)`` (``L_1`` for the helper, ``L_0`` for the leader). The order of
   ``I`` is common to all, so *join* rows are aligned across all parties.

Security model: semi-honest (passive) parties that do not collude; DDH in ristretto255 with
``H`` a random oracle. Precisely, besides its output and all set sizes:

- the leader learns the size of every region of the Venn diagram of all sets (it holds
  ``G(X_i)`` of every party, each shuffled by someone else, so it can intersect any subset of
  them but cannot link any of them to identifiers, its own included: its in-order ``L_0`` lacks
  ``k_1``);
- the helper learns ``|I|`` when the leader receives (it unmasks ``I`` for the leader), and
  nothing else (its in-order ``L_1`` lacks ``k_0``; the complete values it makes, ``G(X_0)``,
  it cannot compare with anything it can link);
- every other party learns nothing more (it only sees values blinded by someone else's key
  or by the one-time ``t_j`` of another party);
- a non-receiver's output is nothing, a cardinality receiver's only ``|I|``; nobody learns
  a pairwise intersection or its size except the leader's Venn sizes above.

Coalitions break this: the leader with any party ``j`` learns ``X_j ∩ X_i`` for every ``i``
(``j`` links ``G(X_j)``, the leader holds every ``G(X_i)``); the helper with any party ``j >= 2``
learns ``X_j ∩ X_0``. An actively malicious party can make the result wrong. For a two-party
intersection use :mod:`protocols.psi.two_party` (run automatically when ``n = 2``).

Cost, with ``N = Σ_i |X_i|``, ``r = |I|`` and chunks of ``c``: party ``i`` hashes its own set
and performs about ``N + |X_i|`` scalar multiplications (leader and helper ``N``, plus ``r``
to unmask for the other); bytes sent by party ``i >= 2``: ``32 (N + |X_i|)``, plus
``32 (|X_0| + |X_1|)`` for party ``n-1`` (it delivers ``L_0``, ``L_1`` twice); the helper
``32 N`` (its set, the relayed sets ``j >= 2``, and ``G(X_0)``) plus ``32 r`` if the leader
receives; the leader ``32 (N - |X_1|)`` plus ``32 r`` per result stream. Latency: ``n + 3``
pipelined streams (each ``ceil(size / c)`` rounds). No preprocessing.

References: the commutative-encryption ring of J. Vaidya and C. Clifton, Journal of Computer
Security 13(4), 2005 (intersection cardinality among many parties), built here on DH over
ristretto255 (RFC 9496); the leader/helper split that keeps the leader from linking masks to
identifiers is this project's own arrangement (analysis above).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ProtocolViolation
from mpc.session import Session
from protocols.psi.config import Mode
from protocols.psi.group import GroupEngine, invert_scalar, multiply_scalars, random_scalar
from protocols.psi.identifiers import PreparedSet
from protocols.psi.rowsets import intersect_rows
from protocols.psi.streams import (
    Patience,
    Transform,
    check_distinct,
    link_rows,
    permutation,
    relay_stream,
    run_all,
    send_stream,
)

__all__ = ["multi_party_psi", "ring_path", "ring_finals", "intersect_all", "LEADER", "HELPER"]

LEADER = 0
HELPER = 1


# -- pure functions ---------------------------------------------------------------------------


def ring_path(owner: int, n_parties: int) -> list[int]:
    """The parties that multiply set ``owner`` by their key after the owner, in order."""
    if owner in (LEADER, HELPER):
        return list(range(2, n_parties))
    return [(owner + h) % n_parties for h in range(1, n_parties)]


def ring_finals(owner: int) -> list[int]:
    """Who receives set ``owner`` from the last party of its path."""
    if owner == LEADER:
        return [LEADER, HELPER]
    if owner == HELPER:
        return [HELPER, LEADER]
    return [owner]


def intersect_all(sets: Sequence[np.ndarray]) -> np.ndarray:
    """Elements common to every ``(m_i, 32)`` set (each of distinct elements), sorted by value."""
    return intersect_rows(list(sets))


# -- the protocol -----------------------------------------------------------------------------


async def multi_party_psi(
    session: Session,
    prepared: PreparedSet,
    *,
    mode: Mode,
    receivers: Sequence[int],
    sizes: Sequence[int],
    chunk: int,
    engine: GroupEngine,
    patience: Patience,
) -> np.ndarray | int | None:
    """Steps 2-4 of the module recipe (the hello is done by the caller).

    Args:
        session: the PSI sub-session (``n >= 3`` parties).
        prepared: this party's prepared set.
        mode: ``"intersection"``, ``"cardinality"`` or ``"join"``.
        receivers: the parties that learn the output (all for ``join``).
        sizes: every party's set size, by party id (from the hello).
        chunk: elements per message.
        engine: where the group operations run.
        patience: the job's receive deadline.

    Returns:
        At a receiver: the rows (intersection: ascending; join: common order) or the count;
        elsewhere ``None``.

    Raises:
        ProtocolViolation: a malformed chunk, an invalid or identity element, repeated elements,
            a result value outside this party's set, an invalid count.
        PeerUnavailable: a peer stayed silent past the deadline.
    """
    n = session.n_parties
    me = session.party_id
    key = random_scalar()
    blind = random_scalar() if me >= 2 else key
    perm = permutation(session.prg, prepared.size)
    digests = prepared.digests[perm]
    rows = prepared.rows[perm]

    def mul(scalar: bytes, sender: int) -> Transform:
        async def transform(block: np.ndarray) -> np.ndarray:
            return await engine.multiply(scalar, block, sender)

        return transform

    def check(sender: int) -> Transform:
        async def transform(block: np.ndarray) -> np.ndarray:
            await engine.check(block, sender)
            return block

        return transform

    async def send_array(name: str, dst: int, values: np.ndarray) -> None:
        async def block(lo: int, hi: int) -> np.ndarray:
            return values[lo:hi]

        await send_stream(session, name, [dst], values.shape[0], chunk, block)

    # -- step 2: the ring ----------------------------------------------------------------------
    own_path = ring_path(me, n)

    async def send_own() -> None:
        async def mask(lo: int, hi: int) -> np.ndarray:
            return await engine.hash_and_multiply(blind, digests[lo:hi])

        await send_stream(session, f"s{me}h0", [own_path[0]], prepared.size, chunk, mask)

    async def relay(owner: int, hop: int) -> None:
        path = ring_path(owner, n)
        src = owner if hop == 0 else path[hop - 1]
        last = hop == len(path) - 1
        dsts = ring_finals(owner) if last else [path[hop + 1]]
        await relay_stream(
            session, f"s{owner}h{hop}", src, sizes[owner], chunk, mul(key, src), patience,
            out_name=f"s{owner}h{hop + 1}", dsts=dsts,
        )

    async def receive_final(owner: int, transform: Transform) -> np.ndarray:
        path = ring_path(owner, n)
        values = await relay_stream(
            session, f"s{owner}h{len(path)}", path[-1], sizes[owner], chunk, transform, patience
        )
        check_distinct(values, path[-1])
        return values

    jobs: list[Any] = [send_own()]
    for owner in range(n):
        if owner != me and me in ring_path(owner, n):
            jobs.append(relay(owner, ring_path(owner, n).index(me)))

    # What each party keeps: ``linked`` (its own set, in its order) and, at the leader, the
    # complete sets of every party.
    complete: dict[int, np.ndarray] = {}
    linked: dict[str, np.ndarray] = {}

    async def leader_part() -> None:
        async def own() -> None:
            linked["own"] = await receive_final(LEADER, check(n - 1))

        async def helper_set() -> None:
            complete[HELPER] = await receive_final(HELPER, mul(key, n - 1))

        async def shuffled(j: int) -> None:
            src = HELPER if j == LEADER else j
            values = await relay_stream(session, f"g{j}", src, sizes[j], chunk, check(src), patience)
            check_distinct(values, src)
            complete[j] = values

        await run_all(own(), helper_set(), *(shuffled(j) for j in range(n) if j != HELPER))

    async def helper_part() -> None:
        linked["own"] = await receive_final(HELPER, check(n - 1))
        g0 = await receive_final(LEADER, mul(key, n - 1))
        await send_array("g0", LEADER, g0[permutation(session.prg, sizes[LEADER])])

    async def other_part() -> None:
        own = await receive_final(me, mul(multiply_scalars(key, invert_scalar(blind)), own_path[-1]))
        linked["own"] = own
        await send_array(f"g{me}", LEADER, own[permutation(session.prg, prepared.size)])

    jobs.append(leader_part() if me == LEADER else helper_part() if me == HELPER else other_part())
    await run_all(*jobs)

    # -- steps 3 and 4: intersect at the leader, deliver --------------------------------------
    if me == LEADER:
        common = intersect_all([complete[i] for i in range(n)])
        return await _leader_output(session, mode, receivers, common, key, linked["own"], rows, chunk, engine, patience, send_array)
    return await _member_output(session, mode, receivers, key, linked["own"], rows, chunk, engine, patience, sizes)


async def _leader_output(
    session: Session,
    mode: Mode,
    receivers: Sequence[int],
    common: np.ndarray,
    key: bytes,
    own: np.ndarray,
    rows: np.ndarray,
    chunk: int,
    engine: GroupEngine,
    patience: Patience,
    send_array: Any,
) -> np.ndarray | int | None:
    size = int(common.shape[0])
    if mode == "cardinality":
        card = session.round("card")
        await run_all(*(card.send(j, size) for j in receivers if j != LEADER))
        return size if LEADER in receivers else None
    announce = session.round("isize")
    helper_gets = LEADER in receivers or HELPER in receivers
    listeners = [j for j in receivers if j >= 2] + ([HELPER] if helper_gets else [])
    await run_all(*(announce.send(j, size) for j in listeners))
    jobs: list[Any] = [send_array(f"r{j}", j, common) for j in receivers if j >= 2]
    if HELPER in receivers:
        inverse = invert_scalar(key)

        async def unmask(lo: int, hi: int) -> np.ndarray:
            return await engine.multiply(inverse, common[lo:hi], LEADER)

        jobs.append(send_stream(session, "rh", [HELPER], size, chunk, unmask))
    if LEADER in receivers:
        jobs.append(send_array("rq", HELPER, common))

        async def own_result() -> np.ndarray:
            async def check(block: np.ndarray) -> np.ndarray:
                await engine.check(block, HELPER)
                return block

            back = await relay_stream(session, "rl", HELPER, size, chunk, check, patience)
            return link_rows(own, rows, back, HELPER)

        jobs.append(own_result())
    results = await run_all(*jobs)
    if LEADER not in receivers:
        return None
    return _shape(mode, results[-1])


async def _member_output(
    session: Session,
    mode: Mode,
    receivers: Sequence[int],
    key: bytes,
    own: np.ndarray,
    rows: np.ndarray,
    chunk: int,
    engine: GroupEngine,
    patience: Patience,
    sizes: Sequence[int],
) -> np.ndarray | int | None:
    me = session.party_id
    bound = min(sizes)
    if mode == "cardinality":
        card = session.round("card")
        if me not in receivers:
            return None
        return _check_count(await patience.recv(card, LEADER), bound)
    announce = session.round("isize")
    listening = me in receivers or (me == HELPER and LEADER in receivers)
    if not listening:
        return None
    size = _check_count(await patience.recv(announce, LEADER), bound)

    async def check(block: np.ndarray) -> np.ndarray:
        await engine.check(block, LEADER)
        return block

    jobs: list[Any] = []
    if me == HELPER and LEADER in receivers:
        inverse = invert_scalar(key)

        async def unmask(block: np.ndarray) -> np.ndarray:
            return await engine.multiply(inverse, block, LEADER)

        jobs.append(relay_stream(session, "rq", LEADER, size, chunk, unmask, patience, out_name="rl", dsts=[LEADER]))
    if me in receivers:
        jobs.append(relay_stream(session, "rh" if me == HELPER else f"r{me}", LEADER, size, chunk, check, patience))
    results = await run_all(*jobs)
    if me not in receivers:
        return None
    return _shape(mode, link_rows(own, rows, results[-1], LEADER))


def _shape(mode: Mode, linked_rows: np.ndarray) -> np.ndarray:
    """Join: rows in the common order; intersection: ascending."""
    return linked_rows if mode == "join" else np.sort(linked_rows)


def _check_count(value: object, bound: int) -> int:
    return check_int(
        value,
        "intersection size",
        lo=0,
        hi=bound,
        error=ProtocolViolation,
        message=f"the leader sent an invalid intersection size {value!r}",
    )

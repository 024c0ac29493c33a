"""Two-party ECDH PSI over ristretto255: intersection, cardinality, private join.

Party ``A`` holds set ``X``, party ``B`` set ``Y`` (prepared identifiers: salted SHA-512
digests, mapped to ristretto255 by ``H``). Recipe, for each party ``P`` with peer ``Q``
(both run it at once; the streams of :mod:`protocols.psi.streams` carry each step):

1. *hello* (in :mod:`protocols.psi.api`) — both send the job's parameter digest and their set
   size; a mismatch is a ``ProtocolViolation``.
2. *mask* — ``P`` draws a secret scalar ``a`` (``os.urandom``), permutes its set with a
   CSPRNG permutation ``pi`` (so positions carry nothing) and streams ``M_P = [a H(x_pi(i))]``
   to ``Q`` (stream ``m{P}``).
3. *remask* — ``P`` multiplies every element of ``Q``'s stream by ``a`` (libsodium validates
   each one), giving ``D_Q = [ab H(y)]`` in ``Q``'s order. If ``Q`` is a receiver, ``P`` sends
   ``D_Q`` back (stream ``d{Q}``): chunk by chunk as computed for *intersection* and *join*;
   for *cardinality*, only once complete and shuffled by a fresh CSPRNG permutation of ``P``.
4. *match* — a receiver ``P`` holds ``D_P`` (from ``Q``, in ``P``'s order unless shuffled)
   and ``D_Q`` (computed itself). Since ``ab H(x) = ba H(x)``, ``x`` is in ``Y`` iff its
   ``D_P`` entry is in ``D_Q`` (a collision of distinct elements has probability about
   ``|X||Y| / 2^252``: the result is exact).

   - *intersection*: the input rows of ``P`` whose element matches, ascending;
   - *join*: the same rows ordered by their doubly-masked value ``ab H(x)``, which both
     parties know for every common ``x``: row ``k`` of ``A``'s output and row ``k`` of ``B``'s
     hold the same identifier, so matching records feed later SPDZ jobs row-aligned;
   - *cardinality*: ``|D_P (shuffled) ∩ D_Q|``.

Security model: semi-honest (passive) adversary, 2 parties; the DDH assumption in
ristretto255 with ``H`` modelled as a random oracle (Huberman-Franklin-Hogg). What each party
learns:

- both parties: both set sizes;
- a receiver in *intersection*/*join* mode: which of its own rows are in the other set (that is,
  the intersection), nothing about the other party's non-matching identifiers, nor where in the
  other party's input the matching ones are (its set was permuted);
- a receiver in *cardinality* mode: only ``|X ∩ Y|``: the returned ``D_P`` is shuffled, so
  it cannot tell which of its own elements matched;
- a non-receiver: nothing beyond the sizes (it only sees pseudo-random group elements).

Not covered: an actively malicious party may use any set as its input and may return wrong
``D`` values, making the honest party's result wrong; received elements are still validated
(encoding, identity, shape, repeats), so malformed messages end in ``ProtocolViolation``. The
private join reveals to both parties which of their rows match (a join that hides even that
needs circuit PSI).

Cost for sets of ``m_A`` and ``m_B`` elements with chunks of ``c``: each party hashes its set
to the group (``m_own`` hash-to-group) and performs ``m_A + m_B`` scalar multiplications; a
receiver also validates the ``m_own`` returned elements. Bytes sent by ``P``: ``32 m_P`` plus
``32 m_Q`` if ``Q`` is a receiver (plus the hello and framing): ``32 (m_A + 2 m_B)`` in total when
only ``A`` receives, ``64 (m_A + m_B)`` when both do — the minimum for DH-based PSI. Rounds: 1
hello plus ``ceil(m / c)`` per stream; in latency, two streams pipelined (mask, remask). No
preprocessing.

References: C. Meadows, IEEE S&P 1986; B. Huberman, M. Franklin, T. Hogg, ACM EC 1999 (DH
PSI); R. Agrawal, A. Evfimievski, R. Srikant, SIGMOD 2003 (intersection size and equijoin);
M. Ion et al., EuroS&P 2020 (private join with shuffled doubly-masked sets); RFC 9496
(ristretto255).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mpc.session import Session
from protocols.psi.config import Mode
from protocols.psi.group import GroupEngine, random_scalar
from protocols.psi.identifiers import PreparedSet
from protocols.psi.rowsets import byte_order, find_rows
from protocols.psi.streams import (
    Patience,
    check_distinct,
    permutation,
    relay_stream,
    run_all,
    send_stream,
)

__all__ = ["two_party_psi", "match_rows", "join_rows", "count_matches"]


# -- pure matching functions ------------------------------------------------------------------


def match_rows(own_double: np.ndarray, own_rows: np.ndarray, peer_double: np.ndarray) -> np.ndarray:
    """Input rows (ascending) whose doubly-masked element is in the peer's doubly-masked set."""
    mask = find_rows(own_double, peer_double) >= 0
    return np.sort(own_rows[mask]).astype(np.int64)


def join_rows(own_double: np.ndarray, own_rows: np.ndarray, peer_double: np.ndarray) -> np.ndarray:
    """Matching input rows in the common order: ascending doubly-masked value (as bytes)."""
    idx = np.flatnonzero(find_rows(own_double, peer_double) >= 0)
    order = byte_order(own_double[idx])
    out: np.ndarray = own_rows[idx[order]].astype(np.int64)
    return out


def count_matches(own_double: np.ndarray, peer_double: np.ndarray) -> int:
    """``|own ∩ peer|`` for two sets of distinct elements."""
    return int(np.count_nonzero(find_rows(own_double, peer_double) >= 0))


# -- the protocol -----------------------------------------------------------------------------


async def two_party_psi(
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
        session: the PSI sub-session (2 parties).
        prepared: this party's prepared set.
        mode: ``"intersection"``, ``"cardinality"`` or ``"join"``.
        receivers: the parties that learn the output (both for ``join``).
        sizes: every party's set size, by party id (from the hello).
        chunk: elements per message.
        engine: where the group operations run.
        patience: the job's receive deadline.

    Returns:
        At a receiver: the rows (intersection, join) or the count (cardinality); else ``None``.

    Raises:
        ProtocolViolation: a malformed chunk, an invalid or identity element, repeated elements.
        PeerUnavailable: the peer stayed silent past the deadline.
    """
    me = session.party_id
    peer = 1 - me
    scalar = random_scalar()
    perm = permutation(session.prg, prepared.size)
    digests = prepared.digests[perm]
    rows = prepared.rows[perm]
    i_receive = me in receivers
    peer_receives = peer in receivers

    async def mask(lo: int, hi: int) -> np.ndarray:
        return await engine.hash_and_multiply(scalar, digests[lo:hi])

    async def remask(block: np.ndarray) -> np.ndarray:
        return await engine.multiply(scalar, block, peer)

    async def check(block: np.ndarray) -> np.ndarray:
        await engine.check(block, peer)
        return block

    async def send_own() -> None:
        await send_stream(session, f"m{me}", [peer], prepared.size, chunk, mask)

    async def remask_peer() -> np.ndarray:
        stream_back = peer_receives and mode != "cardinality"
        double = await relay_stream(
            session,
            f"m{peer}",
            peer,
            sizes[peer],
            chunk,
            remask,
            patience,
            out_name=f"d{peer}" if stream_back else None,
            dsts=[peer] if stream_back else (),
        )
        check_distinct(double, peer)
        if peer_receives and mode == "cardinality":
            shuffled: np.ndarray = double[permutation(session.prg, sizes[peer])]

            async def block(lo: int, hi: int) -> np.ndarray:
                return shuffled[lo:hi]

            await send_stream(session, f"d{peer}", [peer], sizes[peer], chunk, block)
        return double

    async def own_back() -> np.ndarray:
        double = await relay_stream(session, f"d{me}", peer, prepared.size, chunk, check, patience)
        check_distinct(double, peer)
        return double

    if not i_receive:
        await run_all(send_own(), remask_peer())
        return None
    _, peer_double, own_double = await run_all(send_own(), remask_peer(), own_back())
    if mode == "cardinality":
        return count_matches(own_double, peer_double)
    if mode == "join":
        return join_rows(own_double, rows, peer_double)
    return match_rows(own_double, rows, peer_double)

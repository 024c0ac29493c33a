"""Secure sum of private arrays over Z_2^64 by additive secret sharing.

Every party ``i`` of ``n`` holds a private array ``x_i`` (all of the same shape, any shape, a
scalar being a 0-d array); the receivers learn ``sum_i x_i mod 2^64`` and nothing else.

Protocol (each step is a pure function below plus one exchange):

1. *share* — party ``i`` splits ``x_i`` into ``n`` additive shares ``x_i = sum_j s_ij`` drawn
   from its ``session.prg`` (:func:`mpc.sharing.share`), keeps ``s_ii`` and sends ``s_ij`` to
   party ``j`` (round ``share``).
2. *add* — party ``j`` checks every received share (uint64, its own input's shape) and adds
   them: ``t_j = sum_i s_ij`` (:func:`add_shares`).
3. *reveal* — party ``j`` sends ``t_j`` to every receiver but itself (round ``partial``); each
   receiver checks and adds the partial sums: ``sum_j t_j = sum_i x_i`` (:func:`add_shares`).

Threat model: passive (semi-honest) adversary, dishonest majority. Any coalition of up to
``n - 1`` parties learns nothing about the other parties' inputs beyond what the sum (if one
of them is a receiver) reveals: each share it sees is uniform and independent of the inputs, and
the partial sums of the honest parties are uniform subject to adding up to the sum. A coalition
of non-receivers learns nothing at all. There is no integrity: an active party can add any
offset to its share or partial sum and shift the result undetected; use the SPDZ engine
(MAC-checked opens) when outputs must be correct against malicious parties.

Cost for ``m`` elements and ``r`` receivers: 2 rounds; party ``j`` sends ``(n - 1) * 8m``
payload bytes in round 1 and ``8m`` to each receiver other than itself in round 2, so
``2 (n - 1) * 8m`` bytes when everyone receives (plus framing). No preprocessing.

Errors: a share or partial sum that is not a uint64 array of the receiving party's input shape
raises :class:`~mpc.errors.ProtocolViolation` at that party (its peers then time out waiting for
it with :class:`~mpc.errors.PeerUnavailable`); a silent peer raises ``PeerUnavailable``.

Reference: the folklore additive-sharing sum, e.g. Cramer, Damgard, Nielsen, *Secure
Multiparty Computation and Secret Sharing* (CUP 2015), chapter 3.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError, ProtocolViolation
from mpc.ring import DTYPE, as_ring, decode_int, encode_int
from mpc.session import Session
from mpc.sharing import share

__all__ = [
    "secure_sum",
    "secure_sum_to",
    "secure_sum_int",
    "check_receivers",
    "check_array",
    "add_shares",
]


# -- pure round functions --------------------------------------------------------------------


def check_receivers(receivers: Sequence[int] | None, n_parties: int) -> tuple[int, ...]:
    """Normalize a receiver list: sorted distinct party ids; every party when ``None``.

    Raises:
        ConfigError: empty, duplicated or out-of-range ids.
    """
    if receivers is None:
        return tuple(range(n_parties))
    ids = tuple(receivers)
    if not ids:
        raise ConfigError("secure sum needs at least one receiver")
    ids = tuple(check_int(r, "receivers", numpy=True, message="receivers must be party ids") for r in ids)
    if len(set(ids)) != len(ids) or not all(0 <= r < n_parties for r in ids):
        raise ConfigError(f"receivers must be distinct ids in [0, {n_parties})")
    return tuple(sorted(ids))


def check_array(value: Any, shape: tuple[int, ...], sender: int) -> np.ndarray:
    """Check that a received value is a Z_2^64 array of the expected shape.

    Raises:
        ProtocolViolation: wrong type, dtype or shape (the sender's inputs disagree with ours,
            or it misbehaves).
    """
    if not isinstance(value, np.ndarray) or value.dtype != DTYPE:
        raise ProtocolViolation(f"party {sender} sent {type(value).__name__}, not a uint64 array")
    if value.shape != shape:
        raise ProtocolViolation(f"party {sender} sent shape {value.shape}, expected {shape}")
    return value


def add_shares(own: np.ndarray, received: Mapping[int, Any]) -> np.ndarray:
    """Our share plus the checked arrays received from peers, mod 2^64.

    Args:
        own: this party's own share (sets the expected shape).
        received: peer id -> array received from it.

    Raises:
        ProtocolViolation: a received array is not uint64 of ``own``'s shape.
    """
    total = np.array(own, dtype=DTYPE, copy=True)
    for sender, value in received.items():
        total += check_array(value, total.shape, sender)
    return total


# -- async steps -----------------------------------------------------------------------------


async def _share_and_add(session: Session, x: np.ndarray) -> np.ndarray:
    """Round 1: send ``s_ij`` to each party ``j``; return this party's partial sum ``t_i``."""
    shares = share(x, session.n_parties, session.prg)
    me = session.party_id
    received = await session.exchange(
        "share", {p: shares[p] for p in session.others}, per_peer=True
    )
    return add_shares(shares[me], received)


async def secure_sum(session: Session, x: Any) -> np.ndarray:
    """Sum the parties' arrays mod 2^64; every party learns the result.

    Every party of the session calls this with its own array, of the same shape everywhere.
    See the module docstring for the protocol, threat model and costs.

    Args:
        session: this party's session.
        x: this party's input, a Z_2^64 array (or integers :func:`mpc.ring.as_ring` accepts).

    Returns:
        ``sum_i x_i mod 2^64`` as a uint64 array of ``x``'s shape.

    Raises:
        ConfigError: invalid input.
        ProtocolViolation: a peer's array has the wrong dtype or shape.
        PeerUnavailable: a peer stayed silent past the channel's timeout.
    """
    sub = session.child("secure_sum")
    partial = await _share_and_add(sub, as_ring(x))
    received = await sub.exchange("partial", partial)
    return add_shares(partial, received)


async def secure_sum_to(
    session: Session, x: Any, receivers: Sequence[int] | None = None
) -> np.ndarray | None:
    """Sum the parties' arrays mod 2^64; only ``receivers`` learn the result.

    Every party calls this with its own array and the same ``receivers``. With every party a
    receiver this is :func:`secure_sum` (same messages and tags).

    Args:
        session: this party's session.
        x: this party's input, a Z_2^64 array (or integers :func:`mpc.ring.as_ring` accepts).
        receivers: ids of the parties that learn the sum; every party if ``None``.

    Returns:
        The sum (uint64, ``x``'s shape) at a receiver, ``None`` elsewhere.

    Raises:
        ConfigError: invalid input or receivers.
        ProtocolViolation: a peer's array has the wrong dtype or shape.
        PeerUnavailable: a peer stayed silent past the channel's timeout.
    """
    who = check_receivers(receivers, session.n_parties)
    if len(who) == session.n_parties:
        return await secure_sum(session, x)
    sub = session.child("secure_sum")
    partial = await _share_and_add(sub, as_ring(x))
    rnd = sub.round("partial")
    me = sub.party_id
    sends = [rnd.send(r, partial) for r in who if r != me]
    if me not in who:
        await asyncio.gather(*sends)
        return None
    others = sub.others
    got = await asyncio.gather(*sends, *(rnd.recv(p) for p in others))
    return add_shares(partial, dict(zip(others, got[len(sends) :], strict=True)))


async def secure_sum_int(
    session: Session, x: Any, receivers: Sequence[int] | None = None
) -> np.ndarray | None:
    """Sum signed 64-bit integers (two's complement; the sum wraps modulo 2^64).

    Args:
        session: this party's session.
        x: this party's integers in [-2^63, 2^63).
        receivers: ids of the parties that learn the sum; every party if ``None``.

    Returns:
        The sum as int64 at a receiver, ``None`` elsewhere.
    """
    total = await secure_sum_to(session, encode_int(x), receivers)
    return None if total is None else decode_int(total)

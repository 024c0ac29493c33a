"""Moving sets of group elements between parties as streams of chunks, and comparing them.

A set of ``n`` elements travels from one party to one or more others as ``ceil(n / chunk)``
messages, each in its own round (all rounds of a stream share one round name, so their tags are
``name#0, name#1, ...`` at every party); both sides know ``n`` and ``chunk`` from the first
round of the job, so the receiver checks every chunk's exact shape. A stream lets the receiver
start working on the first chunk while the sender computes the next, and keeps every party's
silence short (about one chunk of work), whatever the set size.

Receives wait patiently: a party whose peers are legitimately busy (e.g. waiting for the
result of a long ring) retries a receive that timed out, for up to ``PsiConfig.max_wait_seconds``
per receive; a receive that fails at once (the peer is gone) is not retried.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from mpc.errors import PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Round, Session
from protocols.psi.group import POINT_BYTES
from protocols.psi.rowsets import find_rows, has_repeats

__all__ = [
    "Patience",
    "Transform",
    "run_all",
    "permutation",
    "n_chunks",
    "check_points",
    "send_stream",
    "relay_stream",
    "check_distinct",
    "link_rows",
]

_RETRY_MIN_WAIT = 0.2

Transform = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""An async per-chunk operation of a relay (multiply by a scalar, or validate)."""


class Patience:
    """Receives that outlast the channel timeout while a peer is busy, up to a limit each.

    Args:
        seconds: how long one receive may wait in total.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def recv(self, rnd: Round, peer: int) -> object:
        """``rnd.recv(peer)``, retried after each channel timeout for up to ``seconds``.

        Raises:
            PeerUnavailable: nothing arrived in time, or the peer is gone (a receive that fails
                sooner than a timeout is not retried).
        """
        deadline = time.monotonic() + self.seconds
        while True:
            started = time.monotonic()
            try:
                return await rnd.recv(peer)
            except PeerUnavailable:
                now = time.monotonic()
                if now - started < _RETRY_MIN_WAIT or now >= deadline:
                    raise


async def run_all(*aws: Awaitable[Any]) -> list[Any]:
    """Run awaitables concurrently; on the first failure cancel the rest and raise it.

    Unlike ``asyncio.gather`` nothing is left running after an error, and unlike a
    ``TaskGroup`` the typed error itself is raised (not an ``ExceptionGroup``).
    """
    tasks = [asyncio.ensure_future(a) for a in aws]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def permutation(prg: PRG, m: int) -> np.ndarray:
    """A uniformly random permutation of ``range(m)`` (int64) from the party's CSPRNG.

    The permutation sorts ``m`` fresh 64-bit PRG outputs; ties (probability below
    ``m^2 / 2^65``) are broken by position, a negligible bias.
    """
    return np.argsort(prg.uint64(m), kind="stable").astype(np.int64)


def n_chunks(n: int, chunk: int) -> int:
    """Number of messages of a stream of ``n`` elements."""
    return -(-n // chunk)


def check_points(value: object, rows: int, sender: int) -> np.ndarray:
    """Check a received chunk's type and exact shape: ``(rows, 32)`` uint8.

    Raises:
        ProtocolViolation: anything else (wrong type, dtype, number or size of elements).
    """
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 2:
        raise ProtocolViolation(f"party {sender} sent {type(value).__name__}, not an (m, 32) uint8 array")
    if value.shape != (rows, POINT_BYTES):
        raise ProtocolViolation(f"party {sender} sent {value.shape[0]} elements of {value.shape[1]} bytes, expected {rows} of {POINT_BYTES}")
    return np.ascontiguousarray(value)


async def send_stream(
    session: Session,
    name: str,
    dsts: Sequence[int],
    n: int,
    chunk: int,
    produce: Callable[[int, int], Awaitable[np.ndarray]],
) -> None:
    """Send ``n`` elements to ``dsts`` chunk by chunk; chunk ``[lo, hi)`` is ``await produce(lo, hi)``."""
    for k in range(n_chunks(n, chunk)):
        lo, hi = k * chunk, min(n, (k + 1) * chunk)
        rnd = session.round(name)
        block = await produce(lo, hi)
        await asyncio.gather(*(rnd.send(d, block) for d in dsts))


async def relay_stream(
    session: Session,
    name: str,
    src: int,
    n: int,
    chunk: int,
    transform: Transform,
    patience: Patience,
    *,
    out_name: str | None = None,
    dsts: Sequence[int] = (),
) -> np.ndarray:
    """Receive a stream of ``n`` elements, transform each chunk, optionally forward it.

    Args:
        session: the session (round names are allocated in it).
        name: the incoming stream's round name.
        src: the sending party.
        n: number of elements (agreed in the first round).
        chunk: elements per message.
        transform: applied to each checked chunk (multiply by a scalar, or validate).
        patience: the job's receive deadline.
        out_name: round name of the forwarded stream (with ``dsts``).
        dsts: parties the transformed chunks are forwarded to as they are ready.

    Returns:
        The ``(n, 32)`` uint8 array of transformed elements, in the stream's order.
    """
    out = np.empty((n, POINT_BYTES), dtype=np.uint8)
    for k in range(n_chunks(n, chunk)):
        lo, hi = k * chunk, min(n, (k + 1) * chunk)
        rnd = session.round(name)
        block = await transform(check_points(await patience.recv(rnd, src), hi - lo, src))
        out[lo:hi] = block
        if dsts and out_name is not None:
            fwd = session.round(out_name)
            await asyncio.gather(*(fwd.send(d, block) for d in dsts))
    return out


def check_distinct(points: np.ndarray, sender: int) -> None:
    """Elements that are images of distinct identifiers are distinct.

    Raises:
        ProtocolViolation: a repeated element (a peer duplicated elements of a set).
    """
    if has_repeats(points):
        raise ProtocolViolation(f"party {sender} sent repeated group elements")


def link_rows(own: np.ndarray, own_rows: np.ndarray, received: np.ndarray, sender: int) -> np.ndarray:
    """Rows of this party's elements that appear in ``received``, in ``received``'s order.

    Args:
        own: this party's elements ``(m, 32)`` (distinct), in some order.
        own_rows: the input row of each of them.
        received: ``(r, 32)`` elements the protocol guarantees to be among ``own``.
        sender: who sent ``received``.

    Raises:
        ProtocolViolation: ``received`` repeats an element or has one not in ``own``.
    """
    check_distinct(received, sender)
    at = find_rows(received, own)
    if (at < 0).any():
        raise ProtocolViolation(f"party {sender} sent elements outside this party's set")
    out: np.ndarray = own_rows[at].astype(np.int64)
    return out

"""Joint coin tossing (commit-then-open) and the batch checker of the offline phase.

``coin_toss``: every party commits to a 16-byte seed (SHA-256 commitment with a nonce,
:func:`protocols.spdz.maccheck.commit`), then opens it; the joint seed is the hash of all seeds.
No party can bias it without breaking the commitment (random oracle); a party that opens
something else than it committed to is caught (:class:`~mpc.errors.AbortError`). 2 rounds,
``(n - 1) * (32 + 32)`` bytes per party plus framing.

:class:`Checker` collects what a production batch opens (values with this party's MAC
shares) and the values that must be zero (MAC shares only, never opened), and checks all of
them with one SPDZ2k MAC check (:func:`protocols.spdz.maccheck.mac_check`): every opened value
is also hashed into the transcript, so a party that sent different shares to different parties
is caught as an inconsistent broadcast.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Awaitable

import numpy as np

from mpc import ring128 as r128
from mpc.errors import AbortError, ProtocolViolation
from mpc.prg import PRG, SEED_BYTES
from mpc.ring128 import Z128
from mpc.session import Session
from protocols.spdz.maccheck import commit, mac_check
from protocols.spdz.shares import AuthShare

from protocols.spdz_offline.arith import from_limbs, to_limbs

__all__ = ["coin_toss", "Checker", "open_values"]


def _bytes(msg: object, key: str, length: int, peer: int) -> bytes:
    if not isinstance(msg, dict) or not isinstance(msg.get(key), bytes) or len(msg[key]) != length:
        raise ProtocolViolation(f"party {peer} sent a malformed coin-toss message")
    value: bytes = msg[key]
    return value


async def coin_toss(session: Session, name: str) -> PRG:
    """A PRG on a seed no party controls (2 rounds). Every party calls it (SPMD).

    Raises:
        AbortError: a party opened a seed that does not match its commitment.
        ProtocolViolation: a malformed message.
    """
    sub = session.child(name)
    me = sub.party_id
    seed, nonce = sub.prg.bytes(SEED_BYTES), sub.prg.bytes(SEED_BYTES)
    got = await sub.exchange("commit", {"c": commit(sub.path, me, nonce, seed)})
    commitments = {p: _bytes(m, "c", 32, p) for p, m in got.items()}
    got = await sub.exchange("open", {"s": seed, "n": nonce})
    seeds = {me: seed}
    for p, m in got.items():
        s, n = _bytes(m, "s", SEED_BYTES, p), _bytes(m, "n", SEED_BYTES, p)
        if commit(sub.path, p, n, s) != commitments[p]:
            raise AbortError(f"party {p} opened a coin seed that does not match its commitment")
        seeds[p] = s
    joint = hashlib.sha256(b"spdz-offline-coin\x00" + b"".join(seeds[p] for p in sorted(seeds))).digest()
    return PRG(joint[:SEED_BYTES])


async def open_values(session: Session, name: str, shares: Z128) -> Z128:
    """Open value shares to everyone (1 round, 16 bytes per element per peer): their sum.

    Raises:
        ProtocolViolation: a peer's share has the wrong shape or dtype.
    """
    got = await session.exchange(name, to_limbs(shares))
    total = shares
    want = (*shares.shape, 2)
    for p, msg in got.items():
        if not isinstance(msg, np.ndarray) or msg.dtype != np.uint64 or msg.shape != want:
            raise ProtocolViolation(f"party {p} sent a malformed share to open")
        total = r128.add(total, from_limbs(msg))
    return total


class Checker:
    """Opens and zero-claims of one production batch, checked together by one MAC check."""

    def __init__(self, session: Session, key_share: np.ndarray, behaviour: Any = None) -> None:
        self._session = session
        self._behaviour = behaviour
        self._key = np.asarray(key_share, dtype=np.uint64).reshape(())
        self._opened: list[Z128] = []
        self._macs: list[Z128] = []
        self._transcript = hashlib.sha256(b"spdz-offline-transcript\x00")

    async def open(self, name: str, x: AuthShare) -> Z128:
        """Open ``[x]`` (flattened) to everyone and record it for the check."""
        flat = x.reshape(-1)
        mine = flat.share if self._behaviour is None else self._behaviour.opened_share(name, flat.share)
        value = await open_values(self._session, name, mine)
        self._opened.append(value)
        self._macs.append(flat.mac)
        self._transcript.update(np.ascontiguousarray(to_limbs(value)).data)
        return value.reshape(x.shape)

    def claim_zero(self, z: AuthShare) -> None:
        """Record that ``[z]`` is zero: checked against its MACs without opening its shares."""
        flat = z.reshape(-1)
        self._opened.append(r128.zeros(flat.shape))
        self._macs.append(flat.mac)

    async def check(self) -> None:
        """Run the MAC check on everything recorded (4 rounds).

        Raises:
            MacCheckFailure: a recorded value or MAC is wrong, or broadcasts were inconsistent.
        """
        if not self._opened:
            return
        await mac_check(self._session.child("check"), self._opened, self._macs, self._key, self._transcript.digest())
        self._opened.clear()
        self._macs.clear()


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """``asyncio.gather`` that cancels the siblings when one fails (no orphan rounds)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        raise

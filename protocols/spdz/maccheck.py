"""The SPDZ2k batched MAC check of opened values, with commit-then-open randomness.

Every value the engine opens (``x~_j``, 128 bits, with this party's MAC share ``m_ij``) is
recorded; before anything derived from them is output, the parties check all of them at once
(Cramer et al., CRYPTO 2018, the "MAC check" of the online phase):

1. *seed* — each party draws a 16-byte seed ``t_i`` and sends a commitment to it (this round may
   ride on the preceding open, see :func:`new_seed`); then every party opens ``t_i`` and checks
   the others' commitments. The coefficients ``chi_j`` in Z_2^64 (= Z_2^s) are expanded from
   ``SHA-256(t_0 || ... || t_{n-1})`` by AES-CTR, so no party controls them.
2. *combine* — ``y = sum_j chi_j x~_j`` and ``mu_i = sum_j chi_j m_ij`` (mod 2^128), then
   ``sigma_i = mu_i - alpha_i * y`` (:func:`sigma_share`).
3. *commit* — each party sends a commitment to ``sigma_i`` and to its transcript digest
   ``h_i`` (a hash of every value broadcast to it, e.g. masked inputs, and of the seeds).
4. *open* — each party opens ``sigma_i`` and ``h_i``; every party checks the commitments,
   that all ``h_i`` equal its own (the broadcasts were consistent) and that
   ``sum_i sigma_i = 0 mod 2^128``; otherwise it raises :class:`~mpc.errors.MacCheckFailure`.

Security (active, dishonest majority, abort): if some opened value is wrong modulo 2^64 (the
bits that carry data), the check passes with probability at most ``2^(-s + log2(s + 1))``
= about ``2^-57.9`` for s = 64 (Lemma of SPDZ2k); errors only in the high 64 bits of an opened
value are harmless and may pass. Commitments are SHA-256 of a domain tag, the session path,
the committer's id, a 16-byte random nonce and the value (hiding and binding in the random
oracle model). The ``sigma_i`` reveal nothing: with correct values they are a random sharing of
zero. Rounds: 3, plus 1 when the seed commitment is not sent with the preceding open. Bytes
per party: ``(n - 1) * 128`` (seed and nonce 32, sigma commitment 32, sigma, digest and nonce
64), ``(n - 1) * 160`` with the separate seed commitment, plus framing; independent of the
batch size. Local work: two 128 x 64-bit inner products over every opened element.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError, MacCheckFailure, ProtocolViolation
from mpc.prg import PRG, SEED_BYTES
from mpc.ring128 import Z128
from mpc.session import Session

__all__ = [
    "SeedCommitment",
    "commit",
    "new_seed",
    "combine",
    "sigma_share",
    "z128_bytes",
    "z128_from_bytes",
    "check_zero",
    "mac_check",
]

_DIGEST = 32


def commit(label: str, party_id: int, nonce: bytes, value: bytes) -> bytes:
    """A hash commitment to ``value`` (32 bytes), bound to ``label`` and the committer."""
    h = hashlib.sha256(b"spdz2k-commit\x00")
    for part in (label.encode(), party_id.to_bytes(4, "little"), nonce, value):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class SeedCommitment:
    """This party's coefficient seed for the next check, its nonce and its commitment."""

    seed: bytes
    nonce: bytes
    commitment: bytes


def new_seed(prg: PRG, label: str, party_id: int) -> SeedCommitment:
    """Draw a coefficient seed and commit to it (step 1; the commitment may ride on an open)."""
    seed, nonce = prg.bytes(SEED_BYTES), prg.bytes(SEED_BYTES)
    return SeedCommitment(seed, nonce, commit(label, party_id, nonce, seed))


def z128_bytes(x: Z128) -> bytes:
    """A 0-d element as 16 little-endian bytes."""
    return int(x.lo).to_bytes(8, "little") + int(x.hi).to_bytes(8, "little")


def z128_from_bytes(data: bytes) -> Z128:
    """Inverse of :func:`z128_bytes`."""
    lo = np.asarray(np.uint64(int.from_bytes(data[:8], "little")))
    hi = np.asarray(np.uint64(int.from_bytes(data[8:16], "little")))
    return Z128(lo, hi)


def combine(opened: Sequence[Z128], macs: Sequence[Z128], seed: bytes) -> tuple[Z128, Z128]:
    """``y = sum_j chi_j x~_j`` and ``mu = sum_j chi_j m_j`` with ``chi`` expanded from ``seed``.

    Args:
        opened: the opened values, as flat vectors in opening order.
        macs: this party's MAC shares of them, the same lengths.
        seed: the joint seed (16 bytes); ``chi_j`` are consecutive uint64 words of its stream.

    Returns:
        ``(y, mu)`` as 0-d elements.
    """
    prg = PRG(seed)
    y = r128.zeros(())
    mu = r128.zeros(())
    for x, m in zip(opened, macs, strict=True):
        if x.shape != m.shape:
            raise ConfigError("opened values and MAC shares differ in shape")
        chi = prg.uint64(x.size)
        y = r128.add(y, r128.dot_u64(x.reshape(-1), chi))
        mu = r128.add(mu, r128.dot_u64(m.reshape(-1), chi))
    return y, mu


def sigma_share(y: Z128, mu: Z128, key_share: np.ndarray) -> Z128:
    """``sigma_i = mu_i - alpha_i * y`` (mod 2^128)."""
    return r128.sub(mu, r128.mul_u64(y, np.asarray(key_share, dtype=np.uint64)))


def check_zero(sigmas: Sequence[Z128]) -> None:
    """Raise :class:`MacCheckFailure` unless ``sum sigma_i = 0 mod 2^128``."""
    total = r128.zeros(())
    for s in sigmas:
        total = r128.add(total, s)
    if int(total.lo) != 0 or int(total.hi) != 0:
        raise MacCheckFailure("MAC check failed: an opened value or MAC was tampered with")


def _bytes_field(msg: Any, key: str, length: int, peer: int) -> bytes:
    if not isinstance(msg, dict) or not isinstance(msg.get(key), bytes) or len(msg[key]) != length:
        raise ProtocolViolation(f"party {peer} sent a malformed MAC-check message")
    return msg[key]


async def mac_check(
    session: Session,
    opened: Sequence[Z128],
    macs: Sequence[Z128],
    key_share: np.ndarray,
    transcript: bytes,
    *,
    seed: SeedCommitment | None = None,
    peer_commitments: dict[int, bytes] | None = None,
) -> None:
    """Check every opened value against its MACs (see the module docstring).

    Every party calls this with its own records of the same opens.

    Args:
        session: the engine's session (rounds ``mac-*`` are allocated under it).
        opened: opened values (flat vectors).
        macs: this party's MAC shares of them.
        key_share: ``alpha_i``.
        transcript: this party's digest of every value broadcast to it since the start.
        seed: this party's coefficient seed, if its commitment was already sent.
        peer_commitments: the other parties' seed commitments, if already received.

    Raises:
        MacCheckFailure: a commitment does not open, the transcripts differ, or the MACs do
            not match the opened values.
        ProtocolViolation: a malformed message.
        PeerUnavailable: a silent peer.
    """
    me = session.party_id
    label = session.path
    if seed is None or peer_commitments is None:
        seed = new_seed(session.prg, label, me)
        got = await session.exchange("mac-seed-commit", {"c": seed.commitment})
        peer_commitments = {p: _bytes_field(m, "c", _DIGEST, p) for p, m in got.items()}
    opened_seeds = await session.exchange("mac-seed", {"s": seed.seed, "n": seed.nonce})
    seeds = {me: seed.seed}
    for p, msg in opened_seeds.items():
        s, n = _bytes_field(msg, "s", SEED_BYTES, p), _bytes_field(msg, "n", SEED_BYTES, p)
        if commit(label, p, n, s) != peer_commitments[p]:
            raise MacCheckFailure(f"party {p} opened a seed that does not match its commitment")
        seeds[p] = s
    joint = hashlib.sha256(b"spdz2k-chi\x00" + b"".join(seeds[p] for p in sorted(seeds))).digest()
    y, mu = combine(opened, macs, joint[:SEED_BYTES])
    sigma = z128_bytes(sigma_share(y, mu, key_share))
    digest = hashlib.sha256(transcript + joint).digest()
    nonce = session.prg.bytes(SEED_BYTES)
    got = await session.exchange("mac-sigma-commit", {"c": commit(label, me, nonce, sigma + digest)})
    commitments = {p: _bytes_field(m, "c", _DIGEST, p) for p, m in got.items()}
    got = await session.exchange("mac-sigma", {"z": sigma, "h": digest, "n": nonce})
    sigmas = [z128_from_bytes(sigma)]
    for p, msg in got.items():
        z, h, n = _bytes_field(msg, "z", 16, p), _bytes_field(msg, "h", _DIGEST, p), _bytes_field(msg, "n", SEED_BYTES, p)
        if commit(label, p, n, z + h) != commitments[p]:
            raise MacCheckFailure(f"party {p} opened a MAC-check value that does not match its commitment")
        if h != digest:
            raise MacCheckFailure(f"party {p} saw different broadcast values (inconsistent broadcast)")
        sigmas.append(z128_from_bytes(z))
    check_zero(sigmas)

"""The SPDZ2k batched MAC check of opened values, with commit-then-open randomness.

Every value the engine opens (``x~_j``, 128 bits, with this party's MAC share ``m_ij``) is
recorded; before anything derived from them is output, the parties check all of them at once
(Cramer et al., CRYPTO 2018, the "MAC check" of the online phase), then agree on the verdict:

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
   ``sum_i sigma_i = 0 mod 2^128``.
5. *verdict* — each party sends whether it found a problem and a digest of its whole view of
   the check (every commitment, seed, ``sigma_i`` and ``h_i`` as it received them). Every
   party raises :class:`~mpc.errors.MacCheckFailure` unless every verdict is "ok" and every
   view digest equals its own. A party that found a problem in steps 1-4 (or a malformed
   message: :class:`~mpc.errors.ProtocolViolation` at that party) does not stop there: it
   goes on with dummy values, sends "not ok" (having revealed a random ``sigma_i`` instead of
   its own once it has seen cheating) and raises after sending.

Unanimous abort: altering any message of steps 1-4 on any link (or an opened value before
them) makes every honest party raise, since the receiver's view or verdict differs. What
remains is the last message problem, which no protocol without a broadcast channel with
agreement avoids (not possible against a dishonest majority): a verdict message altered or
withheld on one link makes only its receiver abort (``MacCheckFailure``, or
``PeerUnavailable`` when it is withheld) while the others may output. No honest party ever
outputs a wrong value.

Security (active, dishonest majority, abort): if some opened value is wrong modulo 2^64 (the
bits that carry data), the check passes with probability at most ``2^(-s + log2(s + 1))``
= about ``2^-57.9`` for s = 64 (Lemma of SPDZ2k); errors only in the high 64 bits of an opened
value are harmless and may pass. Commitments are SHA-256 of a domain tag, the session path,
the committer's id, a 16-byte random nonce and the value (hiding and binding in the random
oracle model). The ``sigma_i`` reveal nothing: with correct values they are a random sharing of
zero. Rounds: 4, plus 1 when the seed commitment is not sent with the preceding open. Bytes
per party: ``(n - 1) * 161`` (seed and nonce 32, sigma commitment 32, sigma, digest and nonce
64, verdict 33), ``(n - 1) * 193`` with the separate seed commitment, plus framing; independent
of the batch size. Local work: two 128 x 64-bit inner products over every opened element.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError, MacCheckFailure, MPCError, ProtocolViolation
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
        opened: the opened values in opening order (any shapes; read flat).
        macs: this party's MAC shares of them in the same order, possibly cut into other
            pieces (the total sizes must agree).

    Raises:
        ConfigError: the sizes differ.
        seed: the joint seed (16 bytes); ``chi_j`` are consecutive uint64 words of its stream.

    Returns:
        ``(y, mu)`` as 0-d elements.
    """
    if sum(x.size for x in opened) != sum(m.size for m in macs):
        raise ConfigError("opened values and MAC shares differ in size")
    chi = PRG(seed).uint64(sum(x.size for x in opened))
    return r128.dot_u64_parts(opened, chi), r128.dot_u64_parts(macs, chi)


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


class _Verdict:
    """One party's running view of a MAC check: what it saw, and the first problem it found.

    A problem does not stop the check: the party goes on (with dummy values where a message
    was unusable) so that it can tell everyone in the verdict round, and raises only then.
    """

    def __init__(self, label: str) -> None:
        self.view = hashlib.sha256(b"spdz2k-check-view\x00" + len(label).to_bytes(4, "little") + label.encode())
        self.problem: MPCError | None = None

    def fail(self, problem: MPCError) -> None:
        if self.problem is None:
            self.problem = problem

    def field(self, msg: Any, key: str, length: int, peer: int) -> bytes:
        """A field of a peer's message (zeros, and a recorded violation, if malformed)."""
        try:
            return _bytes_field(msg, key, length, peer)
        except ProtocolViolation as exc:
            self.fail(exc)
            return bytes(length)

    def record(self, step: str, values: dict[int, bytes]) -> None:
        """Hash what every party sent in ``step``, as this party saw it (its own included)."""
        for p in sorted(values):
            part = f"{step}|{p}|".encode() + values[p]
            self.view.update(len(part).to_bytes(4, "little") + part)


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
    """Check every opened value against its MACs (see the module docstring); abort unanimously.

    Every party calls this with its own records of the same opens. A party that finds a
    problem (a commitment that does not open, different broadcast transcripts, a non-zero
    sum, a malformed message) carries on to the verdict round, tells every party, and raises;
    every party that hears of a problem, or whose view of the check differs from another's,
    raises :class:`MacCheckFailure` too. So a tampered check message (before the verdict
    round) makes every honest party abort.

    Args:
        session: the engine's session (rounds ``mac-*`` are allocated under it).
        opened: opened values (flat vectors).
        macs: this party's MAC shares of them.
        key_share: ``alpha_i``.
        transcript: this party's digest of every value broadcast to it since the start.
        seed: this party's coefficient seed, if its commitment was already sent.
        peer_commitments: the other parties' seed commitments, if already received.

    Raises:
        MacCheckFailure: a commitment does not open, the transcripts differ, the MACs do not
            match the opened values, or another party reported a problem or saw a different
            check.
        ProtocolViolation: a malformed message (at the party that received it; the others
            raise ``MacCheckFailure``).
        PeerUnavailable: a silent peer.
    """
    me = session.party_id
    label = session.path
    v = _Verdict(label)
    if seed is None or peer_commitments is None:
        seed = new_seed(session.prg, label, me)
        got = await session.exchange("mac-seed-commit", {"c": seed.commitment})
        peer_commitments = {p: v.field(m, "c", _DIGEST, p) for p, m in got.items()}
    v.record("seed-commit", {**peer_commitments, me: seed.commitment})

    # 1. coefficients from every party's committed seed
    got = await session.exchange("mac-seed", {"s": seed.seed, "n": seed.nonce})
    seeds = {me: seed.seed}
    for p, msg in got.items():
        s, n = v.field(msg, "s", SEED_BYTES, p), v.field(msg, "n", SEED_BYTES, p)
        if commit(label, p, n, s) != peer_commitments.get(p):
            v.fail(MacCheckFailure(f"party {p} opened a seed that does not match its commitment"))
        seeds[p] = s
    v.record("seed", seeds)
    joint = hashlib.sha256(b"spdz2k-chi\x00" + b"".join(seeds[p] for p in sorted(seeds))).digest()

    # 2-3. combine, commit to sigma_i and the broadcast digest
    if v.problem is None:
        y, mu = combine(opened, macs, joint[:SEED_BYTES])
        sigma = z128_bytes(sigma_share(y, mu, key_share))
    else:
        sigma = session.prg.bytes(16)  # a party that already saw cheating reveals nothing real
    digest = hashlib.sha256(transcript + joint).digest()
    nonce = session.prg.bytes(SEED_BYTES)
    mine = commit(label, me, nonce, sigma + digest)
    got = await session.exchange("mac-sigma-commit", {"c": mine})
    commitments = {p: v.field(m, "c", _DIGEST, p) for p, m in got.items()}
    v.record("sigma-commit", {**commitments, me: mine})

    # 4. open sigma_i and h_i; check
    got = await session.exchange("mac-sigma", {"z": sigma, "h": digest, "n": nonce})
    sigmas = [z128_from_bytes(sigma)]
    opened_sigmas = {me: sigma + digest}
    for p, msg in got.items():
        z, h, n = v.field(msg, "z", 16, p), v.field(msg, "h", _DIGEST, p), v.field(msg, "n", SEED_BYTES, p)
        opened_sigmas[p] = z + h
        if commit(label, p, n, z + h) != commitments[p]:
            v.fail(MacCheckFailure(f"party {p} opened a MAC-check value that does not match its commitment"))
        if h != digest:
            v.fail(MacCheckFailure(f"party {p} saw different broadcast values (inconsistent broadcast)"))
        sigmas.append(z128_from_bytes(z))
    v.record("sigma", opened_sigmas)
    if v.problem is None:
        try:
            check_zero(sigmas)
        except MacCheckFailure as exc:
            v.fail(exc)

    # 5. verdicts: everyone learns whether anyone found a problem or saw a different check
    await _verdict_round(session, v)


async def _verdict_round(session: Session, v: _Verdict) -> None:
    """Send ``(ok, view digest)`` to everyone; raise unless every party is ok with one view."""
    view = v.view.digest()
    payload = {"ok": v.problem is None, "d": view}
    if v.problem is not None:
        rnd = session.round("mac-verdict")
        await asyncio.gather(*(rnd.send(p, payload) for p in session.others))
        raise v.problem
    got = await session.exchange("mac-verdict", payload)
    for p, msg in sorted(got.items()):
        ok = msg.get("ok") if isinstance(msg, dict) else None
        d = msg.get("d") if isinstance(msg, dict) else None
        if not isinstance(ok, bool) or not isinstance(d, bytes) or len(d) != _DIGEST:
            raise MacCheckFailure(f"party {p} sent a malformed verdict")
        if not ok:
            raise MacCheckFailure(f"party {p} reported a failed MAC check")
        if d != view:
            raise MacCheckFailure(f"party {p} saw a different MAC check (a check message was altered)")

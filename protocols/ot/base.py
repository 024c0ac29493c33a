"""Base oblivious transfer: Masny-Rindal endemic OT over ristretto255.

``n`` random 1-out-of-2 OTs between a *sender*, who gets key pairs ``(k0_j, k1_j)``, and a
*receiver* with choice bits ``c_j``, who gets ``k_{c_j, j}``; keys are 16 bytes (AES-128 seeds
for OT extension). Follows Masny and Rindal, *Endemic Oblivious Transfer* (ACM CCS 2019): the
receiver hides a Diffie-Hellman public key behind a *programmable-once public function* (POPF)
built from a hash onto the group, and the sender answers with its own DH key.

Protocol (``G`` the ristretto255 generator, ``Hp`` a hash onto the group — libsodium's
``crypto_core_ristretto255_from_hash`` of SHA-512 — ``KDF`` SHA-256; every hash input starts
with a domain string, the session id and the sub-protocol path, and the OT index ``j``):

1. *receiver* (round ``mr-r``): for each ``j``, draw a scalar ``b_j`` and a uniform group
   element ``s_j``, set ``r_{1-c_j, j} = s_j`` and ``r_{c_j, j} = b_j G - Hp(j, c_j, s_j)``;
   send all ``(r_{0,j}, r_{1,j})``. (``Eval(phi_j, i) = r_{i,j} + Hp(j, i, r_{1-i,j})``, so
   ``Eval(phi_j, c_j) = b_j G``; the other evaluation is a group element whose discrete log
   nobody knows.)
2. *sender* (round ``mr-s``): check every received element (canonical encoding via
   ``crypto_core_ristretto255_is_valid_point`` and not the identity), draw one scalar ``a``,
   send ``A = a G``; output ``k_{i,j} = KDF(j, i, A, r_{0,j}, r_{1,j}, a Eval(phi_j, i))``.
3. *receiver*: check ``A`` the same way; output ``k_{c_j,j} = KDF(j, c_j, A, r_{0,j}, r_{1,j},
   b_j A)``.

Threat model: active (malicious) adversary corrupting either party, static corruption. In the
random-oracle model for ``Hp`` and ``KDF`` and under the computational Diffie-Hellman assumption
in ristretto255 (a prime-order group, so no small-subgroup or cofactor issues), the protocol
UC-realizes *endemic* OT (MR19, Thm. 2 with the hash-based POPF): a corrupt party may choose
its own outputs (a corrupt receiver its choice bit and key, a corrupt sender its key pair),
but learns nothing about the honest party's. Endemic random OT is exactly what the base OTs of
IKNP/KOS extension need. Passive security needs only the same assumptions. One sender scalar
``a`` serves the whole batch (as the OT index ``j`` and the transcript enter every KDF call,
the ``n`` instances reduce to multi-instance CDH, which is tight by random self-reducibility).
What is *not* provided: the protocol does not hide that a base OT happened, and it does not
authenticate the peer (the transport does).

Cost for ``n`` OTs: 2 rounds (R->S then S->R); the receiver sends ``64 n`` bytes, the sender
32 bytes (plus framing). Sender: ``2n`` hash-to-group, ``2n + 1`` scalar multiplications;
receiver: ``2n`` hash-to-group (one of them the uniform ``s_j``), ``2n`` scalar
multiplications. No preprocessing. (libsodium works per element: the loops over the ``n`` base
OTs are justified, ``n`` is 128 per session, pair and direction.)

Errors: a received element that is not a canonical ristretto255 encoding, is the identity, or
has the wrong type or shape, raises :class:`~mpc.errors.ProtocolViolation`; a silent peer
raises :class:`~mpc.errors.PeerUnavailable`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from protocols.sodium import rbcl

from mpc.checks import check_int
from mpc.errors import ConfigError, ProtocolViolation
from mpc.session import Session

__all__ = [
    "KEY_BYTES",
    "POINT_BYTES",
    "base_ot_send",
    "base_ot_recv",
    "check_point",
    "receiver_choose",
    "sender_keys",
    "receiver_keys",
]

KEY_BYTES = 16
POINT_BYTES = 32
_IDENTITY = bytes(POINT_BYTES)
_DOMAIN = b"mpc/ot/base/masny-rindal/v1"


def _frame(*parts: bytes) -> bytes:
    """Length-prefixed concatenation (unambiguous hash input)."""
    return b"".join(len(p).to_bytes(4, "little") + p for p in parts)


def _hash_to_point(context: bytes, j: int, i: int, point: bytes) -> bytes:
    digest = hashlib.sha512(_frame(_DOMAIN, b"popf", context, j.to_bytes(8, "little"), bytes([i]), point)).digest()
    return bytes(rbcl.crypto_core_ristretto255_from_hash(digest))


def _kdf(context: bytes, j: int, i: int, a_pub: bytes, r0: bytes, r1: bytes, shared: bytes) -> bytes:
    msg = _frame(_DOMAIN, b"kdf", context, j.to_bytes(8, "little"), bytes([i]), a_pub, r0, r1, shared)
    return hashlib.sha256(msg).digest()[:KEY_BYTES]


def _scalar(raw: bytes) -> bytes:
    """A uniform scalar mod the group order from 64 random bytes."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(raw))


def _mul(scalar: bytes, point: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, point))
    except (RuntimeError, ValueError) as exc:  # the product is the identity
        raise ProtocolViolation("base OT: degenerate group element") from exc


def check_point(value: bytes) -> bytes:
    """Check a received ristretto255 element: canonical encoding, not the identity.

    Raises:
        ProtocolViolation: otherwise.
    """
    if not isinstance(value, (bytes, bytearray)) or len(value) != POINT_BYTES:
        raise ProtocolViolation("base OT: a group element must be 32 bytes")
    value = bytes(value)
    # RFC 9496 requires the top bit of a canonical encoding to be 0; the libsodium bundled with
    # rbcl does not check it, so two encodings would decode to one element.
    if value[31] & 0x80 or value == _IDENTITY or not rbcl.crypto_core_ristretto255_is_valid_point(value):
        raise ProtocolViolation("base OT: invalid or identity group element")
    return value


def _points(value: Any, n: int, what: str) -> list[bytes]:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.shape != (n, POINT_BYTES):
        raise ProtocolViolation(f"base OT: {what} must be an ({n}, 32) uint8 array")
    return [check_point(row.tobytes()) for row in value]


def _context(session: Session, sender: int, receiver: int) -> bytes:
    return _frame(session.session_id.encode(), session.path.encode(), sender.to_bytes(4, "little"), receiver.to_bytes(4, "little"))


def _check_choices(choices: Any) -> np.ndarray:
    c = np.asarray(choices)
    if c.ndim != 1 or c.size == 0 or c.dtype.kind not in "biu" or np.any((c != 0) & (c != 1)):
        raise ConfigError("base OT choices must be a non-empty 1-d array of 0/1")
    return c.astype(np.uint8)


# -- pure round functions --------------------------------------------------------------------


def receiver_choose(context: bytes, choices: np.ndarray, randomness: bytes) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Step 1: the receiver's secret scalars and its message.

    Args:
        context: the hash context (session and path).
        choices: (n,) 0/1 uint8.
        randomness: ``128 n`` secret random bytes.

    Returns:
        ``(b, r0, r1)``: the n secret scalars and the two (n, 32) uint8 message arrays.
    """
    n = choices.shape[0]
    if len(randomness) != 128 * n:
        raise ConfigError("receiver_choose needs 128 random bytes per OT")
    scalars: list[bytes] = []
    r = np.empty((2, n, POINT_BYTES), dtype=np.uint8)
    for j in range(n):  # libsodium is per element; n = 128 base OTs
        b = _scalar(randomness[128 * j : 128 * j + 64])
        s = bytes(rbcl.crypto_core_ristretto255_from_hash(randomness[128 * j + 64 : 128 * (j + 1)]))
        c = int(choices[j])
        mine = rbcl.crypto_core_ristretto255_sub(
            rbcl.crypto_scalarmult_ristretto255_base(b), _hash_to_point(context, j, c, s)
        )
        r[1 - c, j] = np.frombuffer(s, dtype=np.uint8)
        r[c, j] = np.frombuffer(bytes(mine), dtype=np.uint8)
        scalars.append(b)
    return scalars, r[0], r[1]


def sender_keys(context: bytes, r0: Any, r1: Any, n: int, randomness: bytes) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Step 2: check the receiver's message, answer with ``A`` and derive both keys of every OT.

    Args:
        context: the hash context.
        r0, r1: the receiver's (n, 32) uint8 arrays, as received.
        n: the number of OTs expected.
        randomness: 64 secret random bytes.

    Returns:
        ``(A, k0, k1)``: the 32-byte public key to send and the (n, 16) uint8 key arrays.

    Raises:
        ProtocolViolation: a received element is malformed, invalid or the identity.
    """
    p0 = _points(r0, n, "r0")
    p1 = _points(r1, n, "r1")
    a = _scalar(randomness)
    a_pub = bytes(rbcl.crypto_scalarmult_ristretto255_base(a))
    keys = np.empty((2, n, KEY_BYTES), dtype=np.uint8)
    for j in range(n):  # libsodium is per element; n = 128 base OTs
        pair = (p0[j], p1[j])
        for i in (0, 1):
            try:
                ev = bytes(rbcl.crypto_core_ristretto255_add(pair[i], _hash_to_point(context, j, i, pair[1 - i])))
            except (RuntimeError, ValueError) as exc:
                raise ProtocolViolation("base OT: degenerate group element") from exc
            if ev == _IDENTITY:
                raise ProtocolViolation("base OT: degenerate group element")
            keys[i, j] = np.frombuffer(_kdf(context, j, i, a_pub, p0[j], p1[j], _mul(a, ev)), dtype=np.uint8)
    return a_pub, keys[0], keys[1]


def receiver_keys(
    context: bytes, scalars: list[bytes], choices: np.ndarray, r0: np.ndarray, r1: np.ndarray, a_pub: Any
) -> np.ndarray:
    """Step 3: check ``A`` and derive the chosen keys.

    Returns:
        (n, 16) uint8.

    Raises:
        ProtocolViolation: ``A`` is malformed, invalid or the identity.
    """
    if not isinstance(a_pub, np.ndarray) or a_pub.dtype != np.uint8 or a_pub.shape != (POINT_BYTES,):
        raise ProtocolViolation("base OT: A must be a (32,) uint8 array")
    a_bytes = check_point(a_pub.tobytes())
    n = len(scalars)
    out = np.empty((n, KEY_BYTES), dtype=np.uint8)
    for j in range(n):  # libsodium is per element; n = 128 base OTs
        shared = _mul(scalars[j], a_bytes)
        key = _kdf(context, j, int(choices[j]), a_bytes, r0[j].tobytes(), r1[j].tobytes(), shared)
        out[j] = np.frombuffer(key, dtype=np.uint8)
    return out


# -- async steps -----------------------------------------------------------------------------


async def base_ot_send(session: Session, peer: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``n`` random base OTs as the sender (``peer`` runs :func:`base_ot_recv`).

    Args:
        session: this party's session.
        peer: the receiver's party id.
        n: number of OTs (>= 1).

    Returns:
        ``(k0, k1)``: (n, 16) uint8 key arrays.

    Raises:
        ConfigError: bad ``n`` or peer.
        ProtocolViolation: the receiver's message is malformed or has invalid elements.
        PeerUnavailable: the receiver stayed silent.
    """
    check_int(n, "number of base OTs", lo=1, message="number of base OTs must be a positive int")
    sub = session.child("base_ot")
    context = _context(sub, session.party_id, peer)
    rnd_r, rnd_s = sub.round("mr-r"), sub.round("mr-s")
    msg = await rnd_r.recv(peer)
    if not isinstance(msg, dict) or set(msg) != {"r0", "r1"}:
        raise ProtocolViolation("base OT: malformed receiver message")
    a_pub, k0, k1 = sender_keys(context, msg["r0"], msg["r1"], n, session.prg.bytes(64))
    await rnd_s.send(peer, np.frombuffer(a_pub, dtype=np.uint8).copy())
    return k0, k1


async def base_ot_recv(session: Session, peer: int, choices: Any) -> np.ndarray:
    """Run random base OTs as the receiver with ``choices`` (``peer`` runs :func:`base_ot_send`).

    Args:
        session: this party's session.
        peer: the sender's party id.
        choices: (n,) array of 0/1.

    Returns:
        (n, 16) uint8: the chosen keys.

    Raises:
        ConfigError: bad choices or peer.
        ProtocolViolation: the sender's ``A`` is malformed, invalid or the identity.
        PeerUnavailable: the sender stayed silent.
    """
    c = _check_choices(choices)
    sub = session.child("base_ot")
    context = _context(sub, peer, session.party_id)
    rnd_r, rnd_s = sub.round("mr-r"), sub.round("mr-s")
    scalars, r0, r1 = receiver_choose(context, c, session.prg.bytes(128 * c.shape[0]))
    await rnd_r.send(peer, {"r0": r0, "r1": r1})
    a_pub = await rnd_s.recv(peer)
    return receiver_keys(context, scalars, c, r0, r1, a_pub)

"""Key agreement, key derivation, authenticated encryption and commitments for SecAgg.

Vetted primitives only, from ``cryptography``: X25519 (RFC 7748) for key agreement, HKDF-SHA256
(RFC 5869) to turn a shared secret into independent keys and seeds (domain-separated by a label
and the run's context), AES-256-GCM for the encrypted share messages relayed by the aggregator,
SHA-256 for commitments. Private keys are 32 bytes drawn from the caller's :class:`~mpc.prg.PRG`.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpc.errors import ConfigError, ProtocolViolation
from mpc.prg import PRG

__all__ = [
    "KEY_BYTES",
    "SEED_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "keypair",
    "public_key",
    "private_key",
    "agree",
    "derive",
    "seal",
    "open_sealed",
    "commit",
    "party_bytes",
]

KEY_BYTES = 32
SEED_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16


def party_bytes(*ids: int) -> bytes:
    """Party ids as fixed-width big-endian bytes, for binding into labels and associated data."""
    return b"".join(int(i).to_bytes(4, "big") for i in ids)


def keypair(prg: PRG) -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(private, public)``, 32 bytes each."""
    sk = prg.bytes(KEY_BYTES)
    return sk, public_key(sk)


def public_key(sk: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key."""
    if len(sk) != KEY_BYTES:
        raise ConfigError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes_raw()


def private_key(sk: bytes) -> X25519PrivateKey:
    """The key object of a 32-byte X25519 private key (parse once, agree many times)."""
    if len(sk) != KEY_BYTES:
        raise ConfigError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(sk)


def agree(sk: bytes | X25519PrivateKey, peer_pk: bytes) -> bytes:
    """X25519 shared secret of our private key (bytes or a parsed key) and a peer's public key.

    Raises:
        ProtocolViolation: the peer's public key is malformed or of small order (the shared
            secret would be all zeros).
    """
    if len(peer_pk) != KEY_BYTES:
        raise ProtocolViolation("an X25519 public key is 32 bytes")
    key = private_key(sk) if isinstance(sk, (bytes, bytearray)) else sk
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    except ValueError:
        raise ProtocolViolation("invalid X25519 public key") from None


def derive(secret: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-SHA256 of ``secret``; ``label`` and ``context`` separate every use."""
    info = label.encode() + b"\x00" + context
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def seal(key: bytes, plaintext: bytes, associated_data: bytes, prg: PRG) -> bytes:
    """AES-256-GCM encryption with a fresh random nonce; returns ``nonce || ciphertext || tag``."""
    nonce = prg.bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Decrypt and authenticate a message made by :func:`seal`.

    Raises:
        ProtocolViolation: the message was tampered with, truncated, or bound to other
            associated data (another sender, receiver or run).
    """
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolViolation("sealed message too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise ProtocolViolation("share message failed authentication") from None


def commit(value: bytes, label: str, context: bytes) -> bytes:
    """A SHA-256 commitment to a high-entropy ``value`` (hiding because the value is random)."""
    return hashlib.sha256(label.encode() + b"\x00" + context + b"\x00" + value).digest()

"""GF(2^128) arithmetic for the KOS consistency check: polynomial hashing of IKNP rows.

Field: GF(2)[x] / (x^128 + x^7 + x^2 + x + 1). An element is a Python ``int`` (bit ``k`` =
coefficient of ``x^k``) or, in bulk, an (n, 16) uint8 / (n, 2) uint64 array read little-endian
(bit ``k`` of a row = bit ``k % 8`` of byte ``k // 8`` = coefficient of ``x^k``), which is the
layout of OT-extension rows.

:func:`ghash` (below) is what the KOS check uses. :func:`poly_hash` is the numpy-only reference
for the same kind of hash: it evaluates ``sum_i alpha^i v_i`` for a whole batch with multiplications by
*constants* only: a binary tree (``v_{2k} + beta * v_{2k+1}``, then ``beta <- beta^2``), each
level one vectorized multiplication by ``beta`` through sixteen 256-entry tables (the product
by a constant is GF(2)-linear, so it is the XOR of one table entry per input byte). Total
work: ``n`` constant multiplications, i.e. 16 table lookups per element.

:func:`ghash` evaluates the same kind of polynomial hash, ``sum_i h^(n+1-i) v_i`` with the
powers in reverse order, through AES-GCM's GHASH in OpenSSL (carry-less multiplication in
hardware, about 1 ns per 16-byte row against ~60 ns for the table method): the rows are fed as
GCM *associated data* under a one-time key ``K``; ``h`` is GCM's hash key ``AES_K(0)``. GCM
writes field elements with the bits of each byte reversed (coefficient of ``x^0`` is the most
significant bit of byte 0); :func:`reflect` converts, and is a field isomorphism between the two
encodings (the modulus is the same), so every result below is in this module's encoding.

Side channels: the table lookups index memory by the data (a party's own secret OT rows), so
their cache footprint depends on secrets. An attacker sharing the CPU with a party (cache-timing
side channels) is outside the threat model of this runtime, as it is for numpy code generally;
over the network only message contents and sizes are observable, and neither depends on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.errors import ConfigError

__all__ = [
    "MODULUS",
    "mul",
    "from_bytes",
    "to_bytes",
    "const_tables",
    "mul_const",
    "poly_hash",
    "poly_hash_bits",
    "reflect",
    "ghash",
    "ghash_key",
    "ghash_bits",
]

MODULUS = (1 << 128) | (1 << 7) | (1 << 2) | (1 << 1) | 1
_MASK = (1 << 128) - 1
_LOW = (1 << 7) | (1 << 2) | (1 << 1) | 1
_M64 = (1 << 64) - 1


def mul(a: int, b: int) -> int:
    """Product of two field elements (Python ints in [0, 2^128))."""
    if not (0 <= a <= _MASK and 0 <= b <= _MASK):
        raise ConfigError("GF(2^128) elements are ints in [0, 2^128)")
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a >> 128:
            a = (a & _MASK) ^ _LOW
    return r


def from_bytes(data: bytes | np.ndarray) -> int:
    """A 16-byte little-endian encoding to an element."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if len(raw) != 16:
        raise ConfigError("a GF(2^128) element is 16 bytes")
    return int.from_bytes(raw, "little")


def to_bytes(a: int) -> np.ndarray:
    """An element to its (16,) uint8 little-endian encoding."""
    return np.frombuffer(a.to_bytes(16, "little"), dtype=np.uint8).copy()


def const_tables(beta: int) -> np.ndarray:
    """Tables for multiplying by ``beta``: ``T[p, v] = (v x^{8p}) beta`` as (16, 256) complex128.

    (complex128 is only a 16-byte container so that one ``take`` moves a whole element.)
    """
    basis = []
    x = beta
    for _ in range(128):  # the 128 products x^k * beta, one Python int op each
        basis.append(x)
        x <<= 1
        if x >> 128:
            x = (x & _MASK) ^ _LOW
    e = np.array([[v & _M64, v >> 64] for v in basis], dtype=np.uint64).reshape(16, 8, 2)
    t = np.zeros((16, 256, 2), dtype=np.uint64)
    for k in range(8):  # subset XORs by doubling, all 16 byte positions at once
        t[:, 1 << k : 2 << k] = t[:, : 1 << k] ^ e[:, k][:, None, :]
    return t.view(np.complex128).reshape(16, 256)


def mul_const(v: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """``v * beta`` for every row of ``v`` ((n, 2) uint64), with ``tables = const_tables(beta)``."""
    cols = np.ascontiguousarray(v.view(np.uint8).reshape(-1, 16).T)  # (16, n): byte p of each row
    out = tables[0].take(cols[0]).view(np.uint64).reshape(-1, 2)
    for p in range(1, 16):  # 16 byte positions, each a vectorized lookup over all rows
        out ^= tables[p].take(cols[p]).view(np.uint64).reshape(-1, 2)
    return out


def poly_hash(rows: np.ndarray, alpha: int) -> int:
    """``sum_i alpha^i rows_i`` over GF(2^128).

    Args:
        rows: (n, 16) uint8 or (n, 2) uint64 elements.
        alpha: the evaluation point.

    Returns:
        The hash, an int.
    """
    if rows.dtype == np.uint8 and rows.ndim == 2 and rows.shape[1] == 16:
        v = np.ascontiguousarray(rows).view(np.uint64)
    elif rows.dtype == np.uint64 and rows.ndim == 2 and rows.shape[1] == 2:
        v = np.ascontiguousarray(rows)
    else:
        raise ConfigError("poly_hash needs (n, 16) uint8 or (n, 2) uint64 rows")
    if v.shape[0] == 0:
        return 0
    beta = alpha
    # One iteration per tree level (log2 n levels), each vectorized over the level.
    while v.shape[0] > 1:
        if v.shape[0] % 2:
            v = np.concatenate([v, np.zeros((1, 2), dtype=np.uint64)])
        v = v[0::2] ^ mul_const(v[1::2], const_tables(beta))
        beta = mul(beta, beta)
    return int(v[0, 0]) | (int(v[0, 1]) << 64)


def poly_hash_bits(packed: np.ndarray, nbits: int, alpha: int) -> int:
    """``sum_{i < nbits} alpha^i b_i`` for bits ``b`` packed little-endian in ``packed``.

    Eight bits at a time: byte ``p`` contributes ``alpha^{8p} * L[byte]`` with the table
    ``L[v] = sum_k v_k alpha^k``, so this is :func:`poly_hash` of n/8 elements at ``alpha^8``.
    """
    nbytes = -(-nbits // 8)
    data = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if data.size < nbytes:
        raise ConfigError("not enough packed bits")
    data = data[:nbytes].copy()
    if nbits % 8:
        data[-1] &= (1 << (nbits % 8)) - 1
    powers = [1]
    for _ in range(7):
        powers.append(mul(powers[-1], alpha))
    e = np.array([[v & _M64, v >> 64] for v in powers], dtype=np.uint64)
    table = np.zeros((256, 2), dtype=np.uint64)
    for k in range(8):
        table[1 << k : 2 << k] = table[: 1 << k] ^ e[k]
    alpha8 = mul(powers[7], alpha)
    return poly_hash(table[data], alpha8)



_REVERSE = bytes(int(f"{v:08b}"[::-1], 2) for v in range(256))
_GCM_NONCE = bytes(12)
_GCM_J0 = _GCM_NONCE + (1).to_bytes(4, "big")


def reflect(a: int) -> int:
    """Reverse the bits of every byte of a 16-byte little-endian element (GCM <-> this encoding)."""
    return int.from_bytes(a.to_bytes(16, "little").translate(_REVERSE), "little")


def _block(raw: bytes) -> int:
    """A 16-byte GCM block as an element of this module's encoding."""
    return reflect(int.from_bytes(raw, "little"))


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
        raise ConfigError("a GHASH key is 16 bytes")
    return bytes(key)


def ghash_key(key: bytes) -> int:
    """The hash point ``h = AES_K(0)`` of :func:`ghash` under ``key``, in this module's encoding."""
    ecb = Cipher(algorithms.AES(_check_key(key)), modes.ECB()).encryptor()
    return _block(ecb.update(bytes(16)))


def ghash(rows: np.ndarray, key: bytes) -> int:
    """``sum_{i<n} h^(n+1-i) v_i`` over GF(2^128), ``h = ghash_key(key)``, by AES-GCM's GHASH.

    ``v_i`` is row ``i`` read as GCM reads a block (``reflect`` of the row in this module's
    encoding; a bit permutation, so the hash is GF(2)-linear in the rows, as the KOS check needs:
    ``ghash(a ^ b) = ghash(a) ^ ghash(b)``). The rows are GCM's associated data under ``key``;
    the tag minus its two fixed terms (``E_K(J0)`` and the length block times ``h``) is the sum.
    Exponents run from ``n + 1`` down to 2: all distinct and nonzero.

    Args:
        rows: (n, 16) uint8 or (n, 2) uint64 rows.
        key: a one-time 16-byte AES key (e.g. a Fiat-Shamir challenge).

    Returns:
        The hash, an int.
    """
    if not isinstance(rows, np.ndarray) or rows.ndim != 2 or rows.dtype not in (np.uint8, np.uint64) or rows.shape[1] * rows.itemsize != 16:
        raise ConfigError("ghash needs (n, 16) uint8 or (n, 2) uint64 rows")
    key = _check_key(key)
    if rows.shape[0] == 0:
        return 0
    data = np.ascontiguousarray(rows)
    return _ghash_chunks([memoryview(data).cast("B")], data.nbytes, key)


def _ghash_chunks(chunks: Iterable[memoryview], nbytes: int, key: bytes) -> int:
    """:func:`ghash` of the concatenation of ``chunks`` (whole blocks each, ``nbytes`` in all).

    GCM takes its associated data in several calls as one string, so the rows can be fed in
    pieces (e.g. built in a reused, cache-resident buffer).
    """
    enc = Cipher(algorithms.AES(key), modes.GCM(_GCM_NONCE)).encryptor()
    for chunk in chunks:  # a loop over chunks of rows (each one GHASH pass in OpenSSL)
        enc.authenticate_additional_data(chunk)
    enc.finalize()
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = _block(ecb.update(bytes(16)))
    j0 = _block(ecb.update(_GCM_J0))
    length = _block((8 * nbytes).to_bytes(8, "big") + bytes(8))  # len(A) || len(C) = 0, bits
    return _block(enc.tag) ^ j0 ^ mul(length, h)


_BITS_CHUNK = 1 << 14
"""Rows per piece of :func:`ghash_bits` (a 256 KB buffer, reused)."""


def ghash_bits(bits: np.ndarray, key: bytes) -> int:
    """``sum_{i<n} h^(n+1-i) b_i`` for 0/1 values ``b`` of shape (n,): :func:`ghash` of the rows
    ``b_i * 1`` (the field's one is the GCM block with byte 0 = 0x80)."""
    b = np.asarray(bits).reshape(-1)
    key = _check_key(key)
    if b.size == 0:
        return 0
    rows = np.zeros((min(b.size, _BITS_CHUNK), 16), dtype=np.uint8)

    def chunks() -> Iterator[memoryview]:
        for lo in range(0, b.size, _BITS_CHUNK):  # the buffer is reused: fed before refilled
            part = b[lo : lo + _BITS_CHUNK]
            np.left_shift(part.astype(np.uint8, copy=False), np.uint8(7), out=rows[: part.size, 0])
            yield memoryview(rows[: part.size]).cast("B")

    return _ghash_chunks(chunks(), 16 * b.size, key)

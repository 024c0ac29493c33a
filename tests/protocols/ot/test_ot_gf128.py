"""GF(2^128) arithmetic and the polynomial hash of the KOS check, against naive Python."""

from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.ot import gf128


def elem(prg: PRG) -> int:
    return int.from_bytes(prg.bytes(16), "little")


def test_mul_field_laws(prg: PRG) -> None:
    a, b, c = elem(prg), elem(prg), elem(prg)
    assert gf128.mul(a, b) == gf128.mul(b, a)
    assert gf128.mul(a, b ^ c) == gf128.mul(a, b) ^ gf128.mul(a, c)
    assert gf128.mul(gf128.mul(a, b), c) == gf128.mul(a, gf128.mul(b, c))
    assert gf128.mul(a, 1) == a and gf128.mul(a, 0) == 0
    # x^127 * x = x^128 = x^7 + x^2 + x + 1
    assert gf128.mul(1 << 127, 2) == 0x87
    # a^(2^128) = a (Frobenius): 128 squarings
    x = a
    for _ in range(128):
        x = gf128.mul(x, x)
    assert x == a
    with pytest.raises(ConfigError):
        gf128.mul(1 << 128, 1)


def test_mul_const_matches_mul(prg: PRG) -> None:
    beta = elem(prg)
    rows = prg.buffer(16 * 33).reshape(33, 16)
    out = gf128.mul_const(rows.view(np.uint64), gf128.const_tables(beta))
    for i in range(33):
        assert gf128.from_bytes(out[i].view(np.uint8)) == gf128.mul(gf128.from_bytes(rows[i]), beta)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 129])
def test_poly_hash_matches_horner(prg: PRG, n: int) -> None:
    alpha = elem(prg)
    rows = prg.buffer(16 * n).reshape(n, 16)
    expected = 0
    for i in reversed(range(n)):
        expected = gf128.mul(expected, alpha) ^ gf128.from_bytes(rows[i])
    assert gf128.poly_hash(rows, alpha) == expected
    assert gf128.poly_hash(rows.view(np.uint64), alpha) == expected


@pytest.mark.parametrize("nbits", [1, 8, 13, 200])
def test_poly_hash_bits_matches_rows_of_bits(prg: PRG, nbits: int) -> None:
    alpha = elem(prg)
    bits = prg.bits(nbits)
    rows = np.zeros((nbits, 16), dtype=np.uint8)
    rows[:, 0] = bits
    packed = np.packbits(np.concatenate([bits, np.ones(8, dtype=np.uint8)]), bitorder="little")
    assert gf128.poly_hash_bits(packed, nbits, alpha) == gf128.poly_hash(rows, alpha)


def test_poly_hash_is_linear(prg: PRG) -> None:
    alpha = elem(prg)
    a, b = prg.buffer(16 * 40).reshape(40, 16), prg.buffer(16 * 40).reshape(40, 16)
    assert gf128.poly_hash(a ^ b, alpha) == gf128.poly_hash(a, alpha) ^ gf128.poly_hash(b, alpha)
    assert gf128.poly_hash(np.zeros((0, 16), dtype=np.uint8), alpha) == 0
    with pytest.raises(ConfigError):
        gf128.poly_hash(np.zeros((3, 8), dtype=np.uint8), alpha)


def test_bytes_roundtrip(prg: PRG) -> None:
    a = elem(prg)
    assert gf128.from_bytes(gf128.to_bytes(a)) == a
    with pytest.raises(ConfigError):
        gf128.from_bytes(b"\x00" * 15)


def horner_ghash(rows: np.ndarray, h: int) -> int:
    """``sum_{i<n} h^(n+1-i) reflect(rows_i)`` by Horner's rule, naive Python."""
    acc = 0
    for row in rows:
        acc = gf128.mul(acc ^ gf128.reflect(gf128.from_bytes(row)), h)
    return gf128.mul(acc, h)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_ghash_matches_horner(prg: PRG, n: int) -> None:
    key = prg.bytes(16)
    rows = prg.buffer(16 * n).reshape(n, 16)
    h = gf128.ghash_key(key)
    assert gf128.ghash(rows, key) == horner_ghash(rows, h)
    assert gf128.ghash(rows.view(np.uint64), key) == horner_ghash(rows, h)
    bits = prg.bits(n)
    one = np.zeros((n, 16), dtype=np.uint8)
    one[:, 0] = bits << 7  # the field's one as GCM reads it
    assert gf128.ghash_bits(bits, key) == horner_ghash(one, h)


def test_ghash_bits_in_pieces_matches_one_pass(prg: PRG) -> None:
    """Several reused-buffer pieces (and a partial last one) hash like the whole rows at once."""
    n = 2 * (1 << 14) + 77
    key = prg.bytes(16)
    bits = prg.bits(n)
    one = np.zeros((n, 16), dtype=np.uint8)
    one[:, 0] = bits << 7
    assert gf128.ghash_bits(bits, key) == gf128.ghash(one, key)
    assert gf128.ghash_bits(bits.astype(bool), key) == gf128.ghash(one, key)
    assert gf128.ghash_bits(np.zeros(0, dtype=np.uint8), key) == 0


def test_ghash_is_linear_and_reflect_is_an_isomorphism(prg: PRG) -> None:
    key = prg.bytes(16)
    a, b = prg.buffer(16 * 50).reshape(50, 16), prg.buffer(16 * 50).reshape(50, 16)
    assert gf128.ghash(a ^ b, key) == gf128.ghash(a, key) ^ gf128.ghash(b, key)
    assert gf128.ghash(np.zeros((0, 16), dtype=np.uint8), key) == 0
    x = elem(prg)
    assert gf128.reflect(gf128.reflect(x)) == x
    assert gf128.reflect(1) == 0x80
    # the KOS relation: rows q = t ^ c * Delta hash to P(t) + P(c) * reflect(Delta)
    delta = prg.buffer(16)
    c = prg.bits(50)
    q = a ^ (c[:, None] * delta)
    dint = gf128.reflect(gf128.from_bytes(delta))
    assert gf128.ghash(q, key) == gf128.ghash(a, key) ^ gf128.mul(gf128.ghash_bits(c, key), dint)
    for bad in (np.zeros((3, 8), dtype=np.uint8), np.zeros((3, 16), dtype=np.int8), np.zeros(16, dtype=np.uint8)):
        with pytest.raises(ConfigError):
            gf128.ghash(bad, key)
    with pytest.raises(ConfigError):
        gf128.ghash(a, b"short")

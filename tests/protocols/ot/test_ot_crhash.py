"""Fixed-key AES hashes, seed expansion, GGM trees and the bit-matrix transpose (pure, no network)."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.ot.crhash import (
    FIXED_KEY,
    CRHash,
    SeedExpander,
    ggm_expand,
    make_tweaks,
    pack_bits,
    sigma,
    transpose_bits,
    unpack_bits,
)


def blocks(prg: PRG, n: int) -> np.ndarray:
    return prg.buffer(16 * n).reshape(n, 16)


def aes(block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def sigma_ref(x: bytes) -> bytes:
    lo, hi = x[:8], x[8:]  # x_R = low half, x_L = high half (little-endian words)
    return hi + xor(hi, lo)


def reference_transpose(m: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(m, axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")


@pytest.mark.parametrize(
    "shape",
    # fast path (w % 64 == 0, whole words): one tile, several tiles with a remainder, w = 64, 192
    [(128, 16), (128, 8 * 1030), (64, 8), (192, 24), (512, 24)]
    # general path
    + [(128, 5), (8, 1), (16, 7), (128, 4099), (8, 3000), (72, 16)],
)
def test_transpose_matches_unpackbits_reference(prg: PRG, shape: tuple[int, int]) -> None:
    m = prg.buffer(shape[0] * shape[1]).reshape(shape)
    out = transpose_bits(m)
    assert out.shape == (8 * shape[1], shape[0] // 8)
    np.testing.assert_array_equal(out, reference_transpose(m))


def test_transpose_twice_is_identity(prg: PRG) -> None:
    m = prg.buffer(128 * 64).reshape(128, 64)
    np.testing.assert_array_equal(transpose_bits(transpose_bits(m)), m)


def test_transpose_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        transpose_bits(np.zeros((12, 4), dtype=np.uint8))
    with pytest.raises(ConfigError):
        transpose_bits(np.zeros((16, 4), dtype=np.uint16))


def test_sigma_is_linear_orthomorphism(prg: PRG) -> None:
    x, y = blocks(prg, 50), blocks(prg, 50)
    np.testing.assert_array_equal(sigma(x ^ y), sigma(x) ^ sigma(y))
    for row in x[:5]:
        assert sigma(row[None, :])[0].tobytes() == sigma_ref(row.tobytes())
    # sigma(x) ^ x = x_R || (x_L ^ x_R) is a permutation too: it has the trivial kernel on a basis.
    basis = np.zeros((128, 16), dtype=np.uint8)
    basis[np.arange(128), np.arange(128) // 8] = 1 << (np.arange(128) % 8)
    images = sigma(basis) ^ basis
    assert np.linalg.matrix_rank(np.unpackbits(images, axis=1).astype(float)) == 128


def test_hashes_match_their_definitions(prg: PRG) -> None:
    h = CRHash()
    x = blocks(prg, 20)
    tw = make_tweaks(1000, 20, block=0, domain=7)
    ccr, tccr = h.ccr(x), h.tccr(x, tw)
    for k in range(3):
        s = sigma_ref(x[k].tobytes())
        assert ccr[k].tobytes() == xor(aes(s), s)
        px = aes(x[k].tobytes())
        assert tccr[k].tobytes() == xor(aes(xor(px, tw[k].tobytes())), px)
    assert h.permute(x)[0].tobytes() == aes(x[0].tobytes())


def test_tccr_wide_blocks_are_tccr_under_block_tweaks(prg: PRG) -> None:
    h = CRHash()
    x = blocks(prg, 10)
    wide = h.tccr_wide(x, 500, 40, domain=3)
    assert wide.shape == (10, 40)
    for b in range(3):
        full = h.tccr(x, make_tweaks(500, 10, block=b, domain=3))
        width = min(16, 40 - 16 * b)
        np.testing.assert_array_equal(wide[:, 16 * b : 16 * b + width], full[:, :width])


def test_tweaks_separate_outputs(prg: PRG) -> None:
    h = CRHash()
    x = np.repeat(blocks(prg, 1), 4, axis=0)
    a = h.tccr_wide(x, 0, 16)
    b = h.tccr_wide(x, 0, 16, domain=1)
    assert len({row.tobytes() for row in a}) == 4  # same input, indices 0..3
    assert not np.any(np.all(a == b, axis=1))


def test_make_tweaks_layout() -> None:
    tw = make_tweaks(2**40 + 5, 2, block=3, domain=9).view(np.uint64)
    np.testing.assert_array_equal(tw[:, 0], np.array([2**40 + 5, 2**40 + 6], dtype=np.uint64))
    assert int(tw[0, 1]) == 3 | (9 << 32)
    with pytest.raises(ConfigError):
        make_tweaks(-1, 2)


def test_seed_expander_continues_each_stream(prg: PRG) -> None:
    seeds = blocks(prg, 3)
    ex = SeedExpander(seeds)
    first, second = ex.next(10), ex.next(7)
    for j in range(3):
        ref = PRG(seeds[j].tobytes()).bytes(17)
        assert first[j].tobytes() + second[j].tobytes() == ref
    with pytest.raises(ConfigError):
        SeedExpander(np.zeros((2, 15), dtype=np.uint8))


def test_ggm_expand_tree_structure(prg: PRG) -> None:
    h = CRHash()
    roots = blocks(prg, 3)
    leaves = ggm_expand(roots, 3, hasher=h)
    assert leaves.shape == (3, 8, 16)
    # leaf 5 = path right, left, right from the root
    node = roots[1:2]
    for bit in (1, 0, 1):
        node = h.tccr(node, make_tweaks(bit, 1))
    np.testing.assert_array_equal(leaves[1, 5], node[0])
    assert len({leaf.tobytes() for leaf in leaves.reshape(-1, 16)}) == 24
    np.testing.assert_array_equal(ggm_expand(roots, 0), roots[:, None, :])


def test_pack_unpack_roundtrip(prg: PRG) -> None:
    bits = prg.bits(37)
    packed = pack_bits(bits, 40)
    assert packed.shape == (5,)
    np.testing.assert_array_equal(unpack_bits(packed, 37), bits)
    with pytest.raises(ConfigError):
        pack_bits(bits, 36)

"""Pure parts of the offline phase (no network): ring helpers, roots, extraction, bits, pools."""

from __future__ import annotations

import numpy as np
import pytest

from mpc import ring128 as r128
from mpc.errors import ConfigError, PreprocessingExhausted
from mpc.prg import PRG
from protocols.spdz.shares import AuthShare
from protocols.spdz_offline.arith import (
    from_limbs,
    inverse_odd,
    key_bits,
    lincomb_bits,
    lincomb_limbs,
    lincomb_signed,
    sqrt_odd,
    to_limbs,
    vole_correlation,
)
from protocols.spdz_offline.bits import bits_from_square, truncation_from_bits
from protocols.spdz_offline.pool import Pool
from protocols.spdz_offline.triples import theoretical_bytes_per_triple

M128 = 1 << 128


def rand128(prg: PRG, shape: tuple[int, ...]) -> r128.Z128:
    return r128.uniform(prg.uint64((*shape, 2)))


def ints(x: r128.Z128) -> np.ndarray:
    return np.asarray(r128.to_int(x), dtype=object)


def test_limbs_round_trip(prg: PRG) -> None:
    x = rand128(prg, (3, 4))
    back = from_limbs(to_limbs(x))
    assert np.array_equal(back.lo, x.lo) and np.array_equal(back.hi, x.hi)
    with pytest.raises(ConfigError):
        from_limbs(np.zeros((3, 3), dtype=np.uint64))


def test_vole_correlation_sums_to_key_times_x(prg: PRG) -> None:
    x = rand128(prg, (5,))
    key = prg.uint64(())
    corr = from_limbs(vole_correlation(x))
    chosen = r128.mul_u64(corr, key_bits(key).astype(np.uint64).reshape(64, 1))
    total = ints(r128.sum(chosen, axis=0))
    expect = (ints(x) * int(key)) % M128
    assert list(total) == list(expect)


def test_inverse_and_sqrt(prg: PRG) -> None:
    u = r128.add(r128.shl(rand128(prg, (64,)), 1), r128.from_u64(np.ones(64, dtype=np.uint64)))
    inv = inverse_odd(u)
    assert all(v == 1 for v in ints(r128.mul(u, inv)))
    square = r128.mul(u, u)
    root = sqrt_odd(square, 128)
    assert list(ints(r128.mul(root, root))) == list(ints(square))
    root66 = sqrt_odd(square, 66)
    assert all((int(a) * int(a) - int(b)) % (1 << 66) == 0 for a, b in zip(ints(root66), ints(square)))
    with pytest.raises(ConfigError):
        sqrt_odd(r128.from_u64(np.array([3], dtype=np.uint64)), 66)
    with pytest.raises(ConfigError):
        inverse_odd(r128.from_u64(np.array([2], dtype=np.uint64)))


def test_lincomb_matches_python_ints(prg: PRG) -> None:
    raw = prg.uint64((6, 256, 3, 2))
    coeffs = rand128(prg, (256,))
    got = ints(lincomb_limbs(raw, coeffs))
    xs = ints(from_limbs(raw))
    cs = ints(coeffs)
    expect = np.array([[sum(int(xs[i, h, j]) * int(cs[h]) for h in range(256)) % M128 for j in range(3)] for i in range(6)], dtype=object)
    assert (got == expect).all()
    bits = prg.bits((5, 256))
    got_b = ints(lincomb_bits(bits, coeffs))
    assert list(got_b) == [sum(int(c) for c, b in zip(cs, row) if b) % M128 for row in bits]


def test_lincomb_over_several_blocks_with_extreme_limbs(prg: PRG) -> None:
    """Rows in several conversion blocks (and a partial last one); all-ones limbs stay exact."""
    rows, tau = 300, 256
    raw = prg.uint64((rows, tau, 2, 2))
    raw[:3] = np.uint64((1 << 64) - 1)
    coeffs = rand128(prg, (tau,))
    coeffs = r128.Z128(coeffs.lo.copy(), coeffs.hi.copy())
    coeffs.lo[:5] = np.uint64((1 << 64) - 1)
    coeffs.hi[:5] = np.uint64((1 << 64) - 1)
    got = ints(lincomb_limbs(raw, coeffs))
    xs = ints(from_limbs(raw))
    cs = [int(c) for c in ints(coeffs)]
    expect = [[sum(int(xs[i, h, j]) * cs[h] for h in range(tau)) % M128 for j in range(2)] for i in range(rows)]
    assert got.tolist() == expect


@pytest.mark.parametrize("n_plus, n_minus", [(1, 1), (2, 2), (0, 1), (3, 0)])
def test_lincomb_signed_is_the_signed_sum(prg: PRG, n_plus: int, n_minus: int) -> None:
    """One contraction of the ring sum equals the signed sum of contractions (carries included)."""
    rows, tau = 200, 256
    terms = [prg.uint64((rows, tau, 2, 2)) for _ in range(n_plus + n_minus)]
    for t in terms:
        t[:2, :, :, 0] = np.uint64((1 << 64) - 1)  # low words that wrap
    coeffs = rand128(prg, (tau,))
    got = ints(lincomb_signed(terms[:n_plus], terms[n_plus:], coeffs))
    expect = np.zeros((rows, 2), dtype=object)
    for i, t in enumerate(terms):
        part = ints(lincomb_limbs(t, coeffs))
        expect = (expect + part) % M128 if i < n_plus else (expect - part) % M128
    assert got.tolist() == expect.tolist()
    with pytest.raises(ConfigError):
        lincomb_signed([terms[0]], [terms[0][:, :8]], coeffs)


def _share(prg: PRG, values: r128.Z128, alpha: int, n: int) -> list[AuthShare]:
    """Test-only authenticated sharing with a known key."""
    macs = r128.mul(values, r128.from_int(alpha))
    shares, mac_shares = [], []
    rest_v, rest_m = values, macs
    for _ in range(n - 1):
        v, m = rand128(prg, values.shape), rand128(prg, values.shape)
        shares.append(v)
        mac_shares.append(m)
        rest_v, rest_m = r128.sub(rest_v, v), r128.sub(rest_m, m)
    shares.append(rest_v)
    mac_shares.append(rest_m)
    return [AuthShare.from_parts(v, m) for v, m in zip(shares, mac_shares)]


def test_bits_from_square_local(prg: PRG) -> None:
    keys = [prg.uint64(()) for _ in range(3)]
    alpha = sum(int(k) for k in keys)
    a = rand128(prg, (200,))
    parts = _share(prg, a, alpha, 3)
    u = r128.add(r128.shl(a, 1), r128.from_u64(np.ones(200, dtype=np.uint64)))
    bits = [bits_from_square(p, r128.mul(u, u), i, keys[i]) for i, p in enumerate(parts)]
    total = bits[0].data
    for b in bits[1:]:
        total = r128.add(total, b.data)
    values = ints(total[0])
    assert set(int(v) % (1 << 64) for v in values) == {0, 1}
    assert all((alpha * int(v) - int(m)) % M128 == 0 for v, m in zip(values, ints(total[1])))


def test_truncation_from_bits_matches_definition(prg: PRG) -> None:
    bits = prg.bits((7, 64)).astype(np.uint64)
    t = rand128(prg, (7,))
    shares = AuthShare.from_parts(r128.from_u64(bits), r128.from_u64(bits))
    r, high, msb = truncation_from_bits(shares, AuthShare.from_parts(t, t), 16)
    rv = ints(r.share)
    for i in range(7):
        low = sum(int(bits[i, j]) << j for j in range(64))
        assert int(rv[i]) % (1 << 64) == low
        assert int(rv[i]) >> 64 == int(ints(t)[i]) % (1 << 64)
        assert int(ints(high.share)[i]) == (low % (1 << 63)) >> 16
        assert int(ints(msb.share)[i]) == low >> 63


def test_pool_fifo_exactly_once(prg: PRG) -> None:
    pool = Pool("triples")
    first = AuthShare(rand128(prg, (2, 5)))
    second = AuthShare(rand128(prg, (2, 3)))
    pool.add((first, None))
    pool.add((second, None))
    (got, none) = pool.take(6)
    assert none is None and isinstance(got, AuthShare) and got.data.shape == (2, 6)
    assert np.array_equal(got.data.lo[:, :5], first.data.lo) and np.array_equal(got.data.lo[:, 5], second.data.lo[:, 0])
    (rest, _) = pool.take(2)
    assert isinstance(rest, AuthShare)
    assert np.array_equal(rest.data.lo, second.data.lo[:, 1:])
    with pytest.raises(PreprocessingExhausted):
        pool.take(1)


def test_theoretical_bytes() -> None:
    assert theoretical_bytes_per_triple(2, 256) == 2 * (48 * 256 + 5120 + 16)
    assert theoretical_bytes_per_triple(3, 256) == 3 * theoretical_bytes_per_triple(2, 256)

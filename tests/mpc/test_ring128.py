"""Z_2^128 as two uint64 limbs: every operation against Python integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import ring128 as r
from mpc.errors import ConfigError
from mpc.prg import PRG

M = 1 << 128
u128 = st.integers(min_value=0, max_value=M - 1)
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
EDGES = [0, 1, 2, (1 << 32) - 1, 1 << 32, (1 << 63), (1 << 64) - 1, 1 << 64, (1 << 64) + 1,
         (1 << 127) - 1, 1 << 127, M - 2, M - 1]


def ints(x: r.Z128) -> list[int]:
    return [int(v) for v in r.to_int(x).reshape(-1)]


def rand128(prg: PRG, shape: tuple[int, ...]) -> r.Z128:
    return r.uniform(prg.uint64((*shape, 2)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(u128, u128), min_size=1, max_size=8))
def test_binary_ops_match_python_ints(pairs: list[tuple[int, int]]) -> None:
    a = r.from_int([p[0] for p in pairs])
    b = r.from_int([p[1] for p in pairs])
    assert ints(r.add(a, b)) == [(x + y) % M for x, y in pairs]
    assert ints(r.sub(a, b)) == [(x - y) % M for x, y in pairs]
    assert ints(r.mul(a, b)) == [(x * y) % M for x, y in pairs]
    assert ints(-a) == [(-x) % M for x, _ in pairs]
    assert r.equal(a, b).tolist() == [x == y for x, y in pairs]
    assert r.less(a, b).tolist() == [x < y for x, y in pairs]


def test_edge_values_all_pairs() -> None:
    xs = [x for x in EDGES for _ in EDGES]
    ys = [y for _ in EDGES for y in EDGES]
    a, b = r.from_int(xs), r.from_int(ys)
    assert ints(a + b) == [(x + y) % M for x, y in zip(xs, ys)]
    assert ints(a - b) == [(x - y) % M for x, y in zip(xs, ys)]
    assert ints(a * b) == [(x * y) % M for x, y in zip(xs, ys)]
    assert ints(r.neg(a)) == [(-x) % M for x in xs]
    c = np.array([y % (1 << 64) for y in ys], dtype=np.uint64)
    assert ints(r.mul_u64(a, c)) == [(x * (y % (1 << 64))) % M for x, y in zip(xs, ys)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(u64, u64), min_size=1, max_size=8))
def test_wide_product_of_u64(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs], dtype=np.uint64)
    b = np.array([p[1] for p in pairs], dtype=np.uint64)
    assert ints(r.mul_wide_u64(a, b)) == [x * y for x, y in pairs]


@settings(max_examples=100, deadline=None)
@given(u128, st.integers(min_value=0, max_value=127))
def test_shifts(x: int, k: int) -> None:
    a = r.from_int([x])
    assert ints(r.shl(a, k)) == [(x << k) % M]
    assert ints(r.shr(a, k)) == [x >> k]
    assert ints(a << k) == ints(r.shl(a, k)) and ints(a >> k) == ints(r.shr(a, k))


def test_shift_rejects_out_of_range() -> None:
    a = r.zeros(3)
    for bad in (-1, 128, 1.5, True):
        with pytest.raises(ConfigError):
            r.shl(a, bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            r.shr(a, bad)  # type: ignore[arg-type]


def test_conversions() -> None:
    u = np.array([0, 5, (1 << 64) - 1], dtype=np.uint64)
    assert ints(r.from_u64(u)) == [0, 5, (1 << 64) - 1]
    i = np.array([-1, 0, 7, -(1 << 63)], dtype=np.int64)
    assert ints(r.from_i64(i)) == [(-1) % M, 0, 7, (-(1 << 63)) % M]
    assert ints(r.from_int([-1, -(1 << 127), M - 1])) == [M - 1, 1 << 127, M - 1]
    for bad in ([M], [-(1 << 127) - 1], [1.0], [True]):
        with pytest.raises(ConfigError):
            r.from_int(bad)
    with pytest.raises(ConfigError):
        r.from_u64(np.array([1], dtype=np.int64))
    with pytest.raises(ConfigError):
        r.from_i64(np.array([1], dtype=np.uint64))
    with pytest.raises(ConfigError):
        r.Z128(np.zeros(2, dtype=np.uint64), np.zeros(2, dtype=np.int64))
    with pytest.raises(ConfigError):
        r.Z128(np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.uint64))


def test_zero_d_is_a_scalar() -> None:
    a = r.from_int(M - 1)
    assert a.shape == () and a.ndim == 0 and a.size == 1
    assert int(r.to_int(a * a)[()]) == 1
    assert int(r.to_int(r.sum(a))[()]) == M - 1


def test_broadcasting_and_structure(prg: PRG) -> None:
    a = rand128(prg, (3, 4))
    b = rand128(prg, (4,))
    got = r.to_int(a * b)
    ai, bi = r.to_int(a), r.to_int(b)
    assert all(got[i, j] == ai[i, j] * bi[j] % M for i in range(3) for j in range(4))
    assert r.to_int(a[1:, 2]).tolist() == ai[1:, 2].tolist()
    assert r.to_int(a.T).tolist() == ai.T.tolist()
    assert r.to_int(a.reshape(2, 6)).tolist() == ai.reshape(2, 6).tolist()
    assert r.concatenate([a, a]).shape == (6, 4)
    assert r.stack([a, a], axis=1).shape == (3, 2, 4)
    assert a.broadcast_to((2, 3, 4)).shape == (2, 3, 4)


def test_inputs_are_not_modified(prg: PRG) -> None:
    a, b = rand128(prg, (5,)), rand128(prg, (5,))
    before = (ints(a), ints(b))
    for op in (r.add, r.sub, r.mul):
        op(a, b)
    r.neg(a)
    r.mul_u64(a, b.lo)
    r.shl(a, 3)
    r.shr(a, 70)
    r.sum(a)
    assert (ints(a), ints(b)) == before


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
def test_sum_matches_python(prg: PRG, axis: int | tuple[int, int] | None) -> None:
    a = rand128(prg, (7, 5))
    ai = r.to_int(a)
    expected = np.sum(ai, axis=axis) % M if axis is not None else int(np.sum(ai)) % M
    got = r.to_int(r.sum(a, axis=axis))
    assert np.array_equal(np.asarray(got, dtype=object), np.asarray(expected, dtype=object))


def test_sum_of_max_values_carries() -> None:
    a = r.from_int([M - 1] * 1000)
    assert ints(r.sum(a).reshape(1)) == [(1000 * (M - 1)) % M]
    b = r.from_int([(1 << 64) - 1] * 1000)
    assert ints(r.sum(b).reshape(1)) == [1000 * ((1 << 64) - 1)]


def _matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b) % M  # object arrays of Python ints: exact


@pytest.mark.parametrize(
    "sa,sb",
    [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 2)),
     ((1, 1), (1, 1)), ((2, 3, 4), (2, 4, 5))],
)
def test_matmul_matches_python(prg: PRG, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    a, b = rand128(prg, sa), rand128(prg, sb)
    got = r.to_int(r.matmul(a, b))
    expected = _matmul_reference(r.to_int(a), r.to_int(b))
    assert got.shape == np.shape(expected)
    assert np.array_equal(np.asarray(got, dtype=object), np.asarray(expected, dtype=object))


def test_matmul_with_64_bit_operand_and_extremes(prg: PRG) -> None:
    a = r.from_int([[M - 1, M - 1], [1 << 127, 3]])
    b = r.from_u64(np.array([[(1 << 64) - 1, 0], [(1 << 64) - 1, 1]], dtype=np.uint64))
    expected = _matmul_reference(r.to_int(a), r.to_int(b))
    assert r.to_int(r.matmul(a, b)).tolist() == expected.tolist()


def test_matmul_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError):
        r.matmul(r.zeros((2, 3)), r.zeros((2, 3)))
    with pytest.raises(ConfigError):
        r.matmul(r.zeros(()), r.zeros((2,)))


def test_uniform_is_chunk_independent(seed: bytes) -> None:
    whole = r.uniform(PRG(seed).uint64((10, 2)))
    prg = PRG(seed)
    parts = r.concatenate([r.uniform(prg.uint64((3, 2))), r.uniform(prg.uint64((7, 2)))])
    assert ints(whole) == ints(parts)
    with pytest.raises(ConfigError):
        r.uniform(np.zeros(3, dtype=np.uint64))


@pytest.mark.parametrize("sa,sb", [((70_001,), (70_001,)), ((3, 40_000), (40_000,)), ((2, 1, 5), (1, 30_000, 5)), ((70_000, 2), (70_000, 1))])
def test_blocked_large_arrays_match_unblocked(prg: PRG, sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    a, b = rand128(prg, sa), rand128(prg, sb)
    for public, kernel in ((r.add, r._add), (r.sub, r._sub), (r.mul, r._mul)):
        got, want = public(a, b), kernel(a, b)
        assert got.shape == want.shape
        assert np.array_equal(got.lo, want.lo) and np.array_equal(got.hi, want.hi)
    got, want = r.neg(a), r._neg(a)
    assert np.array_equal(got.lo, want.lo) and np.array_equal(got.hi, want.hi)
    got, want = r.mul_u64(a, b.lo), r._mul_u64(a, r.from_u64(b.lo))
    assert np.array_equal(got.lo, want.lo) and np.array_equal(got.hi, want.hi)
    # And a sample against Python integers.
    flat_a, flat_b = a.broadcast_to(got.shape).reshape(-1), b.broadcast_to(got.shape).reshape(-1)
    prod = r.mul(a, b).reshape(-1)
    for i in (0, 1, prod.size // 2, prod.size - 1):
        x, y = int(r.to_int(flat_a[i])[()]), int(r.to_int(flat_b[i])[()])
        assert int(r.to_int(prod[i])[()]) == x * y % M


@pytest.mark.parametrize("size", [0, 1, 5, 70_001])
def test_dot_u64_matches_python(prg: PRG, size: int) -> None:
    a = rand128(prg, (size,))
    c = prg.uint64(size)
    got = int(r.to_int(r.dot_u64(a, c))[()])
    ai = r.to_int(a).reshape(-1)
    assert got == sum(int(x) * int(y) for x, y in zip(ai, c.tolist())) % M
    with pytest.raises(ConfigError):
        r.dot_u64(a, c[:-1] if size else np.zeros(1, dtype=np.uint64))


@pytest.mark.parametrize("sa,sb", [((2, 40, 30), (30, 20)), ((1, 64, 31), (2, 31, 1)), ((5, 3), (3,)), ((3,), (3, 4))])
def test_matmul_small_and_limb_paths_agree(
    prg: PRG, sa: tuple[int, ...], sb: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = rand128(prg, sa), rand128(prg, sb)
    expected = _matmul_reference(r.to_int(a), r.to_int(b))
    for threshold in (0, 1 << 30):  # every product by BLAS limbs, then every one elementwise
        monkeypatch.setattr(r, "_SMALL_MATMUL", threshold)
        got = r.matmul(a, b)
        assert isinstance(got.lo, np.ndarray) and got.lo.dtype == np.uint64
        assert np.array_equal(np.asarray(r.to_int(got), dtype=object), np.asarray(expected, dtype=object))


@pytest.mark.parametrize("size", [2048, 2049])
def test_dot_u64_extremes_at_the_small_path_limit(size: int) -> None:
    a = r.from_int([M - 1] * size)
    c = np.full(size, (1 << 64) - 1, dtype=np.uint64)
    assert int(r.to_int(r.dot_u64(a, c))[()]) == size * (M - 1) * ((1 << 64) - 1) % M


@pytest.mark.parametrize("sizes", [[], [0], [3, 0, 5], [20_000, 20_000, 1], [40_000], [1, 70_001, 2]])
def test_dot_u64_parts_equals_dot_of_the_concatenation(prg: PRG, sizes: list[int]) -> None:
    parts = [rand128(prg, (n,)) for n in sizes]
    if len(parts) > 1:
        parts[1] = parts[1].reshape(1, -1)  # any shapes, read flat
    c = prg.uint64(sum(sizes))
    flat = r.concatenate([p.reshape(-1) for p in parts]) if parts else r.zeros(0)
    got = r.dot_u64_parts(parts, c)
    want = r.dot_u64(flat, c)
    assert got.shape == () and ints(got) == ints(want)
    with pytest.raises(ConfigError):
        r.dot_u64_parts(parts, np.zeros(sum(sizes) + 1, dtype=np.uint64))


def test_add_products_matches_python(prg: PRG) -> None:
    c, a1, b2 = rand128(prg, (2, 7)), rand128(prg, (1, 7)), rand128(prg, (1, 7))
    b1, a2 = rand128(prg, (2, 7)), rand128(prg, (2, 7))
    got = r.to_int(r.add_products(c, a1, b1, a2, b2))
    ci, a1i, b1i, a2i, b2i = (r.to_int(v) for v in (c, a1, b1, a2, b2))
    assert np.array_equal(np.asarray(got, dtype=object), (ci + a1i * b1i + a2i * b2i) % M)


def test_results_of_0d_operands_hold_arrays() -> None:
    x = r.from_int([5, M - 1])
    ones = np.ones(2, dtype=np.uint64)
    for z in (x[0], r.shl(x[1], 3), r.shr(x[1], 70), r.sum(x), r.add(x[0], x[1]), r.dot_u64(x, ones)):
        assert z.shape == () and isinstance(z.lo, np.ndarray) and isinstance(z.hi, np.ndarray)
    assert ints(r.shl(x[1], 3)) == [(M - 1) * 8 % M]
    assert ints(r.shr(x[1], 70)) == [(M - 1) >> 70]


@pytest.mark.parametrize("sb", [(3, 4), (4,), (1, 4), (3, 1), (), (1,)])
def test_small_broadcast_operands_match_python(prg: PRG, sb: tuple[int, ...]) -> None:
    """The direct (unblocked) path for a second operand broadcast into the first."""
    a, b = rand128(prg, (3, 4)), rand128(prg, sb)
    ai, bi = r.to_int(a), np.broadcast_to(r.to_int(b), (3, 4))
    for op, ref in ((r.add, ai + bi), (r.sub, ai - bi), (r.mul, ai * bi), (r.mul_u64, ai * (bi % (1 << 64)))):
        got = op(a, b.lo if op is r.mul_u64 else b)
        assert got.shape == (3, 4) and isinstance(got.lo, np.ndarray)
        assert np.array_equal(np.asarray(r.to_int(got), dtype=object), ref % M)
    wide = r.mul_wide_u64(a.lo, b.lo)
    assert np.array_equal(np.asarray(r.to_int(wide), dtype=object), r.to_int(r.from_u64(a.lo)) * (bi % (1 << 64)))
    c = rand128(prg, (3, 4))
    got = r.to_int(r.add_products(c, b, a, a, b))
    assert np.array_equal(np.asarray(got, dtype=object), (r.to_int(c) + 2 * ai * bi) % M)
    assert np.array_equal(np.asarray(r.to_int(r.neg(a)), dtype=object), (-ai) % M)

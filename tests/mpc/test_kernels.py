"""The compiled loops of mpc.kernels against ring128's numpy path and Python integers."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from mpc import ring128 as r
from mpc.prg import PRG

M = 1 << 128
N = r._KERNEL_MIN  # the smallest size the kernels take


def rand128(prg: PRG, shape: tuple[int, ...]) -> r.Z128:
    return r.uniform(prg.uint64((*shape, 2)))


def extreme(shape: tuple[int, ...]) -> r.Z128:
    """All limbs 2^64 - 1: every addition carries, every partial product is maximal."""
    return r.Z128(np.full(shape, (1 << 64) - 1, dtype=np.uint64), np.full(shape, (1 << 64) - 1, dtype=np.uint64))


def row_slices(prg: PRG, rows: int, n: int) -> r.Z128:
    """``(rows, n)`` limbs that are column slices of wider arrays (rows contiguous, not the whole)."""
    wide = rand128(prg, (rows, n + 9))
    return r.Z128(wide.lo[:, 3 : 3 + n], wide.hi[:, 3 : 3 + n])


def same(got: r.Z128, want: r.Z128) -> bool:
    return got.shape == want.shape and np.array_equal(got.lo, want.lo) and np.array_equal(got.hi, want.hi)


def ints_at(z: r.Z128, shape: tuple[int, ...], i: int) -> int:
    flat = z.broadcast_to(shape).reshape(-1)
    return int(r.to_int(flat[i])[()])


def uses_kernel(*operands: r.Z128) -> bool:
    shape = np.broadcast_shapes(*(o.shape for o in operands))
    return r._kernel_rows([limb for o in operands for limb in (o.lo, o.hi)], shape) is not None


LAYOUTS: dict[str, Callable[[PRG], tuple[r.Z128, r.Z128]]] = {
    "same shape": lambda prg: (rand128(prg, (2, N)), rand128(prg, (2, N))),
    "one row broadcast": lambda prg: (rand128(prg, (3, N)), rand128(prg, (1, N))),
    "row slices of wider arrays": lambda prg: (row_slices(prg, 2, N), row_slices(prg, 2, N)),
    "one-dimensional": lambda prg: (rand128(prg, (N,)), rand128(prg, (N,))),
    "three-dimensional": lambda prg: (rand128(prg, (2, 3, N // 3 + 1)), rand128(prg, (1, 3, N // 3 + 1))),
    "extreme values": lambda prg: (extreme((2, N)), extreme((2, N))),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_add_and_sub_equal_the_numpy_path(prg: PRG, layout: str) -> None:
    a, b = LAYOUTS[layout](prg)
    assert uses_kernel(a, b)
    for public, reference in ((r.add, r._add), (r.sub, r._sub)):
        got = public(a, b)
        assert same(got, reference(a, b))
        shape = got.shape
        for i in (0, 1, got.size // 2, got.size - 1):
            x, y, z = ints_at(a, shape, i), ints_at(b, shape, i), ints_at(got, shape, i)
            assert z == ((x + y) if public is r.add else (x - y)) % M


@pytest.mark.parametrize("layout", LAYOUTS)
def test_add_products_equals_the_numpy_path(prg: PRG, layout: str) -> None:
    c, b1 = LAYOUTS[layout](prg)
    a2, row = LAYOUTS[layout](prg)
    # The Beaver pattern: public factors broadcast where the layout has a broadcast row.
    a1, b2 = row, row
    assert uses_kernel(c, a1, b1, a2, b2)
    got = r.add_products(c, a1, b1, a2, b2)
    assert same(got, r._add_products(c, a1, b1, a2, b2))
    shape = got.shape
    for i in (0, got.size // 3, got.size - 1):
        v = [ints_at(x, shape, i) for x in (c, a1, b1, a2, b2)]
        assert ints_at(got, shape, i) == (v[0] + v[1] * v[2] + v[3] * v[4]) % M


@pytest.mark.parametrize("size", [N, N + 12_345])
def test_dot_u64_equals_python(prg: PRG, size: int) -> None:
    a = rand128(prg, (size,))
    c = prg.uint64(size)
    got = int(r.to_int(r.dot_u64(a, c))[()])
    assert got == sum(int(x) * int(y) for x, y in zip(r.to_int(a).reshape(-1), c.tolist())) % M


def test_dot_u64_of_extremes_carries() -> None:
    a = extreme((N,))
    c = np.full(N, (1 << 64) - 1, dtype=np.uint64)
    assert int(r.to_int(r.dot_u64(a, c))[()]) == N * (M - 1) * ((1 << 64) - 1) % M


def test_other_layouts_and_small_arrays_take_the_numpy_path(prg: PRG) -> None:
    big = rand128(prg, (2, N))
    transposed = rand128(prg, (N, 2)).T  # columns not contiguous
    small = rand128(prg, (2, N // 4))
    one_d_broadcast = rand128(prg, (N,))  # against (2, N): not a (1, N) row
    for a, b in ((big, transposed), (small, small), (big, one_d_broadcast)):
        assert not uses_kernel(a, b)
        assert same(r.add(a, b), r._add(a, b))
        assert same(r.sub(a, b), r._sub(a, b))


def test_inputs_are_not_modified(prg: PRG) -> None:
    c, a1, b1, a2, b2 = (rand128(prg, (2, N)) for _ in range(5))
    before = [(x.lo.copy(), x.hi.copy()) for x in (c, a1, b1, a2, b2)]
    r.add_products(c, a1, b1, a2, b2)
    r.add(c, a1)
    r.sub(c, a1)
    r.dot_u64(c.reshape(-1), c.lo.reshape(-1))
    assert all(np.array_equal(x.lo, lo) and np.array_equal(x.hi, hi) for x, (lo, hi) in zip((c, a1, b1, a2, b2), before))


def test_read_only_operands_are_taken(prg: PRG) -> None:
    """Received arrays and broadcast views are read-only: the kernels read them all the same."""

    def frozen(z: r.Z128) -> r.Z128:
        lo, hi = z.lo.copy(), z.hi.copy()
        lo.flags.writeable = hi.flags.writeable = False
        return r.Z128(lo, hi)

    c, b, x = (frozen(rand128(prg, (2, N))) for _ in range(3))
    d, e = frozen(rand128(prg, (1, N))), frozen(rand128(prg, (1, N)))
    row = rand128(prg, (1, N))
    spread = r.Z128(np.broadcast_to(row.lo, (2, N)), np.broadcast_to(row.hi, (2, N)))  # strides (0, 8)
    assert uses_kernel(c, d, b, x, e) and uses_kernel(c, spread)
    assert same(r.add_products(c, d, b, x, e), r._add_products(c, d, b, x, e))
    assert same(r.add(c, spread), r._add(c, spread))
    assert same(r.sub(spread, c), r._sub(spread, c))
    flat, coeffs = frozen(rand128(prg, (N,))), prg.uint64(N)
    coeffs.flags.writeable = False
    assert ints_at(r.dot_u64(flat, coeffs), (), 0) == ints_at(r.sum(r._mul_u64(flat, r.from_u64(coeffs))), (), 0)


def test_unaligned_operands_take_the_numpy_path(prg: PRG) -> None:
    """An array decoded at an odd offset of a buffer is not aligned: numpy handles it."""
    raw = np.frombuffer(b"\x00" + prg.uint64(2 * N).tobytes(), dtype=np.uint8)[1:]
    odd = raw.view(np.uint64)
    assert not odd.flags.aligned
    a = r.Z128(odd.reshape(2, N), odd.reshape(2, N))
    b = rand128(prg, (2, N))
    assert not uses_kernel(a, b)
    assert same(r.add(a, b), r._add(a, b))
    flat = r.Z128(odd, odd)
    coeffs = prg.uint64(2 * N)
    assert ints_at(r.dot_u64(flat, coeffs), (), 0) == ints_at(r.sum(r._mul_u64(flat, r.from_u64(coeffs))), (), 0)


def test_without_numba_the_numpy_path_serves(prg: PRG, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A machine where the kernels cannot be imported still computes (slower), and says so."""
    import sys

    import mpc

    monkeypatch.setitem(sys.modules, "mpc.kernels", None)  # makes ``from mpc import kernels`` fail
    monkeypatch.delattr(mpc, "kernels", raising=False)  # (once imported, the package holds it)
    r._kernels.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="mpc.ring128"):
            assert r.load_kernels() is False
        assert "numpy" in caplog.text
        c, a1, b1, a2, b2 = (rand128(prg, (2, N)) for _ in range(5))
        assert same(r.add_products(c, a1, b1, a2, b2), r._add_products(c, a1, b1, a2, b2))
        flat, coeffs = rand128(prg, (N,)), prg.uint64(N)
        assert ints_at(r.dot_u64(flat, coeffs), (), 0) == ints_at(r.sum(r._mul_u64(flat, r.from_u64(coeffs))), (), 0)
    finally:
        monkeypatch.undo()
        r._kernels.cache_clear()
    assert r.load_kernels() is True

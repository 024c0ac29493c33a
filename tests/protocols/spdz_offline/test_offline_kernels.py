"""The compiled contraction of protocols.spdz_offline.kernels against numpy/BLAS and Python ints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.spdz_offline import arith
from protocols.spdz_offline import kernels as k

M64, M128 = 1 << 64, 1 << 128


def rand128(prg: PRG, shape: tuple[int, ...]) -> r128.Z128:
    return r128.uniform(prg.uint64((*shape, 2)))


def readonly(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.setflags(write=False)
    return b


def extreme_terms(prg: PRG, count: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Random limbs, a third of them 2^64 - 1 and a third 0 (every carry and borrow)."""
    out = []
    for _ in range(count):
        t = prg.uint64(shape)
        pick = prg.buffer(t.size).reshape(shape) % 3
        t[pick == 0] = np.uint64(M64 - 1)
        t[pick == 1] = 0
        out.append(t)
    return out


def same(a: r128.Z128, b: r128.Z128) -> bool:
    return a.shape == b.shape and np.array_equal(a.lo, b.lo) and np.array_equal(a.hi, b.hi)


@pytest.mark.parametrize(
    "shape, n_plus, n_minus",
    [
        ((33, 256, 2, 2), 1, 1),  # the scalar-triple shape, two parties
        ((7, 256, 2, 2), 2, 2),  # three parties
        ((5, 3, 2), 0, 3),  # no element axis, only subtracted terms
        ((9, 1, 3, 5, 2), 3, 0),  # tau = 1, two element axes
        ((0, 256, 2, 2), 1, 1),  # empty
        ((4, 0, 2, 2), 1, 1),  # no coefficients
    ],
)
def test_lincomb_signed_equals_numpy(prg: PRG, shape: tuple[int, ...], n_plus: int, n_minus: int) -> None:
    terms = extreme_terms(prg, n_plus + n_minus, shape)
    coeffs = rand128(prg, (shape[1],))
    coeffs = r128.Z128(coeffs.lo.copy(), coeffs.hi.copy())
    coeffs.lo[:2] = np.uint64(M64 - 1)
    coeffs.hi[:1] = np.uint64(M64 - 1)
    got = arith.lincomb_signed([readonly(t) for t in terms[:n_plus]], [readonly(t) for t in terms[n_plus:]], coeffs)
    assert same(got, arith._lincomb_numpy(terms, n_plus, coeffs))


def test_lincomb_signed_against_python_ints(prg: PRG) -> None:
    rows, tau = 3, 64
    plus, minus = extreme_terms(prg, 2, (rows, tau, 2, 2))
    coeffs = rand128(prg, (tau,))
    got = arith.lincomb_signed([plus], [minus[:, :, :, :]], coeffs)
    cs = [int(c) for c in np.asarray(r128.to_int(coeffs), dtype=object)]

    def val(t: np.ndarray, i: int, h: int, e: int) -> int:
        return int(t[i, h, e, 0]) | (int(t[i, h, e, 1]) << 64)

    for i in range(rows):
        for e in range(2):
            want = sum(cs[h] * (val(plus, i, h, e) - val(minus, i, h, e)) for h in range(tau)) % M128
            assert int(r128.to_int(got[i, e])[()]) == want


def test_lincomb_signed_takes_strided_terms(prg: PRG) -> None:
    """Slices of wider arrays are made contiguous first (the kernel takes C-contiguous rows)."""
    wide = prg.uint64((6, 256, 4, 2))
    term = wide[:, :, 1:3]
    coeffs = rand128(prg, (256,))
    assert same(arith.lincomb_signed([term], [], coeffs), arith._lincomb_numpy([np.ascontiguousarray(term)], 1, coeffs))
    with pytest.raises(ConfigError):
        arith.lincomb_signed([term], [], rand128(prg, (255,)))


def test_lincomb_acc_accumulates_into_out(prg: PRG) -> None:
    """``out`` is added to (or subtracted from), with the carry between its limbs."""
    n, tau, w = 4, 5, 3
    term = readonly(prg.uint64((n, tau * w * 2)))
    r_lo, r_hi = readonly(prg.uint64(tau)), readonly(prg.uint64(tau))
    out_lo = np.full((n, w), M64 - 1, dtype=np.uint64)
    out_hi = prg.uint64((n, w))
    start = [[int(out_lo[i, e]) | (int(out_hi[i, e]) << 64) for e in range(w)] for i in range(n)]
    k.lincomb_acc(term, r_lo, r_hi, False, out_lo, out_hi)
    k.lincomb_acc(term, r_lo, r_hi, False, out_lo, out_hi)
    k.lincomb_acc(term, r_lo, r_hi, True, out_lo, out_hi)
    for i in range(n):
        for e in range(w):
            comb = sum(
                (int(r_lo[h]) | (int(r_hi[h]) << 64)) * (int(term[i, 2 * (h * w + e)]) | (int(term[i, 2 * (h * w + e) + 1]) << 64))
                for h in range(tau)
            )
            assert int(out_lo[i, e]) | (int(out_hi[i, e]) << 64) == (start[i][e] + comb) % M128



@pytest.mark.parametrize("n, tau, width", [(3, 256, 2), (2, 300, 1), (2, 17, 3), (1, 4099, 2), (1, 9, 70)])
def test_lincomb_acc_paths_against_python_ints(prg: PRG, n: int, tau: int, width: int) -> None:
    """Both paths (two elements per row, other widths) with all-ones limbs and coefficients
    (every partial sum at its largest), then extreme random ones, added and subtracted."""
    for fill in ("ones", "extreme"):
        if fill == "ones":
            term = np.full((n, tau * width * 2), M64 - 1, dtype=np.uint64)
            r_lo, r_hi = np.full(tau, M64 - 1, dtype=np.uint64), np.full(tau, M64 - 1, dtype=np.uint64)
        else:
            term = extreme_terms(prg, 1, (n, tau * width * 2))[0]
            r_lo, r_hi = extreme_terms(prg, 2, (tau,))
        out_lo, out_hi = np.full((n, width), M64 - 1, dtype=np.uint64), np.full((n, width), M64 - 1, dtype=np.uint64)
        k.lincomb_acc(readonly(term), readonly(r_lo), readonly(r_hi), False, out_lo, out_hi)
        got_add = [[int(out_lo[i, e]) | (int(out_hi[i, e]) << 64) for e in range(width)] for i in range(n)]
        k.lincomb_acc(readonly(term), readonly(r_lo), readonly(r_hi), True, out_lo, out_hi)
        k.lincomb_acc(readonly(term), readonly(r_lo), readonly(r_hi), True, out_lo, out_hi)
        rs = [int(r_lo[h]) | (int(r_hi[h]) << 64) for h in range(tau)]
        for i in range(n):
            for e in range(width):
                xs = (int(term[i, 2 * (h * width + e)]) | (int(term[i, 2 * (h * width + e) + 1]) << 64) for h in range(tau))
                comb = sum(r * x for r, x in zip(rs, xs, strict=True))
                assert got_add[i][e] == (M128 - 1 + comb) % M128
                assert int(out_lo[i, e]) | (int(out_hi[i, e]) << 64) == (M128 - 1 - comb) % M128


def test_without_numba_numpy_contracts_and_warns(prg: PRG, missing_kernels: Any) -> None:
    terms = [prg.uint64((5, 256, 2, 2)) for _ in range(2)]
    coeffs = rand128(prg, (256,))
    want = arith.lincomb_signed([terms[0]], [terms[1]], coeffs)
    with missing_kernels("protocols.spdz_offline.kernels", arith):
        assert same(arith.lincomb_signed([terms[0]], [terms[1]], coeffs), want)


@pytest.mark.parametrize("shape", [(5,), (3, 7), (1,), (0,), (16385,)])
def test_vole_correlation_and_sum_equal_numpy(prg: PRG, shape: tuple[int, ...]) -> None:
    x = rand128(prg, shape)
    x = r128.Z128(readonly(x.lo), readonly(x.hi))
    got = arith.vole_correlation(x)
    want = arith._vole_correlation_numpy(x, np.empty_like(got))
    assert got.shape == (64, *shape, 2) and np.array_equal(got, want)
    outs = readonly(extreme_terms(prg, 1, (64, *shape, 2))[0])
    total = arith.sum_ots(outs)
    assert same(total, r128.sum(arith.from_limbs(outs), axis=0))
    if x.size:  # and with Python integers: the 64 shifted copies sum to (2^64 - 1) x
        flat = x.reshape(-1)
        s = arith.sum_ots(got).reshape(-1)
        for i in (0, flat.size - 1):
            assert int(r128.to_int(s[i])[()]) == (int(r128.to_int(flat[i])[()]) * (M64 - 1)) % M128


def test_buffers_reuse_the_smallest_fit_and_keep_the_largest() -> None:
    from protocols.spdz_offline.vole import Buffers

    pool = Buffers(keep=2)
    a, b = pool.take(100), pool.take(50)
    assert a.size == 100 and b.size == 50 and not np.shares_memory(a, b)
    pool.give(a)
    pool.give(b)
    assert pool.take(40) is b  # the smallest that fits
    assert pool.take(60) is a
    assert pool.take(10).size == 10  # none free: fresh
    for size in (10, 20, 30):
        pool.give(np.empty(size, dtype=np.uint64))
    assert pool.take(25).size == 30 and pool.take(5).size == 20  # only the two largest were kept
    assert pool.take(5).size == 5

"""Compiled loops for the local arithmetic of the offline phase (numba, LLVM).

:func:`lincomb_acc` is the contraction of the Gilboa products (:func:`~protocols.spdz_offline.
arith.lincomb_signed`): ``out += sign * sum_h r_h x[:, h, e]`` modulo 2^128 for every row and
element, straight from the OT outputs' ``[lo, hi]`` limbs, every 128-bit product formed
from 32-bit halves and summed as three words without carries (so that LLVM vectorizes the
sums: ``vpmuludq`` and ``vpmullq``, eight products per AVX-512 instruction). numpy has no
64 x 64 -> 128-bit product, so the numpy path (the reference, kept for tests and when numba
is missing) cuts both operands into 16-bit limbs, converts them to float64 and contracts them
with one BLAS product per block of rows, plus a ring addition pass per extra term. Measured
on this machine (best of 7), two terms of ``(4096, 256, 2, 2)`` (one OT call of the
scalar-triple multiplication): 22 ms by numpy and BLAS, 3.4 ms by a scalar loop with LLVM's
128-bit multiply (:func:`mpc.kernels.mulhi`), 2.2 ms now (one term 1.8 -> 1.1 ms, then bound
by reading its 32 MB from memory; from cache 0.9 -> 0.4 ns per product); a matrix triple's
``(16, 256, 256, 2)`` 2.6 -> 0.4 ms.

:func:`sum_rows` and :func:`shifts` are the vOLE's sum over its 64 OT outputs and its
correlations ``2^l x`` (one pass each, straight from and into the OT layer's limb layout, where
numpy needs strided copies of the limbs and several passes): for 2^14 values 3.7 -> 1.0 ms and
1.6 -> 0.6 ms. Both vectorize as they are and are bound by memory traffic (a 16 MB vOLE call
is summed in 0.5-0.6 ms; summing by blocks of elements kept in L1 was no faster).

Conventions as :mod:`mpc.kernels`: one compiled version, C-contiguous operands, inputs typed
read-only, only the ``out`` arrays written, ``cache=True`` (compiled once per machine).
Importing this module imports numba; :mod:`protocols.spdz_offline.arith` imports it lazily and
falls back to numpy (with a warning) when numba is missing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from mpc.kernels import JIT, flat, readonly, writable

__all__ = ["lincomb_acc", "sum_rows", "shifts"]


_M32 = np.uint64(0xFFFFFFFF)


@numba.jit(inline="always", **JIT)
def _product_parts(x_lo, x_hi, r_lo, r_hi):  # type: ignore[no-untyped-def]
    """``r x`` modulo 2^128 as three words to be summed without carries: the low and high
    32 bits of its low limb and its high limb (the low limbs' 128-bit product from 32-bit
    halves, ``vpmuludq`` when vectorized: LLVM vectorizes no 128-bit multiply)."""
    a0 = x_lo & _M32
    a1 = x_lo >> np.uint64(32)
    b0 = r_lo & _M32
    b1 = r_lo >> np.uint64(32)
    ll = a0 * b0
    lh = a0 * b1
    hl = a1 * b0
    mid = (ll >> np.uint64(32)) + (lh & _M32) + (hl & _M32)
    hi = a1 * b1 + (lh >> np.uint64(32)) + (hl >> np.uint64(32)) + (mid >> np.uint64(32)) + x_lo * r_hi + x_hi * r_lo
    return ll & _M32, mid & _M32, hi


@numba.jit(inline="always", **JIT)
def _join_parts(a, b, c):  # type: ignore[no-untyped-def]
    """``a + 2^32 b + 2^64 c`` modulo 2^128 as ``[lo, hi]`` limbs (``a`` below 2^64)."""
    t = b << np.uint64(32)
    lo = a + t
    return lo, c + (b >> np.uint64(32)) + np.uint64(lo < t)


@numba.jit(inline="always", **JIT)
def _accumulate(out_lo, out_hi, j, lo, hi, negate):  # type: ignore[no-untyped-def]
    """``out[j] += (lo, hi)`` (or ``-=``) modulo 2^128."""
    o_lo, o_hi = out_lo[j], out_hi[j]
    if negate:
        out_lo[j] = o_lo - lo
        out_hi[j] = o_hi - hi - np.uint64(o_lo < lo)
    else:
        s = o_lo + lo
        out_lo[j] = s
        out_hi[j] = o_hi + hi + np.uint64(s < o_lo)


@numba.jit(types.void(readonly(2), readonly(1), readonly(1), types.boolean, writable(2), writable(2)), **JIT)
def lincomb_acc(term, r_lo, r_hi, negate, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out[i, e] +=`` (or ``-=`` if ``negate``) ``sum_h r_h * x[i, h, e]`` modulo 2^128.

    Args:
        term: ``(N, tau * W * 2)`` limbs: ``x[i, h, e] = term[i, 2 (h W + e)] + 2^64
            term[i, 2 (h W + e) + 1]``.
        r_lo, r_hi: ``(tau,)`` the coefficients' limbs (``tau < 2^32``).
        negate: subtract the combination instead of adding it.
        out_lo, out_hi: ``(N, W)`` the accumulators.

    Every product is summed as three words (:func:`_product_parts`), so that the sums over
    ``h`` are plain additions (no carry depends on the previous sum) and vectorize: over ``h``
    for ``W = 2`` (the triples' ``(a, a')``), over ``e`` for other widths.
    """
    n, width = out_lo.shape
    tau = np.uint64(r_lo.shape[0])
    if n == 0 or width == 0:
        return
    tf, olf, ohf = flat(term), flat(out_lo), flat(out_hi)
    if width == 2:
        for i in range(np.uint64(n)):
            base = i * (np.uint64(4) * tau)
            a0, b0, c0 = np.uint64(0), np.uint64(0), np.uint64(0)
            a1, b1, c1 = np.uint64(0), np.uint64(0), np.uint64(0)
            for h in range(tau):
                o = base + np.uint64(4) * h
                rl, rh = r_lo[h], r_hi[h]
                p, q, c = _product_parts(tf[o], tf[o + np.uint64(1)], rl, rh)
                a0 += p
                b0 += q
                c0 += c
                p, q, c = _product_parts(tf[o + np.uint64(2)], tf[o + np.uint64(3)], rl, rh)
                a1 += p
                b1 += q
                c1 += c
            lo, hi = _join_parts(a0, b0, c0)
            _accumulate(olf, ohf, np.uint64(2) * i, lo, hi, negate)
            lo, hi = _join_parts(a1, b1, c1)
            _accumulate(olf, ohf, np.uint64(2) * i + np.uint64(1), lo, hi, negate)
        return
    uw = np.uint64(width)
    sums = np.empty(3 * width, dtype=np.uint64)
    a, b, c = sums[:width], sums[width : 2 * width], sums[2 * width :]  # the three sums per element
    for i in range(np.uint64(n)):
        sums[:] = 0
        for h in range(tau):
            o = (i * tau + h) * np.uint64(2) * uw
            rl, rh = r_lo[h], r_hi[h]
            for e in range(uw):
                f = o + np.uint64(2) * e
                x0 = tf[f]
                x1 = tf[f + np.uint64(1)]
                p, q, d = _product_parts(x0, x1, rl, rh)
                a[e] += p
                b[e] += q
                c[e] += d
        for e in range(uw):
            lo, hi = _join_parts(a[e], b[e], c[e])
            _accumulate(olf, ohf, i * uw + e, lo, hi, negate)


@numba.jit(types.void(readonly(2), writable(1), writable(1)), **JIT)
def sum_rows(a, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out[e] = sum_j a[j, e]`` modulo 2^128 for limbs ``a[j, 2 e] + 2^64 a[j, 2 e + 1]``.

    Args:
        a: ``(R, 2 W)`` limb rows (e.g. the 64 OT outputs of a vOLE call).
        out_lo, out_hi: ``(W,)`` outputs.
    """
    rows = a.shape[0]
    width = out_lo.shape[0]
    for e in range(width):
        out_lo[e] = 0
        out_hi[e] = 0
    for j in range(rows):
        for e in range(width):
            lo = out_lo[e] + a[j, 2 * e]
            out_hi[e] += a[j, 2 * e + 1] + np.uint64(lo < out_lo[e])
            out_lo[e] = lo


@numba.jit(types.void(readonly(1), readonly(1), writable(2)), **JIT)
def shifts(lo, hi, out):  # type: ignore[no-untyped-def]
    """``out[l] = x << l`` modulo 2^128 for ``l < R``, as limbs ``out[l, 2 e], out[l, 2 e + 1]``.

    Args:
        lo, hi: ``(W,)`` the limbs of ``x``.
        out: ``(R, 2 W)``, ``R <= 64``.
    """
    width = lo.shape[0]
    for e in range(width):
        out[0, 2 * e] = lo[e]
        out[0, 2 * e + 1] = hi[e]
    for s in range(1, out.shape[0]):
        up = np.uint64(s)
        down = np.uint64(64 - s)
        for e in range(width):
            out[s, 2 * e] = lo[e] << up
            out[s, 2 * e + 1] = (hi[e] << up) | (lo[e] >> down)

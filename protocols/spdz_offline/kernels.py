"""Compiled loops for the local arithmetic of the offline phase (numba, LLVM).

:func:`lincomb_acc` is the contraction of the Gilboa products (:func:`~protocols.spdz_offline.
arith.lincomb_signed`): ``out += sign * sum_h r_h x[:, h, e]`` modulo 2^128 for every row and
element, straight from the OT outputs' ``[lo, hi]`` limbs with LLVM's 64 x 64 -> 128-bit
multiply (:func:`mpc.kernels.mulhi`). numpy has no such product, so the numpy path
(the reference, kept for tests and when numba is missing) cuts both operands into 16-bit limbs,
converts them to float64 and contracts them with one BLAS product per block of rows, plus a
ring addition pass per extra term. Measured on this machine (best of 7), two terms of
``(4096, 256, 2, 2)`` (one OT call of the scalar-triple multiplication): 22 ms by numpy and
BLAS, 3.4 ms here.

:func:`sum_rows` and :func:`shifts` are the vOLE's sum over its 64 OT outputs and its
correlations ``2^l x`` (one pass each, straight from and into the OT layer's limb layout, where
numpy needs strided copies of the limbs and several passes): for 2^14 values 3.7 -> 1.0 ms and
1.6 -> 0.6 ms.

Conventions as :mod:`mpc.kernels`: one compiled version, C-contiguous operands, inputs typed
read-only, only the ``out`` arrays written, ``cache=True`` (compiled once per machine).
Importing this module imports numba; :mod:`protocols.spdz_offline.arith` imports it lazily and
falls back to numpy (with a warning) when numba is missing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from mpc.kernels import JIT, mulhi, readonly, writable

__all__ = ["lincomb_acc", "sum_rows", "shifts"]


@numba.jit(types.void(readonly(2), readonly(1), readonly(1), types.boolean, writable(2), writable(2)), **JIT)
def lincomb_acc(term, r_lo, r_hi, negate, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out[i, e] +=`` (or ``-=`` if ``negate``) ``sum_h r_h * x[i, h, e]`` modulo 2^128.

    Args:
        term: ``(N, tau * W * 2)`` limbs: ``x[i, h, e] = term[i, 2 (h W + e)] + 2^64
            term[i, 2 (h W + e) + 1]``.
        r_lo, r_hi: ``(tau,)`` the coefficients' limbs.
        negate: subtract the combination instead of adding it.
        out_lo, out_hi: ``(N, W)`` the accumulators.
    """
    n, width = out_lo.shape
    tau = r_lo.shape[0]
    for i in range(n):
        for e in range(width):
            acc_lo = np.uint64(0)
            acc_hi = np.uint64(0)
            for h in range(tau):
                at = 2 * (h * width + e)
                x0, x1 = term[i, at], term[i, at + 1]
                c0, c1 = r_lo[h], r_hi[h]
                p = x0 * c0
                s = acc_lo + p
                acc_hi += mulhi(x0, c0) + x0 * c1 + x1 * c0 + np.uint64(s < p)
                acc_lo = s
            lo, hi = out_lo[i, e], out_hi[i, e]
            if negate:
                out_lo[i, e] = lo - acc_lo
                out_hi[i, e] = hi - acc_hi - np.uint64(lo < acc_lo)
            else:
                s = lo + acc_lo
                out_lo[i, e] = s
                out_hi[i, e] = hi + acc_hi + np.uint64(s < lo)


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

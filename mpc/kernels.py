"""Compiled loops for the large-array operations of :mod:`mpc.ring128` (numba, LLVM).

numpy has no 64 x 64 -> 128-bit product, so :mod:`mpc.ring128` forms it from 32-bit halves:
about fifteen whole-array passes per product, each a trip through memory for 10^6 elements.
These kernels do the same arithmetic element by element in one compiled loop, with LLVM's
128-bit integer multiply for the high word (one ``mul`` instruction on x86-64): the Beaver
product of the SPDZ2k online phase and the MAC check's random linear combination run about 4x
faster on 10^6 elements (24 -> 5.6 and 22 -> 5.5 ms), sums and differences 1.5x (they are
bound by memory traffic). They are an implementation detail of :mod:`mpc.ring128`, which calls
them for large operands of the layouts they take (``ring128._kernel_rows``) and keeps its numpy
path as the reference (the tests compare the two, and both with Python integers).

Every kernel is exact modulo 2^128 on limbs ``lo + 2^64 hi`` (uint64 arithmetic wraps, carries
are added explicitly) and writes only its ``out`` arrays. Operands are 2-d, ``(rows, n)``; an
operand with one row is broadcast over the rows. Compiled code is cached on disk beside this
module (``cache=True``), so a process compiles each kernel at most once per machine; importing
this module imports numba (about half a second), which :mod:`mpc.ring128` defers until a large
operation needs it.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["add_products", "add", "sub", "dot_u64", "mulhi", "flat", "JIT", "readonly", "writable"]

JIT = {"nopython": True, "nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}
"""The ``numba.jit`` options of every kernel module (also :mod:`protocols.ot.kernels` and
:mod:`protocols.spdz_offline.kernels`): compiled, GIL released, cached on disk, no bounds
checks, numpy's error model."""

# One compiled version per kernel, made when this module is imported (then cached): every
# operand C-contiguous (ring128 calls row by row for rows of wider arrays), so no layout
# triggers another compilation. Inputs are typed read-only, which accepts writable and
# read-only arrays alike (received data, broadcast views).


def readonly(dims: int, dtype: Any = types.uint64) -> Any:
    """The numba type of a C-contiguous input array (accepts writable and read-only arrays)."""
    return types.Array(dtype, dims, "C", readonly=True)


def writable(dims: int, dtype: Any = types.uint64) -> Any:
    """The numba type of a C-contiguous output array."""
    return types.Array(dtype, dims, "C")


@numba.jit(inline="always", **JIT)
def flat(a):  # type: ignore[no-untyped-def]
    """The C-contiguous ``a`` as a 1-d view, for loops that index it with uint64 offsets
    (numba wraps negative signed indices around, and that select keeps LLVM from vectorizing;
    used by :mod:`protocols.ot.kernels` and :mod:`protocols.spdz_offline.kernels`)."""
    return a.reshape(a.size)


def _signature(inputs: int, outputs: int, dims: int = 2, result: Any = types.void) -> Any:
    return result(*[readonly(dims)] * inputs, *[writable(dims)] * outputs)


@intrinsic
def mulhi(typingctx: Any, a: Any, b: Any) -> Any:
    """The high 64 bits of the 128-bit product of two uint64 values."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

    return sig, codegen


@numba.jit(_signature(10, 2), **JIT)
def add_products(c_lo, c_hi, a1_lo, a1_hi, b1_lo, b1_hi, a2_lo, a2_hi, b2_lo, b2_hi, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out = c + a1 * b1 + a2 * b2 mod 2^128`` (all ``(rows or 1, n)``; ``out`` ``(rows, n)``)."""
    rows, n = out_lo.shape
    for r in range(rows):
        rc = r if c_lo.shape[0] > 1 else 0
        ra1 = r if a1_lo.shape[0] > 1 else 0
        rb1 = r if b1_lo.shape[0] > 1 else 0
        ra2 = r if a2_lo.shape[0] > 1 else 0
        rb2 = r if b2_lo.shape[0] > 1 else 0
        for i in range(n):
            x0, x1 = a1_lo[ra1, i], a1_hi[ra1, i]
            y0, y1 = b1_lo[rb1, i], b1_hi[rb1, i]
            p_lo = x0 * y0
            p_hi = mulhi(x0, y0) + x0 * y1 + x1 * y0
            u0, u1 = a2_lo[ra2, i], a2_hi[ra2, i]
            v0, v1 = b2_lo[rb2, i], b2_hi[rb2, i]
            q_lo = u0 * v0
            q_hi = mulhi(u0, v0) + u0 * v1 + u1 * v0
            s = c_lo[rc, i] + p_lo
            h = c_hi[rc, i] + p_hi + np.uint64(s < p_lo)
            t = s + q_lo
            out_lo[r, i] = t
            out_hi[r, i] = h + q_hi + np.uint64(t < q_lo)


@numba.jit(_signature(4, 2), **JIT)
def add(a_lo, a_hi, b_lo, b_hi, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out = a + b mod 2^128`` (operands ``(rows or 1, n)``)."""
    rows, n = out_lo.shape
    for r in range(rows):
        ra = r if a_lo.shape[0] > 1 else 0
        rb = r if b_lo.shape[0] > 1 else 0
        for i in range(n):
            x = a_lo[ra, i]
            s = x + b_lo[rb, i]
            out_lo[r, i] = s
            out_hi[r, i] = a_hi[ra, i] + b_hi[rb, i] + np.uint64(s < x)


@numba.jit(_signature(4, 2), **JIT)
def sub(a_lo, a_hi, b_lo, b_hi, out_lo, out_hi):  # type: ignore[no-untyped-def]
    """``out = a - b mod 2^128`` (operands ``(rows or 1, n)``)."""
    rows, n = out_lo.shape
    for r in range(rows):
        ra = r if a_lo.shape[0] > 1 else 0
        rb = r if b_lo.shape[0] > 1 else 0
        for i in range(n):
            x, y = a_lo[ra, i], b_lo[rb, i]
            out_lo[r, i] = x - y
            out_hi[r, i] = a_hi[ra, i] - b_hi[rb, i] - np.uint64(x < y)


@numba.jit(_signature(3, 0, 1, types.UniTuple(types.uint64, 2)), **JIT)
def dot_u64(lo, hi, c):  # type: ignore[no-untyped-def]
    """``sum_j (lo_j + 2^64 hi_j) c_j mod 2^128`` for 1-d arrays, as ``(low limb, high limb)``."""
    s_lo = np.uint64(0)
    s_hi = np.uint64(0)
    for i in range(lo.shape[0]):
        x, k = lo[i], c[i]
        p = x * k
        t = s_lo + p
        s_hi += mulhi(x, k) + hi[i] * k + np.uint64(t < p)
        s_lo = t
    return s_lo, s_hi


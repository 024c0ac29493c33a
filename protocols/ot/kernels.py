"""Compiled loops for the local compute of OT extension (numba, LLVM).

The numpy implementations in :mod:`protocols.ot.ringot` (the ring-OT derive step) and
:mod:`protocols.ot.crhash` (the IKNP bit-matrix transpose) stay the reference; these loops
compute exactly the same words in one pass where numpy needs several (each numpy pass is a
trip through memory, and numpy's loops over the 2-word axis of a 128-bit block or over
strided 64-bit columns are its slow ones). Fixed-key AES stays a call into ``cryptography``
between the loops: the loops fuse the XORs, tweaks, additions and carries around it.

- :func:`xor_words`, :func:`tweaks`: the hash's inputs (``q ^ Delta``; ``pi(x) ^ (i, b, d)``
  for every output block ``b``), written straight into the AES input buffer.
- :func:`send_finish`, :func:`recv_finish`: the outputs ``s = H(q)``,
  ``tau = s + x - H(q ^ Delta)`` and ``v = H(t) + c tau`` (``H(.) = pi(pi(.) ^ i) ^ pi(.)``
  from the two AES outputs), with the carries between the limbs of Z_2^128; the sender reads
  each correlation once per ``repeat`` OTs (the multiplication sends one vector in ``tau``
  OTs), so the repeated correlations are never materialized. Two Z_2^128 elements per OT
  (the multiplication's shape) go by loops over rows, vectorized across rows (AVX-512: eight
  rows per iteration, the limbs' carries as vector compares); other widths by loops along
  each row (vectorized along the vOLE's wide rows).
- :func:`transpose64`: the IKNP matrix by column groups of 64 words: runs of 512 bytes of
  every input row gathered into tiles of eight 64x64 bit blocks side by side (SIMD lanes), six
  delta swaps per tile in two passes of three in registers, then the group's output rows
  written once each, whole and in order (numpy needs 36 array passes plus a strided copy per
  tile); :func:`masked_xor` the sender's ``Q_j = G_j ^ (Delta_j & u_j)`` and
  :func:`xor_rows_with` the receiver's ``u_j = G0_j ^ G1_j ^ c``, one pass each.

Measured on this machine (2 cores, one party, best of 7), 2^20 OTs of a 2 x Z_2^128
correlation (one call of the scalar-triple multiplication): the sender's derive step
40 -> 27 ms (numpy with the correlations repeated -> compiled, into a reused output; about
10 ms of either is AES), the receiver's 22 -> 13 ms; with the ring loops vectorized (unsigned
offsets, one output array per loop, the rows of one correlation as one loop) 34 -> 22 ms and
16 -> 10 ms: per chunk of 4096 OTs ``send_finish`` 29 -> 7 us (1.7 ns per OT), ``tweaks``
15 -> 3.5 us, ``xor_words`` 6.4 -> 1.2 us, per 8192 OTs ``recv_finish`` 37 -> 9 us; a vOLE
row of 16,384 Z_2^128 elements 42 -> 14 us (sender) and 28 -> 6 us (receiver). The transpose
of the (128, 2^17) byte matrix 14 -> 2.0 ms (2 ns per 128-bit output row; 5.4 ms when it went
one 64-row block at a time, writing half of every output row per pass). Over the real mesh (2 party processes,
60,000 triples, same session, alternating runs) the offline producer's CPU time per party went
from 4.5-5.1 s to 3.2-3.7 s with these loops, :mod:`protocols.spdz_offline.kernels` and the
reuse of output buffers.

Conventions (as :mod:`mpc.kernels`): one compiled version per kernel, every array
C-contiguous, inputs typed read-only (accepting writable and read-only arrays alike), outputs
written only through the ``out`` arguments; ``cache=True`` keeps the compiled code on disk
beside this module, so a process compiles each kernel at most once per machine. Importing this
module imports numba; callers import it lazily and fall back to numpy (with a warning) when
numba is missing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from mpc.kernels import JIT, flat, readonly, writable

__all__ = ["xor_words", "tweaks", "send_finish", "recv_finish", "transpose64", "masked_xor", "xor_rows_with"]

_U64 = types.uint64
_U8 = types.uint8

# The ring loops below index flat views with uint64 offsets: numba wraps negative signed
# indices around, and that select keeps LLVM from vectorizing. Each vectorized loop writes
# one output array (with two, LLVM's run-time aliasing checks exceed its limit and the loop
# stays scalar), so the sender's ``s`` and ``t`` are written by separate loops over the
# cache-resident chunk.


@numba.jit(types.void(readonly(2), readonly(1), writable(2)), **JIT)
def xor_words(a, d, out):  # type: ignore[no-untyped-def]
    """``out[k, w] = a[k, w] ^ d[w]`` for ``a``, ``out`` ``(n, W)`` and ``d`` ``(W,)``."""
    n, width = a.shape
    af, of = flat(a), flat(out)
    if width == 2:  # the sender's q ^ Delta: one 128-bit block per row, vectorized across rows
        d0, d1 = d[0], d[1]
        for k in range(np.uint64(n)):
            o = np.uint64(2) * k
            a0 = af[o]
            a1 = af[o + np.uint64(1)]
            of[o] = a0 ^ d0
            of[o + np.uint64(1)] = a1 ^ d1
        return
    uw = np.uint64(width)
    for k in range(np.uint64(n)):
        o = k * uw
        for w in range(uw):
            of[o + w] = af[o + w] ^ d[w]


@numba.jit(inline="always", **JIT)
def _tweak_rows(pf, of, k0, k1, base, high, nb):  # type: ignore[no-untyped-def]
    """Rows ``k0 .. k1`` (uint64) of :func:`tweaks` with index ``base + k``; inlined with a
    constant ``nb`` (1 or 2 blocks per row) the row loop vectorizes, with a run-time one (wide
    rows) the block loop."""
    for k in range(k0, k1):
        lo = pf[np.uint64(2) * k] ^ (base + k)
        hi = pf[np.uint64(2) * k + np.uint64(1)]
        o = np.uint64(2 * nb) * k
        for b in range(nb):
            of[o + np.uint64(2 * b)] = lo
            of[o + np.uint64(2 * b + 1)] = hi ^ high[b]


@numba.jit(types.void(readonly(2), _U64, types.int64, readonly(1), writable(3)), **JIT)
def tweaks(p, first, period, high, out):  # type: ignore[no-untyped-def]
    """``out[k, b] = p[k] ^ (first + k % period, high[b])`` for ``p`` ``(n, 2)``, ``out`` ``(n, B, 2)``.

    The tweak of block ``b`` of row ``k`` (:meth:`~protocols.ot.crhash.CRHash.tccr_indexed`):
    index ``first + k % period`` (mod 2^64) in the low word, ``high[b]`` (block and domain) in
    the high word. ``period < 1`` means no period (index ``first + k``).
    """
    n, nb = out.shape[0], out.shape[1]
    if n == 0 or nb == 0:
        return
    pf, of = flat(p), flat(out)
    un = np.uint64(n)
    per = np.uint64(period if period >= 1 else n)
    k0 = np.uint64(0)
    while k0 < un:  # runs of `period` rows: index first + (k - k0), no division per row
        k1 = min(un, k0 + per)
        base = first - k0  # modulo 2^64: base + k = first + (k - k0)
        if nb == 2:  # the multiplication's two Z_2^128 elements per OT
            _tweak_rows(pf, of, k0, k1, base, high, 2)
        elif nb == 1:
            _tweak_rows(pf, of, k0, k1, base, high, 1)
        else:  # wide rows (the vOLE's): the block loop vectorizes
            _tweak_rows(pf, of, k0, k1, base, high, nb)
        k0 = k1


@numba.jit(inline="always", **JIT)
def _sum_diff(s_lo, s_hi, x_lo, x_hi, h_lo, h_hi):  # type: ignore[no-untyped-def]
    """``s + x - h`` modulo 2^128 on ``[lo, hi]`` limbs: the carry of the low limbs' sum, then
    the borrow of their difference."""
    u_lo = s_lo + x_lo
    u_hi = s_hi + x_hi + np.uint64(u_lo < s_lo)
    return u_lo - h_lo, u_hi - h_hi - np.uint64(u_lo < h_lo)


@numba.jit(inline="always", **JIT)
def _send_t2x128(yf, pf, r, k0, k1, x0, x1, x2, x3, tf):  # type: ignore[no-untyped-def]
    """``t`` of rows ``k0 .. k1`` (uint64) for two Z_2^128 elements per OT, all of them with the
    correlation ``x0 .. x3``: a loop over rows, vectorized (8 rows per AVX-512 iteration)."""
    for k in range(k0, k1):
        a = np.uint64(4) * k
        b = np.uint64(4) * (r + k)
        p0 = pf[np.uint64(2) * k]
        p1 = pf[np.uint64(2) * k + np.uint64(1)]
        g0 = pf[np.uint64(2) * (r + k)]
        g1 = pf[np.uint64(2) * (r + k) + np.uint64(1)]
        lo0, hi0 = _sum_diff(yf[a] ^ p0, yf[a + np.uint64(1)] ^ p1, x0, x1, yf[b] ^ g0, yf[b + np.uint64(1)] ^ g1)
        lo1, hi1 = _sum_diff(
            yf[a + np.uint64(2)] ^ p0, yf[a + np.uint64(3)] ^ p1, x2, x3, yf[b + np.uint64(2)] ^ g0, yf[b + np.uint64(3)] ^ g1
        )
        tf[a] = lo0
        tf[a + np.uint64(1)] = hi0
        tf[a + np.uint64(2)] = lo1
        tf[a + np.uint64(3)] = hi1


@numba.jit(inline="always", **JIT)
def _xor_pairs(yf, ya, p0, p1, half, odd, of, oa):  # type: ignore[no-untyped-def]
    """``of[oa + w] = yf[ya + w] ^ (p1 if w odd else p0)`` for ``w < 2 half + odd`` (uint64)."""
    for e in range(half):
        w = np.uint64(2) * e
        of[oa + w] = yf[ya + w] ^ p0
        of[oa + w + np.uint64(1)] = yf[ya + w + np.uint64(1)] ^ p1
    if odd:
        w = np.uint64(2) * half
        of[oa + w] = yf[ya + w] ^ p0


@numba.jit(
    types.void(readonly(2), readonly(2), readonly(2), types.int64, types.int64, types.boolean, writable(2), writable(2)),
    **JIT,
)
def send_finish(y, p, x, row0, repeat, z128, s, t):  # type: ignore[no-untyped-def]
    """The sender's ``s = H(q)`` and ``t = s + x - H(q ^ Delta)`` of ``r`` rows.

    Args (``r`` rows, ``W`` words per row):
        y: ``(2r, 2B)`` the second AES outputs, rows of ``q`` then of ``q ^ Delta``
            (``2B >= W``).
        p: ``(2r, 2)`` the first AES outputs (``pi(.)``), in the same order.
        x: ``(m, W)`` the correlations: OT ``row0 + k`` (row ``k`` here) uses row
            ``(row0 + k) // repeat`` (each correlation sent in ``repeat`` consecutive OTs).
        row0, repeat: as above (``repeat >= 1``).
        z128: words are ``[lo, hi]`` limb pairs of Z_2^128 (``W`` even; else Z_2^64 words).
        s, t: ``(r, W)`` outputs.

    Two Z_2^128 elements per OT (the multiplication) take loops over rows (vectorized across
    rows, one run of rows per correlation); other widths loops along each row (vectorized
    along wide rows, the vOLE's).
    """
    r, width = s.shape
    if r == 0 or width == 0:
        return
    yf, pf, xf, sf, tf = flat(y), flat(p), flat(x), flat(s), flat(t)
    ur = np.uint64(r)
    xi = np.uint64(row0 // repeat)
    left = np.uint64(repeat - row0 % repeat)  # OTs before the next row of x
    rep = np.uint64(repeat)
    if z128 and width == 4 and y.shape[1] == 4:
        for k in range(ur):  # s = H(q), in its own loop (see above)
            a = np.uint64(4) * k
            p0 = pf[np.uint64(2) * k]
            p1 = pf[np.uint64(2) * k + np.uint64(1)]
            y0 = yf[a]
            y1 = yf[a + np.uint64(1)]
            y2 = yf[a + np.uint64(2)]
            y3 = yf[a + np.uint64(3)]
            sf[a] = y0 ^ p0
            sf[a + np.uint64(1)] = y1 ^ p1
            sf[a + np.uint64(2)] = y2 ^ p0
            sf[a + np.uint64(3)] = y3 ^ p1
        k0 = np.uint64(0)
        while k0 < ur:  # a loop over the runs of rows with one correlation
            k1 = min(ur, k0 + left)
            o = np.uint64(4) * xi
            _send_t2x128(yf, pf, ur, k0, k1, xf[o], xf[o + np.uint64(1)], xf[o + np.uint64(2)], xf[o + np.uint64(3)], tf)
            k0 = k1
            left = rep
            xi += np.uint64(1)
        return
    uw = np.uint64(width)
    ys = np.uint64(y.shape[1])
    half = uw // np.uint64(2)
    odd = width % 2 == 1
    for k in range(ur):
        p0 = pf[np.uint64(2) * k]
        p1 = pf[np.uint64(2) * k + np.uint64(1)]
        g0 = pf[np.uint64(2) * (ur + k)]
        g1 = pf[np.uint64(2) * (ur + k) + np.uint64(1)]
        a = k * uw
        ya = k * ys
        yb = (ur + k) * ys
        xo = xi * uw
        if z128:
            for e in range(half):
                w = np.uint64(2) * e
                lo, hi = _sum_diff(
                    yf[ya + w] ^ p0,
                    yf[ya + w + np.uint64(1)] ^ p1,
                    xf[xo + w],
                    xf[xo + w + np.uint64(1)],
                    yf[yb + w] ^ g0,
                    yf[yb + w + np.uint64(1)] ^ g1,
                )
                tf[a + w] = lo
                tf[a + w + np.uint64(1)] = hi
        else:
            for e in range(half):
                w = np.uint64(2) * e
                v = np.uint64(2) * e + np.uint64(1)
                tf[a + w] = (yf[ya + w] ^ p0) + xf[xo + w] - (yf[yb + w] ^ g0)
                tf[a + v] = (yf[ya + v] ^ p1) + xf[xo + v] - (yf[yb + v] ^ g1)
            if odd:
                w = uw - np.uint64(1)
                tf[a + w] = (yf[ya + w] ^ p0) + xf[xo + w] - (yf[yb + w] ^ g0)
        _xor_pairs(yf, ya, p0, p1, half, odd, sf, a)
        left -= np.uint64(1)
        if left == 0:
            left = rep
            xi += np.uint64(1)


@numba.jit(types.void(readonly(2), readonly(2), readonly(1, _U8), readonly(2), types.boolean, writable(2)), **JIT)
def recv_finish(y, p, choices, tau, z128, v):  # type: ignore[no-untyped-def]
    """The receiver's ``v = H(t) + c tau`` of ``r`` rows.

    Args (``r`` rows, ``W`` words per row):
        y: ``(r, 2B)`` the second AES outputs (``2B >= W``); p: ``(r, 2)`` the first.
        choices: ``(r,)`` the choice bits (``tau`` is added where the byte is 1: all its bits
            become a word mask ``0 - c``, as the numpy path computes it).
        tau: ``(r, W)`` the sender's corrections.
        z128: as :func:`send_finish`.
        v: ``(r, W)`` output.

    Loops over rows for two Z_2^128 elements per OT, along each row otherwise (as
    :func:`send_finish`).
    """
    r, width = tau.shape
    if r == 0 or width == 0:
        return
    yf, pf, tf, vf = flat(y), flat(p), flat(tau), flat(v)
    if z128 and width == 4 and y.shape[1] == 4:
        for k in range(np.uint64(r)):
            a = np.uint64(4) * k
            p0 = pf[np.uint64(2) * k]
            p1 = pf[np.uint64(2) * k + np.uint64(1)]
            mask = np.uint64(0) - np.uint64(choices[k])
            h0 = yf[a] ^ p0
            h1 = yf[a + np.uint64(1)] ^ p1
            h2 = yf[a + np.uint64(2)] ^ p0
            h3 = yf[a + np.uint64(3)] ^ p1
            lo0 = h0 + (tf[a] & mask)
            hi0 = h1 + (tf[a + np.uint64(1)] & mask) + np.uint64(lo0 < h0)
            lo1 = h2 + (tf[a + np.uint64(2)] & mask)
            hi1 = h3 + (tf[a + np.uint64(3)] & mask) + np.uint64(lo1 < h2)
            vf[a] = lo0
            vf[a + np.uint64(1)] = hi0
            vf[a + np.uint64(2)] = lo1
            vf[a + np.uint64(3)] = hi1
        return
    uw = np.uint64(width)
    ys = np.uint64(y.shape[1])
    half = uw // np.uint64(2)
    for k in range(np.uint64(r)):
        p0 = pf[np.uint64(2) * k]
        p1 = pf[np.uint64(2) * k + np.uint64(1)]
        mask = np.uint64(0) - np.uint64(choices[k])
        a = k * uw
        ya = k * ys
        if z128:
            for e in range(half):
                w = np.uint64(2) * e
                u = w + np.uint64(1)
                h_lo = yf[ya + w] ^ p0
                lo = h_lo + (tf[a + w] & mask)
                vf[a + w] = lo
                vf[a + u] = (yf[ya + u] ^ p1) + (tf[a + u] & mask) + np.uint64(lo < h_lo)
        else:
            for e in range(half):
                w = np.uint64(2) * e
                u = w + np.uint64(1)
                vf[a + w] = (yf[ya + w] ^ p0) + (tf[a + w] & mask)
                vf[a + u] = (yf[ya + u] ^ p1) + (tf[a + u] & mask)
            if width % 2 == 1:
                w = uw - np.uint64(1)
                vf[a + w] = (yf[ya + w] ^ p0) + (tf[a + w] & mask)


@numba.jit(types.void(readonly(2), readonly(2), readonly(1), writable(2)), **JIT)
def masked_xor(g, u, mask, out):  # type: ignore[no-untyped-def]
    """``out[j] = g[j] ^ (u[j] & mask[j])`` for ``(rows, C)`` words and one mask word per row."""
    rows, n = g.shape
    for j in range(rows):
        m = mask[j]
        for c in range(n):
            out[j, c] = g[j, c] ^ (u[j, c] & m)


@numba.jit(types.void(readonly(2), readonly(2), readonly(1), writable(2)), **JIT)
def xor_rows_with(a, b, row, out):  # type: ignore[no-untyped-def]
    """``out[j] = a[j] ^ b[j] ^ row`` for ``(rows, C)`` words and one ``(C,)`` row."""
    rows, n = a.shape
    for j in range(rows):
        for c in range(n):
            out[j, c] = a[j, c] ^ b[j, c] ^ row[c]


_MASKS = np.array([int(("0" * k + "1" * k) * (32 // k), 2) for k in (32, 16, 8, 4, 2, 1)], dtype=np.uint64)
"""The masks of the six delta-swap stages (bit positions ``c`` with ``c & k == 0``), a constant."""
_MASKS.setflags(write=False)


_LANES = 8
"""64x64 bit blocks transposed side by side: a tile holds row ``j`` of its block ``lane`` at
``y[j * _LANES + lane]``, so every delta swap is one SIMD operation over the eight lanes (one
512-bit or two 256-bit vectors)."""

_TILE = 64 * _LANES
"""Words of one tile (4 KB)."""

_RUN_TILES = 8
"""Tiles per row block and column group: every input row is read in runs of 512 bytes (8 cache
lines). Runs of 128 bytes measured 1.5x slower for G = 2 and G = 8 (the rows, a power of two
apart, are 128 or 512 streams at once); longer runs were no faster."""

_CHUNK_BLOCKS = 8
"""Row blocks transposed together (their tiles, at most 256 KB, stay in L2 until written):
the output rows of the column group get words ``b0 .. b0 + 7`` at once, whole rows when
``G <= 8``."""


@numba.jit(inline="always", **JIT)
def _swap(a, b, mask, k):  # type: ignore[no-untyped-def]
    """One delta swap: bits ``c + k`` of ``a`` against bits ``c`` of ``b`` (``c`` in ``mask``)."""
    t = ((a >> k) ^ b) & mask
    return a ^ (t << k), b ^ t


@numba.jit(inline="always", **JIT)
def _three_stages(y, step, d, ma, ka, mb, kb, mc, kc):  # type: ignore[no-untyped-def]
    """Three delta-swap stages on the eight rows ``p * step + q * d`` (``q`` = 0..7) of the
    tile ``y`` for each ``p`` = 0..7, all lanes: rows ``q``, ``q + 4`` at shift ``ka``, then
    ``q``, ``q + 2`` at ``kb``, then ``q``, ``q + 1`` at ``kc``, in registers (eight loads and
    eight stores per row per three stages). Inlined with constant ``step``, ``d``: LLVM then
    sees the distances between the rows and vectorizes the lane loop."""
    for p in range(8):
        b = p * step
        for i in range(_LANES):
            a0 = y[b + i]
            a1 = y[b + d + i]
            a2 = y[b + 2 * d + i]
            a3 = y[b + 3 * d + i]
            a4 = y[b + 4 * d + i]
            a5 = y[b + 5 * d + i]
            a6 = y[b + 6 * d + i]
            a7 = y[b + 7 * d + i]
            a0, a4 = _swap(a0, a4, ma, ka)
            a1, a5 = _swap(a1, a5, ma, ka)
            a2, a6 = _swap(a2, a6, ma, ka)
            a3, a7 = _swap(a3, a7, ma, ka)
            a0, a2 = _swap(a0, a2, mb, kb)
            a1, a3 = _swap(a1, a3, mb, kb)
            a4, a6 = _swap(a4, a6, mb, kb)
            a5, a7 = _swap(a5, a7, mb, kb)
            a0, a1 = _swap(a0, a1, mc, kc)
            a2, a3 = _swap(a2, a3, mc, kc)
            a4, a5 = _swap(a4, a5, mc, kc)
            a6, a7 = _swap(a6, a7, mc, kc)
            y[b + i] = a0
            y[b + d + i] = a1
            y[b + 2 * d + i] = a2
            y[b + 3 * d + i] = a3
            y[b + 4 * d + i] = a4
            y[b + 5 * d + i] = a5
            y[b + 6 * d + i] = a6
            y[b + 7 * d + i] = a7


@numba.jit(types.void(writable(1), readonly(1)), **JIT)
def _delta_swaps(y, masks):  # type: ignore[no-untyped-def]
    """Transpose the 64x64 bit blocks of the tile ``y`` (``y[j * _LANES + lane]``: row ``j``
    of block ``lane``) in place: the six delta-swap stages of Hacker's Delight 7-3 (they act
    on different bits of the row and column indices, so their order is free), 32, 16, 8 on
    the rows ``r + 8 q`` and 4, 2, 1 on the rows ``8 p + q``."""
    _three_stages(y, _LANES, 8 * _LANES, masks[0], np.uint64(32), masks[1], np.uint64(16), masks[2], np.uint64(8))
    _three_stages(y, 8 * _LANES, _LANES, masks[3], np.uint64(4), masks[4], np.uint64(2), masks[5], np.uint64(1))


@numba.jit(inline="always", **JIT)
def _gather8(dst, d, src, s, stride):  # type: ignore[no-untyped-def]
    """``dst[d + q] = src[s + q * stride]`` for ``q`` = 0..7 (unsigned offsets), loads first."""
    a0 = src[s]
    a1 = src[s + stride]
    a2 = src[s + np.uint64(2) * stride]
    a3 = src[s + np.uint64(3) * stride]
    a4 = src[s + np.uint64(4) * stride]
    a5 = src[s + np.uint64(5) * stride]
    a6 = src[s + np.uint64(6) * stride]
    a7 = src[s + np.uint64(7) * stride]
    dst[d] = a0
    dst[d + np.uint64(1)] = a1
    dst[d + np.uint64(2)] = a2
    dst[d + np.uint64(3)] = a3
    dst[d + np.uint64(4)] = a4
    dst[d + np.uint64(5)] = a5
    dst[d + np.uint64(6)] = a6
    dst[d + np.uint64(7)] = a7


@numba.jit(inline="always", **JIT)
def _copy8(dst, d, src, s):  # type: ignore[no-untyped-def]
    """``dst[d : d + 8] = src[s : s + 8]``: :func:`_gather8` at stride one, which LLVM makes
    one vector load and store (all loads before the stores, so it need not prove that the
    arrays differ)."""
    _gather8(dst, d, src, s, np.uint64(1))


@numba.jit(inline="always", **JIT)
def _write_rows(x, s, per, nb, g, lanes, flat, o):  # type: ignore[no-untyped-def]
    """Write the transposed tiles ``s`` of the ``nb`` row blocks of ``x``: word ``blk`` of the
    output rows ``64 lane + j`` (``lane < lanes``) at ``flat[o + (64 lane + j) g + blk]``."""
    lanes8 = np.uint64(_LANES)
    if lanes < _LANES:  # the last columns
        for blk in range(nb):
            y = x[(blk * per + s) * _TILE : (blk * per + s + 1) * _TILE]
            for lane in range(lanes):
                for j in range(64):
                    flat[np.uint64(o + (lane * 64 + j) * g + blk)] = y[np.uint64(j * _LANES + lane)]
    elif g == 2:  # the IKNP shape: rows j of the eight lanes, 8x8 word transposes
        y0 = x[s * _TILE : (s + 1) * _TILE]
        y1 = x[(per + s) * _TILE : (per + s + 1) * _TILE]
        uo = np.uint64(o)
        for j in range(64):
            uj = np.uint64(j)
            for lane in range(_LANES):
                ul = np.uint64(lane)
                d = uo + ul * np.uint64(128) + np.uint64(2) * uj
                flat[d] = y0[uj * lanes8 + ul]
                flat[d + np.uint64(1)] = y1[uj * lanes8 + ul]
    elif g == 1:  # eight rows of a lane at a time
        y = x[s * _TILE : (s + 1) * _TILE]
        for j0 in range(0, 64, 8):
            for lane in range(_LANES):
                _gather8(flat, np.uint64(o + lane * 64 + j0), y, np.uint64(j0 * _LANES + lane), lanes8)
    elif nb == 8:  # G >= 8 (_CHUNK_BLOCKS = 8): eight words of a row at a time
        for j in range(64):
            for lane in range(_LANES):
                d = np.uint64(o + (lane * 64 + j) * g)
                _gather8(flat, d, x, np.uint64(s * _TILE + j * _LANES + lane), np.uint64(per * _TILE))
    else:
        ug = np.uint64(g)
        for blk in range(nb):
            y = x[(blk * per + s) * _TILE : (blk * per + s + 1) * _TILE]
            ub = np.uint64(o + blk)
            for j in range(64):
                uj = np.uint64(j)
                for lane in range(_LANES):
                    ul = np.uint64(lane)
                    flat[ub + (ul * np.uint64(64) + uj) * ug] = y[uj * lanes8 + ul]


@numba.jit(types.void(readonly(2), readonly(1), writable(2)), **JIT)
def _transpose64(words, masks, out):  # type: ignore[no-untyped-def]
    # The offsets of the copies are uint64: numba wraps negative signed indices around, and
    # that select keeps LLVM from vectorizing them (4x slower).
    rows, n = words.shape
    g = rows // 64
    if g == 0 or n == 0:
        return
    gb = min(g, _CHUNK_BLOCKS)  # row blocks per chunk
    per = min(_RUN_TILES, (n + _LANES - 1) // _LANES)  # tiles per row block and column group
    width = per * _LANES
    # x[((blk * per + s) * 64 + j) * _LANES + lane]: row j of the 64x64 block (row block
    # b0 + blk, column c0 + s * _LANES + lane); lanes past the last column hold stale words,
    # transposed but never written out.
    x = np.empty(gb * per * _TILE, dtype=np.uint64)
    w = words.reshape(-1)
    flat = out.reshape(-1)
    for c0 in range(0, n, width):
        cols = min(width, n - c0)
        full = cols // _LANES  # whole tiles
        tiles = (cols + _LANES - 1) // _LANES
        for b0 in range(0, g, gb):
            nb = min(gb, g - b0)
            for blk in range(nb):
                xb = x[blk * per * _TILE : (blk + 1) * per * _TILE]
                for j in range(64):  # input row 64 (b0 + blk) + j, a run of `cols` words
                    src = np.uint64((64 * (b0 + blk) + j) * n + c0)
                    for s in range(full):
                        _copy8(xb, np.uint64((s * 64 + j) * _LANES), w, src + np.uint64(s * _LANES))
                    for c in range(full * _LANES, cols):
                        xb[np.uint64((full * 64 + j) * _LANES + c - full * _LANES)] = w[src + np.uint64(c)]
                for s in range(tiles):
                    _delta_swaps(xb[s * _TILE : (s + 1) * _TILE], masks)
            # words b0 .. b0 + nb - 1 of the output rows 64 c .. 64 c + 63 of the group's
            # columns c, in order (whole rows, each written once, when G <= _CHUNK_BLOCKS)
            for s in range(tiles):
                lanes = min(_LANES, cols - s * _LANES)
                _write_rows(x, s, per, nb, g, lanes, flat, 64 * (c0 + s * _LANES) * g + b0)


def transpose64(words: np.ndarray, out: np.ndarray) -> None:
    """Transpose the ``(64 G, C)`` uint64 bit matrix ``words`` into ``out`` ``(64 C, G)``.

    Bit ``i`` of word ``c`` of row ``j`` becomes bit ``j % 64`` of word ``j // 64`` of row
    ``64 c + i`` (exactly :func:`protocols.ot.crhash._transpose64`). Per group of 64 columns
    and 8 row blocks: 512-byte runs of (up to) 512 input rows are copied into tiles (eight columns
    of a 64-row block each), the tiles transposed in place, then words ``b0 .. b0 + 7`` of the
    group's 4096 output rows written in order (whole rows when ``G <= 8``). Every word of
    ``out`` is written, nothing outside it.
    """
    _transpose64(words, _MASKS, out)

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
  OTs), so the repeated correlations are never materialized.
- :func:`transpose64`: every 64x64 bit block of the IKNP matrix by six delta swaps over eight
  blocks side by side (SIMD lanes), written to its transposed place (numpy needs 36 array
  passes plus a strided copy per tile); :func:`masked_xor` the sender's
  ``Q_j = G_j ^ (Delta_j & u_j)`` and :func:`xor_rows_with` the receiver's
  ``u_j = G0_j ^ G1_j ^ c``, one pass each.

Measured on this machine (2 cores, one party, best of 7), 2^20 OTs of a 2 x Z_2^128
correlation (one call of the scalar-triple multiplication): the sender's derive step
40 -> 27 ms (numpy with the correlations repeated -> compiled, into a reused output; about
10 ms of either is AES), the receiver's 22 -> 13 ms, the transpose of the (128, 2^17) byte
matrix 13 -> 6.4 ms. Over the real mesh (2 party processes, 60,000 triples, same session,
alternating runs) the offline producer's CPU time per party went from 4.5-5.1 s to 3.2-3.7 s
with these loops, :mod:`protocols.spdz_offline.kernels` and the reuse of output buffers.

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

from mpc.kernels import JIT, readonly, writable

__all__ = ["xor_words", "tweaks", "send_finish", "recv_finish", "transpose64", "masked_xor", "xor_rows_with"]

_U64 = types.uint64
_U8 = types.uint8


@numba.jit(types.void(readonly(2), readonly(1), writable(2)), **JIT)
def xor_words(a, d, out):  # type: ignore[no-untyped-def]
    """``out[k, w] = a[k, w] ^ d[w]`` for ``a``, ``out`` ``(n, W)`` and ``d`` ``(W,)``."""
    n, width = a.shape
    for k in range(n):
        for w in range(width):
            out[k, w] = a[k, w] ^ d[w]


@numba.jit(types.void(readonly(2), _U64, types.int64, readonly(1), writable(3)), **JIT)
def tweaks(p, first, period, high, out):  # type: ignore[no-untyped-def]
    """``out[k, b] = p[k] ^ (first + k % period, high[b])`` for ``p`` ``(n, 2)``, ``out`` ``(n, B, 2)``.

    The tweak of block ``b`` of row ``k`` (:meth:`~protocols.ot.crhash.CRHash.tccr_indexed`):
    index ``first + k % period`` (mod 2^64) in the low word, ``high[b]`` (block and domain) in
    the high word.
    """
    n, nb = out.shape[0], out.shape[1]
    j = 0  # k % period, without a division per row
    for k in range(n):
        lo = p[k, 0] ^ (first + np.uint64(j))
        hi = p[k, 1]
        for b in range(nb):
            out[k, b, 0] = lo
            out[k, b, 1] = hi ^ high[b]
        j += 1
        if j == period:
            j = 0


@numba.jit(
    types.void(readonly(2), readonly(2), readonly(2), types.int64, types.int64, types.boolean, writable(2), writable(2)),
    **JIT,
)
def send_finish(y, p, x, row0, repeat, z128, s, t):  # type: ignore[no-untyped-def]
    """The sender's ``s = H(q)`` and ``t = s + x - H(q ^ Delta)`` of ``r`` rows.

    Args (``r`` rows, ``W`` words per row):
        y: ``(2r, 2B)`` the second AES outputs, rows of ``q`` then of ``q ^ Delta``.
        p: ``(2r, 2)`` the first AES outputs (``pi(.)``), in the same order.
        x: ``(m, W)`` the correlations: OT ``row0 + k`` (row ``k`` here) uses row
            ``(row0 + k) // repeat`` (each correlation sent in ``repeat`` consecutive OTs).
        row0, repeat: as above (``repeat >= 1``).
        z128: words are ``[lo, hi]`` limb pairs of Z_2^128 (else Z_2^64 words).
        s, t: ``(r, W)`` outputs.
    """
    r, width = s.shape
    xi = row0 // repeat
    left = repeat - row0 % repeat  # OTs before the next row of x, without a division per row
    for k in range(r):
        p0, p1 = p[k, 0], p[k, 1]
        g0, g1 = p[r + k, 0], p[r + k, 1]
        if z128:
            for w in range(0, width, 2):
                s_lo = y[k, w] ^ p0
                s_hi = y[k, w + 1] ^ p1
                h_lo = y[r + k, w] ^ g0
                h_hi = y[r + k, w + 1] ^ g1
                u_lo = s_lo + x[xi, w]
                u_hi = s_hi + x[xi, w + 1] + np.uint64(u_lo < s_lo)
                s[k, w] = s_lo
                s[k, w + 1] = s_hi
                t[k, w] = u_lo - h_lo
                t[k, w + 1] = u_hi - h_hi - np.uint64(u_lo < h_lo)
        else:
            for w in range(width):
                sw = y[k, w] ^ (p1 if w & 1 else p0)
                s[k, w] = sw
                t[k, w] = sw + x[xi, w] - (y[r + k, w] ^ (g1 if w & 1 else g0))
        left -= 1
        if left == 0:
            left = repeat
            xi += 1


@numba.jit(types.void(readonly(2), readonly(2), readonly(1, _U8), readonly(2), types.boolean, writable(2)), **JIT)
def recv_finish(y, p, choices, tau, z128, v):  # type: ignore[no-untyped-def]
    """The receiver's ``v = H(t) + c tau`` of ``r`` rows.

    Args (``r`` rows, ``W`` words per row):
        y: ``(r, 2B)`` the second AES outputs; p: ``(r, 2)`` the first.
        choices: ``(r,)`` the choice bits (``tau`` is added where the byte is 1: all its bits
            become a word mask ``0 - c``, as the numpy path computes it).
        tau: ``(r, W)`` the sender's corrections.
        z128: as :func:`send_finish`.
        v: ``(r, W)`` output.
    """
    r, width = tau.shape
    for k in range(r):
        p0, p1 = p[k, 0], p[k, 1]
        mask = np.uint64(0) - np.uint64(choices[k])
        if z128:
            for w in range(0, width, 2):
                h_lo = y[k, w] ^ p0
                h_hi = y[k, w + 1] ^ p1
                lo = h_lo + (tau[k, w] & mask)
                v[k, w] = lo
                v[k, w + 1] = h_hi + (tau[k, w + 1] & mask) + np.uint64(lo < h_lo)
        else:
            for w in range(width):
                v[k, w] = (y[k, w] ^ (p1 if w & 1 else p0)) + (tau[k, w] & mask)


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
"""Word columns transposed side by side (the delta swaps run over them as SIMD lanes)."""


@numba.jit(types.void(writable(1), readonly(1)), **JIT)
def _delta_swaps(x, masks):  # type: ignore[no-untyped-def]
    """Transpose the 64x64 bit blocks held in ``x[j * _LANES + lane]`` (row ``j`` of block
    ``lane``) in place: six delta-swap stages (Hacker's Delight 7-3) over all lanes at once."""
    k = 32
    for stage in range(6):
        mask = masks[stage]
        sk = np.uint64(k)
        span = k * _LANES  # rows r0 .. r0 + k - 1 against r0 + k .. r0 + 2k - 1, all lanes
        for r0 in range(0, 64, 2 * k):
            ia = r0 * _LANES
            ib = ia + span
            for i in range(span):
                a = x[ia + i]
                b = x[ib + i]
                t = ((a >> sk) ^ b) & mask
                x[ib + i] = b ^ t
                x[ia + i] = a ^ (t << sk)
        k >>= 1


@numba.jit(types.void(readonly(2), readonly(1), writable(2)), **JIT)
def _transpose64(words, masks, out):  # type: ignore[no-untyped-def]
    rows, n_words = words.shape
    x = np.zeros(64 * _LANES, dtype=np.uint64)  # x[j * _LANES + lane]: row j of column c0 + lane
    for blk in range(rows // 64):
        base = 64 * blk
        for c0 in range(0, n_words, _LANES):
            lanes = min(_LANES, n_words - c0)
            if lanes < _LANES:
                x[:] = 0
            for j in range(64):
                for lane in range(lanes):
                    x[j * _LANES + lane] = words[base + j, c0 + lane]
            _delta_swaps(x, masks)
            for lane in range(lanes):
                row = 64 * (c0 + lane)
                for j in range(64):
                    out[row + j, blk] = x[j * _LANES + lane]


def transpose64(words: np.ndarray, out: np.ndarray) -> None:
    """Transpose the ``(64 G, C)`` uint64 bit matrix ``words`` into ``out`` ``(64 C, G)``.

    Bit ``i`` of word ``c`` of row ``j`` becomes bit ``j % 64`` of word ``j // 64`` of row
    ``64 c + i`` (exactly :func:`protocols.ot.crhash._transpose64`). 64 rows of eight adjacent
    words are gathered at a time (eight blocks side by side); gathering more rows at once (e.g.
    the sender's ``G ^ (u & Delta)`` from two matrices) measured slower than a separate pass,
    as it outruns the hardware prefetcher's streams.
    """
    _transpose64(words, _MASKS, out)

"""The derive step of ring-correlated OT (Z_2^64 / Z_2^128), fused and cache-blocked (pure).

:meth:`~protocols.ot.OTExtSender.send_correlated_ring` and its receiver hash every extended row
to ``per`` bytes with the tweakable CCR hash (:meth:`~protocols.ot.crhash.CRHash.tccr_indexed`,
tweak ``(first + i, b, domain)`` for block ``b`` of OT ``i``) and add ring elements. The
functions here compute exactly the values of that definition::

    sender:   s = H(q_i),  tau = s + x_i - H(q_i ^ Delta)       (ring arithmetic)
    receiver: v = H(t_i) + c_i * tau

but in chunks of rows whose scratch (AES inputs and outputs, a few hundred KB) is allocated once
per call and stays in the CPU cache, writing straight into the outputs: no full-size
temporaries (each would cost a pass over memory and, above glibc's mmap threshold, fresh page
faults), and every numpy operation runs over long contiguous or 1-d strided runs (never over
the 2-word inner axis of a 128-bit element, numpy's slow path). Z_2^128 elements are the
``[lo, hi]`` uint64 limb pairs of the OT layer; carries between limbs are fixed by comparisons
on the low words. The tests compare with the unfused definition.

With numba (a project dependency) the steps between the AES calls run as compiled loops
(:mod:`protocols.ot.kernels`: one pass each for the AES inputs and for the ring outputs,
about 1.5x faster in all); the numpy functions here stay the reference and the fallback (with
a warning) when numba cannot be imported, and the tests compare the two bit for bit.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from mpc.errors import ConfigError
from protocols.ot.crhash import BLOCK, CRHash, _kernels

__all__ = ["ring_send", "ring_recv", "check_out"]

_CHUNK_BYTES = 1 << 18
"""Hash-output bytes per chunk (per side): 256 KB, so that a chunk's scratch stays in L2."""


def _xor_tweaks(dst: np.ndarray, p: np.ndarray, idx: np.ndarray, high: np.ndarray) -> None:
    """``dst[k, b] = p[k] ^ (idx[k], high[b])`` for ``dst`` (N, B, 2), ``p`` (N, 2) uint64.

    A loop over the shorter of the two axes (blocks for narrow outputs, rows for wide ones),
    each iteration two 1-d vectorized XORs over the longer axis.
    """
    n, nb = dst.shape[0], dst.shape[1]
    if nb <= n:
        for b in range(nb):
            np.bitwise_xor(p[:, 0], idx, out=dst[:, b, 0])
            np.bitwise_xor(p[:, 1], high[b], out=dst[:, b, 1])
    else:
        for k in range(n):
            dst[k, :, 0] = p[k, 0] ^ idx[k]
            np.bitwise_xor(high, p[k, 1], out=dst[k, :, 1])


def _xor_rows(y: np.ndarray, p: np.ndarray) -> None:
    """``y[k, b] ^= p[k]`` for ``y`` (N, B, 2), ``p`` (N, 2) uint64 (loop as :func:`_xor_tweaks`)."""
    n, nb = y.shape[0], y.shape[1]
    if nb <= n:
        for b in range(nb):
            for w in range(2):
                yw = y[:, b, w]
                np.bitwise_xor(yw, p[:, w], out=yw)
    else:
        for k in range(n):
            for w in range(2):
                yw = y[k, :, w]
                np.bitwise_xor(yw, p[k, w], out=yw)


class _Hasher:
    """Chunk scratch and the fixed-key cipher for hashing ``rows`` rows of ``nblocks`` blocks."""

    def __init__(self, rows: int, nblocks: int, domain: int) -> None:
        self.crh = CRHash()
        self.nblocks = nblocks
        self.high = np.arange(nblocks, dtype=np.uint64) | np.uint64((domain & 0xFFFFFFFF) << 32)
        self.px = np.empty(rows * BLOCK + BLOCK, dtype=np.uint8)
        self.tw = np.empty((rows, nblocks, 2), dtype=np.uint64)
        self.y = np.empty(rows * nblocks * BLOCK + BLOCK, dtype=np.uint8)
        self.idx = np.empty(rows, dtype=np.uint64)

    def hash(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``tccr_indexed(x, idx, 16 * nblocks)`` of (N, 16) uint8 ``x`` as (N, 2 * nblocks) uint64.

        The result is a view of the scratch, valid until the next call.
        """
        n = x.shape[0]
        p = self.crh.permute_into(x, self.px).view(np.uint64).reshape(n, 2)
        tw = self.tw[:n]
        _xor_tweaks(tw, p, idx, self.high)
        y = self.crh.permute_into(tw, self.y).view(np.uint64).reshape(n, self.nblocks, 2)
        _xor_rows(y, p)
        return y.reshape(n, 2 * self.nblocks)


def _row_words(a: np.ndarray) -> int:
    """Words per row of an ``(n, ...)`` array (also for ``n = 0``)."""
    return int(np.prod(a.shape[1:], dtype=np.int64))


def _rows_per_chunk(n: int, nblocks: int) -> int:
    return max(1, min(n, _CHUNK_BYTES // (BLOCK * nblocks)))


def _mask_rows(a: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    """``out[k] = a[k] & mask[k]`` for (N, W) uint64 ``a`` and (N,) ``mask`` (loop over the shorter axis)."""
    n, w = a.shape
    if w <= n:
        for j in range(w):
            np.bitwise_and(a[:, j], mask, out=out[:, j])
    else:
        np.bitwise_and(a, mask[:, None], out=out)


def ring_send(
    q: np.ndarray,
    delta: np.ndarray,
    first: int,
    x: np.ndarray,
    z128: bool,
    domain: int,
    repeat: int = 1,
    s_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sender's ``(s, tau)`` of a ring-correlated OT call (see the module docstring).

    Computed by the compiled loops of :mod:`protocols.ot.kernels` around the AES calls when
    numba is available, else by :func:`_ring_send_numpy` (the reference; same values).

    Args:
        q: (n, 16) uint8 rows ``q_i``.
        delta: (16,) uint8, the sender's global correlation.
        first: the OT index of row 0.
        x: (n / repeat, ...) uint64 correlations (for Z_2^128 the last axis is the limb pair).
        z128: the ring is Z_2^128 (else Z_2^64).
        domain: the hash's domain separator.
        repeat: OTs per correlation: OT ``i`` uses ``x[i // repeat]`` (as ``np.repeat(x,
            repeat, axis=0)`` would, without materializing it).
        s_out: where to write ``s`` (a C-contiguous uint64 array of its size, e.g. a reused
            buffer; it is returned reshaped), else fresh memory.

    Returns:
        ``(s, tau)`` of shape ``(n, *x.shape[1:])``: the sender's output and the correction it
        sends.

    Raises:
        ConfigError: ``x`` does not have ``n / repeat`` rows.
    """
    if repeat < 1 or x.shape[0] * repeat != q.shape[0]:
        raise ConfigError("ring OT needs one correlation per `repeat` OTs")
    n = q.shape[0]
    shape = (n, *x.shape[1:])
    s_rows = None if s_out is None else _out_rows(s_out, n, _row_words(x))
    kernels = _kernels()
    if kernels is None:
        s, tau = _ring_send_numpy(q, delta, first, np.repeat(x, repeat, axis=0) if repeat > 1 else x, z128, domain)
        if s_rows is None:
            return s, tau
        np.copyto(s_rows, s.reshape(s_rows.shape))
        return s_rows.reshape(shape), tau
    s, tau = _ring_send_compiled(kernels, q, delta, first, x, z128, domain, repeat, s_rows)
    return s.reshape(shape), tau.reshape(shape)


def check_out(out: Any, size: int) -> None:
    """Check a caller's output buffer for ``size`` words of a ring OT call.

    Raises:
        ConfigError: ``out`` is not a writeable C-contiguous uint64 array of ``size`` words.
    """
    if not isinstance(out, np.ndarray) or out.dtype != np.uint64 or out.size != size:
        raise ConfigError("ring OT output buffer must be uint64 of the output's size")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ConfigError("ring OT output buffer must be C-contiguous and writeable")


def _out_rows(out: np.ndarray, n: int, words: int) -> np.ndarray:
    """``out`` as ``(n, words)`` uint64 rows to write into (see :func:`check_out`)."""
    check_out(out, n * words)
    return out.reshape(n, words)


def _ring_send_compiled(
    kernels: ModuleType,
    q: np.ndarray,
    delta: np.ndarray,
    first: int,
    x: np.ndarray,
    z128: bool,
    domain: int,
    repeat: int,
    s_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ring_send` by the compiled loops: per chunk, two AES calls for ``pi(q)`` and
    ``pi(q ^ Delta)``, one loop writing the tweaked blocks, one AES call, one loop for the outputs.
    Returns ``(s, tau)`` as ``(n, words)`` rows (``s`` in ``s_out`` if given)."""
    n = q.shape[0]
    words = _row_words(x)
    xw = np.ascontiguousarray(x).reshape(x.shape[0], words)
    nblocks = -(-words // 2)
    if s_out is None:
        s_out = np.empty((n, words), dtype=np.uint64)
    t_out = np.empty((n, words), dtype=np.uint64)
    rows = _rows_per_chunk(n, 2 * nblocks)
    crh = CRHash()
    high = _high(nblocks, domain)
    qd = np.empty((rows, 2), dtype=np.uint64)
    px = np.empty(2 * rows * BLOCK + BLOCK, dtype=np.uint8)
    tw = np.empty((2 * rows, nblocks, 2), dtype=np.uint64)
    ybuf = np.empty(2 * rows * nblocks * BLOCK + BLOCK, dtype=np.uint8)
    qw = np.ascontiguousarray(q).view(np.uint64)
    dw = np.ascontiguousarray(delta).view(np.uint64)
    # A loop over chunks of rows (bounded, cache-resident scratch), each a few compiled loops.
    for k0 in range(0, n, rows):
        k1 = min(n, k0 + rows)
        r = k1 - k0
        kernels.xor_words(qw[k0:k1], dw, qd[:r])
        crh.permute_into(qw[k0:k1], px)
        crh.permute_into(qd[:r], px[r * BLOCK :])
        p = px[: 2 * r * BLOCK].view(np.uint64).reshape(2 * r, 2)
        kernels.tweaks(p, np.uint64(first + k0), r, high, tw[: 2 * r])
        y = crh.permute_into(tw[: 2 * r], ybuf).view(np.uint64).reshape(2 * r, 2 * nblocks)
        kernels.send_finish(y, p, xw, k0, repeat, z128, s_out[k0:k1], t_out[k0:k1])
    return s_out, t_out


def _high(nblocks: int, domain: int) -> np.ndarray:
    """The high tweak words ``(b, domain)`` of blocks ``b < nblocks``."""
    return np.arange(nblocks, dtype=np.uint64) | np.uint64((domain & 0xFFFFFFFF) << 32)


def _ring_send_numpy(
    q: np.ndarray, delta: np.ndarray, first: int, x: np.ndarray, z128: bool, domain: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ring_send` with numpy only (the reference)."""
    n = q.shape[0]
    xw = np.ascontiguousarray(x).reshape(n, _row_words(x))
    words = xw.shape[1]
    nblocks = -(-words // 2)
    s_out = np.empty((n, words), dtype=np.uint64)
    t_out = np.empty((n, words), dtype=np.uint64)
    rows = _rows_per_chunk(n, 2 * nblocks)
    h = _Hasher(2 * rows, nblocks, domain)
    inp = np.empty((2 * rows, 2), dtype=np.uint64)
    qw = np.ascontiguousarray(q).view(np.uint64)
    dw = np.ascontiguousarray(delta).view(np.uint64)
    carry = np.empty((rows, words // 2 if z128 else 0), dtype=bool)
    # A loop over chunks of rows (bounded, cache-resident scratch), each fully vectorized.
    for k0 in range(0, n, rows):
        k1 = min(n, k0 + rows)
        r = k1 - k0
        inp[:r] = qw[k0:k1]
        np.bitwise_xor(qw[k0:k1, 0], dw[0], out=inp[r : 2 * r, 0])
        np.bitwise_xor(qw[k0:k1, 1], dw[1], out=inp[r : 2 * r, 1])
        idx = h.idx[: 2 * r]
        idx[:r] = np.arange(first + k0, first + k1, dtype=np.uint64)
        idx[r:] = idx[:r]
        y = h.hash(inp[: 2 * r].view(np.uint8), idx)
        s, h1 = y[:r, :words], y[r:, :words]
        s_out[k0:k1] = s
        t = t_out[k0:k1]
        np.add(s, xw[k0:k1], out=t)
        if z128:
            c = carry[:r]
            np.less(t[:, 0::2], s[:, 0::2], out=c)  # the low limb wrapped: carry into the high one
            np.add(t[:, 1::2], c, out=t[:, 1::2])
            np.less(t[:, 0::2], h1[:, 0::2], out=c)  # the low limb will wrap: borrow
            t -= h1
            np.subtract(t[:, 1::2], c, out=t[:, 1::2])
        else:
            t -= h1
    return s_out.reshape(x.shape), t_out.reshape(x.shape)


def ring_recv(
    t: np.ndarray, first: int, choices: np.ndarray, tau: np.ndarray, z128: bool, domain: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The receiver's ``v = H(t_i) + c_i * tau_i`` of a ring-correlated OT call.

    Compiled (:mod:`protocols.ot.kernels`) when numba is available and ``choices`` is uint8 or
    bool, else :func:`_ring_recv_numpy` (the reference; same values).

    Args:
        t: (n, 16) uint8 rows ``t_i``.
        first: the OT index of row 0.
        choices: (n,) 0/1 uint8.
        tau: (n, ...) uint64, the sender's corrections.
        z128: the ring is Z_2^128 (else Z_2^64).
        domain: the hash's domain separator.
        out: where to write ``v`` (as ``s_out`` of :func:`ring_send`), else fresh memory.

    Returns:
        ``v`` of ``tau``'s shape.
    """
    n = t.shape[0]
    v_rows = None if out is None else _out_rows(out, n, _row_words(tau))
    kernels = _kernels()
    c = np.asarray(choices)
    if kernels is None or c.dtype not in (np.uint8, np.bool_):
        v = _ring_recv_numpy(t, first, choices, tau, z128, domain)
        if v_rows is None:
            return v
        np.copyto(v_rows, v.reshape(v_rows.shape))
        return v_rows.reshape(tau.shape)
    return _ring_recv_compiled(kernels, t, first, c, tau, z128, domain, v_rows).reshape(tau.shape)


def _ring_recv_compiled(
    kernels: ModuleType,
    t: np.ndarray,
    first: int,
    choices: np.ndarray,
    tau: np.ndarray,
    z128: bool,
    domain: int,
    v_out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`ring_recv` by the compiled loops (``choices`` uint8 or bool): per chunk, the AES
    call for ``pi(t)``, one loop writing the tweaked blocks, one AES call, one loop for ``v``.
    Returns ``v`` as ``(n, words)`` rows (in ``v_out`` if given)."""
    n = t.shape[0]
    tw = np.ascontiguousarray(tau).reshape(n, _row_words(tau))
    words = tw.shape[1]
    nblocks = -(-words // 2)
    if v_out is None:
        v_out = np.empty((n, words), dtype=np.uint64)
    rows = _rows_per_chunk(n, nblocks)
    crh = CRHash()
    high = _high(nblocks, domain)
    px = np.empty(rows * BLOCK + BLOCK, dtype=np.uint8)
    tweaked = np.empty((rows, nblocks, 2), dtype=np.uint64)
    ybuf = np.empty(rows * nblocks * BLOCK + BLOCK, dtype=np.uint8)
    tb = np.ascontiguousarray(t).view(np.uint64)
    cb = np.ascontiguousarray(choices).view(np.uint8)
    # A loop over chunks of rows (bounded, cache-resident scratch), each a few compiled loops.
    for k0 in range(0, n, rows):
        k1 = min(n, k0 + rows)
        r = k1 - k0
        p = crh.permute_into(tb[k0:k1], px).view(np.uint64).reshape(r, 2)
        kernels.tweaks(p, np.uint64(first + k0), r, high, tweaked[:r])
        y = crh.permute_into(tweaked[:r], ybuf).view(np.uint64).reshape(r, 2 * nblocks)
        kernels.recv_finish(y, p, cb[k0:k1], tw[k0:k1], z128, v_out[k0:k1])
    return v_out


def _ring_recv_numpy(t: np.ndarray, first: int, choices: np.ndarray, tau: np.ndarray, z128: bool, domain: int) -> np.ndarray:
    """:func:`ring_recv` with numpy only (the reference)."""
    n = t.shape[0]
    tw = np.ascontiguousarray(tau).reshape(n, _row_words(tau))
    words = tw.shape[1]
    nblocks = -(-words // 2)
    v_out = np.empty((n, words), dtype=np.uint64)
    rows = _rows_per_chunk(n, nblocks)
    h = _Hasher(rows, nblocks, domain)
    masks = np.zeros(n, dtype=np.uint64)
    np.subtract(masks, choices, out=masks, casting="unsafe")  # 0 or all ones
    sel = np.empty((rows, words), dtype=np.uint64)
    carry = np.empty((rows, words // 2 if z128 else 0), dtype=bool)
    tb = np.ascontiguousarray(t)
    # A loop over chunks of rows (bounded, cache-resident scratch), each fully vectorized.
    for k0 in range(0, n, rows):
        k1 = min(n, k0 + rows)
        r = k1 - k0
        idx = h.idx[:r]
        idx[:] = np.arange(first + k0, first + k1, dtype=np.uint64)
        y = h.hash(tb[k0:k1], idx)[:, :words]
        m = sel[:r]
        _mask_rows(tw[k0:k1], masks[k0:k1], m)
        v = v_out[k0:k1]
        np.add(y, m, out=v)
        if z128:
            c = carry[:r]
            np.less(v[:, 0::2], y[:, 0::2], out=c)
            np.add(v[:, 1::2], c, out=v[:, 1::2])
    return v_out.reshape(tau.shape)

"""The compiled loops of protocols.ot.kernels against the numpy reference paths, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.ot import crhash, extension, ringot
from protocols.ot import kernels as k

DOMAIN = 3
M64, M128 = 1 << 64, 1 << 128


def readonly(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.setflags(write=False)
    return b


def extremes(x: np.ndarray, prg: PRG) -> np.ndarray:
    """``x`` with about a third of its words 2^64 - 1 and a third 0: every carry and borrow."""
    flat = x.reshape(-1)
    pick = prg.buffer(flat.size) % 3
    flat[pick == 0] = np.uint64(M64 - 1)
    flat[pick == 1] = np.uint64(0)
    return x


def same(a: tuple[np.ndarray, ...] | np.ndarray, b: tuple[np.ndarray, ...] | np.ndarray) -> bool:
    a_t = a if isinstance(a, tuple) else (a,)
    b_t = b if isinstance(b, tuple) else (b,)
    return all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a_t, b_t, strict=True))


# -- the ring-OT derive step ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n, shape, z128",
    [
        (1000, (2, 2), True),  # the multiplication shape
        (4099, (1, 2), True),  # several chunks, an odd partial last one
        (3, (700, 2), True),  # wide rows: one row per chunk
        (41, (5,), False),  # Z_2^64, odd width: a truncated last block
        (2500, (3,), False),
        (1, (1,), False),
        (0, (2, 2), True),  # empty
    ],
)
def test_ring_derive_equals_numpy(prg: PRG, n: int, shape: tuple[int, ...], z128: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ringot, "_CHUNK_BYTES", 1 << 12)  # many small chunks
    q = prg.buffer(16 * n).reshape(n, 16)
    delta = prg.buffer(16).copy()
    x = extremes(prg.uint64((n, *shape)), prg)
    c = (prg.buffer(n) & 1).astype(np.uint8)
    first = (1 << 40) + 7
    want = ringot._ring_send_numpy(q, delta, first, x, z128, DOMAIN)
    got = ringot._ring_send_compiled(k, readonly(q), readonly(delta), first, readonly(x), z128, DOMAIN, 1)
    assert same(tuple(a.reshape(x.shape) for a in got), want)
    v_want = ringot._ring_recv_numpy(q, first, c, want[1], z128, DOMAIN)
    v_got = ringot._ring_recv_compiled(k, readonly(q), first, readonly(c), readonly(want[1]), z128, DOMAIN)
    assert same(v_got.reshape(x.shape), v_want)
    # into given buffers (the reuse of the multiplication), by both paths
    s_buf, v_buf = np.empty(x.size, dtype=np.uint64), np.empty(x.size, dtype=np.uint64)
    s_got, t_got = ringot.ring_send(q, delta, first, x, z128, DOMAIN, 1, s_out=s_buf)
    assert same((s_got, t_got), want) and (n == 0 or np.shares_memory(s_got, s_buf))
    v_got = ringot.ring_recv(q, first, c, want[1], z128, DOMAIN, out=v_buf)
    assert same(v_got, v_want) and (n == 0 or np.shares_memory(v_got, v_buf))
    s_buf[:] = 0
    assert same(ringot.ring_send(q, delta, first, x, z128, DOMAIN, 1, s_out=s_buf), want)  # not stale
    assert same(ringot.ring_recv(q, first, c.astype(np.int64), want[1], z128, DOMAIN, out=v_buf), v_want)
    with pytest.raises(ConfigError):
        ringot.ring_send(q, delta, first, x, z128, DOMAIN, 1, s_out=np.empty(x.size + 1, dtype=np.uint64))
    with pytest.raises(ConfigError):
        ringot.ring_recv(q, first, c, want[1], z128, DOMAIN, out=readonly(v_buf))
    # bool choices take the compiled path too; other integer dtypes the numpy one: same values
    assert same(ringot.ring_recv(q, first, c.astype(bool), want[1], z128, DOMAIN), v_want)
    assert same(ringot.ring_recv(q, first, c.astype(np.int64), want[1], z128, DOMAIN), v_want)


@pytest.mark.parametrize("repeat, rows", [(1, 37), (3, 37), (256, 5), (7, 1)])
def test_ring_send_repeat_is_np_repeat(prg: PRG, repeat: int, rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compact ``x`` sent ``repeat`` times per row equals the materialized repeat, also when
    chunk boundaries fall inside a row's run of OTs."""
    monkeypatch.setattr(ringot, "_CHUNK_BYTES", 1 << 10)  # 16-row chunks
    n = rows * repeat
    q = prg.buffer(16 * n).reshape(n, 16)
    delta = prg.buffer(16).copy()
    x = extremes(prg.uint64((rows, 2, 2)), prg)
    want = ringot._ring_send_numpy(q, delta, 5, np.repeat(x, repeat, axis=0), True, DOMAIN)
    assert same(ringot.ring_send(q, delta, 5, readonly(x), True, DOMAIN, repeat), want)
    kernels = crhash._kernels()
    monkeypatch.setattr(crhash, "_kernels", lambda: None)
    monkeypatch.setattr(ringot, "_kernels", lambda: None)
    assert same(ringot.ring_send(q, delta, 5, x, True, DOMAIN, repeat), want)  # the numpy fallback
    assert kernels is not None


def test_ring_send_repeat_against_python_ints(prg: PRG) -> None:
    """``tau = s + x - H(q ^ Delta)`` mod 2^128 with Python integers, ``x`` repeated."""
    n, repeat = 60, 4
    q = prg.buffer(16 * n).reshape(n, 16)
    delta = prg.buffer(16).copy()
    x = extremes(prg.uint64((n // repeat, 2, 2)), prg)
    s, tau = ringot.ring_send(q, delta, 11, x, True, DOMAIN, repeat)
    h0, h1 = extension.hash_pairs(q, delta, 11, 32, DOMAIN)
    for i in (0, 1, 17, n - 1):
        for e in range(2):
            lo = slice(16 * e, 16 * e + 16)
            hs, hd = int.from_bytes(h0[i, lo].tobytes(), "little"), int.from_bytes(h1[i, lo].tobytes(), "little")
            xe = int(x[i // repeat, e, 0]) | (int(x[i // repeat, e, 1]) << 64)
            assert int(s[i, e, 0]) | (int(s[i, e, 1]) << 64) == hs
            assert int(tau[i, e, 0]) | (int(tau[i, e, 1]) << 64) == (hs + xe - hd) % M128


def test_ring_send_rejects_a_wrong_repeat(prg: PRG) -> None:
    q = prg.buffer(16 * 10).reshape(10, 16)
    with pytest.raises(ConfigError):
        ringot.ring_send(q, prg.buffer(16), 0, prg.uint64((3, 2)), True, DOMAIN, 3)
    with pytest.raises(ConfigError):
        ringot.ring_send(q, prg.buffer(16), 0, prg.uint64((10, 2)), True, DOMAIN, 0)


def test_tweaks_and_xor_words_equal_their_definitions(prg: PRG) -> None:
    for n, nb, period in ((13, 3, 13), (10, 1, 4), (0, 2, 1), (7, 5, 7)):
        p = readonly(prg.uint64((n, 2)))
        high = readonly(prg.uint64(nb))
        first = np.uint64(M64 - 3)  # the index wraps modulo 2^64
        out = np.empty((n, nb, 2), dtype=np.uint64)
        k.tweaks(p, first, period, high, out)
        idx = np.array([(int(first) + i % period) % M64 for i in range(n)], dtype=np.uint64)
        assert np.array_equal(out[:, :, 0], np.broadcast_to((p[:, 0] ^ idx)[:, None], (n, nb)))
        assert np.array_equal(out[:, :, 1], p[:, 1:2] ^ high[None, :])
        d = readonly(prg.uint64(2))
        xo = np.empty((n, 2), dtype=np.uint64)
        k.xor_words(p, d, xo)
        assert np.array_equal(xo, p ^ d[None, :])



def _finish_reference(y, p, x, row0, repeat, z128, tau, choices, width):  # type: ignore[no-untyped-def]
    """``send_finish``'s ``(s, t)`` and ``recv_finish``'s ``v`` (on the first ``r`` rows of
    ``y``, ``p``) by Python integers."""
    r = y.shape[0] // 2
    s, t, v = (np.zeros((r, width), dtype=np.uint64) for _ in range(3))
    mod, step = (M128, 2) if z128 else (M64, 1)
    for k in range(r):
        for w in range(0, width, step):

            def val(a: np.ndarray, row: int, pr: np.ndarray, col: int = w) -> int:
                lo = int(a[row, col]) ^ (int(pr[0]) if pr is not None else 0)
                if not z128:
                    return lo
                return lo | ((int(a[row, col + 1]) ^ (int(pr[1]) if pr is not None else 0)) << 64)

            pw = p[k] if z128 else p[k, w % 2 : w % 2 + 1]
            gw = p[r + k] if z128 else p[r + k, w % 2 : w % 2 + 1]
            sv = val(y, k, pw)
            tv = (sv + val(x, (row0 + k) // repeat, None) - val(y, r + k, gw)) % mod
            vv = (sv + int(choices[k]) * val(tau, k, None)) % mod
            for out, value in ((s, sv), (t, tv), (v, vv)):
                out[k, w] = value % M64
                if z128:
                    out[k, w + 1] = value >> 64
    return s, t, v


@pytest.mark.parametrize(
    "r, width, ywidth, z128, row0, repeat",
    [
        (37, 4, 4, True, 300, 256),  # the multiplication's shape: a run of rows per correlation
        (37, 4, 4, True, 5, 7),  # runs end inside the chunk, an odd last run
        (9, 4, 4, True, 3, 1),
        (1, 4, 4, True, 255, 256),  # one row, the last of its run
        (3, 66, 66, True, 2, 1),  # wide rows (the vOLE's), along the row
        (5, 2, 2, True, 4, 3),
        (6, 5, 6, False, 1, 2),  # Z_2^64, odd width: y rows one word longer
        (4, 4, 4, False, 0, 1),  # Z_2^64 of width 4: not the Z_2^128 path
        (2, 1, 2, False, 0, 1),
    ],
)
def test_finish_kernels_equal_python_ints(
    prg: PRG, r: int, width: int, ywidth: int, z128: bool, row0: int, repeat: int
) -> None:
    """``send_finish`` / ``recv_finish`` on every path against Python integers, with all-ones
    and zero words (carries and borrows across the limbs)."""
    y = readonly(extremes(prg.uint64((2 * r, ywidth)), prg))
    p = readonly(extremes(prg.uint64((2 * r, 2)), prg))
    x = readonly(extremes(prg.uint64(((row0 + r - 1) // repeat + 1, width)), prg))
    tau = readonly(extremes(prg.uint64((r, width)), prg))
    choices = readonly((prg.buffer(r) & 1).astype(np.uint8))
    s, t, v = np.empty((r, width), dtype=np.uint64), np.empty((r, width), dtype=np.uint64), np.empty((r, width), dtype=np.uint64)
    k.send_finish(y, p, x, row0, repeat, z128, s, t)
    k.recv_finish(y[:r], p[:r], choices, tau, z128, v)
    want_s, want_t, want_v = _finish_reference(y, p, x, row0, repeat, z128, tau, choices, width)
    assert same((s, t, v), (want_s, want_t, want_v))
    ones = np.full((2 * r, ywidth), M64 - 1, dtype=np.uint64)  # all-ones words: every carry at once
    zero_p = np.zeros((2 * r, 2), dtype=np.uint64)
    xo = np.full(x.shape, M64 - 1, dtype=np.uint64)
    k.send_finish(ones, zero_p, xo, row0, repeat, z128, s, t)
    k.recv_finish(ones[:r], zero_p[:r], np.ones(r, dtype=np.uint8), xo[:1].repeat(r, axis=0), z128, v)
    want = _finish_reference(ones, zero_p, xo, row0, repeat, z128, xo[:1].repeat(r, axis=0), np.ones(r, dtype=np.uint8), width)
    assert same((s, t, v), want)


def test_tweaks_rows_runs_and_wide_rows(prg: PRG) -> None:
    """Every path of ``tweaks`` (1, 2 and many blocks per row; runs of ``period`` rows; no
    period) and of ``xor_words`` (2 words per row and others) against their definitions."""
    for n, nb, period in ((9, 2, 4), (8, 2, 8), (5, 1, 2), (3, 37, 2), (6, 2, 0), (4, 3, -1)):
        p = readonly(extremes(prg.uint64((n, 2)), prg))
        high = readonly(prg.uint64(nb))
        first = np.uint64(M64 - 2)
        out = np.empty((n, nb, 2), dtype=np.uint64)
        k.tweaks(p, first, period, high, out)
        per = period if period >= 1 else n
        idx = np.array([(int(first) + i % per) % M64 for i in range(n)], dtype=np.uint64)
        assert np.array_equal(out[:, :, 0], np.broadcast_to((p[:, 0] ^ idx)[:, None], (n, nb)))
        assert np.array_equal(out[:, :, 1], p[:, 1:2] ^ high[None, :])
    for n, width in ((5, 2), (3, 3), (4, 1), (0, 2)):
        a, d = readonly(prg.uint64((n, width))), readonly(prg.uint64(width))
        xo = np.empty((n, width), dtype=np.uint64)
        k.xor_words(a, d, xo)
        assert np.array_equal(xo, a ^ d[None, :])

# -- the IKNP matrices ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, words",
    [
        (64, 1),  # G = 1
        (64, 67),
        (128, 1),  # the 64-OT vOLE call: one partial tile
        (128, 3),
        (128, 8),  # one whole tile
        (128, 64),  # one whole column group (8 tiles)
        (128, 64 * 3 + 13),  # whole groups, then whole tiles and a partial tile
        (192, 17),  # G = 3
        (320, 70),  # G = 5
        (512, 1),  # G = 8 (KKRT's columns)
        (512, 130),
        (576, 9),  # G = 9: a chunk of 8 row blocks and one of 1
        (8192, 8),  # G = 128 (KKRT's codes)
        (128, 2049),
        (128, 4096 + 67),  # large, random
        (64, 0),
        (0, 5),
    ],
)
def test_transpose64_equals_numpy(prg: PRG, rows: int, words: int) -> None:
    m = readonly(prg.uint64((rows, words)))
    size = 64 * words * (rows // 64)
    buf = np.full(size + 9, np.uint64(0xA5A5A5A5A5A5A5A5), dtype=np.uint64)  # stale words and a guard
    out = buf[:size].reshape(64 * words, rows // 64)
    k.transpose64(m, out)
    assert np.all(buf[size:] == np.uint64(0xA5A5A5A5A5A5A5A5))  # nothing written past out
    if rows and words:
        assert np.array_equal(out, crhash._transpose64(m))  # every word written
        # and bit by bit: bit i of word c of row j is bit j % 64 of word j // 64 of row 64 c + i
        for j, c, i in ((0, 0, 0), (rows - 1, words - 1, 63), (rows // 2, words // 2, 37)):
            bit = (int(m[j, c]) >> i) & 1
            assert (int(out[64 * c + i, j // 64]) >> (j % 64)) & 1 == bit


def test_transpose64_is_a_transpose(prg: PRG) -> None:
    """Independently of the numpy reference: unpacked bits, transposed, packed again."""
    for rows, words in ((128, 11), (512, 9), (64, 1)):
        m = prg.uint64((rows, words))
        out = np.empty((64 * words, rows // 64), dtype=np.uint64)
        k.transpose64(readonly(m), out)
        bits = np.unpackbits(m.view(np.uint8), axis=1, bitorder="little")  # bit i of word c at 64 c + i
        want = np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little").view(np.uint64)
        assert np.array_equal(out, want)


def test_transpose_bits_uses_the_kernel_and_equals_numpy(prg: PRG, monkeypatch: pytest.MonkeyPatch) -> None:
    m = prg.buffer(128 * 24).reshape(128, 24)
    got = crhash.transpose_bits(readonly(m))
    monkeypatch.setattr(crhash, "_kernels", lambda: None)
    assert same(got, crhash.transpose_bits(m))


@pytest.mark.parametrize("nbytes", [16, 24, 8 * 1031, 12, 1])
def test_iknp_columns_and_rows_equal_numpy(prg: PRG, nbytes: int) -> None:
    g0, g1, u = (readonly(prg.buffer(128 * nbytes).reshape(128, nbytes)) for _ in range(3))
    packed = readonly(prg.buffer(nbytes))
    mask = readonly(((prg.buffer(128) & 1) * np.uint8(0xFF)).reshape(128, 1))
    assert same(extension.receiver_columns(g0, g1, packed), g0 ^ g1 ^ packed[None, :])
    assert same(extension.sender_rows(g0, u, mask), crhash.transpose_bits((u & mask) ^ g0))


def test_masked_xor_and_xor_rows_with(prg: PRG) -> None:
    for rows, n in ((3, 5), (128, 1), (0, 4), (2, 0)):
        g, u = readonly(prg.uint64((rows, n))), readonly(prg.uint64((rows, n)))
        mask = readonly(np.where(prg.buffer(rows) & 1, np.uint64(M64 - 1), np.uint64(0)).astype(np.uint64))
        out = np.empty((rows, n), dtype=np.uint64)
        k.masked_xor(g, u, mask, out)
        assert np.array_equal(out, g ^ (u & mask[:, None]))
        row = readonly(prg.uint64(n))
        k.xor_rows_with(g, u, row, out)
        assert np.array_equal(out, g ^ u ^ row[None, :])


# -- without numba --------------------------------------------------------------------------


def test_without_numba_numpy_computes_and_warns(prg: PRG, missing_kernels: Any) -> None:
    n = 300
    q = prg.buffer(16 * n).reshape(n, 16)
    delta = prg.buffer(16).copy()
    x = prg.uint64((n, 2, 2))
    c = (prg.buffer(n) & 1).astype(np.uint8)
    want = ringot.ring_send(q, delta, 0, x, True, DOMAIN)
    v_want = ringot.ring_recv(q, 0, c, want[1], True, DOMAIN)
    m = prg.buffer(128 * 16).reshape(128, 16)
    t_want = crhash.transpose_bits(m)
    with missing_kernels("protocols.ot.kernels", crhash):
        assert same(ringot.ring_send(q, delta, 0, x, True, DOMAIN), want)
        assert same(ringot.ring_recv(q, 0, c, want[1], True, DOMAIN), v_want)
        assert same(crhash.transpose_bits(m), t_want)


def test_iknp_steps_may_reuse_the_stream_buffers(prg: PRG) -> None:
    """With ``reuse_*`` the result is the same, written over the stream bytes (both paths)."""
    g0, g1, u = (prg.buffer(128 * 32).reshape(128, 32) for _ in range(3))
    packed = prg.buffer(32)
    mask = ((prg.buffer(128) & 1) * np.uint8(0xFF)).reshape(128, 1)
    want_u = g0 ^ g1 ^ packed[None, :]
    want_q = crhash.transpose_bits((u & mask) ^ g0)
    for odd in (False, True):  # whole words (compiled) and not (numpy)
        a0, a1 = (g0[:, :31].copy(), g1[:, :31].copy()) if odd else (g0.copy(), g1.copy())
        got = extension.receiver_columns(a0, a1, packed[: a1.shape[1]], reuse_g1=True)
        assert same(got, want_u[:, : a1.shape[1]]) and np.shares_memory(got, a1)
    a0 = g0.copy()
    assert same(extension.sender_rows(a0, u, mask, reuse_g=True), want_q)
    assert np.array_equal(a0, (u & mask) ^ g0)  # g now holds Q
    ro = readonly(g1)
    assert same(extension.receiver_columns(g0, ro, packed, reuse_g1=True), want_u)  # never over read-only input


def test_streams_and_transpose_into_given_buffers(prg: PRG) -> None:
    seeds = prg.buffer(16 * 128).reshape(128, 16)
    a, b = crhash.SeedExpander(seeds), crhash.SeedExpander(seeds)
    buf = np.zeros(8 * (128 * 48 // 8 + 2) + 8, dtype=np.uint64).view(np.uint8)
    for nbytes in (48, 16, 0):  # the streams continue alike, into the buffer or not
        got = b.next(nbytes, out=buf)
        assert same(got, a.next(nbytes)) and (nbytes == 0 or np.shares_memory(got, buf))
    with pytest.raises(ConfigError):
        b.next(48, out=buf[:100])
    m = prg.buffer(128 * 48).reshape(128, 48)
    rows = np.empty(128 * 48 // 8 + 1, dtype=np.uint64).view(np.uint8)
    got = crhash.transpose_bits(m, out=rows)
    assert same(got, crhash.transpose_bits(m)) and np.shares_memory(got, rows)
    small = np.empty(10, dtype=np.uint8)  # too small: the result is fresh memory
    assert same(crhash.transpose_bits(m, out=small), crhash.transpose_bits(m))

"""Fixed-key AES hashing, seed expansion and the bit-matrix transpose of OT extension.

Everything here is vectorized: one AES call covers a whole ``(n, 16)`` uint8 batch.

Hashes (Guo, Katz, Wang, Yu, *Efficient and Secure Multiparty Computation from Fixed-Key Block
Ciphers*, IEEE S&P 2020), with ``pi`` AES-128 under a fixed public key (modelled as a random
permutation) and ``sigma(x_L || x_R) = (x_L ^ x_R) || x_L`` the linear orthomorphism on the two
64-bit halves of a block:

- :meth:`CRHash.ccr` ``H(x) = pi(sigma(x)) ^ sigma(x)`` — circular correlation-robust (MMO^sigma,
  one AES call per block).
- :meth:`CRHash.tccr` ``H(x, i) = pi(pi(x) ^ i) ^ pi(x)`` — *tweakable* (circular) correlation
  robust (TMMO, two AES calls per block). The one-call ``pi(sigma(x) ^ i) ^ sigma(x)`` is not
  used: it equals ``ccr(x ^ sigma^-1(i))``, so inputs under different tweaks collide whenever
  they differ by ``sigma^-1(i ^ j)``, which the tweakable game forbids.
- :meth:`CRHash.tccr_wide` ``nbytes`` of output per input: ``pi(pi(x) ^ i_b) ^ pi(x)`` for
  blocks ``b = 0, 1, ...`` with tweaks ``i_b = (i, b)``, truncated; ``1 + ceil(nbytes/16)`` AES
  calls per input.

Tweaks are 128-bit values built by :func:`make_tweaks` from a 64-bit index (e.g. a global OT
counter), a 32-bit block index and a 32-bit domain; a caller must never hash two different
inputs under the same tweak when the outputs must be independent (OT extension uses a per-pair
counter).

Seed expansion: :class:`SeedExpander` keeps one AES-128-CTR stream (:class:`mpc.prg.PRG`) per
seed and hands out the next bytes of every stream at once (IKNP columns). :func:`ggm_expand`
expands seeds into the leaves of GGM trees with the length-doubling PRG
``G(s) = (tccr(s, (0, 0, d)), tccr(s, (1, 0, d)))`` (one batched hash per tree level; for
punctured-PRF based extensions such as SoftSpokenOT and silent OT). It is a PRG because
``tccr`` under distinct tweaks is indistinguishable from independent random functions of a
uniform secret input (the TCCR property with a zero correlation).

Transpose: :func:`transpose_bits` turns a ``(w, n/8)`` bit matrix into ``(n, w/8)``. When
``w`` is a multiple of 64 and rows are whole 64-bit words (OT extension), every 64x64 block is
transposed by six delta-swap stages on uint64 words: by a compiled loop
(:func:`protocols.ot.kernels.transpose64`, ~2 ns per 128-bit row) when numba is available
(:func:`load_kernels`; else a warning), by numpy in place (~12 ns, the reference). Otherwise
a byte-level reshape is followed by an 8x8 bit transpose of every 64-bit word by three delta
swaps (Hacker's Delight, 7-3). Bits are little-endian within bytes
everywhere: bit ``k`` of a row is bit ``k % 8`` of byte ``k // 8``.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.compiled import optional_kernels
from mpc.errors import ConfigError
from mpc.prg import SEED_BYTES

__all__ = [
    "BLOCK",
    "FIXED_KEY",
    "CRHash",
    "SeedExpander",
    "ggm_expand",
    "make_tweaks",
    "sigma",
    "transpose_bits",
    "pack_bits",
    "unpack_bits",
    "load_kernels",
]

_log = logging.getLogger(__name__)

BLOCK = 16
"""Bytes per AES block / per OT-extension row."""

FIXED_KEY = bytes.fromhex("6d70632d6f742d66697865642d6b6579")
"""The public fixed AES key (ASCII ``mpc-ot-fixed-key``); any public constant works."""

_M8_1 = np.uint64(0x00AA00AA00AA00AA)
_M8_2 = np.uint64(0x0000CCCC0000CCCC)
_M8_3 = np.uint64(0x00000000F0F0F0F0)
_S7, _S14, _S28 = np.uint64(7), np.uint64(14), np.uint64(28)


@functools.cache
def _kernels() -> ModuleType | None:
    """:mod:`protocols.ot.kernels`, imported on first use (numba), or ``None`` if it cannot be
    imported: then numpy computes everything (same values, slower) and a warning says so."""
    return optional_kernels("protocols.ot.kernels", _log, "OT extension uses numpy")


def load_kernels() -> bool:
    """Import :mod:`protocols.ot.kernels` now (numba; compiled code from the disk cache, or
    compiled on a machine's first use), so that the first OT batch does not pay for it.

    Returns:
        Whether the kernels are available (else OT extension computes with numpy).
    """
    return _kernels() is not None


def _as_blocks(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != BLOCK:
        raise ConfigError("expected an (n, 16) uint8 array of blocks")
    return np.ascontiguousarray(x)


def sigma(x: np.ndarray) -> np.ndarray:
    """The orthomorphism ``sigma(x_L || x_R) = (x_L ^ x_R) || x_L`` on (n, 16) uint8 blocks.

    ``x_L`` is the high 64-bit half (bytes 8..15 read little-endian), ``x_R`` the low half.
    """
    w = _as_blocks(x).view(np.uint64)
    out = np.empty_like(w)
    out[:, 1] = w[:, 1] ^ w[:, 0]
    out[:, 0] = w[:, 1]
    return out.view(np.uint8)


def make_tweaks(index: np.ndarray | int, count: int = 1, *, block: int = 0, domain: int = 0) -> np.ndarray:
    """Tweaks ``(index + k, block, domain)`` for ``k < count`` as (count, 16) uint8.

    Args:
        index: the first 64-bit index (or an (count,) uint64 array of indices).
        count: number of tweaks when ``index`` is an int.
        block: 32-bit block number (wide outputs).
        domain: 32-bit domain separator (which protocol / which use).
    """
    if isinstance(index, np.ndarray):
        idx = index.astype(np.uint64, copy=False).reshape(-1)
    else:
        if index < 0 or count < 0:
            raise ConfigError("tweak index and count must be non-negative")
        idx = np.arange(count, dtype=np.uint64) + np.uint64(index)
    out = np.empty((idx.shape[0], 2), dtype=np.uint64)
    out[:, 0] = idx
    out[:, 1] = np.uint64((block & 0xFFFFFFFF) | ((domain & 0xFFFFFFFF) << 32))
    return out.view(np.uint8)


class CRHash:
    """Correlation-robust hashes from AES-128 under a fixed public key (see module docstring).

    Args:
        key: the fixed public key (16 bytes); both parties must use the same one.
    """

    __slots__ = ("_enc",)

    def __init__(self, key: bytes = FIXED_KEY) -> None:
        if len(key) != 16:
            raise ConfigError("fixed AES key must be 16 bytes")
        self._enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def permute(self, x: np.ndarray) -> np.ndarray:
        """``pi(x)``: fixed-key AES of every block of an (n, 16) uint8 array, one AES call."""
        blocks = _as_blocks(x)
        if blocks.size == 0:
            return np.empty((0, BLOCK), dtype=np.uint8)
        out = np.empty(blocks.size + BLOCK, dtype=np.uint8)  # update_into wants one block of slack
        n = self._enc.update_into(memoryview(blocks).cast("B"), memoryview(out))
        return out[:n].reshape(-1, BLOCK)

    def permute_into(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``pi`` of every 16-byte block of the C-contiguous ``x`` (any dtype) into ``out``.

        Args:
            x: the blocks; its size in bytes must be a multiple of 16.
            out: a 1-d uint8 scratch buffer of at least ``x.nbytes + 16`` bytes (reused by callers
                across chunks so that no fresh memory is touched per call).

        Returns:
            The first ``x.nbytes`` bytes of ``out`` (a view).
        """
        if not x.flags.c_contiguous or x.nbytes % BLOCK or out.dtype != np.uint8 or out.ndim != 1:
            raise ConfigError("permute_into needs contiguous whole blocks and a 1-d uint8 buffer")
        if out.size < x.nbytes + BLOCK:
            raise ConfigError("permute_into needs an output buffer of the input's size + 16 bytes")
        if x.nbytes == 0:
            return out[:0]
        n = self._enc.update_into(memoryview(x).cast("B"), memoryview(out))
        return out[:n]

    def ccr(self, x: np.ndarray) -> np.ndarray:
        """``pi(sigma(x)) ^ sigma(x)``: circular correlation-robust hash of (n, 16) blocks."""
        s = sigma(x)
        out = self.permute(s)
        out ^= s
        return out

    def tccr(self, x: np.ndarray, tweaks: np.ndarray) -> np.ndarray:
        """``pi(pi(x) ^ i) ^ pi(x)``: tweakable CCR hash; ``tweaks`` (n, 16) uint8 like ``x``."""
        px = self.permute(x)
        tw = _as_blocks(tweaks)
        if tw.shape != px.shape:
            raise ConfigError("one tweak per block is needed")
        out = self.permute(px ^ tw)
        out ^= px
        return out

    def tccr_wide(self, x: np.ndarray, index: int, nbytes: int, *, domain: int = 0) -> np.ndarray:
        """``nbytes`` of tweakable CCR output per block of ``x``, tweaks ``(index + row, b, domain)``.

        Args:
            x: (n, 16) uint8 inputs.
            index: 64-bit index of row 0 (row ``k`` uses ``index + k``).
            nbytes: output bytes per row (>= 1).
            domain: domain separator.

        Returns:
            (n, nbytes) uint8.
        """
        blocks = _as_blocks(x)
        idx = np.arange(blocks.shape[0], dtype=np.uint64)
        idx += np.uint64(index)
        return self.tccr_indexed(blocks, idx, nbytes, domain=domain)

    def tccr_indexed(self, x: np.ndarray, index: np.ndarray, nbytes: int, *, domain: int = 0) -> np.ndarray:
        """Like :meth:`tccr_wide` with an explicit 64-bit tweak index per row: ``index`` (n,) uint64.

        Block ``b`` of row ``k`` is ``pi(pi(x_k) ^ (index_k, b, domain)) ^ pi(x_k)``; all blocks
        of all rows go through two AES calls.
        """
        if nbytes < 1:
            raise ConfigError("nbytes must be positive")
        px = self.permute(_as_blocks(x))
        n = px.shape[0]
        if index.shape != (n,) or index.dtype != np.uint64:
            raise ConfigError("one uint64 tweak index per row is needed")
        nblocks = -(-nbytes // BLOCK)
        high = (np.arange(nblocks, dtype=np.uint64) | np.uint64((domain & 0xFFFFFFFF) << 32))
        if nblocks == 1:  # the common case, without broadcasting
            pw = px.view(np.uint64)
            tw1 = np.empty((n, 2), dtype=np.uint64)
            np.bitwise_xor(pw[:, 0], index, out=tw1[:, 0])
            np.bitwise_xor(pw[:, 1], high[0], out=tw1[:, 1])
            y1 = self.permute(tw1.view(np.uint8))
            y1 ^= px
            return y1 if nbytes == BLOCK else np.ascontiguousarray(y1[:, :nbytes])
        pxw = px.view(np.uint64).reshape(n, 1, 2)
        # Tweak block b of row k: (index_k, b, domain), XORed into pi(x_k) for every b at once.
        tw = np.empty((n, nblocks, 2), dtype=np.uint64)
        np.bitwise_xor(pxw[:, :, 0], index[:, None], out=tw[:, :, 0])
        np.bitwise_xor(pxw[:, :, 1], high[None, :], out=tw[:, :, 1])
        y = self.permute(tw.view(np.uint8).reshape(-1, BLOCK)).view(np.uint64).reshape(n, nblocks, 2)
        y ^= pxw
        out = y.view(np.uint8).reshape(n, nblocks * BLOCK)
        return out if nbytes == nblocks * BLOCK else np.ascontiguousarray(out[:, :nbytes])


class SeedExpander:
    """One AES-128-CTR stream per seed; :meth:`next` returns the next bytes of all of them.

    Both ends of an IKNP column keep a ``SeedExpander`` over the same seed and so draw identical
    bytes, as long as they call :meth:`next` with the same sizes in the same order. Stream ``j``
    is the keystream of :class:`mpc.prg.PRG` seeded with ``seeds[j]`` (AES-128-CTR, zero IV),
    written straight into the output array (no intermediate copies).

    Args:
        seeds: (k, 16) uint8, one seed per stream (secret).
    """

    __slots__ = ("_encs", "_zeros")

    def __init__(self, seeds: np.ndarray) -> None:
        if seeds.dtype != np.uint8 or seeds.ndim != 2 or seeds.shape[1] != SEED_BYTES:
            raise ConfigError("seeds must be a (k, 16) uint8 array")
        self._encs = [Cipher(algorithms.AES(bytes(s)), modes.CTR(bytes(16))).encryptor() for s in seeds]
        self._zeros = np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._encs)

    def next(self, nbytes: int, out: np.ndarray | None = None) -> np.ndarray:
        """The next ``nbytes`` of every stream: (k, nbytes) uint8.

        Args:
            nbytes: bytes per stream.
            out: a 1-d C-contiguous uint8 buffer of at least ``k * nbytes + 16`` bytes to write
                into (e.g. one reused across calls; the result is a view of it), else fresh memory.
        """
        if nbytes < 0:
            raise ConfigError("byte count must be non-negative")
        k = len(self._encs)
        if self._zeros.size < nbytes:
            self._zeros = np.zeros(nbytes, dtype=np.uint8)
        zeros = memoryview(self._zeros)[:nbytes]
        size = k * nbytes + BLOCK  # update_into wants a block of slack
        if out is None:
            buf = np.empty(size, dtype=np.uint8)
        elif out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or not out.flags.writeable or out.size < size:
            raise ConfigError("out must be a writeable 1-d uint8 buffer of k * nbytes + 16 bytes")
        else:
            buf = out[:size]
        out = memoryview(buf)
        # One loop iteration per stream (k = 128 or 256 seeds), each one AES-CTR call.
        for j, enc in enumerate(self._encs):
            enc.update_into(zeros, out[j * nbytes : (j + 1) * nbytes + BLOCK - 1])
        return buf[: k * nbytes].reshape(k, nbytes)


def ggm_expand(seeds: np.ndarray, depth: int, *, hasher: CRHash | None = None, domain: int = 0) -> np.ndarray:
    """Leaves of GGM trees: every (16-byte) seed expanded to ``2**depth`` leaves.

    Node ``s`` has children ``tccr(s, (0, 0, domain))`` and ``tccr(s, (1, 0, domain))``; each
    level is one batched hash of all nodes of all trees.

    Args:
        seeds: (k, 16) uint8 roots.
        depth: tree depth (0 returns the roots).
        hasher: the fixed-key hash to use (a fresh :class:`CRHash` if omitted).
        domain: domain separator.

    Returns:
        (k, 2**depth, 16) uint8: leaves in left-to-right order.
    """
    if depth < 0 or depth > 30:
        raise ConfigError("GGM depth must be in [0, 30]")
    h = hasher or CRHash()
    nodes = _as_blocks(seeds)
    k = nodes.shape[0]
    for _ in range(depth):
        m = nodes.shape[0]
        both = np.repeat(nodes, 2, axis=0)
        tw = np.tile(make_tweaks(0, 2, domain=domain), (m, 1))
        nodes = h.tccr(both, tw)
    return nodes.reshape(k, 1 << depth, BLOCK)


def _transpose8(w: np.ndarray, tmp: np.ndarray) -> None:
    """8x8 bit transpose of every uint64 of ``w`` in place (byte r = row r, bit c = column c).

    Three delta swaps (Hacker's Delight 7-3), all in-place numpy ops; ``tmp`` is scratch of
    ``w``'s shape.
    """
    for shift, mask in ((_S7, _M8_1), (_S14, _M8_2), (_S28, _M8_3)):
        np.right_shift(w, shift, out=tmp)
        tmp ^= w
        tmp &= mask
        w ^= tmp
        np.left_shift(tmp, shift, out=tmp)
        w ^= tmp


_TRANSPOSE_CHUNK = 1 << 11
"""Byte columns per 64 transposed per step: (w x 2^14)-bit tiles stay in the CPU cache."""

_SWAP_MASKS = tuple(
    (np.uint64(k), np.uint64(int(("0" * k + "1" * k) * (32 // k), 2))) for k in (32, 16, 8, 4, 2, 1)
)
"""(shift k, mask of the bit positions c with c & k == 0) for the six stages of a 64x64 transpose."""

_WORD_CHUNK = 1 << 10
"""Words per row transposed per step on the fast path: (w x 2^16)-bit tiles (1 MB at w = 128)."""


def _transpose64(words: np.ndarray) -> np.ndarray:
    """Transpose a ``(64 G, C)`` uint64 bit matrix into ``(64 C, G)`` uint64 (the fast path).

    Every 64x64 bit block (64 rows, one word of each) is transposed in place by six delta-swap
    stages (Hacker's Delight 7-3, recursive halving): at stage ``k`` the rows ``r`` and ``r + k``
    (``r & k == 0``) exchange the bits ``c + k`` of the first and ``c`` of the second
    (``c & k == 0``). Each stage is six whole-array numpy operations over views whose inner runs
    are contiguous rows of the tile; then one word-granular copy puts word ``c`` of transposed
    row ``j`` of row block ``g`` at output row ``64 c + j``, word ``g``.
    """
    rows, n_words = words.shape
    g = rows // 64
    out = np.empty((n_words, 64, g), dtype=np.uint64)
    step = min(_WORD_CHUNK, n_words)
    tile = np.empty((g, 64, step), dtype=np.uint64)
    tmp = np.empty(g * 32 * step, dtype=np.uint64)
    src = words.reshape(g, 64, n_words)
    # One iteration per tile of ``step`` words per row (cache blocking), all vectorized.
    for c0 in range(0, n_words, step):
        c1 = min(n_words, c0 + step)
        cs = c1 - c0
        x = tile if cs == step else np.empty((g, 64, cs), dtype=np.uint64)
        np.copyto(x, src[:, :, c0:c1])
        for k, mask in _SWAP_MASKS:
            kk = int(k)
            pair = x.reshape(g, 32 // kk, 2, kk, cs)
            a, b = pair[:, :, 0], pair[:, :, 1]
            t = tmp[: g * 32 * cs].reshape(g, 32 // kk, kk, cs)
            np.right_shift(a, k, out=t)
            t ^= b
            t &= mask
            b ^= t
            np.left_shift(t, k, out=t)
            a ^= t
        out[c0:c1] = x.transpose(2, 1, 0)
    return out.reshape(64 * n_words, g)


def transpose_bits(m: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Transpose a bit matrix: ``out[i]`` bit ``j`` = ``m[j]`` bit ``i``.

    Fast path (``w`` a multiple of 64 and whole 8-byte words per row, as in OT extension): 64x64
    bit blocks by delta swaps on uint64 words (:func:`protocols.ot.kernels.transpose64`, or
    :func:`_transpose64`, the numpy reference, without numba). General path, per chunk of
    columns (so each step works in cache): view every row as uint64 words and transpose the
    (w x C) word matrix (numpy copy of 8-byte elements); transpose the 8x8 *bytes* of each group
    of 8 rows (a reshape copy); transpose the 8x8 *bits* of every word (:func:`_transpose8`);
    reorder bytes into output rows. No Python loop over bits.

    Args:
        m: (w, nbytes) uint8, ``w`` rows of ``8 * nbytes`` bits, ``w`` a multiple of 8.
        out: a 1-d C-contiguous, 8-byte aligned uint8 buffer of at least ``w * nbytes`` bytes
            for the result (e.g. one reused across calls), used by the compiled fast path (the
            result is then a view of it); otherwise, or if ``None``, the result is fresh memory.

    Returns:
        (8 * nbytes, w // 8) uint8.
    """
    if not isinstance(m, np.ndarray) or m.dtype != np.uint8 or m.ndim != 2 or m.shape[0] % 8:
        raise ConfigError("transpose_bits needs a (w, nbytes) uint8 array with w a multiple of 8")
    w, nb = m.shape
    if w % 64 == 0 and nb % 8 == 0 and w and nb:
        words = np.ascontiguousarray(m).view(np.uint64)
        kernels = _kernels()
        if kernels is None:
            return _transpose64(words).view(np.uint8)
        shape = (64 * words.shape[1], w // 64)
        usable = (
            out is not None
            and out.dtype == np.uint8
            and out.ndim == 1
            and out.flags.c_contiguous
            and out.flags.writeable
            and out.flags.aligned
            and out.size >= w * nb
            and out.ctypes.data % 8 == 0
        )
        dest = out[: w * nb].view(np.uint64).reshape(shape) if usable and out is not None else np.empty(shape, dtype=np.uint64)
        kernels.transpose64(words, dest)
        return dest.view(np.uint8)
    g = w // 8
    pad = -nb % 8
    if pad:
        m = np.concatenate([m, np.zeros((w, pad), dtype=np.uint8)], axis=1)
    src = np.ascontiguousarray(m).view(np.uint64)  # (w, C): word c of row j = bytes 8c..8c+7
    n_words = src.shape[1]
    out = np.empty((n_words, 8, 8, g), dtype=np.uint8)  # [c, k, b, g]: row 64c + 8k + b
    step = max(1, _TRANSPOSE_CHUNK // max(1, g // 16))
    tmp = np.empty(step * w, dtype=np.uint64)
    # One iteration per chunk of 8 * step bytes of every row (cache blocking), all vectorized.
    for c0 in range(0, n_words, step):
        c1 = min(n_words, c0 + step)
        cs = c1 - c0
        y = np.ascontiguousarray(src[:, c0:c1].T)  # [c, j] -> bytes k: m[j, 8c + k]
        # z[c, G, k, r] = m[8G + r, 8c + k]: 8x8 byte transposes of each (c, G) tile.
        z = y.view(np.uint8).reshape(cs, g, 8, 8).transpose(0, 1, 3, 2).copy()
        _transpose8(z.reshape(-1).view(np.uint64), tmp[: cs * w])
        # now z[c, G, k] byte b bit r = m[8G + r] bit 8(8c + k) + b
        out[c0:c1] = z.transpose(0, 2, 3, 1)
    res = out.reshape(8 * 8 * n_words, g)
    return res[: 8 * nb] if pad else res


def pack_bits(bits: np.ndarray, nbits: int | None = None) -> np.ndarray:
    """0/1 values to little-endian packed bytes, zero-padded to ``nbits`` (a multiple of 8)."""
    flat = np.asarray(bits).reshape(-1)
    total = flat.size if nbits is None else nbits
    if total < flat.size or total % 8:
        raise ConfigError("nbits must be a multiple of 8 and at least the number of bits")
    buf = np.zeros(total, dtype=np.uint8)
    buf[: flat.size] = flat
    return np.packbits(buf, bitorder="little")


def unpack_bits(data: np.ndarray, count: int) -> np.ndarray:
    """Little-endian packed bytes to ``count`` 0/1 uint8 values."""
    return np.unpackbits(data.reshape(-1), count=count, bitorder="little")

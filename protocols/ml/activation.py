"""The clipped-linear sigmoid of training, with a cheap windowed threshold test.

``sigmoid_clip(z) = clip(z / 4 + 1/2, 0, 1)`` needs ``[z >= -2]`` and ``[z >= 2]`` for every
row of a batch. The engine's exact comparison decomposes all 64 bits of a masked value (6
rounds, 89 triples, 64 bits per test). Training does not need that: the logit ``z`` is small
(its magnitude is far below 2^10 for any sensible model) and a test that is wrong only when
``z`` is within 2^-4 of the threshold changes the activation by at most 2^-6. So both tests run
on one masked opening and one window of ``k = 16`` bits of it, after Catrina and de Hoogh (SCN
2010) and the ring adaptation of Damgard, Escudero, Frederiksen, Keller, Scholl, Volgushev (S&P
2019), whose building blocks (:mod:`protocols.spdz.compare`: chunk tables, the carry tree)
are reused as they are.

Recipe (``z`` untruncated at scale ``2^s``, e.g. ``s = 52`` in training; ``l = s - 4`` low
bits dropped; here ``l + k <= 64``):

1. *Mask* (one round). With a provider of comparison masks (the engine's
   :class:`~protocols.spdz.preprocessing.ComparisonMask`: ``[r] = [sum_i 2^i r_i + 2^64 t]``
   with the bits and their pair products), ``r`` itself: its bits ``l .. l + k - 1`` are the
   window ``R`` and their pair products come with it. Otherwise it is composed the same way
   from 64 random bits ``[b_i]`` and a random value ``[t]``: ``[mask] = sum_i 2^i [b_i] +
   2^64 [t]``, and the ``k / 2`` chunk products ``[R_2j R_2j+1]`` of the window's bits are
   multiplied in the same round. Open ``c = z + mask`` (uniform in Z_2^128: every bit range
   is masked by an independent uniform part).
2. *Windows*. For each public threshold ``T`` (at scale ``2^s``), the window
   ``c_T = ((c - T) >> l) mod 2^k`` is public, and ``(c_T - R) mod 2^k`` equals
   ``floor((z - T) / 2^l) + e mod 2^k`` with a carry ``e`` in {0, 1} (``Pr[e = 1]`` is the
   fraction ``(z - T) mod 2^l / 2^l``): the value ``(z - T) / 2^l`` rounded up or down.
3. *Sign*: bit ``k - 1`` of ``(c_T - R) mod 2^k`` is ``[z < T]`` (up to that rounding),
   computed from the chunk tables and the carry tree of the engine's LTZ on ``k`` bits instead
   of 64 (:func:`protocols.spdz.compare.gather_leaves`, ``ltz_leaves``, ``select``,
   ``multiply_steps``): ``log2(k / 2) = 3`` rounds. All thresholds share the mask, the chunk
   products and the rounds.

Correctness: exact when ``|z - T| >= 2^(l - s) = 2^-4`` and ``|z - T| < 2^(k - 1 + l - s) = 2^11``
(``|z| < 2046`` for ``T = +-2``); within 2^-4 of ``T`` the result may be either bit (a
randomized rounding), which moves the activation by at most ``2^-4 / 4 = 2^-6``. Beyond the
range the result is arbitrary.

Security: active, dishonest majority, abort (the engine's): the values opened are ``c``
(uniform) and Beaver's masked operands (uniform), all MAC-checked with the rest before any
output; nothing about ``z`` leaks.

Cost per element for ``T`` thresholds (here ``T = 2``, ``k = 16``): ``1 + log2(k / 2) = 4``
rounds; with comparison masks, one mask and ``11 T`` triples, bytes sent per party to each
peer ``16 (1 + 22 T)``; without, 64 bits, one random value and ``8 + 11 T`` triples,
``16 (17 + 22 T)`` bytes (:func:`window_cost`). The engine's
exact LTZ costs 89 triples (or 57 and a mask) per test and 6 rounds.

The clipped sigmoid (:func:`sigmoid_clip`, :func:`sigmoid_clip_steps`) is
``s = (b2 - b1) u + 1 - b2`` with ``b1 = [z < -2]``, ``b2 = [z < 2]`` and ``u = z / 4 + 1/2``.
Run as the test followed by one product it takes 5 rounds; here the product is fused into
the test's last carry level, so the whole activation takes the test's 4. That level computes
``b_T = G_T + P_T L_T`` from the two top nodes of the tree; then ``s = (G2 - G1) u + P2 L2 u
- P1 L1 u + 1 - G2 - P2 L2``, whose degree-3 terms each take one *product tuple* ``[a], [b],
[c], [ab], [ac], [bc], [abc]`` (Beaver's method for three factors: open ``x - a``, ``y - b``,
``z - c`` and expand ``(a + d)(b + e)(c + f)`` locally), and ``(G2 - G1) u`` one triple. The
tuples are made in the test's first round from a triple ``(a, b, ab)``, a random ``c`` and
three more Beaver products (``ac``, ``bc``, ``(ab) c``), whose openings ride on that round.
Security is unchanged: every opened value is a uniformly masked Beaver or truncation opening,
MAC-checked with the rest before any output. The truncation that makes ``u`` shares the
test's mask (:func:`_shared_truncation`): its opening is the test's ``c`` (plus the public
``2^62``), so it costs no opened value and no pair of its own. Cost per element
(:func:`sigmoid_clip_cost`): the test's, less its last level (2 triples), plus 9 triples and
2 random values; 61 opened values (16 more without comparison masks) instead of the 48 of the
test, the truncation and the product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128
from protocols.spdz import compare as cmp
from protocols.spdz import online
from protocols.spdz import shares as sh
from protocols.spdz.array import SecretArray
from protocols.spdz.preprocessing import Requirements, SpdzPreprocessing, TruncationPair
from protocols.spdz.shares import AuthShare

__all__ = [
    "WINDOW_BITS",
    "DROPPED_BELOW",
    "window_steps",
    "window_cost",
    "sigmoid_clip",
    "sigmoid_clip_steps",
    "sigmoid_clip_cost",
]

WINDOW_BITS = 16
"""``k``: bits of the window the sign is read from (even; 8 chunks, a 3-level tree)."""

DROPPED_BELOW = 4
"""The window starts ``DROPPED_BELOW`` bits above the binary point: resolution ``2^-4``."""

_CLIP = 2.0
"""The clipped sigmoid is linear on ``[-2, 2]``."""

Steps = Generator[list[AuthShare], list[Z128], AuthShare]

_CHUNK_SHIFTS = np.arange(0, 64, 2, dtype=np.uint64)
_THREE = np.uint64(3)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_GP_FORMS = np.array([4, 0], dtype=np.intp).reshape(2, 1, 1, 1, 1, 1)  # g reads forms 4..7, p forms 0..3


def _top_leaf_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """``compare.select``'s coefficients of ``[1], [r0], [r1], [q]`` for the top leaf's tables.

    Row ``v`` (``v = c_62 + 2 c_63``, the public top chunk) is for B, row ``4 + v`` for A.
    ``select`` reads a coefficient modulo 2^64, i.e. ``s + 2^64 [s < 0]`` for the small signed
    ``s`` (here in [-2, 2]). Returns ``s`` and ``[s < 0]``, both float64 ``(8, 4)``.
    """
    g, p = cmp.ltz_leaves(np.arange(4, dtype=np.uint64).reshape(4, 1))
    f = np.concatenate([p[:, 0], g[:, 0]])  # (8, 4): the tables F(v) of B then A
    f0, f1, f2, f3 = (f[:, i] for i in range(4))
    with np.errstate(over="ignore"):
        coeffs = np.stack([f0, f1 - f0, f2 - f0, f3 - f2 - f1 + f0], axis=1)  # wraps mod 2^64, as select
    signed = coeffs.view(np.int64)
    return signed.astype(np.float64), (signed < 0).astype(np.float64)


_TOP_SIGNED, _TOP_NEGATIVE = _top_leaf_coefficients()
_M32 = np.int64(0xFFFFFFFF)
_S32 = np.int64(32)


def _small_combinations(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The top leaf's eight forms ``sum_i (s_i mod 2^64) t_i mod 2^128`` (the limbs of ``(8, ...)``).

    ``(s mod 2^64) t = s t + 2^64 t [s < 0] = s t + 2^64 (t mod 2^64) [s < 0] (mod 2^128)``.
    With ``t`` cut into four 32-bit limbs, each limb's combination has ``|s| <= 2`` and four
    terms, so it is below 2^36 in magnitude: exact as a float64 matrix product and as int64;
    the signed limbs then carry into each other (floor shifts) modulo 2^128.
    """
    terms, shape = lo.shape[0], lo.shape[1:]
    forms = _TOP_SIGNED.shape[0]
    limbs = np.empty((terms, 4, *shape), dtype=np.float64)  # (term, limb, ...), limbs below 2^32
    limbs[:, 0] = lo & _MASK32
    limbs[:, 1] = lo >> _SHIFT32
    limbs[:, 2] = hi & _MASK32
    limbs[:, 3] = hi >> _SHIFT32
    v = (_TOP_SIGNED @ limbs.reshape(terms, -1)).astype(np.int64).reshape(forms, 4, *shape)
    low_limbs = limbs[:, :2].reshape(terms, -1)  # 2^64 (t mod 2^64): t's low limbs at limbs 2 and 3
    v[:, 2:] += (_TOP_NEGATIVE @ low_limbs).astype(np.int64).reshape(forms, 2, *shape)
    out = np.empty((4, forms, *shape), dtype=np.int64)
    carry = None
    for j in range(4):  # a loop over the 4 limbs
        limb = v[:, j] if carry is None else v[:, j] + carry
        carry = limb >> _S32
        np.bitwise_and(limb, _M32, out=out[j])
    res = out.view(np.uint64)
    return res[0] | (res[1] << _SHIFT32), res[2] | (res[3] << _SHIFT32)


def _tree_levels(width: int) -> list[int]:
    """Products per carry-tree level (lt only) for ``width`` leaves, as the engine's LTZ."""
    out = []
    while width > 1:
        pairs = width // 2
        out.append(2 * pairs - 1)
        width -= pairs
    return out


def _uses_comparison_masks(prep: object, low_bits: int, k: int) -> bool:
    return cmp.mask_source(prep) is not None and low_bits % 2 == 0 and low_bits + k <= cmp.K


def window_cost(count: int, thresholds: int, low_bits: int, k: int = WINDOW_BITS, prep: object = None) -> Requirements:
    """Preprocessing of :func:`window_steps` for ``count`` elements and ``thresholds`` tests.

    With a provider of ``comparison_masks`` (``prep``), step 1 takes one comparison mask per
    element (its bits ``l .. l + k - 1`` and their pair products are the window); otherwise
    64 bits, a random value and ``k / 2`` triples (the window's pair products).
    """
    tree = thresholds * sum(_tree_levels(k // 2)) * count
    if _uses_comparison_masks(prep, low_bits, k):
        return Requirements(triples=tree, comparison_masks=count)
    return Requirements(triples=tree + (k // 2) * count, bits=cmp.K * count, random_values=count)


def window_steps(
    prep: SpdzPreprocessing,
    party_id: int,
    key_share: np.ndarray,
    z: AuthShare,
    thresholds: Sequence[int],
    low_bits: int,
    k: int = WINDOW_BITS,
) -> Steps:
    """``[z < T]`` for each public ring integer ``T`` (see the module docstring), as engine steps.

    Bit-major like :func:`protocols.spdz.compare.compare_steps` (``(k, m)`` bits, ``(k / 2, m)``
    chunks). Returns (as the generator's value) 0/1 shares of shape ``(len(thresholds), *z.shape)``.
    """
    if k % 2 or k < 2 or low_bits < 1 or low_bits + k > cmp.K:
        raise ConfigError("the window needs an even k and low_bits + k <= 64")
    shape = z.shape
    m = z.size
    requests, finish, _ = _mask_open(prep, z.reshape(m), low_bits, k)
    c, r0, r1, q = finish((yield requests))
    gp = _window_leaves(party_id, key_share, c, r0, r1, q, thresholds, low_bits, k)
    gp = yield from _carry_levels(prep, gp, k // 2, stop=1)
    return AuthShare._of(gp[:, :1].reshape(2, len(thresholds), *shape))


Opened = Callable[[list[Z128]], tuple[np.ndarray, AuthShare, AuthShare, AuthShare]]


def _mask_open(
    prep: SpdzPreprocessing, flat: AuthShare, low_bits: int, k: int, trunc_bits: int | None = None
) -> tuple[list[AuthShare], Opened, TruncationPair | None]:
    """Step 1 of :func:`window_steps`: the openings of the mask round and what reads them.

    Returns the requests to open (``c = z + mask`` first), a function of their opened values
    giving ``c`` (uint64 ``(m,)``), the window's bit rows ``r0``, ``r1`` (bits ``2j`` and
    ``2j + 1`` of each chunk, ``(k / 2, m)``) and their products ``q``; and, if
    ``trunc_bits`` is given, a truncation pair for ``trunc_bits`` whose ``r`` is the mask
    itself (:func:`_shared_truncation`). Both kinds of mask have every bit of their low 64 as
    a shared bit: a comparison mask, or, from a provider without them, ``sum_i 2^i [b_i] +
    2^64 [t]`` from 64 random bits and a random value (whose pair products of the window's
    bits are multiplied in this round).
    """
    m = flat.size
    if trunc_bits is not None and not 0 < trunc_bits < cmp.K - 1:
        raise ConfigError("the shared truncation needs 0 < trunc_bits < 63")
    if _uses_comparison_masks(prep, low_bits, k):
        source = cmp.mask_source(prep)
        cm = source(m)  # type: ignore[misc]
        if cm.bits.shape != (cmp.K, m) or cm.pair_products.shape != (cmp.CHUNKS, m):
            raise ConfigError("the provider gave comparison masks of the wrong shape")
        mask, bits = cm.value, cm.bits
        r0 = bits[low_bits : low_bits + k : 2]
        r1 = bits[low_bits + 1 : low_bits + k : 2]
        q = cm.pair_products[low_bits // 2 : low_bits // 2 + k // 2]
        opens: list[AuthShare] = []

        def read(opened: list[Z128]) -> tuple[np.ndarray, AuthShare, AuthShare, AuthShare]:
            return opened[0].lo.reshape(m), r0, r1, q

    else:
        bits = prep.bits((cmp.K, m))  # every bit of the mask's low 64, shared
        mask = cmp.compose_mask(bits, prep.random_values((m,)))
        window = bits[low_bits : low_bits + k]
        b0, b1 = window[0::2], window[1::2]
        products = cmp.multiply_steps(prep, [b0], [b1])
        opens = next(products)

        def read(opened: list[Z128]) -> tuple[np.ndarray, AuthShare, AuthShare, AuthShare]:
            (q_composed,) = _finish(products, opened[1:])
            return opened[0].lo.reshape(m), b0, b1, q_composed

    shared = None if trunc_bits is None else _shared_truncation(mask, bits[trunc_bits:], trunc_bits)
    return [sh.add(flat, mask), *opens], read, shared


def _shared_truncation(mask: AuthShare, top_bits: AuthShare, trunc_bits: int) -> TruncationPair:
    """A truncation pair for ``trunc_bits`` with ``r = mask`` from the mask's bits ``trunc_bits .. 63``.

    ``(r mod 2^63) >> f = sum_(i < 63 - f) 2^i [b_(f + i)]`` and ``r_63 = [b_63]``: both local.
    Truncating ``z`` with it needs no opening of its own: ``c + 2^62`` for the opened
    ``c = z + mask`` is exactly the opening ``z + 2^62 + r`` of the truncation protocol
    (:mod:`protocols.spdz.online`), so the window test and the truncation see one value.
    """
    rows = cmp.K - trunc_bits
    if top_bits.shape[0] != rows:
        raise ConfigError("internal: the mask's top bits do not fit the truncation")
    return TruncationPair(mask, cmp.weighted_bits(top_bits[: rows - 1]), top_bits[rows - 1], trunc_bits)


def _finish(steps: Generator[list[AuthShare], list[Z128], list[AuthShare]], opened: list[Z128]) -> list[AuthShare]:
    """Feed a one-round generator its opened values and return its result."""
    try:
        steps.send(opened)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise ConfigError("internal: a one-round step took more than one round")


def _window_leaves(
    party_id: int,
    key_share: np.ndarray,
    c: np.ndarray,
    r0: AuthShare,
    r1: AuthShare,
    q: AuthShare,
    thresholds: Sequence[int],
    low_bits: int,
    k: int,
) -> Z128:
    """Step 2 and the leaves of step 3 of :func:`window_steps`, after the opening of ``c`` (uint64 ``(m,)``).

    The same leaves and carry tree as :func:`protocols.spdz.compare.gather_leaves`,
    ``ltz_leaves``, ``select`` and ``multiply_steps`` (the same ring values, products in the
    same order, so the same triples and openings), with the small arrays of a training batch
    handled as a few whole-array steps: every leaf of every threshold is one gather from a
    table of the eight linear forms, and each tree level keeps ``g`` and ``p`` in one array
    whose rows the level's operands are picked from by index.

    Returns ``gp`` of shape ``(2, k, T m)``: rows ``0 .. k/2 - 1`` the ``g`` of each chunk
    (lowest first), rows ``k/2 .. k - 1`` their ``p``; columns threshold-major.
    """
    m = c.shape[0]
    n_t = len(thresholds)
    chunks = k // 2
    width = n_t * m
    top = np.uint64((1 << k) - 1)
    shift = np.uint64(low_bits)
    ts = np.array([int(t) % (1 << 64) for t in thresholds], dtype=np.uint64).reshape(n_t, 1)
    windows = ((c - ts) >> shift) & top  # (n_t, m): row t is the window of c - T_t (wraps mod 2^64)
    cv = (windows >> _CHUNK_SHIFTS[:chunks].reshape(chunks, 1, 1)) & _THREE  # (k / 2, n_t, m), low chunk first

    # The eight linear forms of a chunk's bits (compare.gather_leaves): p picks u_(c_j) from
    # [u0, u1, u2, q], g the suffix sum from [s1, r1, q, 0]. Table axes: form, limb, share/MAC
    # row, chunk, element; the forms are computed into it (ring128's add and sub, limb by limb).
    table = np.empty((8, 2, 2, chunks, m), dtype=np.uint64)
    (r0lo, r0hi), (r1lo, r1hi), (qlo, qhi) = ((a.data.lo, a.data.hi) for a in (r0, r1, q))
    for i, (lo, hi) in ((3, (qlo, qhi)), (5, (r1lo, r1hi)), (6, (qlo, qhi))):  # a loop over 3 copies
        table[i, 0], table[i, 1] = lo, hi
    table[7] = 0
    for i, (lo, hi) in ((1, (r0lo, r0hi)), (2, (r1lo, r1hi))):  # u1 = r0 - q, u2 = r1 - q
        np.subtract(lo, qlo, out=table[i, 0])
        np.subtract(hi, qhi, out=table[i, 1])
        table[i, 1] -= (lo < qlo).view(np.uint8)
    np.add(table[1, 0], r1lo, out=table[4, 0])  # s1 = u1 + r1
    np.add(table[1, 1], r1hi, out=table[4, 1])
    table[4, 1] += (table[4, 0] < r1lo).view(np.uint8)
    unit = sh.unit(party_id, key_share).data  # u0 = 1 - s1 (the unit's high limbs are 0)
    unit_lo = unit.lo.reshape(2, 1, 1)
    np.subtract(unit_lo, table[4, 0], out=table[0, 0])
    np.negative(table[4, 1], out=table[0, 1])
    table[0, 1] -= (unit_lo < table[4, 0]).view(np.uint8)
    # The top chunk's leaf is (A, B) of the engine's LTZ (compare.ltz_leaves): for each value
    # of the public chunk (c_62 + 2 c_63), B (read by p) and A (read by g) are the linear forms
    # compare.select makes of their tables, sum_i coeff_i [t_i] over [1], [r0], [r1], [q].
    t_lo = np.empty((4, 2, m), dtype=np.uint64)  # (term, row, element)
    t_hi = np.empty((4, 2, m), dtype=np.uint64)
    t_lo[0], t_hi[0] = unit.lo.reshape(2, 1), unit.hi.reshape(2, 1)
    for i, (lo, hi) in enumerate(((r0lo, r0hi), (r1lo, r1hi), (qlo, qhi)), 1):  # a loop over 3 terms
        t_lo[i], t_hi[i] = lo[:, -1], hi[:, -1]
    top_lo, top_hi = _small_combinations(t_lo, t_hi)  # (form, row, element)
    table[:, 0, :, -1] = top_lo
    table[:, 1, :, -1] = top_hi
    # flat index of table[cv + 4 gp, limb, row, j, i] for output [gp, limb, row, j, t, i]
    inner = 4 * chunks * m
    offsets = np.arange(inner, dtype=np.intp).reshape(1, 2, 2, chunks, 1, m)
    forms = cv.astype(np.intp).reshape(1, 1, 1, chunks, n_t, m) + _GP_FORMS
    leaves = np.take(table.reshape(-1), forms * inner + offsets)  # (g then p, limb, row, k/2, n_t, m)
    leaves = leaves.reshape(2, 2, 2, chunks, width)
    # gp: rows 0 .. level - 1 the g of each node, rows level .. 2 level - 1 its p
    gp = Z128(
        np.concatenate([leaves[0, 0], leaves[1, 0]], axis=1), np.concatenate([leaves[0, 1], leaves[1, 1]], axis=1)
    )  # (share/MAC, 2 level, width)
    return gp


def _carry_levels(prep: SpdzPreprocessing, gp: Z128, level: int, stop: int) -> Generator[list[AuthShare], list[Z128], Z128]:
    """The carry tree of :mod:`protocols.spdz.compare` (lt only) on ``gp`` (see :func:`_window_leaves`),
    one round per level, until ``stop`` nodes remain (their ``g`` rows, then their ``p`` rows)."""
    width = gp.shape[-1]
    while level > stop:  # the carry tree of protocols.spdz.compare (lt only)
        pairs = level // 2
        hi = list(range(1, 2 * pairs, 2))
        lo = list(range(0, 2 * pairs, 2))
        # p_hi g_lo for every pair, then p_hi p_lo for every pair but the lowest (its p is unused)
        left = gp[:, [level + h for h in hi] + [level + h for h in hi[1:]]]
        right = gp[:, lo + [level + j for j in lo[1:]]]
        rows = left.shape[1]
        x, y = left.reshape(2, rows * width), right.reshape(2, rows * width)
        triple = prep.triples((rows * width,))
        d_share, e_share = online.beaver_masks(AuthShare._of(x), AuthShare._of(y), triple)
        d, e = yield [d_share, e_share]
        z = online.beaver_product("mul", d, e, AuthShare._of(x), triple).data.reshape(2, rows, width)
        g_next = r128.add(gp[:, hi], z[:, :pairs])
        rest = list(range(2 * pairs, level))  # an odd top element passes up unchanged
        parts = [g_next, gp[:, rest], gp[:, level + 1 : level + 2], z[:, pairs:], gp[:, [level + j for j in rest]]]
        gp = r128.concatenate(parts, axis=1)
        level -= pairs
    return gp


def sigmoid_clip(z: SecretArray, scale_bits: int, *, bounded: bool = False) -> SecretArray:
    """``clip(z / 4 + 1/2, 0, 1)`` (fixed point) of an integer array ``z`` at scale ``2^scale_bits``.

    Four rounds, five if ``bounded`` (:func:`sigmoid_clip_steps`); preprocessing
    :func:`sigmoid_clip_cost`.
    """
    eng = z.engine
    if scale_bits - DROPPED_BELOW < 1 or scale_bits - eng.frac_bits + 2 > 62:
        raise ConfigError("the scale does not fit the window and the truncation")

    def steps(value: Any) -> Steps:
        return sigmoid_clip_steps(eng.prep, eng.party_id, eng.key_share, value, scale_bits, eng.frac_bits, bounded=bounded)

    return eng.interactive(steps, [z], z.shape, eng.frac_bits)


def sigmoid_clip_cost(
    count: int, scale_bits: int, frac_bits: int, prep: object = None, k: int = WINDOW_BITS, *, bounded: bool = False
) -> Requirements:
    """Preprocessing of :func:`sigmoid_clip_steps` for ``count`` elements (exact).

    The window test's (two thresholds) less its last carry level, whose place the fused level
    takes (two product tuples and one triple per element); no truncation pair for ``u``: it
    shares the window's mask. ``bounded``: one more triple per element.
    """
    low = scale_bits - DROPPED_BELOW
    tree = 2 * (sum(_tree_levels(k // 2)) - 1) * count
    extra = 2 if bounded else 1
    fused = Requirements(triples=tree + (2 * TUPLE_TRIPLES + extra) * count, random_values=2 * count)
    if _uses_comparison_masks(prep, low, k):
        return fused + Requirements(comparison_masks=count)
    return fused + Requirements(triples=(k // 2) * count, bits=cmp.K * count, random_values=count)


TUPLE_TRIPLES = 4
"""Triples per product tuple (:func:`_tuple_open`): one for ``(a, b, ab)``, three for ``ac, bc, abc``."""


@dataclass(frozen=True, eq=False)
class _ProductTuple:
    """``[a], [b], [c], [ab], [ac], [bc], [abc]`` for uniform ``a, b, c`` (a degree-3 Beaver tuple)."""

    a: AuthShare
    b: AuthShare
    c: AuthShare
    ab: AuthShare
    ac: AuthShare
    bc: AuthShare
    abc: AuthShare


def _tuple_open(prep: SpdzPreprocessing, shape: tuple[int, ...]) -> tuple[list[AuthShare], Callable[[list[Z128]], _ProductTuple]]:
    """Product tuples of ``shape`` made online in one round from triples and random values.

    ``(a, b, ab)`` is a triple; ``c`` a random value; ``ac``, ``bc`` and ``abc = (ab) c`` are
    three Beaver products of one more triple batch, whose openings ride on a round the caller
    runs anyway. Everything opened is a Beaver mask (uniform) and is MAC-checked with the rest.
    """
    base = prep.triples(shape)
    c = prep.random_values(shape)
    products = cmp.multiply_steps(prep, [base.a, base.b, base.c], [c, c, c])
    opens = next(products)

    def read(opened: list[Z128]) -> _ProductTuple:
        ac, bc, abc = _finish(products, opened)
        return _ProductTuple(base.a, base.b, c, base.c, ac, bc, abc)

    return opens, read


def _tuple_forms(
    t: _ProductTuple, d: np.ndarray, e: np.ndarray, f: np.ndarray, w3: np.ndarray, w2: np.ndarray
) -> tuple[AuthShare, np.ndarray]:
    """``sum_T w3_T [x_T y_T z_T] + w2_T [x_T y_T]`` over the tuples' leading axis, from the opened
    ``d = x - a``, ``e = y - b``, ``f = z - c`` (uint64 ``(T, m)``; public weights ``(T,)``).

    ``x y z = abc + f ab + e ac + d bc + e f a + d f b + d e c + d e f`` and ``x y = ab + e a +
    d b + d e`` (modulo 2^64, the ring the values live in; value and MAC rows take the same
    public coefficients, so the MACs stay consistent). Returns the shared part ``(m,)`` (one
    product of the stacked tuple with the coefficients, one sum) and the public constant
    ``sum_T w3_T d e f + w2_T d e`` (uint64 ``(m,)``), which the caller adds.
    """
    de, df, ef = d * e, d * f, e * f  # wrap modulo 2^64
    zero, one = np.zeros_like(d), np.ones_like(d)
    w3, w2 = w3.reshape(-1, 1), w2.reshape(-1, 1)
    # coefficients of abc, ab, ac, bc, a, b, c
    coeffs = np.stack([w3 * one, w3 * f + w2, w3 * e, w3 * d, w3 * ef + w2 * e, w3 * df + w2 * d, w3 * de])
    parts = r128.stack([x.data for x in (t.abc, t.ab, t.ac, t.bc, t.a, t.b, t.c)], axis=1)  # (2, 7, T, m)
    shared = AuthShare(r128.sum(r128.mul_u64(parts, coeffs), axis=(1, 2)))
    return shared, np.add.reduce(w3 * de * f + w2 * de, axis=0, dtype=np.uint64)


def sigmoid_clip_steps(
    prep: SpdzPreprocessing,
    party_id: int,
    key_share: np.ndarray,
    z: AuthShare,
    scale_bits: int,
    frac_bits: int,
    k: int = WINDOW_BITS,
    bounded: bool = False,
) -> Steps:
    """``s = clip(z / 4 + 1/2, 0, 1)`` at ``frac_bits`` for ``z`` at scale ``2^scale_bits``, in 4 rounds.

    ``s = (b2 - b1) u + 1 - b2`` with ``b1 = [z < -2]``, ``b2 = [z < 2]`` (the window test) and
    ``u = z / 4 + 1/2``. The window test ends with one carry level per threshold,
    ``b_T = G_T + P_T L_T``; here that level is fused with the product by ``u``:
    ``s = (G2 - G1) u + P2 L2 u - P1 L1 u + 1 - G2 - P2 L2``, whose degree-3 terms take one
    product tuple each (:func:`_tuple_forms`). Rounds: (1) open the window's masked ``z`` (also
    the truncation's opening for ``u``, :func:`_shared_truncation`) and the tuples' own Beaver
    masks; (2, 3) two carry levels; (4) the tuples' and one triple's masks. The plain
    composition (window test, then the bit product) takes 5. Opened per element: ``1 + 12``
    (``+ 16`` without comparison masks), ``2 (14 + 6)`` and ``8`` values. Same security
    as the window test: every opened value is a
    uniformly masked Beaver or truncation opening, MAC-checked with the rest before any output.

    ``bounded``: ``s`` stays in ``[0, 1]`` (up to the fixed-point error) for *any* ``z``, also
    outside the window's range, where the two tests may give the impossible pair ``b1 = 1,
    b2 = 0`` (DP-SGD needs this bound whatever rows a coalition inputs): ``s = (1 - b1) w``
    with ``w = b2 u + 1 - b2``. The fused level then computes ``w`` and ``b1`` (the same tuples),
    and one more round multiplies them: 5 rounds, 2 more opened values and 1 more triple per
    element. ``s`` is ``u`` only when ``b1 = 0`` and ``b2 = 1``, i.e. when ``z`` read as a
    signed 64-bit integer lies in ``[-2, 2)`` (up to ``2^-4``), where ``u`` is in range;
    otherwise it is 0 or 1.
    """
    if k % 2 or k < 4:
        raise ConfigError("the fused sigmoid needs an even window of at least 4 bits")
    low = scale_bits - DROPPED_BELOW
    shape, m = z.shape, z.size
    flat = z.reshape(m)
    ts = [int(round(t * 2.0**scale_bits)) for t in (-_CLIP, _CLIP)]
    requests, finish, pair = _mask_open(prep, flat, low, k, trunc_bits=scale_bits - frac_bits + 2)
    tuple_opens, read_tuples = _tuple_open(prep, (2, m))
    opened = yield [*requests, *tuple_opens]
    n_req = len(requests)
    c, r0, r1, q = finish(opened[:n_req])
    biased = Z128(c + np.uint64(online.TRUNCATION_BIAS), np.zeros_like(c))  # z + 2^62 + mask (mod 2^64)
    u = online.truncation_result(biased, pair, party_id, key_share)  # z / 4 at frac_bits
    u = sh.add_public(u, np.uint64(1 << (frac_bits - 1)), party_id, key_share)  # + 1/2
    tup = read_tuples(opened[n_req:])
    gp = _window_leaves(party_id, key_share, c, r0, r1, q, ts, low, k)
    gp = yield from _carry_levels(prep, gp, k // 2, stop=2)  # rows: L, G, (unused), P
    lg, hg, hp = (AuthShare._of(gp[:, row].reshape(2, 2, m)) for row in (0, 1, 3))
    # unbounded: (G2 - G1) u; bounded: G2 u (for w = b2 u + 1 - b2)
    left = hg[1] if bounded else sh.sub(hg[1], hg[0])
    triple = prep.triples((m,))
    u2 = u.broadcast_to((2, m))
    opened = yield [sh.sub(hp, tup.a), sh.sub(lg, tup.b), sh.sub(u2, tup.c), *online.beaver_masks(left, u, triple)]
    d, e, f = (v.lo.reshape(2, m) for v in opened[:3])
    lu = online.beaver_product("mul", opened[3], opened[4], left, triple)
    unit = np.uint64(1 << frac_bits)
    top = np.array([0, -(1 << frac_bits)], dtype=np.int64).view(np.uint64)  # - 2^f P2 L2
    if not bounded:
        # P2 L2 u - P1 L1 u - 2^f P2 L2 (the tuples' forms), then + (G2 - G1) u + 2^f (1 - G2)
        forms, public = _tuple_forms(tup, d, e, f, np.array([-1, 1], dtype=np.int64).view(np.uint64), top)
        s = sh.sub(sh.add(lu, forms), sh.shl(hg[1], frac_bits))
        return sh.add_public(s, public + unit, party_id, key_share).reshape(shape)
    # w = b2 u + 1 - b2 = G2 u + P2 L2 u - 2^f (G2 + P2 L2) + 2^f; b1 = G1 + P1 L1
    forms, public = _tuple_forms(tup, d, e, f, np.array([0, 1], dtype=np.uint64), top)
    w = sh.add_public(sh.sub(sh.add(lu, forms), sh.shl(hg[1], frac_bits)), public + unit, party_id, key_share)
    forms, public = _tuple_forms(tup, d, e, f, np.zeros(2, dtype=np.uint64), np.array([1, 0], dtype=np.uint64))
    b1 = sh.add_public(sh.add(hg[0], forms), public, party_id, key_share)
    triple = prep.triples((m,))  # s = (1 - b1) w: 0 below -2 whatever b2 says
    dd, ee = yield list(online.beaver_masks(b1, w, triple))
    return sh.sub(w, online.beaver_product("mul", dd, ee, b1, triple)).reshape(shape)

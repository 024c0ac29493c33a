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
   window ``R`` and their pair products come with it. Otherwise it is composed: from a
   truncation pair for ``l`` bits, ``[r_low] = [r] - 2^l [r' >> l] - 2^63 [r_63]`` is uniform
   in ``[0, 2^l)`` (plus bits at and above 2^64, which only the MACs see); with ``k`` random
   bits ``[R_i]`` and a random value ``[t]``: ``[mask] = [r_low] + 2^l sum_i 2^i [R_i] +
   2^(l + k) [t]``, and the ``k / 2`` chunk products ``[R_2j R_2j+1]`` are multiplied in the
   same round. Open ``c = z + mask`` (uniform in Z_2^128: every bit range is masked by an
   independent uniform part).
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
peer ``16 (1 + 22 T)``; without, ``k`` bits, one random value, one truncation pair (``l``
bits) and ``8 + 11 T`` triples, ``16 (17 + 22 T)`` bytes (:func:`window_cost`). The engine's
exact LTZ costs 89 triples (or 57 and a mask) per test and 6 rounds.
"""

from __future__ import annotations

from typing import Any, Generator, Sequence

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128
from protocols.spdz import compare as cmp
from protocols.spdz import shares as sh
from protocols.spdz.array import SecretArray
from protocols.spdz.preprocessing import Requirements, SpdzPreprocessing
from protocols.spdz.shares import AuthShare

__all__ = ["WINDOW_BITS", "DROPPED_BELOW", "below_thresholds", "window_steps", "window_cost", "sigmoid_clip"]

WINDOW_BITS = 16
"""``k``: bits of the window the sign is read from (even; 8 chunks, a 3-level tree)."""

DROPPED_BELOW = 4
"""The window starts ``DROPPED_BELOW`` bits above the binary point: resolution ``2^-4``."""

Steps = Generator[list[AuthShare], list[Z128], AuthShare]


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
    ``k`` bits, ``k / 2`` triples, a random value and a truncation pair for ``l`` bits.
    """
    tree = thresholds * sum(_tree_levels(k // 2)) * count
    if _uses_comparison_masks(prep, low_bits, k):
        return Requirements(triples=tree, comparison_masks=count)
    return Requirements(
        triples=tree + (k // 2) * count, bits=k * count, random_values=count, truncation_pairs={low_bits: count}
    )


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
    n_t = len(thresholds)
    chunks = k // 2
    flat = z.reshape(m)
    if _uses_comparison_masks(prep, low_bits, k):
        source = cmp.mask_source(prep)
        cm = source(m)  # type: ignore[misc]
        if cm.bits.shape != (cmp.K, m) or cm.pair_products.shape != (cmp.CHUNKS, m):
            raise ConfigError("the provider gave comparison masks of the wrong shape")
        r0 = cm.bits[low_bits : low_bits + k : 2]
        r1 = cm.bits[low_bits + 1 : low_bits + k : 2]
        q = cm.pair_products[low_bits // 2 : low_bits // 2 + chunks]
        (opened_c,) = yield [sh.add(flat, cm.value)]
    else:
        pair = prep.truncation_pairs((m,), low_bits)
        r_low = sh.sub(sh.sub(pair.r, sh.shl(pair.r_high, low_bits)), sh.shl(pair.r_msb, 63))
        bits = prep.bits((k, m))
        high = prep.random_values((m,))
        weights = np.left_shift(np.uint64(1), np.arange(k, dtype=np.uint64)).reshape(k, 1)
        window = AuthShare(r128.sum(r128.mul_u64(bits.data, weights), axis=1))
        mask = sh.add(sh.add(r_low, sh.shl(window, low_bits)), sh.shl(high, low_bits + k))
        r0, r1 = bits[0::2], bits[1::2]
        chunk_products = cmp.multiply_steps(prep, [r0], [r1])
        opens = next(chunk_products)
        opened = yield [sh.add(flat, mask), *opens]
        opened_c = opened[0]
        try:
            chunk_products.send(opened[1:])
            raise ConfigError("internal: the chunk products took more than one round")
        except StopIteration as done:
            (q,) = done.value
    c = opened_c.lo.reshape(m)

    top = np.uint64((1 << k) - 1)
    shift = np.uint64(low_bits)
    windows = np.concatenate([((c - np.uint64(int(t) % (1 << 64))) >> shift) & top for t in thresholds])
    cv = np.ascontiguousarray(cmp.chunk_values(windows)[:, :chunks].T)  # (k / 2, n_t m), low chunk first
    r0t, r1t, qt = (sh.concatenate([a] * n_t, axis=1) if n_t > 1 else a for a in (r0, r1, q))
    g, p = cmp.gather_leaves(r0t, r1t, qt, cv, cmp.Want(lt=True), party_id, key_share)
    if g is None:
        raise ConfigError("internal: no lt leaves")
    # the top leaf is (A, B) of the engine's LTZ: the sign bit of the k-bit window
    gt, pt = cmp.ltz_leaves(cv[-1:].T)
    width = n_t * m
    last = slice(chunks - 1, chunks)
    ab_top = cmp.select(np.stack([gt[:, -1], pt[:, -1]]), r0t[last], r1t[last], qt[last], party_id, key_share)
    g = sh.concatenate([g[: chunks - 1], ab_top[0:1]], axis=0)
    p = sh.concatenate([p[: chunks - 1], ab_top[1:2]], axis=0)
    level = chunks
    while level > 1:  # the carry tree of protocols.spdz.compare (lt only)
        pairs = level // 2
        hi, lo = slice(1, 2 * pairs, 2), slice(0, 2 * pairs, 2)
        p_hi, p_lo = p[hi], p[lo]
        pg, pp = yield from cmp.multiply_steps(prep, [p_hi, p_hi[1:]], [g[lo], p_lo[1:]])
        g_next = sh.add(g[hi], pg)
        if 2 * pairs < level:  # an odd top element passes up unchanged
            rest = slice(2 * pairs, level)
            g = sh.concatenate([g_next, g[rest]], axis=0)
            p = sh.concatenate([p[1:2], pp, p[rest]], axis=0)  # row 0's p is never used
        else:
            g = g_next
            p = sh.concatenate([p[1:2], pp], axis=0)
        level -= pairs
    return g.reshape(n_t, *shape)


def below_thresholds(z: SecretArray, thresholds: Sequence[float], scale_bits: int) -> SecretArray:
    """``[z < T]`` (0/1 integers, stacked on a new leading axis) for a ``z`` held at scale ``2^scale_bits``.

    ``z`` is an integer secret array holding ``v * 2^scale_bits``; thresholds are reals. See
    the module docstring for the window and its error.
    """
    low = scale_bits - DROPPED_BELOW
    if low < 1:
        raise ConfigError("the scale is too small for the window")
    eng = z.engine
    ts = [int(round(t * 2.0**scale_bits)) for t in thresholds]

    def steps(value: Any) -> Steps:
        return window_steps(eng.prep, eng.party_id, eng.key_share, value, ts, low)

    return eng.interactive(steps, [z], (len(ts), *z.shape), 0)


def sigmoid_clip(z: SecretArray, scale_bits: int) -> SecretArray:
    """``clip(z / 4 + 1/2, 0, 1)`` (fixed point) of an integer array ``z`` at scale ``2^scale_bits``.

    Rounds: 5 (the window test, 4, in parallel with the truncation of ``z / 4``, then one
    product of a bit and a fixed-point value, which needs no truncation).
    """
    from protocols.ml.fixed import truncate

    f = z.engine.frac_bits
    lt = below_thresholds(z, [-2.0, 2.0], scale_bits)  # [z < -2], [z < 2]
    u = truncate(z, scale_bits - f + 2) + 0.5  # z / 4 + 1/2
    return (lt[1] - lt[0]) * u + (1 - lt[1])

"""Exact comparisons of SPDZ2k-shared values: less-than-zero and equal-to-zero, by bit decomposition.

Both tests run on one masked opening of ``x`` (a value of Z_2^64, read as a signed 64-bit integer
for ``LTZ``) and a comparison circuit on the random bits of the mask, evaluated with Beaver
triples on arithmetic bit shares (authenticated 0/1 values of Z_2^64, SPDZ2k MACs), after
Damgard, Escudero, Frederiksen, Keller, Scholl, Volgushev, "New Primitives for Actively-Secure
MPC over Rings with Applications to Private Machine Learning" (S&P 2019): random bits instead
of a field's tricks, and a bitwise comparison of a public value with a bit-decomposed secret
mask (the carry of ``c - r``), after Catrina and de Hoogh (SCN 2010).

Recipe (all ``m`` elements of a batch at once; ``k = 64``, chunks of 2 bits):

1. *Mask.* Take 64 preprocessed bits ``[r_0] .. [r_63]`` and a random value ``[t]``; locally
   ``[r] = sum_i 2^i [r_i] + 2^64 [t]`` (:func:`compose_mask`). Open ``c = x + r``: its low 64
   bits ``x + sum 2^i r_i mod 2^64`` are uniform, its high 64 bits are masked by ``t``, so ``c``
   reveals nothing. In the same round, multiply the bits of each 2-bit chunk,
   ``[q_j] = [r_2j][r_2j+1]`` (32 products, data-independent; a provider with
   ``comparison_masks`` hands out bits, products and ``t`` ready-made, so this step costs only
   the opening of ``c``), so that any public function ``F`` of a chunk value
   ``v = r_2j + 2 r_2j+1`` becomes linear:
   ``[F(v)] = F(0) + (F(1)-F(0)) [r_2j] + (F(2)-F(0)) [r_2j+1] + (F(3)-F(2)-F(1)+F(0)) [q_j]``
   (:func:`select`).
2. *Leaves.* ``x = c - r mod 2^64`` (``c`` now public). For chunk ``j`` with public value
   ``c_j``: ``g_j = [v_j > c_j]`` (the chunk makes ``c < r`` on it) and ``p_j = [v_j = c_j]``
   (it passes the decision down), both linear (step 1); in fact each is one of four linear
   forms of ``r_2j, r_2j+1, q_j`` picked by the public ``c_j``, a local gather
   (:func:`gather_leaves`).
3. *LTZ.* The sign bit of ``x`` is ``c_63 XOR r_63 XOR b`` where ``b = [c mod 2^63 < r mod 2^63]``
   is the borrow into bit 63, and ``b = g_62 + p_62 b'`` with ``b' = [c mod 2^62 < r mod 2^62]``
   (bit 62 as a 1-bit chunk). Writing ``T = c_63 XOR r_63``: ``x_63 = A + B b'`` with
   ``A = T XOR g_62`` and ``B = (1 - 2T) p_62``, both functions of the top chunk
   ``(r_62, r_63)``: the top leaf is ``(A, B)`` (:func:`ltz_leaves`). The 32 leaves are
   combined by the carry operator ``(g, p) o (g', p') = (g + p g', p p')`` (associative in any
   commutative ring) in a balanced tree: 5 levels, one round each; a level multiplies
   ``p_hi g_lo`` for every pair and ``p_hi p_lo`` for every pair but the lowest (whose ``p``
   is never used). The root's ``g`` is ``[x < 0]``.
4. *EQZ.* ``x = 0`` iff ``c = r mod 2^64`` iff every chunk has ``v_j = c_j``: the product of
   the 32 ``p_j`` (top chunk a plain chunk) by a tree of 5 levels.

Both tests from one mask cost what LTZ costs plus EQZ's tree (``sign`` uses that).

Exactness: the results are exact (no probability of error) for every ``x`` in Z_2^64: ``LTZ``
reads ``x`` as signed (two's complement, ``[-2^63, 2^63)``), so ``a < b`` computed as
``LTZ(a - b)`` is exact whenever ``a - b`` does not overflow, e.g. for ``|a|, |b| < 2^62``,
which holds for every fixed-point value (encodings are below ``2^62``); ``EQZ(a - b)`` is exact
for all ``a, b``. Only ``x mod 2^64`` matters (the high share bits are ignored, as everywhere
in the engine).

Security: active, dishonest majority, abort (the engine's model): the values opened are
``c`` (uniform) and Beaver's ``d, e`` (uniform); all are MAC-checked with the rest before any
output. Nothing about ``x`` leaks; the shapes are public. (In the engine's passive mode the
openings are modulo 2^64, half the bytes below, and nothing is checked.)

Cost per element (``n`` parties; bytes sent per party, excluding framing):

========  ======  ===================  ==============================  ===================
test      rounds  triples              bits / random values            bytes sent
========  ======  ===================  ==============================  ===================
LTZ       6       89 (32 + 57)         64 / 1                          16 (1 + 2 * 89) (n-1)
EQZ       6       63 (32 + 31)         64 / 1                          16 (1 + 2 * 63) (n-1)
both      6       120                  64 / 1                          16 (1 + 2 * 120) (n-1)
========  ======  ===================  ==============================  ===================

With comparison masks from the provider: LTZ 57 triples and 1 mask, ``16 (1 + 2 * 57)`` bytes
per peer; EQZ 31 and ``16 (1 + 2 * 31)``; both 88 and ``16 (1 + 2 * 88)``. (:func:`cost`
computes these from the same tree the code walks.)

Memory: a batch holds its masks' bits, the leaves and one level's products at once, about
8 kB per element at the peak (Z_2^128 shares with MACs): split batches well beyond 10^5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128
from protocols.spdz import online
from protocols.spdz import shares as sh
from protocols.spdz.preprocessing import ComparisonMask, Requirements, SpdzPreprocessing, Triple
from protocols.spdz.shares import AuthShare

__all__ = [
    "K",
    "CHUNKS",
    "Want",
    "weighted_bits",
    "compose_mask",
    "chunk_values",
    "select",
    "gather_leaves",
    "ltz_leaves",
    "eqz_leaves",
    "cost",
    "mask_source",
    "compare_steps",
    "multiply_steps",
]

K = 64
"""Bits of the compared values (Z_2^64)."""

CHUNKS = K // 2
"""2-bit chunks of the mask."""

_U64 = np.dtype(np.uint64)
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(K, dtype=np.uint64))  # 2^i, i < 64
_ONE = np.uint64(1)

Steps = Generator[list[AuthShare], list[Z128], AuthShare]


@dataclass(frozen=True)
class Want:
    """Which tests to compute from one mask: ``lt`` (``[x < 0]``) and/or ``eq`` (``[x = 0]``)."""

    lt: bool = True
    eq: bool = False

    def __post_init__(self) -> None:
        if not (self.lt or self.eq):
            raise ConfigError("a comparison must compute lt, eq or both")

    @property
    def outputs(self) -> int:
        """Number of result arrays (stacked on a new leading axis, ``lt`` first)."""
        return int(self.lt) + int(self.eq)


# -- pure parts ------------------------------------------------------------------------------------


def weighted_bits(bits: AuthShare) -> AuthShare:
    """``sum_i 2^i [b_i]`` over the leading axis of ``bits`` (bit-major, at most 64 rows): local."""
    rows = bits.shape[0]
    if not 0 < rows <= K:
        raise ConfigError("weighted_bits needs 1 to 64 rows of bits")
    weights = _WEIGHTS[:rows].reshape(rows, *([1] * (bits.ndim - 1)))
    return AuthShare(r128.sum(r128.mul_u64(bits.data, weights), axis=1))


def compose_mask(bits: AuthShare, high: AuthShare) -> AuthShare:
    """``[r] = sum_i 2^i [r_i] + 2^64 [t]`` from bits ``(64, m)`` (bit-major) and values ``(m,)``."""
    if bits.shape[:1] != (K,) or bits.shape[1:] != high.shape:
        raise ConfigError("compose_mask needs bits of shape (64, m) and values of shape (m,)")
    return sh.add(weighted_bits(bits), sh.shl(high, 64))


def chunk_values(c: np.ndarray) -> np.ndarray:
    """The 32 two-bit chunks of public ``c`` (uint64 ``(m,)``) as uint64 ``(m, 32)``, low first."""
    shifts = np.arange(0, K, 2, dtype=np.uint64)
    return (c.reshape(-1, 1) >> shifts) & np.uint64(3)


def select(table: np.ndarray, r0: AuthShare, r1: AuthShare, q: AuthShare, party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[F(r0 + 2 r1)]`` for a public table ``F`` (uint64 ``(..., 4)``), given ``[q] = [r0 r1]``.

    ``F(v) = F0 + (F1 - F0) r0 + (F2 - F0) r1 + (F3 - F2 - F1 + F0) r0 r1`` on bits (exact,
    modulo 2^64): a local linear combination, computed as one product of the stacked
    ``[1], [r0], [r1], [q]`` with the stacked coefficients and a sum. ``r0``, ``r1`` and ``q``
    have one shape, which broadcasts with ``table.shape[:-1]`` (the result's shape).
    """
    f0, f1, f2, f3 = (table[..., i] for i in range(4))
    coeffs = np.stack([f0, f1 - f0, f2 - f0, f3 - f2 - f1 + f0])  # uint64 arithmetic wraps: mod 2^64
    if not r0.shape == r1.shape == q.shape:
        raise ConfigError("select needs bit shares of one shape")
    shape = np.broadcast_shapes(r0.shape, coeffs.shape[1:])
    one = sh.unit(party_id, key_share).reshape((1,) * r0.ndim).broadcast_to(r0.shape)
    terms = sh.stack([one, r0, r1, q]).reshape(4, *([1] * (len(shape) - r0.ndim)), *r0.shape)
    weights = coeffs.reshape(4, *([1] * (len(shape) - table.ndim + 1)), *coeffs.shape[1:])
    return sh.mul_public(terms, weights).sum(axis=0)


def _bit_tables(cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g(v) = [v > c_j]`` and ``p(v) = [v = c_j]`` for chunk values ``cv`` (uint64 ``(m, J)``)."""
    v = np.arange(4, dtype=_U64)
    return (v > cv[..., None]).astype(_U64), (v == cv[..., None]).astype(_U64)


def ltz_leaves(cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tables of the 32 LTZ leaves ``(g, p)``, the top one replaced by ``(A, B)`` (step 3).

    Args:
        cv: the chunks of ``c`` (uint64 ``(m, 32)``).

    Returns:
        ``(G, P)`` tables of shape ``(m, 32, 4)`` (uint64, entries read modulo 2^64).
    """
    g, p = _bit_tables(cv)
    top = cv[:, -1]
    c62, c63 = (top & _ONE)[:, None], (top >> _ONE)[:, None]
    v = np.arange(4, dtype=_U64)[None, :]
    r62, r63 = v & _ONE, v >> _ONE
    t = c63 ^ r63
    g62 = (r62 > c62).astype(_U64)
    p62 = (r62 == c62).astype(_U64)
    g[:, -1] = t ^ g62
    p[:, -1] = (_ONE - (t << _ONE)) * p62  # (1 - 2T) p_62, i.e. -1, 0 or 1 modulo 2^64
    return g, p


def eqz_leaves(cv: np.ndarray) -> np.ndarray:
    """Table of the 32 EQZ leaves ``p_j(v) = [v = c_j]`` (uint64 ``(m, 32, 4)``)."""
    return _bit_tables(cv)[1]


def _tree_products(width: int, want: Want) -> list[int]:
    """Multiplications per tree level for ``width`` leaves (what :func:`compare_steps` does)."""
    out = []
    while width > 1:
        pairs = width // 2
        level = 0
        if want.lt:
            level += 2 * pairs - 1  # p_hi g_lo for every pair, p_hi p_lo for all but the lowest
        if want.eq:
            level += pairs
        out.append(level)
        width -= pairs
    return out


def mask_source(prep: object) -> Callable[[int], ComparisonMask] | None:
    """The provider's ``comparison_masks`` method, if it offers them (:class:`ComparisonMaskProvider`).

    A provider may have the method but decline (``offers_comparison_masks`` false, e.g. a
    dealer limited to a reservation made without masks): every party decides the same way
    from its provider's configuration, which the job gives all of them alike.
    """
    source = getattr(prep, "comparison_masks", None)
    if not callable(source) or not getattr(prep, "offers_comparison_masks", True):
        return None
    return source


def cost(want: Want | None = None, count: int = 1, prep: object = None) -> Requirements:
    """The preprocessing ``count`` comparisons consume (see the module docstring's table).

    Args:
        want: which tests (LTZ by default).
        count: number of elements.
        prep: the provider that will serve them: with ``comparison_masks`` (see
            :func:`mask_source`) step 1 takes one mask per element instead of 64 bits, a
            random value and 32 triples.
    """
    w = want or Want()
    tree = sum(_tree_products(CHUNKS, w))
    if mask_source(prep) is not None:
        return Requirements(triples=tree * count, comparison_masks=count)
    return Requirements(triples=(CHUNKS + tree) * count, bits=K * count, random_values=count)


def rounds(want: Want | None = None) -> int:
    """Communication rounds of one comparison (any batch size)."""
    return 1 + len(_tree_products(CHUNKS, want or Want()))


# -- the interactive steps ---------------------------------------------------------------------------


def _beaver_open(prep: SpdzPreprocessing, left: list[AuthShare], right: list[AuthShare]) -> tuple[Triple, AuthShare, list[AuthShare]]:
    """One batch of products ``left[i] * right[i]``: the triple, the flat left operand, the opens."""
    x = sh.flat_concat(left)
    y = sh.flat_concat(right)
    triple = prep.triples(x.shape)
    d, e = online.beaver_masks(x, y, triple)
    return triple, x, [d, e]


def _beaver_close(triple: Triple, x: AuthShare, d: Z128, e: Z128, shapes: list[tuple[int, ...]]) -> list[AuthShare]:
    z = online.beaver_product("mul", d, e, x, triple)
    out, pos = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(AuthShare._of(z.data[:, pos : pos + size].reshape(2, *shape)))
        pos += size
    return out


def multiply_steps(prep: SpdzPreprocessing, left: list[AuthShare], right: list[AuthShare]) -> Generator[list[AuthShare], list[Z128], list[AuthShare]]:
    """Elementwise products ``left[i] * right[i]`` (same shapes) in one round, one triple batch."""
    if len(left) != len(right) or any(a.shape != b.shape for a, b in zip(left, right)):
        raise ConfigError("multiply_steps needs pairs of equal shapes")
    triple, x, opens = _beaver_open(prep, left, right)
    d, e = yield opens
    return _beaver_close(triple, x, d, e, [a.shape for a in left])


def _choose(index: np.ndarray, choices: list[Z128]) -> Z128:
    """Elementwise ``choices[index]`` (``index`` of the choices' shape): a local gather."""
    return Z128(np.choose(index, [c.lo for c in choices]), np.choose(index, [c.hi for c in choices]))


def gather_leaves(
    r0: AuthShare, r1: AuthShare, q: AuthShare, cv: np.ndarray, want: Want, party_id: int, key_share: np.ndarray
) -> tuple[AuthShare | None, AuthShare]:
    """``g = [v > c_j]`` (if ``want.lt``) and ``p = [v = c_j]`` for ``v = r0 + 2 r1``, ``[q] = [r0 r1]``.

    The one-hot ``u_w = [v = w]`` is ``u_3 = q, u_2 = r1 - q, u_1 = r0 - q, u_0 = 1 - r0 - r1 + q``;
    ``p`` picks ``u_(c_j)`` and ``g`` the suffix sum ``sum_(w > c_j) u_w`` (``r0 + r1 - q``,
    ``r1``, ``q`` or 0). The index ``c_j`` is public, so both are local gathers: the same as
    :func:`select` on the tables ``[v > c]``, ``[v = c]``, without multiplications.
    """
    u1, u2 = sh.sub(r0, q), sh.sub(r1, q)
    s1 = sh.add(u1, r1)  # [v >= 1] = r0 + r1 - q
    u0 = sh.sub(sh.unit(party_id, key_share), s1)
    index = np.broadcast_to(cv.astype(np.intp), q.data.shape)
    p = AuthShare._of(_choose(index, [u0.data, u1.data, u2.data, q.data]))
    if not want.lt:
        return None, p
    zero = r128.zeros(q.data.shape)
    g = AuthShare._of(_choose(index, [s1.data, r1.data, q.data, zero]))
    return g, p


def compare_steps(
    prep: SpdzPreprocessing, party_id: int, key_share: np.ndarray, x: AuthShare, want: Want
) -> Steps:
    """The comparison protocol (module docstring) as engine steps.

    Arrays are bit-major (``(64, m)`` bits, ``(32, m)`` leaves), so every slice of a level is a
    set of contiguous rows.

    Args:
        prep: this party's preprocessing provider.
        party_id: this party's id.
        key_share: its MAC key share.
        x: shares of the values to test (any shape).
        want: which tests.

    Returns:
        (as the generator's value) shares of shape ``(want.outputs, *x.shape)``: ``[x < 0]``
        then ``[x = 0]`` (0/1 integers), as requested.
    """
    shape = x.shape
    m = x.size
    source = mask_source(prep)
    if source is not None:  # step 1's products come from the preprocessing
        mask = source(m)
        bits, q = mask.bits, mask.pair_products
        if bits.shape != (K, m) or q.shape != (CHUNKS, m) or mask.value.shape != (m,):
            raise ConfigError("the provider gave comparison masks of the wrong shape")
        r0, r1 = bits[0::2], bits[1::2]
        (opened_c,) = yield [sh.add(x.reshape(m), mask.value)]
    else:
        bits = prep.bits((K, m))
        high = prep.random_values((m,))
        masked = sh.add(x.reshape(m), compose_mask(bits, high))
        r0, r1 = bits[0::2], bits[1::2]  # (32, m) each: the chunks' low and high bits
        triple, left, opens = _beaver_open(prep, [r0], [r1])
        opened = yield [masked, *opens]
        opened_c = opened[0]
        (q,) = _beaver_close(triple, left, opened[1], opened[2], [r0.shape])
    c = opened_c.lo.reshape(m)

    cv = np.ascontiguousarray(chunk_values(c).T)  # (32, m)
    leaf_g, leaf_p = gather_leaves(r0, r1, q, cv, want, party_id, key_share)
    e = leaf_p if want.eq else None
    g: AuthShare | None = None
    p: AuthShare | None = None
    if leaf_g is not None:
        # the top leaf is (A, B) instead of (g, p): a table on the top chunk only
        gt, pt = ltz_leaves(cv[-1:].T)
        top = slice(CHUNKS - 1, CHUNKS)
        ab_top = select(np.stack([gt[:, -1], pt[:, -1]]), r0[top], r1[top], q[top], party_id, key_share)
        g = sh.concatenate([leaf_g[: CHUNKS - 1], ab_top[0:1]], axis=0)
        p = sh.concatenate([leaf_p[: CHUNKS - 1], ab_top[1:2]], axis=0)

    width = CHUNKS
    while width > 1:
        pairs = width // 2
        hi, lo = slice(1, 2 * pairs, 2), slice(0, 2 * pairs, 2)
        left_ops: list[AuthShare] = []
        right_ops: list[AuthShare] = []
        if g is not None and p is not None:
            left_ops += [p[hi], p[hi][1:]]
            right_ops += [g[lo], p[lo][1:]]
        if e is not None:
            left_ops.append(e[hi])
            right_ops.append(e[lo])
        products = yield from multiply_steps(prep, left_ops, right_ops)
        rest = slice(2 * pairs, width)  # an odd top element passes up unchanged
        odd = 2 * pairs < width
        if g is not None and p is not None:
            pg, pp = products[0], products[1]
            g_next = sh.add(g[hi], pg)
            g = sh.concatenate([g_next, g[rest]], axis=0) if odd else g_next
            # row 0 of p belongs to the lowest node, whose p is never used: any value will do
            p = sh.concatenate([p[1:2], pp, p[rest]] if odd else [p[1:2], pp], axis=0)
        if e is not None:
            e = sh.concatenate([products[-1], e[rest]], axis=0) if odd else products[-1]
        width -= pairs

    results = [r.reshape(m) for r in (g, e) if r is not None]
    return AuthShare(r128.stack([res.data for res in results], axis=1).reshape(2, len(results), *shape))

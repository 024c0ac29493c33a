"""Random bits from triples by square roots modulo 2^128, and truncation pairs from bits.

Bits (after Damgard, Escudero, Frederiksen, Keller, Scholl, Volgushev, "New Primitives for
Actively-Secure MPC over Rings with Applications to Private Machine Learning", S&P 2019,
adapted to SPDZ2k shares). From a checked triple ``[a], [b], [c = a b]``:

1. open ``delta = a - b`` (uniform: ``b`` is), so ``[a^2] = [c] + delta [a]``;
2. let ``u = 2a + 1`` (uniform odd); open ``u^2 = 4 [a^2] + 4 [a] + 1`` (it reveals ``u`` up to
   its four square roots ``+-u``, ``+-u + 2^127``, which are equally likely);
3. every party computes the same root ``c`` of ``u^2`` modulo ``2^66`` and ``c^-1 mod 2^128``;
   then ``w = c^-1 u`` squares to 1 modulo ``2^66``, so ``w = +-1 mod 2^65``, each with
   probability 1/2 given everything opened;
4. ``[bit] = c^-1 [a] + (c^-1 + 1) / 2``: twice it is ``c^-1 (2a + 1) + 1 = w + 1``, so the
   bit is ``(w + 1) / 2`` in {0, 1} modulo ``2^64`` (no division of shares is needed because
   ``c^-1 + 1`` is even);
5. MAC-check ``delta`` and ``u^2`` (one check per batch).

Correctness needs ``u^2`` right modulo ``2^66``: the triple is right modulo ``2^64`` (its
errors ``2^64 e`` become ``2^66 e`` in ``u^2``) and the opened values are MAC-checked, which
catches an error at bit 64 or 65 except with probability about ``2^-57``. Cost per bit: one
triple, 2 opens (32 bytes per peer), 66 vectorized 128-bit squarings for the roots.

Truncation pairs for ``f`` fractional bits (the dealer's definition in
:mod:`protocols.spdz.preprocessing`): from 64 bits ``b_l`` and one random value ``[t]``,
``[r] = sum_l 2^l [b_l] + 2^64 [t]`` (uniform in Z_2^128: low half from the bits, high half
from ``t``), ``[(r mod 2^63) >> f] = sum_{l=f}^{62} 2^(l-f) [b_l]`` and ``[r_63] = [b_63]``,
all local. Cost: 64 bits and one random value per pair.
"""

from __future__ import annotations

import numpy as np

from mpc import ring128 as r128
from mpc.errors import AbortError
from mpc.ring128 import Z128
from protocols.spdz.shares import AuthShare

from protocols.spdz_offline.arith import add_public, inverse_odd, mul_public, sqrt_odd
from protocols.spdz_offline.coin import Checker
from protocols.spdz_offline.vole import Context

__all__ = ["bits_from_triples", "bits_from_square", "truncation_from_bits", "ROOT_BITS"]

ROOT_BITS = 66
"""Precision of the square root: bits are right modulo 2^64 from u^2 right modulo 2^66."""


def bits_from_square(a: AuthShare, u_square: Z128, party_id: int, key_share: np.ndarray) -> AuthShare:
    """Step 3-4: ``[bit] = c^-1 [a] + (c^-1 + 1) / 2`` with ``c`` a root of ``u^2 = (2a + 1)^2``.

    Raises:
        AbortError: an opened square is not 1 mod 8 (someone cheated in the opening).
    """
    if np.any((np.asarray(u_square.lo) & np.uint64(7)) != 1):
        raise AbortError("an opened square is not an odd square: a party cheated")
    root = sqrt_odd(u_square, ROOT_BITS)
    inv = inverse_odd(root)
    half = r128.shr(r128.add(inv, r128.from_u64(np.ones(inv.shape, dtype=np.uint64))), 1)
    return add_public(mul_public(a, inv), half, party_id, key_share)


async def bits_from_triples(ctx: Context, a: AuthShare, b: AuthShare, c: AuthShare, name: str) -> AuthShare:
    """Random authenticated bits, one per (flat) triple (steps 1-5 of the module docstring).

    Raises:
        MacCheckFailure: an opened value was wrong.
        AbortError: an opened square is not an odd square.
    """
    checker = Checker(ctx.session, ctx.key_share, ctx.behaviour)
    me, key = ctx.party_id, ctx.key_share
    delta = await checker.open(f"{name}-delta", AuthShare(r128.sub(a.data, b.data)))
    a_sq = AuthShare(r128.add(c.data, mul_public(a, delta).data))
    four = r128.from_u64(np.asarray(np.uint64(4)))
    u_sq = AuthShare(r128.add(r128.mul(a_sq.data, four), r128.mul(a.data, four)))
    u_sq = add_public(u_sq, r128.from_u64(np.ones(a.shape, dtype=np.uint64)), me, key)
    opened = await checker.open(f"{name}-square", u_sq)
    bits = bits_from_square(a, opened, me, key)
    await checker.check()
    return bits


def truncation_from_bits(bits: AuthShare, t: AuthShare, frac_bits: int) -> tuple[AuthShare, AuthShare, AuthShare]:
    """Truncation pairs from bits ``(N, 64)`` and random values ``(N,)`` (local, exact).

    Returns:
        ``([r], [(r mod 2^63) >> f], [r_63])``, each ``(N,)``.
    """
    f = int(frac_bits)
    weights = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    low = r128.sum(r128.mul_u64(bits.data, weights), axis=2)
    r = r128.add(low, r128.shl(t.data, 64))
    high_w = np.zeros(64, dtype=np.uint64)
    high_w[f:63] = np.uint64(1) << np.arange(63 - f, dtype=np.uint64)
    high = r128.sum(r128.mul_u64(bits.data, high_w), axis=2)
    msb = bits.data[:, :, 63]
    return AuthShare(r), AuthShare(high), AuthShare(msb.copy())

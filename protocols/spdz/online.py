"""The SPDZ2k online protocols as pure round functions (no communication).

The engine (:mod:`protocols.spdz.engine`) opens what these functions prepare, in batches, and
feeds the opened values back. Notation: ``[x]`` an authenticated sharing
(:class:`~protocols.spdz.shares.AuthShare`), values in Z_2^64 carried in Z_2^128 shares.

Input (party ``o`` shares its ``x``), with an input mask ``[r]`` whose value ``o`` knows:
  ``o`` broadcasts ``d = x - r mod 2^64`` (:func:`input_masked`); everyone sets
  ``[x] = [r] + d`` (:func:`input_share`). ``d`` is uniform (``r`` is); the high bits of
  ``[r] + d`` differ from those of ``x`` but only ``x mod 2^64`` is meaningful. Receivers check
  the broadcast for consistency in the MAC check (transcript digest).

Bilinear product (Beaver; elementwise ``*``, matrix ``@`` and ``dot`` are the same routine):
  with a triple ``[a], [b], [c = a (op) b]``, open ``d = x - a`` and ``e = y - b``
  (:func:`beaver_masks`; uniform in Z_2^128 because ``a`` and ``b`` are), then
  ``[z] = [c] + d (op) [b] + [x] (op) e`` (:func:`beaver_product`), which equals
  ``x (op) y`` since ``x = a + d``: ``ab + db + (a + d) e = (a + d)(b + e)``. Bilinearity is
  all that is used, so ``op`` may be any bilinear map the ring module implements.

Truncation by ``f`` bits (probabilistic rounding, no failure) with a truncation pair
  ``[r]`` (uniform in Z_2^128), ``[r' >> f]`` and ``[r_63]`` where ``r' = r mod 2^63``:
  for ``x`` in [-2^62, 2^62) (signed), let ``y = x + 2^62`` in [0, 2^63); open
  ``c = y + r`` (:func:`truncation_masked`; uniform, so it hides ``x``) and output
  ``[t] = (c' >> f) - [r' >> f] + 2^(63-f) (c_63 XOR [r_63]) - 2^(62-f)`` with
  ``c' = c mod 2^63`` (:func:`truncation_result`; XOR with a public bit is linear). Because
  ``y < 2^63``, ``y = (c' - r') + 2^63 (c_63 XOR r_63)`` exactly, so
  ``t = floor(x / 2^f) + b`` where ``b = [c' mod 2^f < r' mod 2^f]`` is 1 with probability
  ``(x mod 2^f) / 2^f``: the result is ``x / 2^f`` rounded up or down, unbiased, error < 1 unit
  of the last place. It is exact (no failure probability) for all ``|x| < 2^62``; outside that
  range the result is wrong. After Catrina and Saxena (FC 2010) and the ring truncation of
  Damgard, Escudero, Frederiksen, Keller, Scholl, Volgushev (S&P 2019), using the top bit of the
  mask to remove the wrap-around.

Output: to everyone, open ``[x] + 2^64 [rho]`` with a random ``[rho]`` (:func:`output_masked`;
  the high bits of a share of ``x`` carry information about the computation, e.g. the carries
  of products, and ``2^64 rho`` hides them) and keep the low 64 bits; to party ``o`` only, open
  ``[x] - [r]`` with an input mask of ``o`` (uniform) and let ``o`` add its ``r``. Either way the
  MAC check runs on the opened value before the output is returned.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128
from protocols.spdz import shares as sh
from protocols.spdz.preprocessing import Triple, TruncationPair
from protocols.spdz.shares import AuthShare

__all__ = [
    "BILINEAR",
    "input_masked",
    "input_share",
    "beaver_masks",
    "beaver_masks_joined",
    "beaver_product",
    "truncation_masked",
    "truncation_result",
    "output_masked",
    "TRUNCATION_BIAS",
]

TRUNCATION_BIAS = 1 << 62
_U64 = np.dtype(np.uint64)

BILINEAR: dict[str, Callable[[Z128, Z128], Z128]] = {"mul": r128.mul, "matmul": r128.matmul}
"""The bilinear maps of :func:`beaver_product`, by name."""


def input_masked(x: np.ndarray, mask_value: np.ndarray) -> np.ndarray:
    """The owner's broadcast ``d = x - r mod 2^64`` (uint64 arrays of one shape)."""
    if x.dtype != _U64 or mask_value.dtype != _U64 or x.shape != mask_value.shape:
        raise ConfigError("input and mask must be uint64 arrays of one shape")
    return np.asarray(x.reshape(-1) - mask_value.reshape(-1)).reshape(x.shape)  # wraps mod 2^64


def input_share(mask: AuthShare, d: np.ndarray, party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[x] = [r] + d``."""
    return sh.add_public(mask, d, party_id, key_share)


def _check_fit(x: AuthShare, y: AuthShare, triple: Triple) -> None:
    if x.shape != triple.a.shape or y.shape != triple.b.shape:
        raise ConfigError(f"triple shapes {triple.a.shape}, {triple.b.shape} do not fit {x.shape}, {y.shape}")


def beaver_masks(x: AuthShare, y: AuthShare, triple: Triple) -> tuple[AuthShare, AuthShare]:
    """``[d] = [x] - [a]`` and ``[e] = [y] - [b]``, to be opened."""
    _check_fit(x, y, triple)
    return sh.sub(x, triple.a), sh.sub(y, triple.b)


def beaver_masks_joined(x: AuthShare, y: AuthShare, triple: Triple) -> tuple[AuthShare, AuthShare, np.ndarray]:
    """:func:`beaver_masks` of an elementwise product, computed into one buffer.

    Returns:
        ``([d], [e], rows)``: ``rows`` is the ``(2, 2 * size)`` uint64 array of the value shares
        of ``d`` then ``e`` (flat; low limbs, then high limbs), a view of the buffer that also
        holds ``[d]`` and ``[e]``: what an open of ``[d], [e]`` sends, without copying them
        there. Opening ``rows`` in place overwrites the value shares of ``[d]`` and ``[e]``
        (their MAC shares stay), so they must be used for nothing else.
    """
    _check_fit(x, y, triple)
    if x.shape != y.shape:
        raise ConfigError(f"an elementwise product needs operands of one shape, got {x.shape} and {y.shape}")
    n = x.size
    buf = np.empty((2, 2, 2 * n), dtype=_U64)  # [limb, value share | MAC share, d then e]
    shares = []
    for k, (v, mask) in enumerate(((x, triple.a), (y, triple.b))):
        lo, hi = buf[0, :, k * n : (k + 1) * n], buf[1, :, k * n : (k + 1) * n]
        r128.sub(v.data.reshape(2, n), mask.data.reshape(2, n), out=(lo, hi))
        shares.append(AuthShare(Z128(lo.reshape(2, *x.shape), hi.reshape(2, *x.shape))))
    return shares[0], shares[1], buf[:, 0, :]


def beaver_product(op: str, d: Z128, e: Z128, x: AuthShare, triple: Triple) -> AuthShare:
    """``[z] = [c] + d (op) [b] + [x] (op) e``: this party's share of ``x (op) y``.

    Args:
        op: ``"mul"`` (elementwise, operands of one shape) or ``"matmul"`` (2-d operands).
        d: the opened ``x - a``.
        e: the opened ``y - b``.
        x: this party's share of the left operand.
        triple: the triple used for ``d`` and ``e``.
    """
    if op == "mul":
        # One pass over cache-sized blocks for share and MAC rows together.
        return AuthShare(r128.add_products(triple.c.data, d[None], triple.b.data, x.data, e[None]))
    if op not in BILINEAR:
        raise ConfigError(f"unknown bilinear operation {op!r}")
    if op == "matmul" and d.ndim == 2 and x.ndim == 2 and 2 * d.shape[1] <= r128.MAX_MATMUL_INNER:
        # d @ [b] + [x] @ e = [d | x] @ [b ; e]: one product over the joined inner axis (the
        # pair axis of the shares is a batch axis; d and e are the same for both rows).
        (m, k), n = d.shape, e.shape[1]
        left = r128.concatenate([d.broadcast_to((2, m, k)), x.data], axis=2)
        right = r128.concatenate([triple.b.data, e.broadcast_to((2, k, n))], axis=1)
        return AuthShare(r128.add(triple.c.data, r128.matmul(left, right)))
    f = BILINEAR[op]
    return AuthShare(r128.add(r128.add(triple.c.data, f(d[None], triple.b.data)), f(x.data, e[None])))


def truncation_masked(x: AuthShare, pair: TruncationPair, party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[x + 2^62 + r]``, to be opened."""
    if x.shape != pair.r.shape:
        raise ConfigError("truncation pair shape does not fit")
    biased = sh.add_public(x, np.uint64(TRUNCATION_BIAS), party_id, key_share)
    return sh.add(biased, pair.r)


def truncation_result(c: Z128, pair: TruncationPair, party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[floor(x / 2^f) + b]`` from the opened ``c`` (see the module docstring)."""
    f = pair.frac_bits
    low = c.lo.reshape(-1)  # at least 1-d: numpy scalar arithmetic warns on wrap-around
    msb = low >> np.uint64(63)
    high = (low & np.uint64((1 << 63) - 1)) >> np.uint64(f)
    public = high + (msb << np.uint64(63 - f)) - np.uint64(1 << (62 - f))  # wraps mod 2^64
    # 2^(63-f) * (c_63 XOR r_63) = 2^(63-f) * c_63 + 2^(63-f) * (1 - 2 c_63) * r_63.
    coeff = (np.uint64(1) - (msb << np.uint64(1))) << np.uint64(63 - f)  # wraps mod 2^64
    t = sh.sub(sh.mul_public(pair.r_msb, coeff.reshape(c.shape)), pair.r_high)
    return sh.add_public(t, public.reshape(c.shape), party_id, key_share)


def output_masked(x: AuthShare, rho: AuthShare) -> AuthShare:
    """``[x + 2^64 rho]``: the low 64 bits are ``x``'s, the high ones uniform."""
    return sh.add(x, sh.shl(rho, 64))

"""Shamir secret sharing of byte strings over the prime field GF(p), p = 2^31 - 1.

Why this field: any number of holders (GF(2^8), the other common choice, caps them at 255
distinct nonzero points, too few for SecAgg with many clients), and products of two elements
are below 2^62, so numpy's uint64 arithmetic is exact with no big-integer code. A secret of
``b`` bytes is cut into ``ceil(b / 3)`` limbs of 24 bits (each below p), every limb shared with
its own random polynomial of degree ``t - 1``; holder ``i`` gets the evaluations at its point
``x_i`` (a distinct nonzero field element; SecAgg uses party id + 1). A share is 4 bytes per limb.

Security: perfectly hiding: any ``t - 1`` shares are uniform and independent of the secret
(Shamir 1979). Reconstruction (Lagrange interpolation at 0) checks first that at least ``t``
shares from distinct holders are present (:class:`~mpc.errors.AbortError` otherwise) and, when
more than ``t`` are present, that all of them lie on one polynomial of degree ``t - 1``
(:class:`~mpc.errors.AbortError` naming the inconsistency otherwise). With exactly ``t`` shares
consistency cannot be checked here: callers verify the secret against a commitment.

Everything is vectorized over holders and limbs; the loops below run over the polynomial degree
or the bits of the exponent, never over elements.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mpc.errors import AbortError, ConfigError
from mpc.prg import PRG

__all__ = [
    "PRIME",
    "LIMB_BYTES",
    "limbs_for",
    "bytes_to_limbs",
    "limbs_to_bytes",
    "share_limbs",
    "reconstruct_limbs",
    "share_secret",
    "reconstruct_secret",
    "lagrange_coefficients",
]

PRIME = (1 << 31) - 1
LIMB_BYTES = 3
_P = np.uint64(PRIME)


def limbs_for(n_bytes: int) -> int:
    """Number of field limbs of a secret of ``n_bytes`` bytes."""
    return -(-n_bytes // LIMB_BYTES)


def bytes_to_limbs(secret: bytes) -> np.ndarray:
    """Cut ``secret`` into 24-bit little-endian limbs (uint64 array, each below 2^24)."""
    m = limbs_for(len(secret))
    raw = np.zeros(m * LIMB_BYTES, dtype=np.uint64)
    raw[: len(secret)] = np.frombuffer(secret, dtype=np.uint8)
    raw = raw.reshape(m, LIMB_BYTES)
    return raw[:, 0] | (raw[:, 1] << np.uint64(8)) | (raw[:, 2] << np.uint64(16))


def limbs_to_bytes(limbs: np.ndarray, n_bytes: int) -> bytes:
    """Inverse of :func:`bytes_to_limbs`.

    Raises:
        AbortError: a limb is not a 24-bit value or the padding is not zero (the shares that
            produced it were not shares of a secret of this length).
    """
    limbs = np.asarray(limbs, dtype=np.uint64)
    if limbs.shape != (limbs_for(n_bytes),) or np.any(limbs >> np.uint64(24)):
        raise AbortError("reconstructed value is not a secret of the expected length")
    raw = np.stack([(limbs >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], axis=1)
    out = raw.astype(np.uint8).reshape(-1)
    if np.any(out[n_bytes:]):
        raise AbortError("reconstructed value is not a secret of the expected length")
    return out[:n_bytes].tobytes()


def _check_points(xs: Sequence[int] | np.ndarray) -> np.ndarray:
    pts = np.asarray(xs)
    if pts.ndim != 1 or pts.dtype.kind not in "iu":
        raise ConfigError("share points must be a 1-d array of integers")
    pts = pts.astype(np.int64)
    if np.any(pts < 1) or np.any(pts >= PRIME) or len(np.unique(pts)) != len(pts):
        raise ConfigError("share points must be distinct integers in [1, p)")
    return pts.astype(np.uint64)


def share_limbs(
    limbs: np.ndarray, xs: Sequence[int] | np.ndarray, threshold: int, prg: PRG
) -> np.ndarray:
    """Shamir-share field elements: ``threshold`` shares determine them, fewer reveal nothing.

    Args:
        limbs: the secret field elements (uint64 array of shape ``(m,)``, each below p).
        xs: the holders' distinct nonzero points.
        threshold: ``t``, with ``1 <= t <= len(xs)``.
        prg: randomness for the polynomials' coefficients.

    Returns:
        uint64 array ``(len(xs), m)``: row ``i`` is holder ``i``'s share.
    """
    pts = _check_points(xs)
    limbs = np.asarray(limbs, dtype=np.uint64)
    if limbs.ndim != 1 or np.any(limbs >= _P):
        raise ConfigError("secret limbs must be a 1-d array of field elements")
    if not 1 <= threshold <= len(pts):
        raise ConfigError(f"threshold must be in [1, {len(pts)}]")
    coeffs = prg.below(PRIME, (threshold - 1, limbs.size)).astype(np.uint64)
    # Horner's rule over the degree: acc = ((c_{t-1} x + c_{t-2}) x + ...) x + secret.
    acc = np.zeros((len(pts), limbs.size), dtype=np.uint64)
    x = pts[:, None]
    for c in coeffs[::-1]:
        acc = (acc + c[None, :]) % _P
        acc = (acc * x) % _P
    return (acc + limbs[None, :]) % _P


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b) % _P


def _inverse(a: np.ndarray) -> np.ndarray:
    """Elementwise a^(p-2) mod p (Fermat), by square-and-multiply over the exponent's bits."""
    result = np.ones_like(a)
    base = a % _P
    e = PRIME - 2
    while e:  # 31 iterations: a loop over exponent bits
        if e & 1:
            result = _mul(result, base)
        base = _mul(base, base)
        e >>= 1
    return result


def lagrange_coefficients(xs: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Coefficients ``L[e, j]`` with ``f(at[e]) = sum_j L[e, j] f(xs[j])`` for deg f < len(xs).

    Args:
        xs: distinct interpolation points (uint64 field elements).
        at: evaluation points (uint64 field elements).

    Returns:
        uint64 array ``(len(at), len(xs))``.
    """
    xs = np.asarray(xs, dtype=np.uint64)
    at = np.asarray(at, dtype=np.uint64)
    t = len(xs)
    # diff[j, k] = x_j - x_k (mod p), with 1 on the diagonal so it drops out of the products.
    diff = (xs[:, None] + _P - xs[None, :]) % _P
    diff[np.arange(t), np.arange(t)] = 1
    denom = np.ones(t, dtype=np.uint64)
    for k in range(t):  # product over the t columns, vectorized over j
        denom = _mul(denom, diff[:, k])
    inv_denom = _inverse(denom)
    # numer[e, j] = prod_{k != j} (at_e - x_k)
    gaps = (at[:, None] + _P - xs[None, :]) % _P  # (E, t)
    numer = np.ones((len(at), t), dtype=np.uint64)
    for k in range(t):
        factor = np.repeat(gaps[:, k : k + 1], t, axis=1)
        factor[:, k] = 1
        numer = _mul(numer, factor)
    return _mul(numer, inv_denom[None, :])


def _combine(coeffs: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``coeffs (E, t) @ shares (t, m)`` mod p, accumulating one term at a time (no overflow)."""
    out = np.zeros((coeffs.shape[0], shares.shape[1]), dtype=np.uint64)
    for j in range(coeffs.shape[1]):
        out = (out + _mul(coeffs[:, j : j + 1], shares[j : j + 1, :])) % _P
    return out


def reconstruct_limbs(
    xs: Sequence[int] | np.ndarray, shares: np.ndarray, threshold: int
) -> np.ndarray:
    """Recover the secret field elements from at least ``threshold`` consistent shares.

    Args:
        xs: the points of the holders whose shares are given (distinct, nonzero).
        shares: uint64 array ``(len(xs), m)``, row ``i`` from holder ``xs[i]``.
        threshold: ``t``.

    Returns:
        The secret limbs, uint64 ``(m,)``.

    Raises:
        AbortError: fewer than ``t`` shares, or more than ``t`` that do not lie on one
            polynomial of degree ``t - 1``.
        ConfigError: malformed points or shares.
    """
    pts = _check_points(xs)
    shares = np.asarray(shares)
    if shares.ndim != 2 or shares.shape[0] != len(pts) or shares.dtype.kind not in "iu":
        raise ConfigError("shares must be an integer array (holders, limbs)")
    shares = shares.astype(np.uint64)
    if np.any(shares >= _P):
        raise ConfigError("shares must be field elements")
    if threshold < 1:
        raise ConfigError("threshold must be positive")
    if len(pts) < threshold:
        raise AbortError(
            f"only {len(pts)} shares present, {threshold} needed: refusing to reconstruct"
        )
    base_x, base = pts[:threshold], shares[:threshold]
    if len(pts) > threshold:
        predicted = _combine(lagrange_coefficients(base_x, pts[threshold:]), base)
        if not np.array_equal(predicted, shares[threshold:]):
            raise AbortError("shares are inconsistent: they do not lie on one polynomial")
    zero = np.zeros(1, dtype=np.uint64)
    return _combine(lagrange_coefficients(base_x, zero), base)[0]


def share_secret(
    secret: bytes, xs: Sequence[int] | np.ndarray, threshold: int, prg: PRG
) -> np.ndarray:
    """Shamir-share a byte string; returns uint32 ``(len(xs), limbs_for(len(secret)))``."""
    return share_limbs(bytes_to_limbs(secret), xs, threshold, prg).astype(np.uint32)


def reconstruct_secret(
    xs: Sequence[int] | np.ndarray, shares: np.ndarray, threshold: int, n_bytes: int
) -> bytes:
    """Recover a byte string shared by :func:`share_secret` (checks as
    :func:`reconstruct_limbs`)."""
    return limbs_to_bytes(reconstruct_limbs(xs, shares, threshold), n_bytes)

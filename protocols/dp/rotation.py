"""Random rotation by the randomized Walsh-Hadamard transform with shared random signs.

``R x = H D x / sqrt(n)``: ``x`` zero-padded to ``n = 2^ceil(log2 d)``, ``D`` a diagonal of
random signs from a public seed every party derives identically, ``H`` the Sylvester Hadamard
matrix. ``R`` is orthogonal (``R^-1 y = D H y / sqrt(n)``), so it keeps L2 norms, and it spreads
a vector's mass evenly over the coordinates (each rotated coordinate of a norm-``c`` vector is
sub-Gaussian with scale ``c / sqrt(n)``), which keeps rounding and the modular sum well behaved
(Kairouz, Liu, Steinke, ICML 2021, section 4). The signs are not secret: they only serve utility.

The transform runs in ``log2 n`` vectorized butterfly passes, O(n log n).
"""

from __future__ import annotations

import numpy as np

from mpc.errors import ConfigError
from mpc.prg import PRG

__all__ = ["padded_dim", "rotation_signs", "fwht", "rotate", "unrotate"]


def padded_dim(d: int) -> int:
    """The power of two at least ``d`` (``d >= 1``)."""
    if d < 1:
        raise ConfigError("dimension must be at least 1")
    return 1 << (d - 1).bit_length()


def rotation_signs(seed: bytes, n: int) -> np.ndarray:
    """``n`` random signs (float64 +-1) from a public seed."""
    bits = PRG.derive(seed, "dp-rotation-signs").bits(n)
    return 1.0 - 2.0 * bits.astype(np.float64)


def fwht(x: np.ndarray) -> np.ndarray:
    """The unnormalized fast Walsh-Hadamard transform ``H x`` of a length-2^k vector."""
    y = np.array(x, dtype=np.float64)
    n = y.size
    if n & (n - 1) or y.ndim != 1:
        raise ConfigError("the transform needs a 1-d vector of power-of-two length")
    h = 1
    while h < n:  # log2(n) butterfly passes, each vectorized over the whole vector
        pairs = y.reshape(-1, 2, h)
        y = np.stack([pairs[:, 0] + pairs[:, 1], pairs[:, 0] - pairs[:, 1]], axis=1).reshape(n)
        h *= 2
    return y


def rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``H D [x, 0...] / sqrt(n)`` with ``n = len(signs)``."""
    n = signs.size
    if x.ndim != 1 or x.size > n:
        raise ConfigError("vector longer than the rotation")
    padded = np.zeros(n, dtype=np.float64)
    padded[: x.size] = x
    return fwht(signs * padded) / np.sqrt(n)


def unrotate(y: np.ndarray, signs: np.ndarray, d: int) -> np.ndarray:
    """The inverse of :func:`rotate`, truncated to the first ``d`` coordinates."""
    if y.shape != signs.shape:
        raise ConfigError("vector and rotation lengths differ")
    return (signs * fwht(y) / np.sqrt(signs.size))[:d]

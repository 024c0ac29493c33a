"""Fixed-point numbers in Z_2^64: a real ``v`` is the ring element ``round(v * 2^f) mod 2^64``.

``f`` fractional bits (16 by default, configurable per call) give a resolution of ``2^-f``;
negative numbers are two's complement. Encoding is range-checked; the ranges that the
arithmetic engine (``protocols.spdz``) needs, with ``f = 16``:

==========================  ==================================  ============================
operation                   condition (real values)             with f = 16
==========================  ==================================  ============================
encode / decode             ``|v| < 2^(62 - f)``                ``|v| < 2^46``
add, subtract               ``|result| < 2^(62 - f)``           ``|result| < 2^46``
multiply then truncate      ``|a * b| < 2^(62 - 2f)``           ``|a * b| < 2^30 ~ 1.07e9``
==========================  ==================================  ============================

The encoding bound keeps ``|round(v * 2^f)| < 2^62``, which is what the engine's truncation
requires of its input (it is exact for encoded magnitudes below 2^62, and a product of two
encodings carries ``2f`` fractional bits). Decoding is exact while ``|v * 2^f| < 2^53`` (float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError

__all__ = ["FRAC_BITS", "MAX_ENCODED_BITS", "encode", "decode", "max_abs", "check_frac_bits"]

FRAC_BITS = 16
"""The default number of fractional bits."""

MAX_ENCODED_BITS = 62
"""Encoded magnitudes stay below ``2^62`` (the truncation protocol's input range)."""


def check_frac_bits(frac_bits: int) -> int:
    """Validate a number of fractional bits (an integer in [0, 30]).

    Raises:
        ConfigError: not an integer in range (``2f`` must leave room below 2^62).
    """
    f = check_int(frac_bits, "frac_bits", numpy=True)
    if not 0 <= f <= 30:
        raise ConfigError("frac_bits must be in [0, 30]")
    return f


def max_abs(frac_bits: int = FRAC_BITS) -> float:
    """The largest magnitude (exclusive) :func:`encode` accepts: ``2^(62 - f)``."""
    return float(2 ** (MAX_ENCODED_BITS - check_frac_bits(frac_bits)))


def encode(x: Any, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Reals to Z_2^64: ``round(x * 2^f)`` (round half to even) in two's complement.

    Args:
        x: numbers (any shape; a scalar gives a 0-d array), floats, ints or bools.
        frac_bits: ``f``.

    Returns:
        A uint64 array of ``x``'s shape.

    Raises:
        ConfigError: a value is not finite, not a real number, or ``|x| >= 2^(62 - f)``.
    """
    f = check_frac_bits(frac_bits)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"cannot encode dtype {arr.dtype} as fixed point")
    bound = 1 << (MAX_ENCODED_BITS - f)
    if arr.dtype.kind in "iu" and arr.size and not (-bound < int(arr.min()) and int(arr.max()) < bound):
        raise ConfigError(f"fixed-point value out of range (|x| < 2^{MAX_ENCODED_BITS - f})")
    values = arr.astype(np.float64)  # exact for |x| < 2^53; above that the range check fails
    if not np.all(np.isfinite(values)):
        raise ConfigError("cannot encode a non-finite value as fixed point")
    scaled = np.rint(values * float(1 << f))
    if scaled.size and float(np.max(np.abs(scaled))) >= float(1 << MAX_ENCODED_BITS):
        raise ConfigError(f"fixed-point value out of range (|x| < 2^{MAX_ENCODED_BITS - f})")
    return scaled.astype(np.int64).view(np.uint64)


def decode(x: np.ndarray, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Z_2^64 elements (uint64, two's complement) to float64 reals: ``signed(x) / 2^f``."""
    f = check_frac_bits(frac_bits)
    arr = np.asarray(x)
    if arr.dtype != np.uint64:
        raise ConfigError(f"decode needs a uint64 array, got {arr.dtype}")
    return arr.view(np.int64).astype(np.float64) / float(1 << f)

"""Arithmetic in the ring Z_2^64, as numpy uint64 arrays with natural wrap-around.

Every value is a numpy array (a scalar is a 0-d array). Signed integers map to the ring by
two's complement: ``encode_int`` and ``decode_int`` are exact inverses on [-2^63, 2^63).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpc.errors import ConfigError

__all__ = ["RING_BITS", "DTYPE", "as_ring", "encode_int", "decode_int", "ring_sum"]

RING_BITS = 64
DTYPE = np.dtype(np.uint64)
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def as_ring(x: Any) -> np.ndarray:
    """View or convert ``x`` as an array of Z_2^64 elements.

    Args:
        x: a uint64 array (returned as is), or integers that fit in [-2^63, 2^64).

    Raises:
        ConfigError: for floating-point input or integers out of range.
    """
    if isinstance(x, np.ndarray) and x.dtype == DTYPE:
        return x
    arr = np.asarray(x)
    if arr.dtype == object:
        ints = [int(v) for v in arr.reshape(-1)]
        if any(v < _INT64_MIN or v >= 1 << 64 for v in ints):
            raise ConfigError("integer out of range for Z_2^64")
        flat = np.array([v % (1 << 64) for v in ints], dtype=DTYPE)
        return flat.reshape(arr.shape)
    if arr.dtype.kind == "u":
        return arr.astype(DTYPE)
    if arr.dtype.kind in "ib":
        return arr.astype(np.int64).view(DTYPE) if arr.dtype != np.int64 else arr.view(DTYPE)
    raise ConfigError(f"cannot map dtype {arr.dtype} into Z_2^64; encode floats as fixed point")


def encode_int(x: Any) -> np.ndarray:
    """Signed integers in [-2^63, 2^63) to ring elements (two's complement).

    Raises:
        ConfigError: if a value is outside the signed 64-bit range or not an integer.
    """
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind == "u":
        ints = [int(v) for v in arr.reshape(-1)]
        if any(v < _INT64_MIN or v > _INT64_MAX for v in ints):
            raise ConfigError("integer outside the signed 64-bit range")
        return np.array(ints, dtype=np.int64).reshape(arr.shape).view(DTYPE)
    if arr.dtype.kind not in "ib":
        raise ConfigError(f"encode_int needs integers, got dtype {arr.dtype}")
    return arr.astype(np.int64).view(DTYPE)


def decode_int(x: np.ndarray) -> np.ndarray:
    """Ring elements to signed int64 (two's complement)."""
    return np.asarray(x, dtype=DTYPE).view(np.int64)


def ring_sum(arrays: list[np.ndarray]) -> np.ndarray:
    """Sum of ring arrays of equal shape, modulo 2^64."""
    if not arrays:
        raise ConfigError("ring_sum of no arrays")
    total = np.array(arrays[0], dtype=DTYPE, copy=True)
    for a in arrays[1:]:
        if a.shape != total.shape:
            raise ConfigError(f"shape mismatch {a.shape} vs {total.shape}")
        total += a
    return total

"""L2 clipping: bound every client's contribution so the sum has a known sensitivity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mpc.errors import ConfigError

__all__ = ["l2_clip"]


def l2_clip(x: Any, clip: float) -> np.ndarray:
    """``x * min(1, clip / ||x||_2)`` as float64: the closest vector of norm at most ``clip``.

    Raises:
        ConfigError: ``clip`` not positive and finite, or ``x`` not a finite real vector.
    """
    if not (math.isfinite(clip) and clip > 0):
        raise ConfigError("the clip norm must be positive and finite")
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise ConfigError("clipping needs a 1-d real vector")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ConfigError("the vector has non-finite entries")
    norm = float(np.sqrt(np.dot(arr, arr)))
    if norm <= clip:
        return arr
    return arr * (clip / norm)

"""Public, plaintext helpers of the ML protocols: batch order, standardization, partitions.

Nothing here touches a secret: the batch order is a public function of a public seed (every
party, and the plaintext reference, derive the same order), and the standardization statistics
are computed by each party on its own data (vertical partition) or from the pooled sums that the
training job reveals (horizontal partition; see :mod:`protocols.ml.logreg`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from mpc.prg import PRG, SEED_BYTES

__all__ = [
    "batch_order",
    "batches",
    "column_stats",
    "pooled_stats",
    "split_rows",
    "split_columns",
]

_MIN_SCALE = 1e-6
"""A feature whose standard deviation is below this is left unscaled (divided by 1)."""


def batch_order(n_rows: int, epochs: int, seed: int) -> np.ndarray:
    """The public order of the rows in every epoch: an ``(epochs, n_rows)`` int64 array.

    Each epoch is a uniform permutation of ``range(n_rows)`` drawn from an AES-CTR stream
    keyed by ``SHA-256("ml-batch-order" | seed)`` (argsort of 64-bit keys): public,
    reproducible on any machine, and identical at every party.

    Raises:
        ConfigError: a negative count or a seed that is not an integer.
    """
    check_int(seed, "seed", numpy=True, message="the batch-order seed must be an integer")
    if n_rows < 0 or epochs < 0:
        raise ConfigError("row and epoch counts must be non-negative")
    key = hashlib.sha256(f"ml-batch-order|{int(seed)}".encode()).digest()[:SEED_BYTES]
    prg = PRG(key)  # a public stream: the order is not secret
    keys = prg.uint64((epochs, n_rows))
    return np.argsort(keys, axis=1, kind="stable").astype(np.int64)


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split one epoch's order into consecutive batches (the last one may be smaller)."""
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    return [order[i : i + batch_size] for i in range(0, order.shape[0], batch_size)]


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale (population standard deviation, 1 where nearly constant)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError("column_stats needs a non-empty 2-d array")
    mean = arr.mean(axis=0)
    std = arr.std(axis=0)
    return mean, np.where(std < _MIN_SCALE, 1.0, std)


def pooled_stats(count: float, sums: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of pooled rows from their count, per-column sums and sums of squares.

    Raises:
        ConfigError: no rows.
    """
    if not count >= 1:
        raise ConfigError("pooled statistics of no rows")
    mean = np.asarray(sums, dtype=np.float64) / count
    var = np.maximum(np.asarray(squares, dtype=np.float64) / count - mean * mean, 0.0)
    std = np.sqrt(var)
    return mean, np.where(std < _MIN_SCALE, 1.0, std)


def split_rows(x: np.ndarray, y: np.ndarray, n_parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Horizontal partition: consecutive blocks of rows (and their labels), one per party."""
    if n_parts < 1:
        raise ConfigError("at least one part is needed")
    bounds = np.linspace(0, x.shape[0], n_parts + 1).astype(int)
    return [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def split_columns(x: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """Vertical partition: consecutive blocks of columns of the same rows, one per party."""
    if not 1 <= n_parts <= x.shape[1]:
        raise ConfigError("need between 1 and n_features parts")
    bounds = np.linspace(0, x.shape[1], n_parts + 1).astype(int)
    return [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]


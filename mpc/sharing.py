"""Additive secret sharing over Z_2^64: pure functions, no communication.

[x] is a tuple of n arrays x_0..x_{n-1} with x = sum_i x_i mod 2^64; any n-1 of them are
uniformly random and independent of x (perfect privacy against up to n-1 colluding parties).
"""

from __future__ import annotations

import numpy as np

from mpc.errors import ConfigError
from mpc.prg import PRG
from mpc.ring import DTYPE, as_ring, ring_sum

__all__ = ["share", "reconstruct"]


def share(x: np.ndarray, n_parties: int, prg: PRG) -> list[np.ndarray]:
    """Split ``x`` into ``n_parties`` additive shares.

    Args:
        x: a ring array (uint64) of any shape.
        n_parties: number of shares, at least 1.
        prg: the source of randomness (a CSPRNG-seeded :class:`~mpc.prg.PRG`).

    Returns:
        A list of ``n_parties`` uint64 arrays of ``x``'s shape summing to ``x`` mod 2^64.
    """
    if n_parties < 1:
        raise ConfigError("n_parties must be at least 1")
    x = as_ring(x)
    shares = [prg.uint64(x.shape) for _ in range(n_parties - 1)]
    last = np.array(x, dtype=DTYPE, copy=True)
    for s in shares:
        last -= s
    shares.append(last)
    return shares


def reconstruct(shares: list[np.ndarray]) -> np.ndarray:
    """Recombine additive shares: their sum mod 2^64."""
    return ring_sum([as_ring(s) for s in shares])

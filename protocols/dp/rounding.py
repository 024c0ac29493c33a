"""Conditional randomized rounding onto the integers, with the norm bound it guarantees.

Each coordinate of ``x`` rounds up with probability equal to its fractional part (unbiased);
the whole vector is re-rounded until its L2 norm is at most ``Delta_2`` (Kairouz, Liu, Steinke,
ICML 2021, Algorithm 1), so the rounded vector's L2 sensitivity is ``Delta_2`` *by construction*
and the privacy analysis never relies on a probabilistic bound. With ``c = ||x||_2`` and
``d`` coordinates, ``E ||round(x)||^2 <= c^2 + d/4``, and the bound used is

    Delta_2^2 = min(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), (c + sqrt(d))^2),

which one rounding meets with probability at least ``1 - beta``. For integer vectors
``||v||_1 <= ||v||_2^2`` and ``||v||_1 <= sqrt(d) ||v||_2`` give the L1 bound.
"""

from __future__ import annotations

import math

import numpy as np

from mpc.errors import ConfigError
from mpc.prg import PRG

__all__ = ["rounded_l2_bound", "rounded_l1_bound", "conditional_round"]

_MAX_TRIES = 1000


def rounded_l2_bound(c: float, d: int, beta: float) -> float:
    """``Delta_2`` for vectors of norm at most ``c`` in ``d`` coordinates; ``beta`` in [0, 1)."""
    if not (c >= 0 and d >= 1 and 0 <= beta < 1):
        raise ConfigError("need c >= 0, d >= 1 and beta in [0, 1)")
    worst = c + math.sqrt(d)
    if beta == 0:
        return worst
    sq = c * c + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c + math.sqrt(d) / 2)
    return min(math.sqrt(sq), worst)


def rounded_l1_bound(l2: float, d: int) -> float:
    """The L1 bound of an integer vector of L2 norm at most ``l2`` in ``d`` coordinates."""
    return min(l2 * l2, math.sqrt(d) * l2)


def conditional_round(x: np.ndarray, bound: float, prg: PRG) -> np.ndarray:
    """Randomized rounding of ``x``, repeated until ``||round(x)||_2 <= bound``.

    Returns:
        An int64 vector.

    Raises:
        ConfigError: the bound was not met in 1000 tries (a bound below the vector's norm).
    """
    floor = np.floor(np.asarray(x, dtype=np.float64))
    frac = x - floor
    base = floor.astype(np.int64)
    limit = math.floor(bound * bound)
    for _ in range(_MAX_TRIES):  # each try succeeds with probability >= 1 - beta
        u = (prg.uint64(x.size) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        r = base + (u < frac)
        if int(np.dot(r, r)) <= limit:
            return r
    raise ConfigError("conditional rounding never met its norm bound: is the vector clipped?")

"""Exact sampling of the discrete Gaussian N_Z(0, sigma^2), after Canonne, Kamath and Steinke,
"The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), vectorized with numpy.

``P[X = x] = exp(-x^2 / (2 sigma^2)) / sum_y exp(-y^2 / (2 sigma^2))`` for integer ``x``.

Algorithms (all exact: integer arithmetic and uniform integers only, no floating point):

1. Bernoulli(exp(-g)) for rational ``g = num/den`` in [0, 1] (CKS Algorithm 1): ``K = 1``; while
   Bernoulli(g / K) succeeds, ``K += 1``; return ``K`` odd.
2. Bernoulli(exp(-g)) for any rational ``g >= 0`` (CKS Algorithm 2): ``floor(g)`` draws of
   Bernoulli(exp(-1)) must all succeed, then Bernoulli(exp(-(g - floor g))).
3. Discrete Laplace of integer scale ``t`` (CKS Algorithm 2, second part): ``U`` uniform in
   [0, t), keep with probability exp(-U/t); ``V`` = number of successes of Bernoulli(exp(-1))
   before the first failure; ``X = U + t V``; a uniform sign, rejecting (-, 0).
4. Discrete Gaussian (CKS Algorithm 3): a discrete Laplace sample ``Y`` of scale ``t``, kept with
   probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``. Correct for any integer ``t >= 1``;
   efficient for ``t`` near ``sigma`` (CKS take ``floor(sigma) + 1``).

Vectorization: every step runs on all pending lanes at once, with per-lane rejection. A
Bernoulli(num/den) compares 63 bits of the AES-CTR :class:`~mpc.prg.PRG` with
``num * floor(2^63/den)``, rejecting draws at or above ``den * floor(2^63/den)``: exact, and the
denominator is common to all lanes of a pass. Products stay below 2^63: construction checks
that the denominator of step 4's exponent is at most 2^56; lanes whose exponent is at least
``TAIL_EXPONENT`` (an event of probability below e^-60 per candidate, after ``TAIL_EXPONENT``
Bernoulli(exp(-1)) draws) and Algorithm 1 lanes whose counter passes 128 finish in exact
Python-integer code. So the output distribution is
exactly the discrete Gaussian, whatever the lane.

Choose ``sigma^2`` with :func:`calibrated_variance`: it rounds a requested variance up to
``t * m`` with ``t = ceil(sigma)``, for which the exponent's denominator is just ``2 sigma^2``,
so any ``sigma^2 <= 2^55`` is supported.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from mpc.errors import ConfigError
from mpc.prg import PRG

__all__ = [
    "DiscreteGaussian",
    "calibrated_variance",
    "bernoulli_exp",
    "bernoulli_exp_exact",
    "TAIL_EXPONENT",
]

TAIL_EXPONENT = 64
_MAX_DEN = 1 << 56
_ONE = np.uint64(1)


def _bernoulli(prg: PRG, num: np.ndarray, den: int) -> np.ndarray:
    """Bernoulli(num[i]/den) per lane, exact, for 0 <= num[i] <= den <= 2^63.

    With ``q = 2^63 // den`` and ``u`` uniform in [0, den q) (by rejection from 63 random
    bits), ``P[u < num q] = num / den`` exactly; no division per lane.
    """
    q = (1 << 63) // den
    limit = np.uint64(den * q)
    thresh = num * np.uint64(q)
    out = np.empty(num.size, dtype=bool)
    idx = np.arange(num.size)
    while idx.size:  # rejection rounds; each accepts more than half of the lanes left
        u = prg.uint64(idx.size) >> _ONE
        ok = u < limit
        out[idx[ok]] = u[ok] < thresh[idx[ok]]
        idx = idx[~ok]
    return out


def _uniform_below_int(prg: PRG, bound: int) -> int:
    """One exactly uniform Python integer in [0, bound), any size."""
    bits = bound.bit_length()
    nbytes = (bits + 7) // 8
    while True:
        r = int.from_bytes(prg.bytes(nbytes), "little") & ((1 << bits) - 1)
        if r < bound:
            return r


def _bern_exp_unit_int(prg: PRG, num: int, den: int, k: int = 1) -> bool:
    """CKS Algorithm 1 in Python integers, from counter ``k``."""
    while _uniform_below_int(prg, den * k) < num:
        k += 1
    return k % 2 == 1


def bernoulli_exp_exact(prg: PRG, num: int, den: int) -> bool:
    """One Bernoulli(exp(-num/den)) draw in exact Python-integer arithmetic (CKS Algorithm 2)."""
    if num < 0 or den < 1:
        raise ConfigError("bernoulli_exp_exact needs num >= 0 and den >= 1")
    q, r = divmod(num, den)
    for _ in range(q):  # fails with probability 1 - 1/e at each step
        if not _bern_exp_unit_int(prg, 1, 1):
            return False
    return _bern_exp_unit_int(prg, r, den)


def _bernoulli_exp_unit(prg: PRG, num: np.ndarray, den: int) -> np.ndarray:
    """CKS Algorithm 1 on lanes: Bernoulli(exp(-num[i]/den)), num[i] <= den <= 2^56.

    Every lane still running at pass ``K`` has counter ``K``, so each pass is one Bernoulli
    with the common denominator ``den K``.
    """
    n = num.size
    result = np.zeros(n, dtype=bool)
    active = np.arange(n)
    k = 1
    while active.size:  # pass K stops a lane with probability >= 1 - 1/K
        if den * k > 1 << 63:  # K > 128: probability below 1/128!; finish exactly
            for i in active:
                result[i] = _bern_exp_unit_int(prg, int(num[i]), den, k)
            break
        go_on = _bernoulli(prg, num[active], den * k)
        result[active[~go_on]] = k % 2 == 1
        active = active[go_on]
        k += 1
    return result


def bernoulli_exp(prg: PRG, num: np.ndarray, den: int) -> np.ndarray:
    """Bernoulli(exp(-num[i]/den)) per lane (CKS Algorithm 2), exact.

    Args:
        prg: randomness.
        num: uint64 numerators, ``num // den < 2^16``.
        den: the common denominator, in [1, 2^56].

    Returns:
        A bool array.
    """
    num = np.asarray(num, dtype=np.uint64)
    den = int(den)
    if not 1 <= den <= _MAX_DEN:
        raise ConfigError("the denominator must be in [1, 2^56]")
    q = num // np.uint64(den)
    if q.size and q.max() >= 1 << 16:
        raise ConfigError("exponent too large for the vectorized path")
    alive = _bernoulli_exp_ones(prg, q)
    idx = np.nonzero(alive)[0]
    alive[idx] = _bernoulli_exp_unit(prg, num[idx] % np.uint64(den), den)
    return alive


def _bernoulli_exp_ones(prg: PRG, counts: np.ndarray) -> np.ndarray:
    """Per lane, whether ``counts[i]`` independent Bernoulli(exp(-1)) draws all succeed."""
    alive = np.ones(counts.size, dtype=bool)
    remaining = counts.astype(np.int64)
    idx = np.nonzero(remaining > 0)[0]
    ones = np.ones(counts.size, dtype=np.uint64)
    while idx.size:  # each pass kills a lane with probability 1 - 1/e
        ok = _bernoulli_exp_unit(prg, ones[: idx.size], 1)
        alive[idx[~ok]] = False
        remaining[idx] -= 1
        idx = idx[ok & (remaining[idx] > 0)]
    return alive


def _geometric_exp1(prg: PRG, n: int) -> np.ndarray:
    """Successes of Bernoulli(exp(-1)) before the first failure, per lane (uint64)."""
    v = np.zeros(n, dtype=np.uint64)
    idx = np.arange(n)
    ones = np.ones(n, dtype=np.uint64)
    while idx.size:  # P[V >= k] = e^-k, so about log(n) passes
        ok = _bernoulli_exp_unit(prg, ones[: idx.size], 1)
        idx = idx[ok]
        v[idx] += _ONE
    return v


def calibrated_variance(min_sigma2: float) -> tuple[Fraction, int]:
    """A variance parameter at least ``min_sigma2`` that the sampler handles exactly and fast.

    For ``min_sigma2 >= 64`` it is ``t * m`` with ``t = ceil(sqrt(min_sigma2))`` and
    ``m = ceil(min_sigma2 / t)`` (so ``sigma^2 / t`` is an integer; the increase is below
    ``t``, a relative ``1/sigma``); below 64 it is ``min_sigma2`` rounded up to a multiple of
    2^-10 with ``t = floor(sigma) + 1``.

    Returns:
        ``(sigma2, t)`` to pass to :class:`DiscreteGaussian`.

    Raises:
        ConfigError: ``min_sigma2`` not positive and finite, or above 2^55.
    """
    if not (math.isfinite(min_sigma2) and min_sigma2 > 0):
        raise ConfigError("the variance must be positive and finite")
    if min_sigma2 > 2.0**55:
        raise ConfigError("variance above 2^55 is not supported")
    if min_sigma2 >= 64:
        want = Fraction(min_sigma2)
        t = math.isqrt(math.ceil(want))
        if t * t < want:
            t += 1
        m = math.ceil(want / t)
        return Fraction(t * m), t
    sigma2 = Fraction(math.ceil(Fraction(min_sigma2) * 1024), 1024)
    return sigma2, math.isqrt(math.floor(sigma2)) + 1


class DiscreteGaussian:
    """An exact sampler of N_Z(0, sigma2).

    Args:
        sigma2: the variance parameter (a positive rational; not exactly the variance of the
            output, which is slightly smaller for small ``sigma2``).
        laplace_scale: the integer ``t`` of the discrete Laplace proposal; default
            ``floor(sigma) + 1``.

    Raises:
        ConfigError: non-positive ``sigma2`` or ``t``, or parameters whose exponent
            denominator exceeds 2^56 (use :func:`calibrated_variance`).
    """

    def __init__(self, sigma2: Fraction | int, laplace_scale: int | None = None) -> None:
        s = Fraction(sigma2)
        if s <= 0:
            raise ConfigError("sigma2 must be positive")
        t = math.isqrt(math.floor(s)) + 1 if laplace_scale is None else int(laplace_scale)
        if t < 1:
            raise ConfigError("the Laplace scale must be a positive integer")
        self.sigma2 = s
        self.t = t
        a, b = s.numerator, s.denominator
        # sigma^2 / t = rn / rd in lowest terms; exponent = b (rd x - rn)^2 / (2 a rd^2).
        g = math.gcd(a, b * t)
        self._rn, self._rd = a // g, (b * t) // g
        self._b = b
        self._den = 2 * a * self._rd * self._rd
        if self._den > _MAX_DEN or t > _MAX_DEN:
            raise ConfigError(
                "sigma2 and the Laplace scale are outside the exact vectorized range; "
                "choose them with calibrated_variance"
            )
        # Lanes with |rd x - rn| <= diff_max have exponent numerator below TAIL_EXPONENT * den.
        self._diff_max = math.isqrt(TAIL_EXPONENT * self._den // b)
        self._x_max = ((1 << 62) - self._rn) // self._rd

    def __repr__(self) -> str:
        return f"DiscreteGaussian(sigma2={self.sigma2}, laplace_scale={self.t})"

    def variance(self) -> float:
        """The exact variance of the distribution (summing the pmf far into the tails)."""
        sigma = math.sqrt(float(self.sigma2))
        r = int(40 * sigma) + 40
        x = np.arange(-r, r + 1, dtype=np.float64)
        w = np.exp(-(x * x) / (2.0 * float(self.sigma2)))
        return float((w * x * x).sum() / w.sum())

    def sample(self, prg: PRG, shape: int | tuple[int, ...]) -> np.ndarray:
        """Independent samples as an int64 array of ``shape``."""
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape_t, dtype=np.int64)) if shape_t else 1
        parts: list[np.ndarray] = []
        have = 0
        while have < count:  # each pass accepts a constant fraction of its candidates
            want = count - have
            got = self._candidates(prg, int(want * 2.2) + 64)
            parts.append(got[:want])
            have += min(want, got.size)
        out = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return out.reshape(shape_t)

    def _candidates(self, prg: PRG, m: int) -> np.ndarray:
        t = self.t
        u = prg.below(t, m).astype(np.uint64)
        keep = _bernoulli_exp_unit(prg, u, t)
        u = u[keep]
        x = u + np.uint64(t) * _geometric_exp1(prg, u.size)
        negative = prg.bits(x.size).astype(bool)
        valid = ~(negative & (x == 0))
        x, negative = x[valid], negative[valid]
        accept = self._accept(prg, x)
        z = x[accept].astype(np.int64)
        return np.where(negative[accept], -z, z)

    def _accept(self, prg: PRG, x: np.ndarray) -> np.ndarray:
        """Bernoulli(exp(-(x - sigma^2/t)^2 / (2 sigma^2))) per lane."""
        accept = np.zeros(x.size, dtype=bool)
        small = x <= np.uint64(self._x_max)
        diff = np.abs(x[small].astype(np.int64) * self._rd - self._rn).astype(np.uint64)
        fast = np.zeros(x.size, dtype=bool)
        fast[np.nonzero(small)[0][diff <= np.uint64(self._diff_max)]] = True
        idx = np.nonzero(fast)[0]
        d = np.abs(x[idx].astype(np.int64) * self._rd - self._rn).astype(np.uint64)
        num = np.uint64(self._b) * d * d
        accept[idx] = bernoulli_exp(prg, num, self._den)
        tail = np.nonzero(~fast)[0]
        if tail.size:  # |x| beyond ~11 sigma: TAIL_EXPONENT draws first, then exact integers
            survive = _bernoulli_exp_ones(prg, np.full(tail.size, TAIL_EXPONENT, dtype=np.uint64))
            for i in tail[survive]:
                n_exact = self._b * (int(x[i]) * self._rd - self._rn) ** 2
                rest = n_exact - TAIL_EXPONENT * self._den
                accept[i] = bernoulli_exp_exact(prg, rest, self._den)
        return accept

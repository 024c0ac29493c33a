"""The exact discrete Gaussian sampler against the exact pmf (seeded: deterministic, no flakes)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.dp.discrete_gaussian import (
    DiscreteGaussian,
    bernoulli_exp,
    bernoulli_exp_exact,
    calibrated_variance,
)

N_SAMPLES = 200_000
Z = 5.0  # tolerance in standard errors; the seed is fixed, so a pass is reproducible


def exact_pmf(sigma2: Fraction, radius: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(-radius, radius + 1)
    w = np.exp(-(x.astype(np.float64) ** 2) / (2.0 * float(sigma2)))
    return x, w / w.sum()


def chi2_critical(dof: int, z: float = 4.75) -> float:
    """Wilson-Hilferty upper quantile of chi-square (z = 4.75: p about 1e-6)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def check_against_pmf(samples: np.ndarray, sigma2: Fraction) -> None:
    n = samples.size
    radius = int(12 * math.sqrt(float(sigma2))) + 12
    x, p = exact_pmf(sigma2, radius)
    mean = float((x * p).sum())
    var = float((x * x * p).sum())
    fourth = float((x**4 * p).sum())
    assert abs(samples.mean() - mean) < Z * math.sqrt(var / n)
    assert abs(samples.var() - var) < Z * math.sqrt((fourth - var**2) / n)
    # chi-square on cells with an expected count of at least 20, tails merged into two cells
    expected = p * n
    keep = expected >= 20
    lo, hi = x[keep][0], x[keep][-1]
    counts = np.bincount(np.clip(samples, lo - 1, hi + 1) - (lo - 1), minlength=hi - lo + 3)
    exp_cells = np.concatenate([[p[x < lo].sum() * n], expected[keep], [p[x > hi].sum() * n]])
    cells = exp_cells > 0
    stat = float((((counts - exp_cells) ** 2)[cells] / exp_cells[cells]).sum())
    dof = int(cells.sum()) - 1
    assert stat < chi2_critical(dof), (stat, dof)


@pytest.mark.parametrize(
    "sigma2, scale",
    [
        (Fraction(9, 4), None),  # default proposal scale floor(sigma) + 1
        (Fraction(1, 3), None),  # sigma below 1
        (Fraction(7, 2), 1),  # a non-default proposal scale: still exact
        calibrated_variance(400.0),  # the t | sigma^2 form used by the mechanism
    ],
    ids=["9/4", "1/3", "7/2-t1", "calibrated-400"],
)
def test_samples_match_the_exact_pmf(prg: PRG, sigma2: Fraction, scale: int | None) -> None:
    sampler = DiscreteGaussian(sigma2, scale)
    samples = sampler.sample(prg, N_SAMPLES)
    assert samples.dtype == np.int64 and samples.shape == (N_SAMPLES,)
    check_against_pmf(samples, sigma2)


def test_large_variance_moments(prg: PRG) -> None:
    sigma2, t = calibrated_variance(3e7)
    assert sigma2 >= 3e7 and sigma2 - Fraction(3e7) < t
    samples = DiscreteGaussian(sigma2, t).sample(prg, 100_000)
    s = float(sigma2)
    assert abs(samples.mean()) < Z * math.sqrt(s / samples.size)
    assert abs(samples.var() - s) < Z * s * math.sqrt(2 / samples.size)


def test_shapes_and_reproducibility(seed: bytes) -> None:
    sampler = DiscreteGaussian(Fraction(5))
    a = sampler.sample(PRG(seed), (3, 4))
    b = sampler.sample(PRG(seed), (3, 4))
    assert a.shape == (3, 4)
    np.testing.assert_array_equal(a, b)
    assert sampler.sample(PRG(seed), ()).shape == ()
    other = sampler.sample(PRG(bytes(16)), 1000)
    assert not np.array_equal(other, sampler.sample(PRG(seed), 1000))


def test_variance_helper() -> None:
    assert DiscreteGaussian(Fraction(100)).variance() == pytest.approx(100.0, rel=1e-9)
    # for small sigma^2 the discrete Gaussian's variance is below its parameter
    assert DiscreteGaussian(Fraction(1, 4)).variance() < 0.25


@pytest.mark.parametrize("gamma", [Fraction(1, 2), Fraction(3, 2), Fraction(23, 10), Fraction(0)])
def test_bernoulli_exp_frequencies(prg: PRG, gamma: Fraction) -> None:
    n = 40_000
    num = np.full(n, gamma.numerator, dtype=np.uint64)
    hits = bernoulli_exp(prg, num, gamma.denominator)
    p = math.exp(-float(gamma))
    assert abs(hits.mean() - p) <= Z * math.sqrt(p * (1 - p) / n) + 1e-12
    exact = [bernoulli_exp_exact(prg, gamma.numerator, gamma.denominator) for _ in range(4000)]
    assert abs(np.mean(exact) - p) <= Z * math.sqrt(p * (1 - p) / 4000) + 1e-12


def test_acceptance_step_matches_the_exact_probability(prg: PRG) -> None:
    sampler = DiscreteGaussian(Fraction(9, 4))  # t = 2, sigma^2/t = 9/8
    for x in (0, 1, 3, 6):
        hits = sampler._accept(prg, np.full(20_000, x, dtype=np.uint64))
        p = math.exp(-((x - 9 / 8) ** 2) / (2 * 9 / 4))
        assert abs(hits.mean() - p) <= Z * math.sqrt(p * (1 - p) / 20_000) + 1e-12
    # far tail: the exponent exceeds 64 and the exact integer path decides (never accepts here)
    assert not sampler._accept(prg, np.array([60, 10**12, 2**62], dtype=np.uint64)).any()


def test_configuration_errors() -> None:
    for bad in (Fraction(0), Fraction(-1)):
        with pytest.raises(ConfigError):
            DiscreteGaussian(bad)
    with pytest.raises(ConfigError):
        DiscreteGaussian(Fraction(2**40 + 1, 3))  # exponent denominator above 2^56
    with pytest.raises(ConfigError):
        DiscreteGaussian(Fraction(4), laplace_scale=0)
    for bad_var in (0.0, -1.0, float("nan"), float("inf"), 2.0**56):
        with pytest.raises(ConfigError):
            calibrated_variance(bad_var)
    with pytest.raises(ConfigError):
        bernoulli_exp_exact(PRG(bytes(16)), -1, 1)
    with pytest.raises(ConfigError):
        bernoulli_exp(PRG(bytes(16)), np.array([1], dtype=np.uint64), 2**57)

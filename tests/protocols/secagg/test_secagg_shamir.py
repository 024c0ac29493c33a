"""Shamir sharing over GF(2^31 - 1): pure functions, no network."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.errors import AbortError, ConfigError
from mpc.prg import PRG
from protocols.secagg.shamir import (
    PRIME,
    bytes_to_limbs,
    lagrange_coefficients,
    limbs_to_bytes,
    reconstruct_limbs,
    reconstruct_secret,
    share_limbs,
    share_secret,
)


def test_limbs_roundtrip() -> None:
    for secret in (b"", b"\x01", bytes(range(32)), b"\xff" * 16):
        limbs = bytes_to_limbs(secret)
        assert np.all(limbs < 2**24)
        assert limbs_to_bytes(limbs, len(secret)) == secret
    with pytest.raises(AbortError):
        limbs_to_bytes(np.array([2**24], dtype=np.uint64), 3)
    with pytest.raises(AbortError):
        limbs_to_bytes(np.array([0x10000], dtype=np.uint64), 2)  # non-zero padding byte


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=48),
    n=st.integers(min_value=1, max_value=12),
    data=st.data(),
)
def test_any_t_shares_reconstruct(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(min_value=1, max_value=n))
    prg = PRG(data.draw(st.binary(min_size=16, max_size=16)))
    xs = np.array(data.draw(st.lists(st.integers(1, PRIME - 1), min_size=n, max_size=n, unique=True)))
    shares = share_secret(secret, xs, t, prg)
    assert shares.dtype == np.uint32 and shares.shape == (n, -(-len(secret) // 3))
    pick = data.draw(st.permutations(range(n)))[: data.draw(st.integers(t, n))]
    assert reconstruct_secret(xs[pick], shares[pick], t, len(secret)) == secret


def test_fewer_than_t_shares_refuse(prg: PRG) -> None:
    xs = np.arange(1, 8)
    shares = share_secret(b"k" * 32, xs, 4, prg)
    with pytest.raises(AbortError, match="3 shares present, 4 needed"):
        reconstruct_secret(xs[:3], shares[:3], 4, 32)
    with pytest.raises(AbortError):
        reconstruct_limbs(xs[:0], shares[:0], 1)


def test_inconsistent_surplus_share_is_detected(prg: PRG) -> None:
    xs = np.arange(1, 7)
    shares = share_limbs(bytes_to_limbs(b"secret seed 1234"), xs, 3, prg)
    bad = shares.copy()
    bad[4, 2] = (bad[4, 2] + 1) % PRIME
    with pytest.raises(AbortError, match="inconsistent"):
        reconstruct_limbs(xs, bad, 3)
    # exactly t shares cannot be checked here: the caller verifies against a commitment
    assert not np.array_equal(reconstruct_limbs(xs[2:5], bad[2:5], 3), bytes_to_limbs(b"secret seed 1234"))


def test_a_single_share_of_a_threshold_2_secret_is_spread_over_the_field(prg: PRG) -> None:
    draws = np.array([share_limbs(np.array([0], dtype=np.uint64), np.array([5, 6]), 2, prg)[0, 0] for _ in range(2000)])
    assert len(np.unique(draws)) == 2000  # no repeats among 2000 draws from 2^31 values
    assert abs(draws.mean() / PRIME - 0.5) < 0.05


def test_lagrange_coefficients_interpolate() -> None:
    xs = np.array([1, 3, 4, 9], dtype=np.uint64)
    coeffs = np.array([7, 11, 2, 5], dtype=np.uint64)  # f(x) = 7 + 11x + 2x^2 + 5x^3
    at = np.array([0, 2, 100], dtype=np.uint64)

    def f(x: np.ndarray) -> np.ndarray:
        return np.array([sum(int(c) * int(v) ** i for i, c in enumerate(coeffs)) % PRIME for v in x], dtype=np.uint64)

    lam = lagrange_coefficients(xs, at)
    got = np.array([sum(int(lam[e, j]) * int(f(xs)[j]) for j in range(4)) % PRIME for e in range(3)], dtype=np.uint64)
    np.testing.assert_array_equal(got, f(at))


def test_bad_parameters(prg: PRG) -> None:
    limbs = bytes_to_limbs(b"abc")
    for xs in ([0, 1], [1, 1], [PRIME, 2], [[1, 2]]):
        with pytest.raises(ConfigError):
            share_limbs(limbs, np.array(xs), 1, prg)
    with pytest.raises(ConfigError):
        share_limbs(limbs, np.array([1, 2]), 3, prg)
    with pytest.raises(ConfigError):
        share_limbs(np.array([PRIME], dtype=np.uint64), np.array([1]), 1, prg)
    with pytest.raises(ConfigError):
        reconstruct_limbs(np.array([1, 2]), np.zeros((2, 1), dtype=np.uint64) + PRIME, 1)

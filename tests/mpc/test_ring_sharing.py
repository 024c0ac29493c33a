from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.errors import ConfigError
from mpc.prg import PRG
from mpc.ring import DTYPE, as_ring, decode_int, encode_int, ring_sum
from mpc.sharing import reconstruct, share


@given(st.lists(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), max_size=20))
def test_encode_decode_roundtrip(values: list[int]) -> None:
    enc = encode_int(np.array(values, dtype=np.int64))
    assert enc.dtype == DTYPE
    assert decode_int(enc).tolist() == values


def test_encode_rejects_out_of_range_and_floats() -> None:
    with pytest.raises(ConfigError):
        encode_int(np.array([1 << 63], dtype=object))
    with pytest.raises(ConfigError):
        encode_int(np.array([1.5]))
    with pytest.raises(ConfigError):
        as_ring(np.array([0.5]))


def test_as_ring_wraps_negative_and_big() -> None:
    assert as_ring(np.array([-1], dtype=np.int64))[0] == np.uint64((1 << 64) - 1)
    assert as_ring(np.array([(1 << 64) - 1], dtype=object))[0] == np.uint64((1 << 64) - 1)
    with pytest.raises(ConfigError):
        as_ring(np.array([1 << 64], dtype=object))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_share_reconstruct(prg: PRG, n: int, shape: tuple[int, ...]) -> None:
    x = prg.uint64(shape)
    shares = share(x, n, prg)
    assert len(shares) == n
    assert all(s.shape == shape and s.dtype == DTYPE for s in shares)
    assert np.array_equal(reconstruct(shares), x)


def test_shares_of_any_n_minus_1_look_uniform(prg: PRG) -> None:
    # The first n-1 shares are fresh PRG output: independent of x. Their top bit is balanced
    # even for x = 0, and the same PRG state gives the same first shares for different x.
    seed = prg.bytes(16)
    zero = share(np.zeros(50_000, dtype=DTYPE), 3, PRG(seed))
    ones = share(np.full(50_000, 12345, dtype=DTYPE), 3, PRG(seed))
    assert np.array_equal(zero[0], ones[0]) and np.array_equal(zero[1], ones[1])
    assert abs((zero[0] >> np.uint64(63)).mean() - 0.5) < 0.02


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=0, max_value=(1 << 64) - 1), min_size=1, max_size=6))
def test_ring_sum_wraps(values: list[int]) -> None:
    arrays = [np.array(v, dtype=DTYPE) for v in values]
    assert int(ring_sum(arrays)) == sum(values) % (1 << 64)


def test_ring_sum_shape_mismatch() -> None:
    with pytest.raises(ConfigError):
        ring_sum([np.zeros(2, DTYPE), np.zeros(3, DTYPE)])
    with pytest.raises(ConfigError):
        ring_sum([])

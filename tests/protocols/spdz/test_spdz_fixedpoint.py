"""Fixed-point encoding (mpc.fixedpoint): rounding, two's complement, range checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import fixedpoint as fx
from mpc.errors import ConfigError


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-(2.0**45), max_value=2.0**45, allow_nan=False), st.sampled_from([1, 8, 16, 24]))
def test_roundtrip_within_half_a_unit(v: float, f: int) -> None:
    if abs(v) * 2**f >= 2**53:  # decode is exact only below 2^53 units
        return
    got = fx.decode(fx.encode(v, f), f)
    assert abs(float(got) - v) <= 2.0 ** -(f + 1)


def test_twos_complement_and_shapes() -> None:
    enc = fx.encode(np.array([[1.5, -1.5], [0.0, -(2.0**-16)]]))
    assert enc.dtype == np.uint64 and enc.shape == (2, 2)
    assert enc.view(np.int64).tolist() == [[3 << 15, -(3 << 15)], [0, -1]]
    assert fx.encode(2.5).shape == ()
    assert fx.encode(np.array([3, -4])).view(np.int64).tolist() == [3 << 16, -(4 << 16)]
    assert fx.encode(np.array([True])).view(np.int64).tolist() == [1 << 16]
    np.testing.assert_array_equal(fx.decode(enc), [[1.5, -1.5], [0.0, -(2.0**-16)]])


def test_rounds_half_to_even() -> None:
    half = 2.0**-17
    assert fx.encode(half).view(np.int64) == 0
    assert fx.encode(3 * half).view(np.int64) == 2


@pytest.mark.parametrize("f", [1, 16, 30])
def test_range_is_checked(f: int) -> None:
    limit = fx.max_abs(f)
    assert limit == 2.0 ** (62 - f)
    fx.encode(np.nextafter(limit, 0), f)
    for bad in (limit, -limit, np.inf, -np.inf, np.nan):
        with pytest.raises(ConfigError):
            fx.encode(np.array([0.0, bad]), f)
    with pytest.raises(ConfigError):
        fx.encode(np.array([1 << (62 - f)], dtype=np.int64), f)
    with pytest.raises(ConfigError):
        fx.encode(np.array([-(1 << (62 - f))], dtype=np.int64), f)
    with pytest.raises(ConfigError):
        fx.encode(np.array([1 << 63], dtype=np.uint64), f)


def test_bad_parameters() -> None:
    for f in (-1, 31, 1.5, True):
        with pytest.raises(ConfigError):
            fx.encode(1.0, f)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        fx.encode(np.array(["1"]))
    with pytest.raises(ConfigError):
        fx.decode(np.array([1], dtype=np.int64))
    assert fx.encode(np.zeros((0, 3))).shape == (0, 3)

from __future__ import annotations

import enum
import re
from typing import Any

import numpy as np
import pytest

from mpc.checks import check_int
from mpc.errors import ConfigError, FrameError, ProtocolViolation


class Small(enum.IntEnum):
    ONE = 1


@pytest.mark.parametrize("value", [0, 1, -5, 1 << 80, Small.ONE])
def test_python_ints_are_returned_as_plain_ints(value: int) -> None:
    out = check_int(value, "x")
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
@pytest.mark.parametrize("numpy", [False, True])
def test_bools_are_refused(value: Any, numpy: bool) -> None:
    with pytest.raises(ConfigError, match="^flag must be an integer$"):
        check_int(value, "flag", numpy=numpy)


@pytest.mark.parametrize("value", [1.0, 2.5, "3", b"3", None, [1], np.array(3), np.float64(1.0), 1j])
@pytest.mark.parametrize("numpy", [False, True])
def test_non_integers_are_refused(value: Any, numpy: bool) -> None:
    with pytest.raises(ConfigError, match="^x must be an integer$"):
        check_int(value, "x", numpy=numpy)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.uint64])
def test_numpy_integers_only_with_the_flag(dtype: type[np.integer]) -> None:
    value = dtype(7)
    with pytest.raises(ConfigError, match="^n must be an integer$"):
        check_int(value, "n")
    out = check_int(value, "n", numpy=True)
    assert out == 7 and type(out) is int


def test_large_numpy_unsigned_against_bounds() -> None:
    big = np.uint64((1 << 64) - 1)
    assert check_int(big, "n", lo=-1, numpy=True) == (1 << 64) - 1
    with pytest.raises(ConfigError):
        check_int(big, "n", hi=(1 << 62), numpy=True)


@pytest.mark.parametrize(("lo", "hi"), [(0, 0), (-3, 3), (1, 62), (5, None), (None, 5)])
def test_bounds_are_inclusive(lo: int | None, hi: int | None) -> None:
    for edge in (lo, hi):
        if edge is not None:
            assert check_int(edge, "v", lo=lo, hi=hi) == edge
    if lo is not None:
        with pytest.raises(ConfigError):
            check_int(lo - 1, "v", lo=lo, hi=hi)
    if hi is not None:
        with pytest.raises(ConfigError):
            check_int(hi + 1, "v", lo=lo, hi=hi)


@pytest.mark.parametrize(
    ("lo", "hi", "bad", "expected"),
    [
        (None, None, 1.5, "v must be an integer"),
        (0, None, -1, "v must be a non-negative integer"),
        (1, None, 0, "v must be a positive integer"),
        (192, None, 191, "v must be an integer >= 192"),
        (-2, None, -3, "v must be an integer >= -2"),
        (None, 8, 9, "v must be an integer <= 8"),
        (1, 62, 63, "v must be an integer in [1, 62]"),
        (1, 62, True, "v must be an integer in [1, 62]"),
    ],
)
def test_default_messages(lo: int | None, hi: int | None, bad: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        check_int(bad, "v", lo=lo, hi=hi)


@pytest.mark.parametrize("error", [ConfigError, ProtocolViolation, FrameError])
def test_error_class_and_message_are_the_callers(error: type[Exception]) -> None:
    for bad in (True, "1", 99):
        with pytest.raises(error, match=r"^party 2 sent an invalid seed \(x\)$") as info:
            check_int(bad, "seed", lo=0, hi=63, error=error, message="party 2 sent an invalid seed (x)")
        assert type(info.value) is error
    assert check_int(63, "seed", lo=0, hi=63, error=error, message="unused") == 63


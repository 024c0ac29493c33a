"""Builder circuits against numpy on random inputs (several widths), and their AND counts."""

from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.gc import builder
from protocols.gc.builder import ONE, ZERO, CircuitBuilder
from protocols.gc.circuit import from_bits, to_bits

WIDTHS = [1, 2, 7, 8, 31, 32, 63, 64]
N = 400


def mask(n: int) -> np.uint64:
    return np.uint64((1 << n) - 1)


def signed_view(v: np.ndarray, n: int) -> np.ndarray:
    """n-bit two's complement values (as uint64) -> int64."""
    s = np.uint64(1 << (n - 1))
    return ((v ^ s) - s).view(np.int64)


def operands(prg: PRG, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = prg.uint64(N) & mask(n)
    y = prg.uint64(N) & mask(n)
    y[: N // 8] = x[: N // 8]  # ties
    x[N // 8 : N // 4] = 0  # edge values
    y[N // 4 : N // 4 + 10] = mask(n)
    return x, y


@pytest.mark.parametrize("n", WIDTHS)
def test_arithmetic_and_comparisons_match_numpy(prg: PRG, n: int) -> None:
    x, y = operands(prg, n)
    sx, sy = signed_view(x, n), signed_view(y, n)
    cases = [
        (builder.adder(n), (x + y) & mask(n), n - 1),
        (builder.subtractor(n), (x - y) & mask(n), n - 1),
        (builder.less_than(n), x < y, n),
        (builder.less_than(n, signed=True), sx < sy, n),
        (builder.greater_than(n), x > y, n),
        (builder.greater_than(n, signed=True), sx > sy, n),
        (builder.equal(n), x == y, n - 1),
        (builder.maximum(n), np.maximum(x, y), 2 * n),
        (builder.minimum(n), np.minimum(x, y), 2 * n),
        (builder.maximum(n, signed=True), np.where(sx >= sy, x, y), 2 * n),
        (builder.minimum(n, signed=True), np.where(sx <= sy, x, y), 2 * n),
    ]
    for circuit, expected, ands in cases:
        (got,) = circuit.evaluate(x, y)
        np.testing.assert_array_equal(got, np.asarray(expected).astype(np.uint64), err_msg=circuit.name)
        assert circuit.n_and == ands, circuit.name
    gt, lt, top = builder.comparator_max(n, signed=True).evaluate(x, y)
    np.testing.assert_array_equal(top, np.where(sx >= sy, x, y))
    assert builder.comparator_max(n).n_and == 3 * n
    gt, lt = builder.comparator(n, signed=True).evaluate(x, y)
    np.testing.assert_array_equal(gt.astype(np.int64) - lt.astype(np.int64), (sx > sy).astype(np.int64) - (sx < sy))


@pytest.mark.parametrize("n", WIDTHS)
def test_relu_and_mux(prg: PRG, n: int) -> None:
    x, y = operands(prg, n)
    (r,) = builder.relu(n).evaluate(x)
    np.testing.assert_array_equal(r, np.where(signed_view(x, n) > 0, x, 0).astype(np.uint64))
    assert builder.relu(n).n_and == n - 1
    sel = prg.bits(N)
    (m,) = builder.mux(n).evaluate(sel, x, y)
    np.testing.assert_array_equal(m, np.where(sel == 1, x, y))
    assert builder.mux(n).n_and == n


@pytest.mark.parametrize(("k", "n"), [(1, 8), (2, 1), (3, 8), (5, 16), (8, 32), (13, 64)])
@pytest.mark.parametrize("signed", [False, True])
def test_argmax_first_occurrence(prg: PRG, k: int, n: int, signed: bool) -> None:
    vals = [prg.uint64(N) & mask(min(n, 3) if i % 2 else n) for i in range(k)]  # small values: many ties
    circuit = builder.argmax(k, n, signed=signed)
    idx, best = circuit.evaluate(*vals)
    table = np.stack([signed_view(v, n) if signed else v for v in vals], axis=1)
    np.testing.assert_array_equal(idx, table.argmax(axis=1).astype(np.uint64))
    np.testing.assert_array_equal(best, np.stack(vals, axis=1)[np.arange(N), table.argmax(axis=1)])
    w = max(1, (k - 1).bit_length())
    assert circuit.output_widths == (w, n)
    assert circuit.n_and <= (k - 1) * (2 * n + w)


def test_constant_folding_and_constant_outputs() -> None:
    b = CircuitBuilder()
    (x,) = [b.input(1)]
    a = x[0]
    assert b.xor(a, a) == ZERO and b.xor(a, ZERO) == a and b.and_(a, ONE) == a and b.and_(a, ZERO) == ZERO
    assert b.and_(a, b.not_(a)) == ZERO and b.xor(a, b.not_(a)) == ONE and b.not_(b.not_(a)) == a
    b.output([ONE, ZERO, a, b.not_(a), b.or_(a, ZERO)])
    c = b.build("consts")
    assert c.n_and == 0
    (out,) = c.evaluate(np.array([0, 1], dtype=np.uint8))
    np.testing.assert_array_equal(out, np.array([0b01001, 0b10101], dtype=np.uint64))


def test_builder_misuse_raises() -> None:
    b = CircuitBuilder()
    x = b.input(4)
    y = b.input(3)
    with pytest.raises(ConfigError):
        b.add(x, y)
    b.xor(x[0], x[1])
    with pytest.raises(ConfigError, match="before the first gate"):
        b.input(2)
    with pytest.raises(ConfigError):
        CircuitBuilder().build()
    for bad in (0, -1, 5000, True, 2.0):
        with pytest.raises(ConfigError):
            builder.less_than(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        builder.argmax(0, 8)


def test_values_bits_roundtrip(prg: PRG) -> None:
    v = prg.uint64(50)
    np.testing.assert_array_equal(from_bits(to_bits(v, 64)), v)
    s = np.array([-5, 0, 3, -128, 127], dtype=np.int64)
    np.testing.assert_array_equal(from_bits(to_bits(s, 8), signed=True), s)
    wide = prg.bits((6, 130)).astype(bool)
    np.testing.assert_array_equal(from_bits(to_bits(wide, 130)), wide)
    for n, w in ((1, 1), (7, 13), (64, 64), (65, 33), (1000, 63)):  # padding to 64-row blocks
        vals = prg.uint64(n) >> np.uint64(64 - w)
        bits = to_bits(vals, w)
        assert bits.shape == (w, n) and bits.dtype == np.uint8 and bits.flags.c_contiguous
        np.testing.assert_array_equal(bits, (vals[None, :] >> np.arange(w, dtype=np.uint64)[:, None]) & np.uint64(1))
    assert to_bits(5, 4).tolist() == [[1], [0], [1], [0]]
    for bad, w in ((256, 8), (-129, 8), (1.5, 8), (np.zeros((2, 2), np.int64), 8), (1, 65)):
        with pytest.raises(ConfigError):
            to_bits(bad, w)

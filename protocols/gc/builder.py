"""Build circuits in code: a small netlist builder and the standard circuits of two-party jobs.

A *word* is a list of bits, least significant first; a bit is a wire number or one of the
public constants :data:`ZERO` and :data:`ONE`. Gates on constants are folded away when the
circuit is built (``x ^ 0 = x``, ``x & 1 = x``, ``x & 0 = 0``, ``x ^ x = 0``...), so a circuit
only pays for what depends on its inputs; XOR and NOT are free in a garbled circuit, AND costs
two ciphertexts.

AND gates per ``n``-bit operation (after folding):

==========================  ==================  ===============
circuit                     AND gates           AND depth
==========================  ==================  ===============
add, sub (mod 2^n)          n - 1               n - 1
less_than (signed or not)   n                   n
equal                       n - 1               ceil(log2 n)
mux (select one of two)     n                   1
maximum, minimum            2n                  n + 1
comparator (>, <)           2n                  n
comparator_max (>, <, max)  3n                  n + 1
argmax of k values          (k - 1)(2n + w)     w (n + 1)
                            at most, w =
                            ceil(log2 k)
relu (two's complement)     n - 1               1
==========================  ==================  ===============

The comparator is the carry chain of ``x + ~y + 1`` with one AND per bit (the majority
``c' = c ^ ((x ^ c) & (y ^ c))``), as in Kolesnikov, Sadeghi, Schneider (CANS 2009); signed
comparison flips the two sign bits (free).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from protocols.gc.circuit import AND, CONST, INV, XOR, Circuit, compile_circuit

__all__ = [
    "ZERO",
    "ONE",
    "CircuitBuilder",
    "adder",
    "subtractor",
    "less_than",
    "greater_than",
    "comparator",
    "comparator_max",
    "equal",
    "mux",
    "maximum",
    "minimum",
    "argmax",
    "relu",
]

ZERO = -1
"""The public constant bit 0."""
ONE = -2
"""The public constant bit 1."""

Word = list[int]


def _check_width(n: int) -> int:
    return check_int(n, "bit width", lo=1, hi=4096, numpy=True, message=f"bit width must be an int in [1, 4096], got {n!r}")


class CircuitBuilder:
    """Accumulate gates; :meth:`build` compiles them into a :class:`Circuit`.

    Inputs must all be declared (:meth:`input`) before the first gate.

    Example:
        >>> b = CircuitBuilder()
        >>> x, y = b.input(8), b.input(8)
        >>> b.output([b.lt(x, y)])
        >>> b.build("lt8").n_and
        8
    """

    def __init__(self) -> None:
        self._inputs: list[int] = []
        self._outputs: list[Word] = []
        self._kinds: list[int] = []
        self._a: list[int] = []
        self._b: list[int] = []
        self._n_wires = 0
        self._gates_started = False
        self._not_cache: dict[int, int] = {}

    # -- wiring ----------------------------------------------------------------------------

    def input(self, width: int) -> Word:
        """Declare the next input value of ``width`` bits; returns its bits (LSB first)."""
        width = _check_width(width)
        if self._gates_started:
            raise ConfigError("declare every input before the first gate")
        first = self._n_wires
        self._n_wires += width
        self._inputs.append(width)
        return list(range(first, first + width))

    def output(self, word: Sequence[int]) -> None:
        """Declare the next output value (its bits, LSB first; constants allowed)."""
        if not word:
            raise ConfigError("an output value needs at least one bit")
        self._outputs.append(list(word))

    def _gate(self, kind: int, a: int, b: int = -1) -> int:
        self._gates_started = True
        out = self._n_wires
        self._n_wires += 1
        self._kinds.append(kind)
        self._a.append(a)
        self._b.append(b)
        return out

    # -- bit operations (with constant folding) --------------------------------------------

    def xor(self, a: int, b: int) -> int:
        """``a ^ b`` (free)."""
        if a == b:
            return ZERO
        if a == ZERO:
            return b
        if b == ZERO:
            return a
        if a == ONE:
            return self.not_(b)
        if b == ONE:
            return self.not_(a)
        if self._not_cache.get(a) == b:
            return ONE
        return self._gate(XOR, a, b)

    def not_(self, a: int) -> int:
        """``~a`` (free)."""
        if a == ZERO:
            return ONE
        if a == ONE:
            return ZERO
        if a not in self._not_cache:
            out = self._gate(INV, a)
            self._not_cache[a] = out
            self._not_cache[out] = a
        return self._not_cache[a]

    def and_(self, a: int, b: int) -> int:
        """``a & b`` (one AND gate unless folded)."""
        if a == ZERO or b == ZERO:
            return ZERO
        if a == ONE:
            return b
        if b == ONE or a == b:
            return a
        if self._not_cache.get(a) == b:
            return ZERO
        return self._gate(AND, a, b)

    def or_(self, a: int, b: int) -> int:
        """``a | b = a ^ b ^ (a & b)`` (one AND gate unless folded)."""
        return self.xor(self.xor(a, b), self.and_(a, b))

    # -- word operations -------------------------------------------------------------------

    def const(self, value: int, width: int) -> Word:
        """The public constant ``value`` as ``width`` bits (two's complement)."""
        width = _check_width(width)
        return [ONE if (value >> i) & 1 else ZERO for i in range(width)]

    def _same_width(self, x: Word, y: Word) -> None:
        if len(x) != len(y) or not x:
            raise ConfigError(f"words of widths {len(x)} and {len(y)} do not match")

    def add(self, x: Word, y: Word, carry: int = ZERO) -> Word:
        """``x + y + carry mod 2^n`` (n - 1 ANDs with no carry in)."""
        self._same_width(x, y)
        out: Word = []
        c = carry
        for i, (a, b) in enumerate(zip(x, y)):
            out.append(self.xor(self.xor(a, b), c))
            if i + 1 < len(x):
                c = self._carry(a, b, c)
        return out

    def _carry(self, a: int, b: int, c: int) -> int:
        """Majority of ``a, b, c`` with one AND: ``c ^ ((a ^ c) & (b ^ c))``."""
        return self.xor(c, self.and_(self.xor(a, c), self.xor(b, c)))

    def sub(self, x: Word, y: Word) -> Word:
        """``x - y mod 2^n`` (n - 1 ANDs)."""
        return self.add(x, [self.not_(b) for b in y], ONE)

    def lt(self, x: Word, y: Word, *, signed: bool = False) -> int:
        """``x < y`` (n ANDs): the borrow out of ``x - y``."""
        self._same_width(x, y)
        if signed:
            x = x[:-1] + [self.not_(x[-1])]
            y = y[:-1] + [self.not_(y[-1])]
        c = ONE  # carry of x + ~y + 1: ends at 1 iff x >= y
        for a, b in zip(x, y):
            c = self._carry(a, self.not_(b), c)
        return self.not_(c)

    def eq(self, x: Word, y: Word) -> int:
        """``x == y`` (n - 1 ANDs, a balanced AND tree)."""
        self._same_width(x, y)
        bits = [self.not_(self.xor(a, b)) for a, b in zip(x, y)]
        while len(bits) > 1:
            nxt = [self.and_(bits[i], bits[i + 1]) for i in range(0, len(bits) - 1, 2)]
            if len(bits) % 2:
                nxt.append(bits[-1])
            bits = nxt
        return bits[0]

    def mux(self, sel: int, if1: Word, if0: Word) -> Word:
        """``if1 if sel else if0``, bitwise ``if0 ^ (sel & (if1 ^ if0))`` (n ANDs)."""
        self._same_width(if1, if0)
        return [self.xor(b, self.and_(sel, self.xor(a, b))) for a, b in zip(if1, if0)]

    def max(self, x: Word, y: Word, *, signed: bool = False) -> Word:
        """``max(x, y)`` (2n ANDs)."""
        return self.mux(self.lt(x, y, signed=signed), y, x)

    def min(self, x: Word, y: Word, *, signed: bool = False) -> Word:
        """``min(x, y)`` (2n ANDs)."""
        return self.mux(self.lt(x, y, signed=signed), x, y)

    def argmax(self, values: Sequence[Word], *, signed: bool = False) -> tuple[Word, Word]:
        """Index (first occurrence, like ``numpy.argmax``) and value of the largest word.

        A tournament: at each node the right candidate wins only if strictly larger, so ties go
        to the lower index. Index bits are ``ceil(log2 k)`` (at least 1).

        Returns:
            ``(index_bits, max_value_bits)``.
        """
        if not values:
            raise ConfigError("argmax needs at least one value")
        k = len(values)
        w = max(1, (k - 1).bit_length())
        cands = [(self.const(i, w), list(v)) for i, v in enumerate(values)]
        while len(cands) > 1:
            nxt = []
            for i in range(0, len(cands) - 1, 2):
                (il, vl), (ir, vr) = cands[i], cands[i + 1]
                right = self.lt(vl, vr, signed=signed)
                nxt.append((self.mux(right, ir, il), self.mux(right, vr, vl)))
            if len(cands) % 2:
                nxt.append(cands[-1])
            cands = nxt
        return cands[0]

    def relu(self, x: Word) -> Word:
        """``max(x, 0)`` on two's complement ``x`` (n - 1 ANDs)."""
        positive = self.not_(x[-1])
        return [self.and_(b, positive) for b in x[:-1]] + [ZERO]

    # -- compile ---------------------------------------------------------------------------

    def build(self, name: str = "circuit") -> Circuit:
        """Compile the gates into a :class:`Circuit` (constant outputs get constant wires)."""
        if not self._outputs:
            raise ConfigError("a circuit needs at least one output")
        kinds, ga, gb = list(self._kinds), list(self._a), list(self._b)
        n_wires = self._n_wires
        const_wire: dict[int, int] = {}
        outs: list[int] = []
        for word in self._outputs:
            for bit in word:
                if bit < 0:
                    if bit not in const_wire:
                        const_wire[bit] = n_wires
                        n_wires += 1
                        kinds.append(CONST)
                        ga.append(1 if bit == ONE else 0)
                        gb.append(-1)
                    bit = const_wire[bit]
                outs.append(bit)
        n_in = sum(self._inputs)
        return compile_circuit(
            name=name,
            n_wires=n_wires,
            input_widths=self._inputs,
            output_widths=[len(w) for w in self._outputs],
            kinds=np.array(kinds, dtype=np.int64),
            in_a=np.array(ga, dtype=np.int64),
            in_b=np.array(gb, dtype=np.int64),
            out=np.arange(n_in, n_wires, dtype=np.int64),
            outputs=np.array(outs, dtype=np.int64),
        )


# -- the standard circuits ---------------------------------------------------------------------


def _binary(name: str, n: int, op: str, signed: bool = False) -> Circuit:
    n = _check_width(n)
    b = CircuitBuilder()
    x, y = b.input(n), b.input(n)
    if op == "add":
        b.output(b.add(x, y))
    elif op == "sub":
        b.output(b.sub(x, y))
    elif op == "lt":
        b.output([b.lt(x, y, signed=signed)])
    elif op == "gt":
        b.output([b.lt(y, x, signed=signed)])
    elif op == "cmp":
        b.output([b.lt(y, x, signed=signed)])
        b.output([b.lt(x, y, signed=signed)])
    elif op == "cmpmax":
        lt = b.lt(x, y, signed=signed)
        b.output([b.lt(y, x, signed=signed)])
        b.output([lt])
        b.output(b.mux(lt, y, x))
    elif op == "eq":
        b.output([b.eq(x, y)])
    elif op == "max":
        b.output(b.max(x, y, signed=signed))
    elif op == "min":
        b.output(b.min(x, y, signed=signed))
    return b.build(f"{name}{n}{'s' if signed else ''}")


def adder(n: int) -> Circuit:
    """``(x, y) -> x + y mod 2^n`` (n - 1 ANDs)."""
    return _binary("add", n, "add")


def subtractor(n: int) -> Circuit:
    """``(x, y) -> x - y mod 2^n`` (n - 1 ANDs)."""
    return _binary("sub", n, "sub")


def less_than(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> [x < y]``, one output bit (n ANDs)."""
    return _binary("lt", n, "lt", signed)


def greater_than(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> [x > y]``, one output bit (n ANDs)."""
    return _binary("gt", n, "gt", signed)


def comparator(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> ([x > y], [x < y])``, two one-bit outputs (2n ANDs)."""
    return _binary("cmp", n, "cmp", signed)


def comparator_max(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> ([x > y], [x < y], max(x, y))`` (3n ANDs)."""
    return _binary("cmpmax", n, "cmpmax", signed)


def equal(n: int) -> Circuit:
    """``(x, y) -> [x == y]`` (n - 1 ANDs)."""
    return _binary("eq", n, "eq")


def maximum(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> max(x, y)`` (2n ANDs)."""
    return _binary("max", n, "max", signed)


def minimum(n: int, *, signed: bool = False) -> Circuit:
    """``(x, y) -> min(x, y)`` (2n ANDs)."""
    return _binary("min", n, "min", signed)


def mux(n: int) -> Circuit:
    """``(sel, a, b) -> a if sel else b`` with a 1-bit ``sel`` (n ANDs)."""
    n = _check_width(n)
    b = CircuitBuilder()
    sel, x, y = b.input(1), b.input(n), b.input(n)
    b.output(b.mux(sel[0], x, y))
    return b.build(f"mux{n}")


def argmax(k: int, n: int, *, signed: bool = False) -> Circuit:
    """``(v_0, ..., v_{k-1}) -> (argmax, max)``: k inputs of n bits; outputs the index
    (``ceil(log2 k)`` bits, at least 1; first occurrence on ties) and the maximum."""
    k = check_int(k, "k", lo=1, hi=1 << 16, numpy=True, message=f"argmax needs 1 to 65536 values, got {k!r}")
    n = _check_width(n)
    b = CircuitBuilder()
    values = [b.input(n) for _ in range(k)]
    index, best = b.argmax(values, signed=signed)
    b.output(index)
    b.output(best)
    return b.build(f"argmax{k}x{n}{'s' if signed else ''}")


def relu(n: int) -> Circuit:
    """``x -> max(x, 0)`` on n-bit two's complement (n - 1 ANDs)."""
    n = _check_width(n)
    b = CircuitBuilder()
    x = b.input(n)
    b.output(b.relu(x))
    return b.build(f"relu{n}")

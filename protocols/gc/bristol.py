"""Bristol Fashion circuit files: parser, and the published circuits shipped with the package.

Format (https://nigelsmart.github.io/MPC-Circuits/)::

    <gates> <wires>
    <niv> <n_1> ... <n_niv>        bits of each input value
    <nov> <m_1> ... <m_nov>        bits of each output value
    <nin> <nout> <in wires...> <out wires...> <OP>     one gate per line

with ``OP`` one of ``XOR``, ``AND`` (2 in, 1 out), ``INV``, ``EQW`` (1 in, 1 out: NOT and copy),
``EQ`` (1 in, 1 out: the "input" is the constant 0 or 1) and ``MAND`` (``2k`` in, ``k`` out:
``out_i = in_i AND in_{k+i}``). Inputs are wires ``0 .. sum(n) - 1`` (value after value), outputs
the last ``sum(m)`` wires; bit ``i`` of a value is its ``i``-th wire, least significant first.

Every malformed file raises :class:`~mpc.errors.ConfigError` naming the line: bad header or
counts, an unknown gate, an arity that does not match the gate, a wire out of range, a wire
defined twice or an input wire overwritten, a wire read but never defined, an output never
defined, and a cycle. Gates listed out of topological order are accepted and sorted.
"""

from __future__ import annotations

import importlib.resources
import os
from typing import Iterable

import numpy as np

from mpc.errors import ConfigError
from protocols.gc.circuit import AND, CONST, EQW, INV, XOR, Circuit, compile_circuit

__all__ = ["parse_bristol", "load_bristol", "load_published", "PUBLISHED"]

PUBLISHED = ("adder64", "sub64", "neg64", "zero_equal", "mult64", "udivide64", "FP-add")
"""Names of the published circuits shipped in ``protocols/gc/circuits`` (licence in License.txt)."""

_ARITY = {"XOR": (2, 1), "AND": (2, 1), "INV": (1, 1), "EQW": (1, 1), "EQ": (1, 1)}
_KIND = {"XOR": XOR, "AND": AND, "INV": INV, "EQW": EQW, "EQ": CONST}


def _ints(tokens: Iterable[str], lineno: int, what: str) -> list[int]:
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        raise ConfigError(f"line {lineno}: {what} must be integers") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"line {lineno}: {what} must be non-negative")
    return values


def _count_line(fields: list[str], lineno: int, what: str) -> list[int]:
    values = _ints(fields, lineno, f"the {what} line")
    if not values or values[0] != len(values) - 1:
        raise ConfigError(f"line {lineno}: the {what} line must be a count followed by that many widths")
    return values[1:]


def parse_bristol(text: str, *, name: str = "bristol") -> Circuit:
    """Parse a Bristol Fashion circuit and compile it (:func:`~protocols.gc.circuit.compile_circuit`).

    Args:
        text: the file's contents.
        name: a label for the circuit and for error messages.

    Raises:
        ConfigError: the file is malformed (the message names the line).
    """
    # Parsing is a loop over the file's lines (once per circuit, not per evaluation).
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, f) for i, f in lines if f]
    if len(lines) < 3:
        raise ConfigError(f"{name}: a Bristol Fashion file needs a header, an input and an output line")
    (l1, head), (l2, inl), (l3, outl) = lines[:3]
    header = _ints(head, l1, "the header")
    if len(header) != 2:
        raise ConfigError(f"{name}: line {l1}: the header must be '<gates> <wires>'")
    n_gates, n_wires = header
    in_widths = _count_line(inl, l2, "input")
    out_widths = _count_line(outl, l3, "output")
    n_in, n_out = sum(in_widths), sum(out_widths)
    if max(n_in, n_out) > n_wires:
        raise ConfigError(f"{name}: line {l1}: {n_wires} wires cannot hold {n_in} inputs and {n_out} outputs")
    body = lines[3:]
    if len(body) != n_gates:
        where = body[n_gates][0] if len(body) > n_gates else (body[-1][0] if body else l3)
        raise ConfigError(f"{name}: line {where}: the header declares {n_gates} gates, the file has {len(body)}")

    kinds: list[int] = []
    ga: list[int] = []
    gb: list[int] = []
    go: list[int] = []
    glines: list[int] = []
    for lineno, f in body:
        if len(f) < 3:
            raise ConfigError(f"{name}: line {lineno}: a gate needs '<nin> <nout> <wires...> <OP>'")
        op = f[-1]
        nin, nout = _ints(f[:2], lineno, "gate arities")
        if len(f) != 3 + nin + nout:
            raise ConfigError(f"{name}: line {lineno}: {nin} inputs and {nout} outputs need {nin + nout} wires, found {len(f) - 3}")
        if op == "MAND":
            if nin != 2 * nout or nout == 0:
                raise ConfigError(f"{name}: line {lineno}: MAND needs 2k inputs and k outputs")
        elif op not in _ARITY:
            raise ConfigError(f"{name}: line {lineno}: unknown gate {op!r}")
        elif (nin, nout) != _ARITY[op]:
            raise ConfigError(f"{name}: line {lineno}: {op} takes {_ARITY[op][0]} input(s) and {_ARITY[op][1]} output, not {nin} and {nout}")
        wires = _ints(f[2:-1], lineno, "wire numbers")
        ins, outs = wires[:nin], wires[nin:]
        if op == "EQ":
            if ins[0] not in (0, 1):
                raise ConfigError(f"{name}: line {lineno}: EQ assigns a constant, 0 or 1, not {ins[0]}")
            check = outs
        else:
            check = wires
        bad = [w for w in check if w >= n_wires]
        if bad:
            raise ConfigError(f"{name}: line {lineno}: wire {bad[0]} out of range (the header declares {n_wires} wires)")
        if op == "MAND":
            k = nout
            for i in range(k):
                kinds.append(AND)
                ga.append(ins[i])
                gb.append(ins[k + i])
                go.append(outs[i])
                glines.append(lineno)
        else:
            kinds.append(_KIND[op])
            ga.append(ins[0])
            gb.append(ins[1] if nin == 2 else -1)
            go.append(outs[0])
            glines.append(lineno)

    order = _topological_order(name, n_wires, n_in, n_out, kinds, ga, gb, go, glines)
    idx = np.array(order, dtype=np.int64)
    return compile_circuit(
        name=name,
        n_wires=n_wires,
        input_widths=in_widths,
        output_widths=out_widths,
        kinds=np.array(kinds, dtype=np.int64)[idx] if kinds else np.zeros(0, np.int64),
        in_a=np.array(ga, dtype=np.int64)[idx] if kinds else np.zeros(0, np.int64),
        in_b=np.array(gb, dtype=np.int64)[idx] if kinds else np.zeros(0, np.int64),
        out=np.array(go, dtype=np.int64)[idx] if kinds else np.zeros(0, np.int64),
        outputs=np.arange(n_wires - n_out, n_wires, dtype=np.int64),
    )


def _reads(kind: int, a: int, b: int) -> tuple[int, ...]:
    if kind == CONST:
        return ()
    if kind in (XOR, AND):
        return (a, b)
    return (a,)


def _topological_order(
    name: str,
    n_wires: int,
    n_in: int,
    n_out: int,
    kinds: list[int],
    ga: list[int],
    gb: list[int],
    go: list[int],
    glines: list[int],
) -> list[int]:
    """Gate indices in an order where every wire is defined before it is read.

    Raises:
        ConfigError: double definition, undefined wire, undefined output, or a cycle.
    """
    definer = [-1] * n_wires  # gate defining each wire; -2 for circuit inputs
    for w in range(n_in):
        definer[w] = -2
    for g, o in enumerate(go):
        if definer[o] == -2:
            raise ConfigError(f"{name}: line {glines[g]}: wire {o} is a circuit input and cannot be a gate output")
        if definer[o] >= 0:
            raise ConfigError(f"{name}: line {glines[g]}: wire {o} is already defined on line {glines[definer[o]]}")
        definer[o] = g
    in_order = True
    for g in range(len(kinds)):
        for w in _reads(kinds[g], ga[g], gb[g]):
            d = definer[w]
            if d == -1:
                raise ConfigError(f"{name}: line {glines[g]}: wire {w} is used but never defined")
            if d >= g:
                in_order = False
    for w in range(n_wires - n_out, n_wires):
        if definer[w] == -1:
            raise ConfigError(f"{name}: output wire {w} is never defined")
    if in_order:
        return list(range(len(kinds)))
    # Kahn's algorithm over gate dependencies.
    users: list[list[int]] = [[] for _ in kinds]
    pending = [0] * len(kinds)
    for g in range(len(kinds)):
        for w in _reads(kinds[g], ga[g], gb[g]):
            d = definer[w]
            if d >= 0:
                users[d].append(g)
                pending[g] += 1
    ready = [g for g in range(len(kinds)) if pending[g] == 0]
    order: list[int] = []
    while ready:
        g = ready.pop()
        order.append(g)
        for u in users[g]:
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    if len(order) < len(kinds):
        # Walk back from a gate left over until a gate repeats: that walk closes a cycle.
        g = next(i for i in range(len(kinds)) if pending[i] > 0)
        seen: list[int] = []
        while g not in seen:
            seen.append(g)
            g = next(definer[w] for w in _reads(kinds[g], ga[g], gb[g]) if definer[w] >= 0 and pending[definer[w]] > 0)
        cycle = seen[seen.index(g) :]
        lines = ", ".join(str(glines[c]) for c in sorted(cycle))
        raise ConfigError(f"{name}: line {glines[g]}: the gates form a cycle (lines {lines})")
    return order


def load_bristol(path: str | os.PathLike[str], *, name: str | None = None) -> Circuit:
    """Read and parse a Bristol Fashion file.

    Raises:
        ConfigError: unreadable or malformed file.
    """
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read circuit file {path}: {exc}") from None
    return parse_bristol(text, name=name or os.path.basename(os.fspath(path)))


def load_published(name: str) -> Circuit:
    """One of the published circuits shipped with the package (see :data:`PUBLISHED`).

    Raises:
        ConfigError: unknown name.
    """
    if name not in PUBLISHED:
        raise ConfigError(f"unknown published circuit {name!r}; available: {', '.join(PUBLISHED)}")
    resource = importlib.resources.files("protocols.gc").joinpath("circuits", f"{name}.txt")
    return parse_bristol(resource.read_text(encoding="ascii"), name=name)

"""Garbled circuits: two-party secure evaluation of Boolean circuits (half-gates, free-XOR).

Quick start (both parties run it, SPMD; each with its own values)::

    from protocols import gc

    sign = await gc.compare(s, counts, peer="hospital-b")     # +1 mine larger, -1 theirs, 0 tie
    top = await gc.maximum(s, values, peer="hospital-b")      # element-wise max, to both
    sign, top = await gc.compare_and_maximum(s, counts, peer="hospital-b")   # both, one circuit
    lt = gc.builder.less_than(32, signed=True)                # any circuit, built in code...
    fp = gc.load_published("FP-add")                          # ...or from a Bristol file
    (out,) = await gc.evaluate(s, lt, [x], peer="hospital-b", garbler="hospital-a",
                               outputs_to="hospital-a")

Modules:

- :mod:`protocols.gc.circuit` — the compiled, layered :class:`Circuit` (steps of XOR/INV and of
  AND gates over slot numbers), its plaintext evaluator (the test oracle), value <-> bit
  conversion.
- :mod:`protocols.gc.bristol` — Bristol Fashion parser; the published circuits shipped in
  ``protocols/gc/circuits`` (:func:`load_published`).
- :mod:`protocols.gc.builder` — :class:`CircuitBuilder` and the standard circuits (add, sub,
  less-than, equality, mux, max/min, argmax, ReLU) with their AND counts.
- :mod:`protocols.gc.garble` — half-gates garbling and evaluation, layer at a time, batched over
  instances (pure, no network).
- :mod:`protocols.gc.protocol` — the two-party protocol over a session (semi-honest; see its
  docstring for the threat model, rounds and bytes), :func:`compare`, :func:`maximum`,
  :func:`minimum`, :func:`compare_and_maximum`.
"""

from __future__ import annotations

from protocols.gc import builder
from protocols.gc.bristol import PUBLISHED, load_bristol, load_published, parse_bristol
from protocols.gc.builder import CircuitBuilder
from protocols.gc.circuit import Circuit, compile_circuit, from_bits, to_bits
from protocols.gc.protocol import compare, compare_and_maximum, evaluate, maximum, minimum

__all__ = [
    "Circuit",
    "CircuitBuilder",
    "PUBLISHED",
    "builder",
    "compare",
    "compare_and_maximum",
    "compile_circuit",
    "evaluate",
    "from_bits",
    "load_bristol",
    "load_published",
    "maximum",
    "minimum",
    "parse_bristol",
    "to_bits",
]

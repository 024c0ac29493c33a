"""Boolean circuits in a layered form: the one representation the garbler, the evaluator and the
plaintext oracle all run.

A circuit is given as a netlist (gates in topological order over numbered wires) and compiled
once by :func:`compile_circuit` into a :class:`Circuit`:

1. ``EQW`` (wire copy) gates become aliases and dead gates (not on a path to an output) are
   dropped.
2. Every wire gets an *AND depth* ``d`` (inputs and constants 0; ``AND`` adds one; ``XOR`` and
   ``INV`` take the maximum of their inputs) and, for linear gates, a *linear level* within its
   depth (1 + the linear level of its inputs of the same depth).
3. The gates are scheduled in *steps*: for ``d = 0, 1, ...`` the linear gates of depth ``d``
   level by level (one :class:`LinearStep` per level: XOR and INV gates separated), then every
   AND gate of depth ``d + 1`` in one :class:`AndStep`. A step only reads wires written by earlier
   steps, so each step is a handful of numpy operations over all its gates (and over all
   instances of the circuit at once).
4. Wires are mapped to *slots* by liveness: a slot is reused once the wire in it has been read
   for the last time (outputs are kept), so the working memory of a batched evaluation is the
   peak number of live wires, not the number of wires.

Bit order (Bristol Fashion convention): input value ``j`` of width ``n`` occupies consecutive
wires, wire ``i`` of the group carrying bit ``i`` of the value, least significant bit first;
outputs likewise. Values are fed and read per *instance*: a batch of ``B`` instances of the same
circuit is evaluated together (arrays of shape ``(B,)`` per input value).

The plaintext evaluator :meth:`Circuit.evaluate` packs the ``B`` instances of each wire into
bits of a ``uint8`` row (bit slicing), so the oracle itself runs at numpy speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mpc.errors import ConfigError
from protocols.ot.crhash import transpose_bits

__all__ = [
    "XOR",
    "AND",
    "INV",
    "EQW",
    "CONST",
    "LinearStep",
    "AndStep",
    "Circuit",
    "compile_circuit",
    "to_bits",
    "from_bits",
]

# Gate kinds of a netlist (the ``kinds`` array of :func:`compile_circuit`).
XOR = 0
AND = 1
INV = 2
EQW = 3  # copy: out = a
CONST = 4  # out = the constant bit given as ``a`` (0 or 1)

_NO_WIRE = -1
_INDEX = np.int64


def _frozen(a: Any) -> np.ndarray:
    arr = np.ascontiguousarray(a, dtype=_INDEX)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class LinearStep:
    """Free gates of one linear level: ``xor_out = xor_a ^ xor_b`` and ``inv_out = ~inv_a``.

    All arrays hold slot numbers (int64); no output slot of the step is read by the step.
    """

    xor_a: np.ndarray
    xor_b: np.ndarray
    xor_out: np.ndarray
    inv_a: np.ndarray
    inv_out: np.ndarray


@dataclass(frozen=True)
class AndStep:
    """AND gates of one AND depth: ``out = a & b``.

    Attributes:
        a, b, out: slot numbers (int64).
        first: the ordinal of the step's first AND gate in the circuit; gate ``k`` of the step is
            AND gate number ``first + k`` (the garbled table row and hash tweak follow it).
    """

    a: np.ndarray
    b: np.ndarray
    out: np.ndarray
    first: int


Step = LinearStep | AndStep


@dataclass(frozen=True)
class Circuit:
    """A compiled circuit (see the module docstring); build with :func:`compile_circuit`.

    Attributes:
        name: a label for messages.
        input_widths: bit width of each input value, in order.
        output_widths: bit width of each output value, in order.
        n_slots: number of storage rows an evaluation needs.
        input_slots: slot of each input bit (all input values concatenated, LSB first).
        output_slots: slot of each output bit.
        const_slots, const_values: slots holding public constants and their bits.
        steps: the schedule (:class:`LinearStep` and :class:`AndStep`).
        n_and, n_xor, n_inv: gate counts after dead-gate removal.
        and_depth: number of AND steps.
    """

    name: str
    input_widths: tuple[int, ...]
    output_widths: tuple[int, ...]
    n_slots: int
    input_slots: np.ndarray
    output_slots: np.ndarray
    const_slots: np.ndarray
    const_values: np.ndarray
    steps: tuple[Step, ...]
    n_and: int
    n_xor: int
    n_inv: int
    and_depth: int
    n_wires: int = field(default=0)

    @property
    def n_inputs(self) -> int:
        """Total input bits."""
        return sum(self.input_widths)

    @property
    def n_outputs(self) -> int:
        """Total output bits."""
        return sum(self.output_widths)

    def input_offsets(self) -> list[int]:
        """Index of the first bit of each input value among all input bits."""
        return [int(v) for v in np.cumsum((0,) + self.input_widths[:-1])]

    def output_offsets(self) -> list[int]:
        """Index of the first bit of each output value among all output bits."""
        return [int(v) for v in np.cumsum((0,) + self.output_widths[:-1])]

    def summary(self) -> dict[str, Any]:
        """Gate counts and shape, JSON-friendly."""
        return {
            "name": self.name,
            "inputs": list(self.input_widths),
            "outputs": list(self.output_widths),
            "and": self.n_and,
            "xor": self.n_xor,
            "inv": self.n_inv,
            "and_depth": self.and_depth,
            "steps": len(self.steps),
            "slots": self.n_slots,
        }

    # -- plaintext evaluation (the oracle) -----------------------------------------------------

    def evaluate_bits(self, bits: np.ndarray) -> np.ndarray:
        """Evaluate on input bits in the clear.

        Args:
            bits: shape ``(n_inputs, B)``, 0/1 (any integer or bool dtype); row ``i`` is input
                bit ``i`` of every instance.

        Returns:
            Output bits, uint8 of shape ``(n_outputs, B)``.

        Raises:
            ConfigError: wrong shape.
        """
        bits = np.asarray(bits)
        if bits.ndim != 2 or bits.shape[0] != self.n_inputs:
            raise ConfigError(f"{self.name}: input bits must have shape ({self.n_inputs}, B), got {bits.shape}")
        batch = bits.shape[1]
        packed = np.packbits(bits.astype(bool), axis=1, bitorder="little")
        rows = np.zeros((self.n_slots, packed.shape[1]), dtype=np.uint8)
        rows[self.input_slots] = packed
        rows[self.const_slots] = np.where(self.const_values[:, None] != 0, 0xFF, 0).astype(np.uint8)
        for step in self.steps:
            if isinstance(step, AndStep):
                rows[step.out] = rows[step.a] & rows[step.b]
            else:
                if step.xor_out.size:
                    rows[step.xor_out] = rows[step.xor_a] ^ rows[step.xor_b]
                if step.inv_out.size:
                    rows[step.inv_out] = ~rows[step.inv_a]
        out = np.unpackbits(rows[self.output_slots], axis=1, count=batch, bitorder="little")
        return out

    def evaluate(self, *values: Any, signed: bool = False) -> list[np.ndarray]:
        """Evaluate on input values in the clear, vectorized over instances.

        Args:
            *values: one array per input value (see :func:`to_bits`), all with the same number
                of instances (scalars broadcast).
            signed: read outputs as two's complement (int64) instead of unsigned.

        Returns:
            One array per output value (see :func:`from_bits`).
        """
        bits = self.encode_inputs(values)
        out = self.evaluate_bits(bits)
        return self.decode_outputs(out, signed=signed)

    def encode_inputs(self, values: Sequence[Any]) -> np.ndarray:
        """Input values -> bits of shape ``(n_inputs, B)`` (uint8).

        Raises:
            ConfigError: wrong number of values, or values that do not fit.
        """
        if len(values) != len(self.input_widths):
            raise ConfigError(f"{self.name} takes {len(self.input_widths)} input values, got {len(values)}")
        return encode_values(values, self.input_widths)

    def decode_outputs(self, bits: np.ndarray, *, signed: bool = False) -> list[np.ndarray]:
        """Output bits ``(n_outputs, B)`` -> one array per output value."""
        offs = self.output_offsets()
        return [from_bits(bits[o : o + w], signed=signed) for o, w in zip(offs, self.output_widths)]


# -- values <-> bits ---------------------------------------------------------------------------


def to_bits(value: Any, width: int) -> np.ndarray:
    """One input value of ``width`` bits for ``B`` instances, as bits ``(width, B)`` (uint8).

    Args:
        value: integers (any integer dtype or Python ints; negative numbers in two's
            complement; shape ``()`` or ``(B,)``), only for ``width <= 64``; or a bool array of
            shape ``(B, width)`` (bit ``i`` of instance ``b`` at ``[b, i]``), for any width.
        width: bits of the value.

    Raises:
        ConfigError: a value does not fit in ``width`` bits, or the shape is wrong.
    """
    arr = np.asarray(value)
    if arr.dtype == bool and width == 1 and arr.ndim <= 1:
        arr = arr.astype(np.uint8)  # one-bit values may be given as plain bools
    if arr.dtype == bool:
        if arr.ndim != 2 or arr.shape[1] != width:
            raise ConfigError(f"a bool input value must have shape (B, {width}), got {arr.shape}")
        return np.ascontiguousarray(arr.T.astype(np.uint8))
    if width > 64:
        raise ConfigError(f"a {width}-bit input value must be given as bools of shape (B, {width})")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype != object:
            raise ConfigError(f"input values must be integers, got dtype {arr.dtype}")
        try:
            ints = [int(v) for v in arr.reshape(-1)]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"input values must be integers: {exc}") from None
        if any(isinstance(v, (float, np.floating)) for v in arr.reshape(-1)):
            raise ConfigError("input values must be integers, not floats")
        if any(not -(1 << 63) <= v < 1 << 64 for v in ints):
            raise ConfigError("input value out of the 64-bit range")
        arr = np.array([v % (1 << 64) for v in ints], dtype=np.uint64).reshape(arr.shape)
    if arr.ndim > 1:
        raise ConfigError(f"integer input values must have shape () or (B,), got {arr.shape}")
    signed = np.issubdtype(arr.dtype, np.signedinteger)
    words = np.atleast_1d(arr).astype(np.int64 if signed else np.uint64).view(np.uint64)
    if width < 64:
        if signed:
            lo, hi = -(1 << (width - 1)), (1 << width) - 1
            a64 = np.atleast_1d(arr).astype(np.int64)
            if a64.size and (a64.min() < lo or a64.max() > hi):
                raise ConfigError(f"input value out of range for {width} bits")
        elif words.size and int(words.max()) >> width:
            raise ConfigError(f"input value out of range for {width} bits")
    # Bits of all words at once: the (B x 64)-bit matrix of the words, transposed (a bit-matrix
    # transpose, padded to whole 64-row blocks), then unpacked to one byte per bit.
    batch = words.shape[0]
    padded = np.zeros(-(-max(batch, 1) // 64) * 64, dtype=np.uint64)
    padded[:batch] = words
    packed = transpose_bits(padded.view(np.uint8).reshape(-1, 8))  # (64, B/8): row i = bit i
    return np.unpackbits(packed[:width], axis=1, count=batch, bitorder="little")


def encode_values(values: Sequence[Any], widths: Sequence[int]) -> np.ndarray:
    """Several values -> stacked bits ``(sum(widths), B)``; scalars broadcast to ``B``.

    Raises:
        ConfigError: values of different instance counts.
    """
    parts = [to_bits(v, w) for v, w in zip(values, widths, strict=True)]
    scalar = [np.asarray(v).dtype != bool and np.ndim(v) == 0 for v in values]
    sizes = {p.shape[1] for p, sc in zip(parts, scalar) if not sc}
    if len(sizes) > 1:
        raise ConfigError(f"input values have different instance counts {sorted(sizes)}")
    batch = sizes.pop() if sizes else 1
    if not parts:
        return np.zeros((0, batch), dtype=np.uint8)
    parts = [np.broadcast_to(p, (p.shape[0], batch)) for p in parts]
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def from_bits(bits: np.ndarray, *, signed: bool = False) -> np.ndarray:
    """Bits ``(width, B)`` of one value -> ``B`` integers, or bools ``(B, width)`` if wider than 64.

    Returns:
        uint64 (int64 if ``signed``; sign-extended from ``width`` bits) of shape ``(B,)`` for
        ``width <= 64``; otherwise a bool array of shape ``(B, width)``.
    """
    bits = np.asarray(bits)
    width = bits.shape[0]
    if width > 64:
        return np.ascontiguousarray(bits.T.astype(bool))
    shifts = np.arange(width, dtype=np.uint64)
    words = np.bitwise_or.reduce(bits.astype(np.uint64) << shifts[:, None], axis=0) if width else np.zeros(bits.shape[1], np.uint64)
    words = np.asarray(words, dtype=np.uint64)
    if not signed:
        return words
    if 0 < width < 64:
        sign = np.uint64(1 << (width - 1))
        words = (words ^ sign) - sign  # sign-extend, wrapping mod 2^64
    return words.view(np.int64)


# -- compilation -------------------------------------------------------------------------------


def compile_circuit(
    *,
    name: str,
    n_wires: int,
    input_widths: Sequence[int],
    output_widths: Sequence[int],
    kinds: np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
    out: np.ndarray,
    outputs: np.ndarray,
) -> Circuit:
    """Compile a netlist into a layered :class:`Circuit` (see the module docstring).

    Wires ``0 .. sum(input_widths) - 1`` are the inputs. Gates must be in topological order and
    define each wire at most once (the Bristol parser and the builder guarantee it; this
    function checks it cheaply and raises on violation).

    Args:
        name: a label.
        n_wires: number of wires.
        input_widths, output_widths: bits per input / output value.
        kinds: gate kind per gate (:data:`XOR`, :data:`AND`, :data:`INV`, :data:`EQW`,
            :data:`CONST`).
        in_a, in_b: input wires per gate (``in_b`` unused for unary gates; ``in_a`` is the bit
            for ``CONST``).
        out: output wire per gate.
        outputs: the wires of the output bits, in order (``sum(output_widths)`` of them).

    Raises:
        ConfigError: inconsistent sizes, or gates out of order.
    """
    # Compile-time passes: one Python loop over gates/wires each (done once per circuit, not in
    # the protocol; the protocol runs the vectorized steps).
    input_widths = tuple(int(w) for w in input_widths)
    output_widths = tuple(int(w) for w in output_widths)
    n_in = sum(input_widths)
    kinds_l = np.asarray(kinds, dtype=np.int64).tolist()
    a_l = np.asarray(in_a, dtype=np.int64).tolist()
    b_l = np.asarray(in_b, dtype=np.int64).tolist()
    o_l = np.asarray(out, dtype=np.int64).tolist()
    outs = np.asarray(outputs, dtype=np.int64).tolist()
    if any(w < 0 for w in input_widths + output_widths):
        raise ConfigError(f"{name}: negative width")
    if len(outs) != sum(output_widths):
        raise ConfigError(f"{name}: {len(outs)} output wires for widths {output_widths}")
    if not (len(kinds_l) == len(a_l) == len(b_l) == len(o_l)):
        raise ConfigError(f"{name}: gate arrays of different lengths")

    # 1. aliases (EQW) and definedness
    alias = list(range(n_wires))
    defined = [False] * n_wires
    for w in range(min(n_in, n_wires)):
        defined[w] = True
    wires_used = [w for g, w in enumerate(a_l) if kinds_l[g] != CONST] + [w for g, w in enumerate(b_l) if kinds_l[g] in (XOR, AND)]
    if any(not 0 <= w < n_wires for w in wires_used + o_l + outs) or n_in > n_wires:
        raise ConfigError(f"{name}: a wire number is out of range [0, {n_wires})")
    for g, k in enumerate(kinds_l):
        o = o_l[g]
        if defined[o]:
            raise ConfigError(f"{name}: gate {g} redefines wire {o}")
        if k == EQW:
            a = alias[a_l[g]]
            if not defined[a]:
                raise ConfigError(f"{name}: gate {g} reads wire {a_l[g]} before it is defined")
            alias[o] = a
        else:
            if k in (XOR, AND, INV):
                for w in (a_l[g], b_l[g]) if k != INV else (a_l[g],):
                    if not defined[alias[w]]:
                        raise ConfigError(f"{name}: gate {g} reads wire {w} before it is defined")
        defined[o] = True
    outs = [alias[w] for w in outs]
    for w in outs:
        if not defined[w]:
            raise ConfigError(f"{name}: output wire {w} is never defined")

    # 2. dead-gate removal (backward)
    live = [False] * n_wires
    for w in outs:
        live[w] = True
    keep: list[int] = []
    for g in range(len(kinds_l) - 1, -1, -1):
        k = kinds_l[g]
        if k == EQW or not live[o_l[g]]:
            continue
        keep.append(g)
        if k in (XOR, AND):
            live[alias[a_l[g]]] = True
            live[alias[b_l[g]]] = True
        elif k == INV:
            live[alias[a_l[g]]] = True
    keep.reverse()

    # 3. depth, linear level, step keys
    depth = [0] * n_wires
    level = [0] * n_wires
    gk: list[int] = []
    ga: list[int] = []
    gb: list[int] = []
    go: list[int] = []
    gd: list[int] = []
    gl: list[int] = []
    consts: list[tuple[int, int]] = []
    for g in keep:
        k, o = kinds_l[g], o_l[g]
        if k == CONST:
            consts.append((o, a_l[g] & 1))
            continue
        a = alias[a_l[g]]
        b = alias[b_l[g]] if k in (XOR, AND) else _NO_WIRE
        if k == AND:
            d, lv = max(depth[a], depth[b]) + 1, 0
        elif k == XOR:
            d = max(depth[a], depth[b])
            lv = 1 + max(level[a] if depth[a] == d else 0, level[b] if depth[b] == d else 0)
        else:  # INV
            d, lv = depth[a], level[a] + 1
        depth[o], level[o] = d, lv
        gk.append(k)
        ga.append(a)
        gb.append(b)
        go.append(o)
        gd.append(d)
        gl.append(lv)

    kind_arr = np.array(gk, dtype=np.int64)
    d_arr = np.array(gd, dtype=np.int64)
    l_arr = np.array(gl, dtype=np.int64)
    max_level = int(l_arr.max()) if l_arr.size else 0
    # AND gates of depth d run after the linear levels of depth d - 1.
    key = np.where(kind_arr == AND, (d_arr - 1) * (max_level + 2) + max_level + 1, d_arr * (max_level + 2) + l_arr)
    step_keys, step_of_gate = np.unique(key, return_inverse=True)
    n_steps = len(step_keys)
    order = np.argsort(step_of_gate, kind="stable")
    bounds = np.searchsorted(step_of_gate[order], np.arange(n_steps + 1))

    # 4. liveness and slot allocation
    ga_arr = np.array(ga, dtype=np.int64)
    gb_arr = np.array(gb, dtype=np.int64)
    go_arr = np.array(go, dtype=np.int64)
    last_use = np.full(n_wires, -1, dtype=np.int64)
    for arr in (ga_arr, gb_arr):
        ok = arr >= 0
        np.maximum.at(last_use, arr[ok], step_of_gate[ok])
    never = n_steps + 1
    last_use[np.array(outs, dtype=np.int64)] = never
    slot = np.full(n_wires, -1, dtype=np.int64)
    free: list[int] = []
    n_slots = 0
    const_wires = [w for w, _ in consts]
    initial = list(range(n_in)) + const_wires
    frees_after: dict[int, list[int]] = {}

    def release_later(wires: list[int]) -> None:
        for w in wires:
            lu = int(last_use[w])
            if lu < never:
                frees_after.setdefault(lu, []).append(w)

    for w in initial:
        if slot[w] < 0:
            slot[w] = n_slots
            n_slots += 1
    release_later(initial)
    steps: list[Step] = []
    n_and = 0
    for s in range(n_steps):
        for w in frees_after.pop(s - 1, []):
            free.append(int(slot[w]))
        idx = order[bounds[s] : bounds[s + 1]]
        outs_s = go_arr[idx].tolist()
        for w in outs_s:
            if free:
                slot[w] = free.pop()
            else:
                slot[w] = n_slots
                n_slots += 1
        release_later(outs_s)
        kk = kind_arr[idx]
        if kk[0] == AND:
            steps.append(AndStep(_frozen(slot[ga_arr[idx]]), _frozen(slot[gb_arr[idx]]), _frozen(slot[go_arr[idx]]), n_and))
            n_and += len(idx)
        else:
            xi, ii = idx[kk == XOR], idx[kk == INV]
            steps.append(
                LinearStep(
                    _frozen(slot[ga_arr[xi]]),
                    _frozen(slot[gb_arr[xi]]),
                    _frozen(slot[go_arr[xi]]),
                    _frozen(slot[ga_arr[ii]]),
                    _frozen(slot[go_arr[ii]]),
                )
            )
    # Unused input wires still need a slot to be written into (they were given one above).
    return Circuit(
        name=name,
        input_widths=input_widths,
        output_widths=output_widths,
        n_slots=max(n_slots, 1),
        input_slots=_frozen(slot[:n_in]),
        output_slots=_frozen(slot[np.array(outs, dtype=np.int64)]),
        const_slots=_frozen(slot[np.array(const_wires, dtype=np.int64)]),
        const_values=_frozen([v for _, v in consts]),
        steps=tuple(steps),
        n_and=n_and,
        n_xor=int(np.count_nonzero(kind_arr == XOR)),
        n_inv=int(np.count_nonzero(kind_arr == INV)),
        and_depth=sum(isinstance(s, AndStep) for s in steps),
        n_wires=n_wires,
    )

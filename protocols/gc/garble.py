"""Half-gates garbling with free-XOR and point-and-permute, a whole layer at a time.

Pure functions (no network): :func:`garble` and :func:`evaluate` run a compiled
:class:`~protocols.gc.circuit.Circuit` on ``B`` instances at once, step by step; every AND step
hashes all of its gates of all instances in one batched call of the tweakable hash.

Labels are 128-bit blocks held as ``uint64`` pairs ``[lo, hi]`` (little-endian bytes 0..7 and
8..15); a label array has shape ``(wires, B, 2)``. The *permute bit* of a label is bit 0 of
``lo``.

Scheme (Zahur, Rosulek, Evans, *Two Halves Make a Whole*, EUROCRYPT 2015), with the garbler's
global ``Delta`` (``lsb(Delta) = 1``), wire labels ``W^0`` and ``W^1 = W^0 ^ Delta``:

- XOR: ``C^0 = A^0 ^ B^0`` (free); NOT: ``C^0 = A^0 ^ Delta`` (free; the evaluator copies).
- AND gate number ``k`` of instance ``b``, tweaks ``j = 2(kB + b)`` and ``j' = j + 1``,
  ``p_a = lsb(A^0)``, ``p_b = lsb(B^0)``, ``H`` the tweakable correlation-robust hash:

  - garbler half: ``T_G = H(A^0, j) ^ H(A^1, j) ^ p_b Delta``, ``W_G^0 = H(A^0, j) ^ p_a T_G``;
  - evaluator half: ``T_E = H(B^0, j') ^ H(B^1, j') ^ A^0``,
    ``W_E^0 = H(B^0, j') ^ p_b (T_E ^ A^0)``;
  - ``C^0 = W_G^0 ^ W_E^0``; the garbled table is ``(T_G, T_E)``: exactly two 16-byte
    ciphertexts per AND gate and instance;
  - evaluation with labels ``A, B`` and ``s_a = lsb(A)``, ``s_b = lsb(B)``:
    ``C = H(A, j) ^ s_a T_G ^ H(B, j') ^ s_b (T_E ^ A)``.

- Output decoding: ``d = lsb(C^0)``; the output bit of a label ``C`` is ``lsb(C) ^ d``
  (:func:`decode`, the garbler's own view); or, authenticated, with commitments
  ``h(W^0), h(W^1)`` (:func:`commit_outputs`: the hash below truncated to 64 bits, tweaks
  ``(o B + b, call, GC_OUTPUT_DOMAIN)``): the bit is the index of the commitment ``h(C)``
  matches, and a label matching neither aborts (:func:`open_outputs`); 16 bytes per output bit.

``H(x, i) = pi(pi(x) ^ i) ^ pi(x)`` with ``pi`` fixed-key AES (TMMO, Guo, Katz, Wang, Yu, S&P
2020: tweakable circular correlation-robust in the random-permutation model): the function of
:meth:`protocols.ot.crhash.CRHash.tccr` under the same public key, computed into buffers reused
across the AND steps (two AES passes over all the step's blocks per batched hash). Tweaks are
128-bit, laid out as :func:`protocols.ot.crhash.make_tweaks` does: the low 64 bits ``j`` as
above, then 32 bits ``call`` (the number of the garbled circuit among those of the session and
pair) and 32 bits ``GC_DOMAIN`` (distinct from the OT layer's domains). So no tweak repeats
under one ``Delta`` even when ``Delta`` is reused across circuits, as the correlated-OT
``Delta`` of a session is.

Cost: garbling hashes 4 blocks per AND (8 AES blocks with TMMO), evaluating 2 (4 AES blocks);
every other operation is a whole-array numpy operation over the step's ``gates x instances``
blocks, processed in chunks of at most :data:`CHUNK_BLOCKS` blocks to stay in cache. Every
"select by a permute bit" is a gather of 16-byte elements from the hash buffer (no masked
copies, no broadcasting over the 2-word axis of a label, both slow paths of numpy).

Security of a garbled circuit alone (Bellare-Hoang-Rogaway privacy/obliviousness): given the
tables, one label per input wire and nothing else, the evaluator learns nothing beyond the
permute bits it sees, which are uniform and independent of the values; with the decoding bits
(or the output commitments) it learns the outputs and nothing more (a commitment to the label
it does not hold is the CCR hash of its own label XOR ``Delta`` under a fresh tweak).
*Authenticity*: an evaluator that obtains, for an output wire, a valid label other than the
one its inputs determine has found ``Delta`` or broken the hash. So a label returned to the
garbler is checked against both labels (:func:`decode_labels`, false accept ``2^-128``), and
the evaluator checks its own against the commitments (:func:`open_outputs`, false accept
``2^-63`` per output bit): a tampered table entry, input label or OT label on its path yields
an abort or the correct output, never a wrong one. Nothing here protects the evaluator against
a garbler that garbles a different circuit or commits to other labels: that is the
semi-honest model of :mod:`protocols.gc.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.errors import AbortError, ConfigError, ProtocolViolation
from protocols.gc.circuit import AndStep, Circuit, LinearStep
from protocols.ot.crhash import FIXED_KEY, CRHash

__all__ = [
    "GC_DOMAIN",
    "GC_OUTPUT_DOMAIN",
    "CHUNK_BLOCKS",
    "GarbledCircuit",
    "garble",
    "evaluate",
    "decode",
    "decode_labels",
    "check_tables",
    "commit_outputs",
    "open_outputs",
    "COMMIT_BYTES",
    "permute_bits",
    "random_delta",
]

GC_DOMAIN = 0x4743  # "GC": domain separator in bits 96..127 of every garbling tweak
GC_OUTPUT_DOMAIN = 0x474F  # "GO": domain of the output-label commitments
COMMIT_BYTES = 8
"""Bytes of each output-label commitment (two per output bit: 16 bytes per output bit)."""
CHUNK_BLOCKS = 1 << 13
"""Most blocks (gate x instance pairs) processed per numpy pass in an AND step."""

_U64 = np.uint64
_ONE = np.uint64(1)


@dataclass(frozen=True)
class GarbledCircuit:
    """What garbling produces.

    Attributes:
        tables: ``(n_and, 2, B, 2)`` uint64: row ``k`` holds ``T_G`` then ``T_E`` of AND gate
            ``k`` for every instance (32 bytes per AND gate and instance, nothing else).
        output_zero: ``(n_outputs, B, 2)`` uint64, the zero labels of the output wires (secret,
            kept by the garbler).
        decode: ``(n_outputs, B)`` uint8, the decoding bits ``lsb(output_zero)``.
    """

    tables: np.ndarray
    output_zero: np.ndarray
    decode: np.ndarray


def random_delta(prg_bytes: bytes) -> np.ndarray:
    """A free-XOR ``Delta`` from 16 random bytes, with its permute bit set: (2,) uint64."""
    if len(prg_bytes) != 16:
        raise ConfigError("Delta needs 16 random bytes")
    delta = np.frombuffer(prg_bytes, dtype=np.uint64).copy()
    delta[0] |= _ONE
    return delta


def permute_bits(labels: np.ndarray) -> np.ndarray:
    """``lsb`` of every label of a ``(..., 2)`` uint64 array, as uint8 of shape ``(...)``."""
    return (labels[..., 0] & _ONE).astype(np.uint8)


def _check_delta(delta: np.ndarray) -> np.ndarray:
    d = np.asarray(delta)
    if d.dtype == np.uint8 and d.shape == (16,):
        d = d.view(np.uint64)
    if d.dtype != np.uint64 or d.shape != (2,):
        raise ConfigError("Delta must be 16 bytes: a (2,) uint64 or (16,) uint8 array")
    if not int(d[0]) & 1:
        raise ConfigError("Delta must have its permute bit (bit 0) set")
    return d


def _check_labels(labels: np.ndarray, rows: int, what: str) -> int:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint64 or labels.ndim != 3 or labels.shape[0] != rows or labels.shape[2] != 2:
        raise ConfigError(f"{what} must be a ({rows}, B, 2) uint64 array")
    return labels.shape[1]


def _tweak_high(call: int) -> np.uint64:
    if not 0 <= call < 1 << 32:
        raise ConfigError("the circuit number of a session must be in [0, 2^32)")
    return np.uint64(call | (GC_DOMAIN << 32))


def _chunks(step: AndStep, batch: int) -> list[tuple[int, int, int, int]]:
    """(g0, g1, b0, b1) pieces of an AND step of at most ~CHUNK_BLOCKS blocks each.

    A Python loop over chunks (each chunk is one vectorized pass over up to CHUNK_BLOCKS blocks).
    """
    g = len(step.a)
    if batch >= CHUNK_BLOCKS:
        return [(i, i + 1, b, min(b + CHUNK_BLOCKS, batch)) for i in range(g) for b in range(0, batch, CHUNK_BLOCKS)]
    per = max(1, CHUNK_BLOCKS // batch)
    return [(i, min(i + per, g), 0, batch) for i in range(0, g, per)]


def _c128(x: np.ndarray) -> np.ndarray:
    """A complex128 view of uint64 blocks (..., 2) -> (...): 16-byte elements for gathers."""
    return x.view(np.complex128)[..., 0]


class _Engine:
    """Scratch buffers and the hash of one garbling or evaluation (reused across chunks, so the
    AND steps allocate almost nothing).

    The hash is TMMO, ``H(x, i) = pi(pi(x) ^ i) ^ pi(x)`` with ``pi`` AES-128 under the public
    :data:`protocols.ot.crhash.FIXED_KEY`: the function of :meth:`CRHash.tccr`, evaluated into
    these buffers (a test checks that both agree). Inputs stay in ``x`` after hashing; the
    hashes land in ``h``, followed by room for two more rows of candidates, so that every
    "select by a permute bit" of half-gates is one gather (``take``) of 16-byte elements
    instead of a masked copy.
    """

    def __init__(self, batch: int, high: np.uint64, hashes_per_gate: int, delta: np.ndarray | None) -> None:
        rows = min(CHUNK_BLOCKS, batch) if batch >= CHUNK_BLOCKS else max(1, CHUNK_BLOCKS // batch) * batch
        self.batch = batch
        self.rows = rows
        self.k = hashes_per_gate
        self._enc = Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()
        n = hashes_per_gate * rows
        self.x = np.empty((n + 1, 2), dtype=_U64)  # one spare block: update_into wants slack
        self.px = np.empty((n + 1, 2), dtype=_U64)
        self.y = np.empty((n + 1, 2), dtype=_U64)
        self.h = np.empty((n + 2 * rows + 1, 2), dtype=_U64)  # hashes, then 2 rows of candidates
        self.hc = _c128(self.h)
        self.tw = np.empty((2, rows, 2), dtype=_U64)
        self.tw[:, :, 1] = high
        self.ar2 = np.arange(0, 2 * batch, 2, dtype=_U64)  # 2b for every instance b
        self.ar = np.arange(rows, dtype=np.intp)
        self.sel = np.empty((3, rows), dtype=np.intp)  # permute bits and gather indices
        self.acc = np.empty((rows, 2), dtype=_U64)
        dtab = np.zeros((2, 2), dtype=_U64)
        if delta is not None:
            dtab[1] = delta
        self.dtab = _c128(dtab)  # [0, Delta]: ``take(dtab, bit)`` is ``bit * Delta``
        self.delta = np.empty((rows if delta is not None else 0, 2), dtype=_U64)
        if delta is not None:
            self.delta[:] = delta  # Delta tiled, so XORs with it need no broadcasting

    def load(self, labels: np.ndarray, idx: np.ndarray, b0: int, b1: int, part: int) -> np.ndarray:
        """Gather the labels of wires ``idx``, instances ``b0:b1`` into input part ``part``."""
        g, bc = len(idx), b1 - b0
        n = g * bc
        out = self.x[part * n : (part + 1) * n].reshape(g, bc, 2)
        if g == 1:
            out[0] = labels[idx[0], b0:b1]
        else:
            np.take(labels[:, b0:b1], idx, axis=0, out=out, mode="clip")
        return out

    def lsb(self, part: int, n: int, row: int) -> np.ndarray:
        """Permute bits of input part ``part`` (n blocks) into ``sel[row]``: (n,) intp 0/1."""
        out = self.sel[row, :n]
        np.bitwise_and(self.x[part * n : (part + 1) * n, 0].view(np.intp), 1, out=out)
        return out

    def tweaks(self, first: int, b0: int, b1: int, g: int) -> None:
        """Tweaks ``j = 2(kB + b)`` (part 0) and ``j + 1`` (part 1) of gates first..first+g-1."""
        bc = b1 - b0
        lo = self.tw[0, : g * bc, 0].reshape(g, bc)
        base = np.arange(first, first + g, dtype=_U64) * _U64(2 * self.batch)
        np.add(base[:, None], self.ar2[None, b0:b1], out=lo)
        np.bitwise_or(lo, _ONE, out=self.tw[1, : g * bc, 0].reshape(g, bc))

    def hash(self, n: int) -> np.ndarray:
        """Hash the ``k * n`` blocks of ``x`` (parts of ``n`` blocks; parts ``< k/2`` use tweak
        ``j``, the others ``j + 1``) in two batched AES calls; returns ``(k, n, 2)`` hashes (in
        ``h``; ``x`` is left as it was)."""
        k = self.k
        total = k * n
        self._enc.update_into(memoryview(self.x[: total + 1]).cast("B")[: 16 * total], memoryview(self.px).cast("B"))
        px = self.px[:total]
        np.bitwise_xor(px.reshape(2, k // 2, n, 2), self.tw[:, None, :n], out=self.y[:total].reshape(2, k // 2, n, 2))
        self._enc.update_into(memoryview(self.y[: total + 1]).cast("B")[: 16 * total], memoryview(self.h).cast("B"))
        out = self.h[:total]
        out ^= px
        return out.reshape(k, n, 2)

    def gather(self, offset: int, bits: np.ndarray, stride: int, n: int, out: np.ndarray) -> np.ndarray:
        """``out[i] = h[offset + bits[i] * stride + i]`` for ``i < n`` (16-byte elements; ``out``
        must not lie in ``h``)."""
        idx = self.sel[2, :n]
        np.multiply(bits, stride, out=idx)
        idx += self.ar[:n]
        if offset:
            idx += offset
        np.take(self.hc, idx, out=_c128(out), mode="clip")
        return out


def garble(
    circuit: Circuit,
    input_zero: np.ndarray,
    delta: np.ndarray,
    *,
    call: int = 0,
) -> GarbledCircuit:
    """Garble ``B`` instances of ``circuit``.

    Args:
        circuit: the compiled circuit.
        input_zero: ``(n_inputs, B, 2)`` uint64, the zero label of every input bit of every
            instance (uniform, secret).
        delta: the global free-XOR offset (lsb 1), (2,) uint64 or (16,) uint8.
        call: number of this circuit among those garbled under the same ``Delta`` (tweak
            domain; the evaluator must use the same value).

    Returns:
        The tables, the output zero labels and the decoding bits.

    Raises:
        ConfigError: bad shapes or ``Delta``.
    """
    d = _check_delta(delta)
    batch = _check_labels(input_zero, circuit.n_inputs, "input zero labels")
    eng = _Engine(batch, _tweak_high(call), 4, d)
    labels = np.empty((circuit.n_slots, batch, 2), dtype=_U64)
    labels[circuit.input_slots] = input_zero
    if circuit.const_slots.size:
        # Public constants: the evaluator's label is the zero block, so W^0 = value * Delta.
        labels[circuit.const_slots] = np.where(circuit.const_values[:, None, None] != 0, d, _U64(0))
    tables = np.empty((circuit.n_and, 2, batch, 2), dtype=_U64)
    tiled = np.empty((batch, 2), dtype=_U64)
    tiled[:] = d  # Delta once per instance: XORs with it need no broadcasting (slow on a 2-axis)
    for step in circuit.steps:
        if isinstance(step, AndStep):
            for g0, g1, b0, b1 in _chunks(step, batch):
                _garble_chunk(eng, labels, tables, step, g0, g1, b0, b1)
        else:
            _linear(labels, step, tiled)
    out0 = labels[circuit.output_slots]
    return GarbledCircuit(tables, out0, permute_bits(out0))


def _linear(labels: np.ndarray, step: LinearStep, delta: np.ndarray | None) -> None:
    """A linear step: XOR gates, and NOT gates (garbler: ``^ Delta``; evaluator: copy)."""
    batch = labels.shape[1]
    # With many instances, one gate at a time over views (no temporaries): a Python loop over a
    # step's gates, each iteration a vectorized operation over all B instances.
    if batch >= 256 and len(step.xor_out) + len(step.inv_out) <= 64:
        for a, b, o in zip(step.xor_a.tolist(), step.xor_b.tolist(), step.xor_out.tolist()):
            np.bitwise_xor(labels[a], labels[b], out=labels[o])
        for a, o in zip(step.inv_a.tolist(), step.inv_out.tolist()):
            if delta is None:
                labels[o] = labels[a]
            else:
                np.bitwise_xor(labels[a], delta, out=labels[o])
        return
    if step.xor_out.size:
        labels[step.xor_out] = labels[step.xor_a] ^ labels[step.xor_b]
    if step.inv_out.size:
        labels[step.inv_out] = labels[step.inv_a] if delta is None else labels[step.inv_a] ^ delta


def _out_rows(eng: _Engine, labels: np.ndarray, out: np.ndarray, b0: int, b1: int, n: int) -> np.ndarray:
    """Where to build the output labels of a chunk: the label row itself for a one-gate chunk
    (contiguous), else scratch to be stored by :func:`_store`."""
    if len(out) == 1:
        return labels[out[0], b0:b1]
    return eng.acc[:n]


def _store(labels: np.ndarray, idx: np.ndarray, b0: int, b1: int, value: np.ndarray) -> None:
    if len(idx) == 1:
        return  # built in place by _out_rows
    labels[idx, b0:b1] = value.reshape(len(idx), b1 - b0, 2)


def _garble_chunk(eng: _Engine, labels: np.ndarray, tables: np.ndarray, step: AndStep, g0: int, g1: int, b0: int, b1: int) -> None:
    """Half-gates garbling of gates ``g0:g1`` of an AND step, instances ``b0:b1``.

    With ``p_a, p_b`` the permute bits of ``A^0, B^0`` and hashes ``h0..h3`` of ``A^0, A^1,
    B^0, B^1``: ``T_G = h0 ^ h1 ^ p_b Delta``, ``T_E = h2 ^ h3 ^ A^0`` and
    ``C^0 = W_G^0 ^ W_E^0 = h_{p_a} ^ (p_a p_b) Delta ^ h_{2 + p_b}`` (``W_G^0 = h0 ^ p_a T_G``,
    ``W_E^0 = h2 ^ p_b (T_E ^ A^0)``), the selections by gathers.
    """
    g, bc = g1 - g0, b1 - b0
    n = g * bc
    k0 = step.first + g0
    d = eng.delta[:n].reshape(g, bc, 2)
    a0 = eng.load(labels, step.a[g0:g1], b0, b1, 0)
    np.bitwise_xor(a0, d, out=eng.x[n : 2 * n].reshape(g, bc, 2))
    b0_ = eng.load(labels, step.b[g0:g1], b0, b1, 2)
    np.bitwise_xor(b0_, d, out=eng.x[3 * n : 4 * n].reshape(g, bc, 2))
    pa, pb = eng.lsb(0, n, 0), eng.lsb(2, n, 1)
    eng.tweaks(k0, b0, b1, g)
    hx = eng.hash(n).reshape(4, g, bc, 2)
    tg = tables[k0 : k0 + g, 0, b0:b1]
    te = tables[k0 : k0 + g, 1, b0:b1]
    np.bitwise_xor(hx[0], hx[1], out=tg)
    tg ^= eng.dtab.take(pb.reshape(g, bc)).view(_U64).reshape(g, bc, 2)  # T_G
    np.bitwise_xor(hx[2], hx[3], out=te)
    te ^= a0  # T_E
    c = _out_rows(eng, labels, step.out[g0:g1], b0, b1, n).reshape(n, 2)
    eng.gather(0, pa, n, n, c)  # h_{p_a}
    c ^= eng.dtab.take(pa & pb).view(_U64).reshape(n, 2)  # (p_a p_b) Delta
    c ^= eng.gather(2 * n, pb, n, n, eng.y[:n])  # h_{2 + p_b}
    _store(labels, step.out[g0:g1], b0, b1, c)


def evaluate(
    circuit: Circuit,
    input_labels: np.ndarray,
    tables: np.ndarray,
    *,
    call: int = 0,
) -> np.ndarray:
    """Evaluate ``B`` garbled instances of ``circuit``.

    Args:
        circuit: the compiled circuit.
        input_labels: ``(n_inputs, B, 2)`` uint64, one label per input bit and instance.
        tables: ``(n_and, 2, B, 2)`` uint64 from :func:`garble` (check a peer's with
            :func:`check_tables` first).
        call: the garbler's circuit number (tweak domain).

    Returns:
        ``(n_outputs, B, 2)`` uint64 output labels.

    Raises:
        ConfigError: bad shapes.
    """
    batch = _check_labels(input_labels, circuit.n_inputs, "input labels")
    if tables.shape != (circuit.n_and, 2, batch, 2) or tables.dtype != _U64:
        raise ConfigError(f"tables must be a ({circuit.n_and}, 2, {batch}, 2) uint64 array")
    eng = _Engine(batch, _tweak_high(call), 2, None)
    labels = np.empty((circuit.n_slots, batch, 2), dtype=_U64)
    labels[circuit.input_slots] = input_labels
    if circuit.const_slots.size:
        labels[circuit.const_slots] = 0
    for step in circuit.steps:
        if isinstance(step, AndStep):
            for g0, g1, b0, b1 in _chunks(step, batch):
                _evaluate_chunk(eng, labels, tables, step, g0, g1, b0, b1)
        else:
            _linear(labels, step, None)
    return labels[circuit.output_slots]


def _evaluate_chunk(eng: _Engine, labels: np.ndarray, tables: np.ndarray, step: AndStep, g0: int, g1: int, b0: int, b1: int) -> None:
    """Half-gates evaluation of gates ``g0:g1`` of an AND step, instances ``b0:b1``.

    ``C = H(A) ^ s_a T_G ^ H(B) ^ s_b (T_E ^ A)``: the hashes are rows 0 and 1 of ``h``, the
    candidates ``H(B) ^ T_E ^ A`` and ``H(A) ^ T_G`` rows 2 and 3; two gathers pick
    ``row 0 or 3`` by ``s_a`` and ``row 1 or 2`` by ``s_b``.
    """
    g, bc = g1 - g0, b1 - b0
    n = g * bc
    k0 = step.first + g0
    a = eng.load(labels, step.a[g0:g1], b0, b1, 0)
    eng.load(labels, step.b[g0:g1], b0, b1, 1)
    sa, sb = eng.lsb(0, n, 0), eng.lsb(1, n, 1)
    eng.tweaks(k0, b0, b1, g)
    hx = eng.hash(n).reshape(2, g, bc, 2)
    r2 = eng.h[2 * n : 3 * n].reshape(g, bc, 2)
    np.bitwise_xor(hx[1], tables[k0 : k0 + g, 1, b0:b1], out=r2)
    r2 ^= a
    np.bitwise_xor(hx[0], tables[k0 : k0 + g, 0, b0:b1], out=eng.h[3 * n : 4 * n].reshape(g, bc, 2))
    c = _out_rows(eng, labels, step.out[g0:g1], b0, b1, n).reshape(n, 2)
    eng.gather(0, sa, 3 * n, n, c)  # row 0 (s_a = 0) or row 3
    c ^= eng.gather(n, sb, n, n, eng.y[:n])  # row 1 (s_b = 0) or row 2
    _store(labels, step.out[g0:g1], b0, b1, c)


def decode(output_labels: np.ndarray, decode_bits: np.ndarray) -> np.ndarray:
    """Output bits ``lsb(C) ^ d``: (n_outputs, B) uint8."""
    return permute_bits(output_labels) ^ decode_bits


def decode_labels(labels: np.ndarray, output_zero: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The garbler's check-and-decode of output labels returned by the evaluator.

    Args:
        labels: ``(n, B, 2)`` uint64 labels received.
        output_zero: the matching zero labels.
        delta: the garbling ``Delta``.

    Returns:
        The output bits (n, B) uint8.

    Raises:
        ProtocolViolation: wrong shape or dtype.
        AbortError: a label is neither ``W^0`` nor ``W^1`` (a forged label or a tampered
            table on the evaluator's path).
    """
    if not isinstance(labels, np.ndarray) or labels.dtype != _U64 or labels.shape != output_zero.shape:
        raise ProtocolViolation(f"output labels must be a {output_zero.shape} uint64 array")
    d = _check_delta(delta)
    diff = labels ^ output_zero
    zero = (diff[..., 0] == 0) & (diff[..., 1] == 0)
    one = (diff[..., 0] == d[0]) & (diff[..., 1] == d[1])
    if not np.all(zero | one):
        raise AbortError("an output label returned by the evaluator is invalid")
    return one.astype(np.uint8)


def _output_hashes(labels: np.ndarray, call: int) -> np.ndarray:
    """``H(L, (o B + b, call, GC_OUTPUT_DOMAIN))`` truncated to 64 bits for labels ``(n, B, 2)``:
    (n, B) uint64. The TMMO hash of :class:`~protocols.ot.crhash.CRHash` under tweaks disjoint
    from those of garbling (domain) and of other circuits (``call``)."""
    n, batch = labels.shape[0], labels.shape[1]
    if not 0 <= call < 1 << 32:
        raise ConfigError("the circuit number of a session must be in [0, 2^32)")
    tweaks = np.empty((n * batch, 2), dtype=_U64)
    tweaks[:, 0] = np.arange(n * batch, dtype=_U64)
    tweaks[:, 1] = np.uint64(call | (GC_OUTPUT_DOMAIN << 32))
    flat = np.ascontiguousarray(labels).reshape(n * batch, 2)
    h = CRHash().tccr(flat.view(np.uint8), tweaks.view(np.uint8)).view(_U64)
    return np.ascontiguousarray(h[:, 0]).reshape(n, batch)


def commit_outputs(output_zero: np.ndarray, delta: np.ndarray, *, call: int = 0) -> np.ndarray:
    """The garbler's commitments to both labels of every output wire the evaluator decodes.

    Args:
        output_zero: ``(n, B, 2)`` uint64 zero labels of those output wires.
        delta: the garbling ``Delta``.
        call: the circuit number (as in :func:`garble`).

    Returns:
        ``(n, B, 2)`` uint64: ``[h(W^0), h(W^1)]`` per wire and instance, ``h`` a 64-bit
        truncation of the tweakable CCR hash (``COMMIT_BYTES`` bytes each; they replace the
        decoding bits, so an output bit costs 16 bytes instead of 1 bit).
    """
    d = _check_delta(delta)
    if not isinstance(output_zero, np.ndarray) or output_zero.dtype != _U64 or output_zero.ndim != 3 or output_zero.shape[2] != 2:
        raise ConfigError("output zero labels must be an (n, B, 2) uint64 array")
    out = np.empty(output_zero.shape, dtype=_U64)
    out[..., 0] = _output_hashes(output_zero, call)
    out[..., 1] = _output_hashes(output_zero ^ d, call)
    return out


def open_outputs(labels: np.ndarray, commitments: object, *, call: int = 0) -> np.ndarray:
    """The evaluator's check-and-decode of its output labels against the garbler's commitments.

    The output bit of a label ``C`` is ``b`` where ``h(C)`` equals commitment ``b``. A label that
    matches neither (a tampered table entry, input label or OT label on the evaluator's path; a
    wrong tweak domain) raises. By authenticity of the garbling, a label that matches is the
    correct one unless ``Delta`` leaked.

    Args:
        labels: ``(n, B, 2)`` uint64 output labels from :func:`evaluate`.
        commitments: the garbler's ``(n, B, 2)`` uint64 array from :func:`commit_outputs`.
        call: the circuit number.

    Returns:
        The output bits, (n, B) uint8.

    Raises:
        ProtocolViolation: commitments of the wrong type or shape, or two equal commitments
            (which an honest garbler produces with probability 2^-64).
        AbortError: a label matches neither commitment (probability of a false match for a
            wrong label: 2^-63 per output bit).
    """
    if not isinstance(commitments, np.ndarray) or commitments.dtype != _U64 or commitments.shape != labels.shape:
        got = f"{commitments.dtype} {commitments.shape}" if isinstance(commitments, np.ndarray) else type(commitments).__name__
        raise ProtocolViolation(f"output commitments: expected uint64 {labels.shape}, got {got}")
    c0, c1 = commitments[..., 0], commitments[..., 1]
    if np.any(c0 == c1):
        raise ProtocolViolation("output commitments: the two labels of a wire have equal commitments")
    h = _output_hashes(labels, call)
    one = h == c1
    if not np.all(one | (h == c0)):
        raise AbortError("an output label does not match the garbler's commitments (tampered garbled circuit or labels)")
    return one.astype(np.uint8)


def check_tables(tables: object, circuit: Circuit, batch: int) -> np.ndarray:
    """Check a received garbled table: exactly ``n_and x 2 x B`` blocks of 16 bytes.

    Raises:
        ProtocolViolation: wrong type, dtype or size.
    """
    want = (circuit.n_and, 2, batch, 2)
    if not isinstance(tables, np.ndarray) or tables.dtype != _U64 or tables.shape != want:
        got = f"{tables.dtype} {tables.shape}" if isinstance(tables, np.ndarray) else type(tables).__name__
        raise ProtocolViolation(f"garbled tables of {circuit.name}: expected uint64 {want}, got {got}")
    return tables

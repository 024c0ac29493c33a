"""Two-party secure evaluation of a Boolean circuit by garbling (Yao, with half-gates).

Two parties of a session, a *garbler* G and an *evaluator* E, evaluate ``B`` instances of one
public circuit on their private input values; each output value goes to G, to E or to both.

Protocol (:func:`evaluate`; every step is a pure function of :mod:`protocols.gc.garble` plus
one exchange). The ``B`` instances are cut into chunks of about 2^18 AND gates
(:func:`chunk_instances`); for each chunk, in order:

1. *input labels of E, by OT* — G and E run ``n_E x b`` correlated OTs (IKNP with the KOS
   check, :func:`protocols.ot.ot_pair`) whose global correlation is G's free-XOR ``Delta``:
   G obtains ``q`` and uses it as the zero labels of E's input bits, E obtains
   ``t = q ^ x Delta``, the label of its actual bit ``x``. (No OT when E has no input; G's
   ``Delta`` is then fresh from its PRG.)
2. *garble* — G draws the zero labels of its own input bits (an AES-CTR stream keyed by 16
   fresh bytes of its PRG), garbles the chunk
   (:func:`~protocols.gc.garble.garble`, with its own tweak domain) and sends E one message
   (round ``garbled``): the garbled tables (exactly 32 bytes per AND gate and instance), for
   each output bit E receives the commitments ``h(W^0), h(W^1)`` to both output labels
   (:func:`~protocols.gc.garble.commit_outputs`: 8 bytes each, a truncated tweakable CCR hash
   under its own tweak domain), and the labels of G's actual input bits.
3. *evaluate* — E checks the message's sizes (anything else is a
   :class:`~mpc.errors.ProtocolViolation`), evaluates the chunk, and opens each of its output
   labels against the commitments (:func:`~protocols.gc.garble.open_outputs`): the bit is the
   index of the commitment its label matches; a label matching neither raises
   :class:`~mpc.errors.AbortError`.

Chunks are pipelined: the OT of chunk ``i + 1`` runs while chunk ``i`` is garbled or evaluated
(in a worker thread, so the event loop keeps moving bytes), and memory stays bounded by a chunk.
If G receives outputs, E then sends their output labels (round ``outputs``, 16 bytes per output
bit and instance); G checks that each is one of its two labels (:class:`~mpc.errors.AbortError`
otherwise) and decodes. Aborts are reported to the peer with an error code and nothing else: a
failed OT check at G is sent in the ``garbled`` round (E raises the same error), a failed
output check at E in the ``outputs`` round when G waits for outputs (E then skips evaluating
the remaining chunks but keeps the rounds in step).

Threat model: semi-honest (passive) adversary corrupting one of the two parties, static;
dishonest majority (2 parties). Against a semi-honest party, each learns its own outputs and
nothing else about the other's inputs: E sees one label per wire, uniform permute bits, the
tables, and for its outputs the two commitments (of which it can open one; the other is the
CCR hash of its label XOR ``Delta`` under a fresh tweak, pseudorandom to it); G sees OT
messages (IKNP: pseudorandom) and, for its outputs, E's output labels, which are determined by
the output bits it learns anyway. Public: the circuit, the owners of the inputs, the receivers,
the instance count ``B``.

Integrity checks (beyond the semi-honest model, they bound what a deviation can do):

- *E's outputs are authenticated.* A change to a table entry, a G input label or an OT label
  that E uses shifts the labels it computes downstream by unpredictable offsets; an output
  label that is not the correct one is then neither ``W^0`` nor ``W^1`` (reaching the other
  valid label needs ``Delta``) and matches neither commitment except with probability
  ``2^-63`` per output bit. So E gets its correct output or raises
  :class:`~mpc.errors.AbortError`, whatever was changed in transit (a change E does not use,
  e.g. in a half-gate row its permute bit does not select, or one that cancels out, leaves
  its output correct).
- *G's outputs are authenticated* the same way by its two labels (false accept ``2^-128``).
- *E is protected against a malicious OT receiver role* only as far as the OT is: the KOS check
  (active) stops E from learning bits of ``Delta`` through the OT extension.
- What a *malicious G* can still do (outside the semi-honest model; nothing here prevents it):
  garble another circuit, or commit to labels of its choice, and so make E output anything;
  and *selective failure*: corrupt only a table row that E uses when one of its input bits
  has a given value (G knows the permute bits), so that whether E aborts reveals that bit to
  G. An abort must therefore be treated as a possible leak of one bit per run and never be
  retried with the same inputs; malicious security needs cut-and-choose or authenticated
  garbling, which this module does not provide. A malicious E can refuse to return output
  labels or abort at will (no fairness).

A table or label array of the wrong size or type is refused with
:class:`~mpc.errors.ProtocolViolation` (framing checks sizes before allocating).

Cost for a circuit with ``A`` AND gates, inputs ``n_G`` (G) and ``n_E`` (E) bits, outputs
``m_E`` bits to E and ``m_G`` bits to G, ``B`` instances in ``c`` chunks: rounds: ``c`` OT
extension rounds (plus 2 once per session and pair for the base OTs), ``c`` garbled-circuit
rounds (pipelined, so the latency is about that of one round trip plus the transfer), + 1 if G
receives outputs.
Bytes: E -> G: ``16 n_E B`` (IKNP, plus the KOS padding of at most 319 rows and a 32-byte
check per chunk) + ``16 m_G B``; G -> E: ``32 A B + 16 n_G B + 16 m_E B`` (tables, G's
labels, output commitments), plus framing. (The commitments replace 1-bit decoding bits: 16
bytes instead of 1/8 per output bit E receives; e.g. 0.25 byte per AND gate for a 64-bit
comparison with one output bit.)
Preprocessing: none beyond the session's base OTs.

References: Yao (FOCS 1986); Zahur, Rosulek, Evans, *Two Halves Make a Whole* (EUROCRYPT 2015)
for half-gates; Kolesnikov, Schneider (ICALP 2008) for free-XOR; Guo, Katz, Wang, Yu (S&P 2020)
for the fixed-key hash; Ishai, Kilian, Nissim, Petrank (CRYPTO 2003) and Keller, Orsini, Scholl
(CRYPTO 2015) for the OT extension; Lindell, Pinkas (J. Cryptology 2009) for the semi-honest
proof of Yao's protocol.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.errors import AbortError, ConfigError, ProtocolViolation, error_from_code
from mpc.session import Session
from protocols.gc import builder
from protocols.gc.circuit import Circuit, encode_values, from_bits
from protocols.gc.garble import (
    check_tables,
    commit_outputs,
    decode_labels,
    evaluate as evaluate_garbled,
    garble,
    open_outputs,
    random_delta,
)
from protocols.ot import ot_pair

__all__ = ["Roles", "plan_roles", "chunk_instances", "evaluate", "compare", "maximum", "minimum", "compare_and_maximum"]

_BOTH = "both"
_BLOCKS_PER_STEP = 512
"""Least gate x instance blocks of work per schedule step in a chunk (see chunk_instances)."""


@dataclass(frozen=True)
class Roles:
    """Who does what in one two-party evaluation (party ids), checked by :func:`plan_roles`.

    Attributes:
        me, peer: this party and the other one.
        garbler, evaluator: the two roles.
        owners: party id supplying each input value.
        receivers: for each output value, the ids receiving it.
    """

    me: int
    peer: int
    garbler: int
    evaluator: int
    owners: tuple[int, ...]
    receivers: tuple[tuple[int, ...], ...]

    @property
    def is_garbler(self) -> bool:
        """Whether this party garbles."""
        return self.me == self.garbler


def plan_roles(
    session: Session,
    circuit: Circuit,
    *,
    peer: str | int,
    garbler: str | int | None,
    owners: Sequence[str | int] | None,
    outputs_to: str | int | Sequence[str | int | None] | None,
) -> Roles:
    """Resolve names to ids and check the roles (pure).

    ``garbler`` defaults to the party with the lower id; ``owners`` defaults, for a circuit of
    two input values, to (garbler, evaluator); ``outputs_to`` is ``None`` / ``"both"`` (every
    output to both), one party (every output to it) or one entry per output value.

    Raises:
        ConfigError: unknown parties, ``peer`` is this party, or lists of the wrong length.
    """
    me = session.party_id
    other = session.party_index(peer)
    if other == me:
        raise ConfigError("a two-party evaluation needs a peer other than this party")
    pair = (me, other)
    g = min(pair) if garbler is None else session.party_index(garbler)
    if g not in pair:
        raise ConfigError("the garbler must be this party or its peer")
    e = other if g == me else me
    if owners is None:
        if len(circuit.input_widths) != 2:
            raise ConfigError(f"{circuit.name} has {len(circuit.input_widths)} input values: say who owns each (owners=...)")
        own = (g, e)
    else:
        own = tuple(session.party_index(o) for o in owners)
        if len(own) != len(circuit.input_widths) or not set(own) <= set(pair):
            raise ConfigError(f"owners must name this party or its peer for each of the {len(circuit.input_widths)} input values")
    n_out = len(circuit.output_widths)
    if outputs_to is None or isinstance(outputs_to, (str, int)):
        per_value: list[str | int | None] = [outputs_to] * n_out  # type: ignore[list-item]
    else:
        per_value = list(outputs_to)
        if len(per_value) != n_out:
            raise ConfigError(f"outputs_to needs one entry per output value ({n_out})")
    receivers = []
    for r in per_value:
        if r is None or r == _BOTH:
            receivers.append(tuple(sorted(pair)))
        else:
            rid = session.party_index(r)
            if rid not in pair:
                raise ConfigError("outputs go to this party or its peer")
            receivers.append((rid,))
    return Roles(me, other, g, e, own, tuple(receivers))


def _input_bits(circuit: Circuit, roles: Roles, my_inputs: Sequence[Any], instances: int | None) -> tuple[np.ndarray, int]:
    """This party's input bits ``(my_bits, B)`` and the instance count."""
    mine = [i for i, o in enumerate(roles.owners) if o == roles.me]
    if len(my_inputs) != len(mine):
        raise ConfigError(f"this party owns {len(mine)} input value(s) of {circuit.name}, got {len(my_inputs)}")
    if not mine:
        if instances is None or instances < 1:
            raise ConfigError("a party without inputs must give the instance count (instances=...)")
        return np.zeros((0, instances), dtype=np.uint8), instances
    bits = encode_values(list(my_inputs), [circuit.input_widths[i] for i in mine])
    if instances is not None and bits.shape[1] != instances:
        raise ConfigError(f"inputs have {bits.shape[1]} instances, not {instances}")
    return bits, bits.shape[1]


def _bit_rows(circuit: Circuit, owners: Sequence[int], who: int) -> np.ndarray:
    """Indices among all input bits of the input values owned by ``who``."""
    offs = circuit.input_offsets()
    rows = [np.arange(o, o + w) for o, w, p in zip(offs, circuit.input_widths, owners) if p == who]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)


def _output_rows(circuit: Circuit, receivers: Sequence[tuple[int, ...]], who: int) -> np.ndarray:
    offs = circuit.output_offsets()
    rows = [np.arange(o, o + w) for o, w, r in zip(offs, circuit.output_widths, receivers) if who in r]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)


def _reserve_calls(session: Session, pair: tuple[int, int], count: int) -> int:
    """Reserve ``count`` circuit numbers of the pair in this session (tweak domains, so that no
    hash tweak repeats under the pair's Delta); returns the first."""
    key = f"protocols.gc/calls/{min(pair)}-{max(pair)}"
    n = int(session.resources.get(key, 0))
    if n + count >= 1 << 32:
        raise ConfigError("too many garbled circuits in one session for one pair")
    session.resources[key] = n + count
    return n


def _split_outputs(circuit: Circuit, receivers: Sequence[tuple[int, ...]], me: int, bits: np.ndarray, signed: bool) -> list[np.ndarray | None]:
    """Per output value: its decoded array if ``me`` receives it, else ``None``."""
    out: list[np.ndarray | None] = []
    pos = 0
    for w, r in zip(circuit.output_widths, receivers):
        if me in r:
            out.append(from_bits(bits[pos : pos + w], signed=signed))
            pos += w
        else:
            out.append(None)
    return out


def _check_array(value: Any, shape: tuple[int, ...], dtype: type, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
        got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise ProtocolViolation(f"{what}: expected {np.dtype(dtype).name} {shape}, got {got}")
    return value


async def evaluate(
    session: Session,
    circuit: Circuit,
    my_inputs: Sequence[Any],
    *,
    peer: str | int,
    garbler: str | int | None = None,
    owners: Sequence[str | int] | None = None,
    outputs_to: str | int | Sequence[str | int | None] | None = None,
    instances: int | None = None,
    signed: bool = False,
) -> list[np.ndarray | None]:
    """Evaluate ``circuit`` on ``B`` instances with the peer; see the module docstring.

    Both parties call it with the same circuit, roles and receivers, each with its own inputs.

    Args:
        session: this party's session (any number of parties; only the two take part).
        circuit: the public circuit.
        my_inputs: this party's input values, in circuit order (see
            :func:`protocols.gc.circuit.to_bits`): integer arrays of shape ``(B,)`` (or scalars),
            or bool arrays ``(B, width)``.
        peer: the other party (name or id).
        garbler: who garbles (default: the lower party id).
        owners: who supplies each input value (default for two input values: garbler,
            evaluator).
        outputs_to: who receives the outputs: ``None``/``"both"``, one party, or one entry per
            output value.
        instances: ``B``, needed only by a party that supplies no input value.
        signed: decode outputs as two's complement (int64).

    Returns:
        One entry per output value: the array (``(B,)`` integers, or ``(B, width)`` bools
        beyond 64 bits) if this party receives it, else ``None``.

    Raises:
        ConfigError: invalid roles or inputs.
        ProtocolViolation: a message of the wrong size or type (e.g. a garbled table).
        AbortError: at the garbler, an invalid output label from the evaluator.
        PeerUnavailable: the peer stayed silent past the channel's timeout.
    """
    roles = plan_roles(session, circuit, peer=peer, garbler=garbler, owners=owners, outputs_to=outputs_to)
    my_bits, batch = _input_bits(circuit, roles, my_inputs, instances)
    pair = (roles.garbler, roles.evaluator)
    sub = session.child(f"gc{min(pair)}-{max(pair)}")
    if roles.is_garbler:
        return await _garble_side(session, sub, circuit, roles, my_bits, batch, signed)
    return await _evaluate_side(session, sub, circuit, roles, my_bits, batch, signed)


def chunk_instances(circuit: Circuit, batch: int, target_ands: int = 1 << 18) -> list[tuple[int, int]]:
    """Split ``B`` instances into ``(b0, b1)`` chunks of about ``target_ands`` AND gates each.

    Each chunk is garbled, sent (one message, in its own round) and evaluated in turn, so
    garbling, transfer and evaluation overlap and memory stays bounded by a chunk. A chunk also
    has at least ``512 * steps / n_and`` instances, so that every step of the schedule works on
    enough blocks for its fixed cost (a few microseconds of numpy calls) to stay small: a
    circuit with many linear levels per AND gate (e.g. mult64) gets fewer, larger chunks.
    """
    n_and = max(circuit.n_and, 1)
    per = max(1, target_ands // n_and, _BLOCKS_PER_STEP * len(circuit.steps) // n_and)
    return [(b, min(b + per, batch)) for b in range(0, batch, per)]


class _Prefetch:
    """Pipelined OT calls, one per chunk: the call of chunk ``i + 1`` is started as soon as the
    result of chunk ``i`` is taken, so it runs while chunk ``i`` is garbled or evaluated."""

    def __init__(self, start: Callable[[int], Awaitable[np.ndarray]], count: int) -> None:
        self._start = start
        self._count = count
        self._next = 0
        self._task: asyncio.Future[np.ndarray] | None = None
        self._launch()

    def _launch(self) -> None:
        self._task = asyncio.ensure_future(self._start(self._next)) if self._next < self._count else None
        self._next += 1

    async def take(self) -> np.ndarray:
        """The result of the current chunk's OT (and start the next one)."""
        if self._task is None:
            raise ConfigError("no OT call pending")
        result = await self._task
        self._launch()
        return result

    def close(self) -> None:
        """Cancel a call left running by an error (and silence its outcome)."""
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()


def _garble_chunk(
    circuit: Circuit,
    q: np.ndarray | None,
    seed: bytes,
    bits_g: np.ndarray,
    delta: np.ndarray,
    call: int,
    rows: _Rows,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Garble one chunk (run in a worker thread): the message to E and G's output zero labels.

    Args:
        q: the OT rows of E's input bits ((n_E * b, 16) uint8), or ``None``.
        seed: 16 fresh secret bytes from G's PRG; the zero labels of G's input bits are its
            AES-128-CTR stream (as :class:`mpc.prg.PRG` would give them, written in place).
        bits_g: (n_G, b) G's input bits.
    """
    bc = bits_g.shape[1]
    nbytes = 16 * rows.g_in.size * bc
    raw = np.empty(nbytes + 16, dtype=np.uint8)  # update_into wants a block of slack
    if nbytes:
        stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
        stream.update_into(memoryview(np.zeros(nbytes, dtype=np.uint8)), memoryview(raw))
    zero_g = raw[:nbytes].view(np.uint64).reshape(rows.g_in.size, bc, 2)
    zero = np.empty((circuit.n_inputs, bc, 2), dtype=np.uint64)
    if q is not None:
        zero[rows.e_in] = np.ascontiguousarray(q).view(np.uint64).reshape(rows.e_in.size, bc, 2)
    zero[rows.g_in] = zero_g
    garbled = garble(circuit, zero, delta, call=call)
    # G's active labels W^0 ^ x Delta, in place (zero_g is not used afterwards); x Delta is a
    # gather from the table [0, Delta] of 16-byte elements (no broadcast over the 2-word axis).
    active = zero_g
    dtab = np.zeros((2, 2), dtype=np.uint64)
    dtab[1] = delta
    active ^= dtab.view(np.complex128)[:, 0].take(bits_g).view(np.uint64).reshape(active.shape)
    message = {
        "tables": garbled.tables,
        "commit": commit_outputs(garbled.output_zero[rows.to_e], delta, call=call),
        "labels": active,  # last: the frame's final bytes (see the tamper tests)
    }
    return message, garbled.output_zero[rows.to_g]


def _evaluate_chunk(
    circuit: Circuit, t: np.ndarray | None, message: Any, bc: int, call: int, rows: _Rows
) -> tuple[np.ndarray, np.ndarray]:
    """Check and evaluate one chunk (pure; run in a worker thread).

    Returns:
        ``(labels_to_g, bits_to_e)``: the output labels of G's outputs and E's decoded bits.

    Raises:
        ProtocolViolation: a malformed message.
        AbortError: an output label of E's outputs matches neither commitment.
    """
    if not isinstance(message, dict) or set(message) != {"labels", "tables", "commit"}:
        raise ProtocolViolation("malformed garbled-circuit message")
    labels = np.empty((circuit.n_inputs, bc, 2), dtype=np.uint64)
    labels[rows.g_in] = _check_array(message["labels"], (rows.g_in.size, bc, 2), np.uint64, "garbler's input labels")
    tables = check_tables(message["tables"], circuit, bc)
    _check_array(message["commit"], (rows.to_e.size, bc, 2), np.uint64, "output commitments")
    if t is not None:
        labels[rows.e_in] = np.ascontiguousarray(t).view(np.uint64).reshape(rows.e_in.size, bc, 2)
    out = evaluate_garbled(circuit, labels, tables, call=call)
    bits = open_outputs(out[rows.to_e], message["commit"], call=call)
    return out[rows.to_g], bits


@dataclass(frozen=True)
class _Rows:
    """Row indices of one evaluation: input bits of G and E, output bits to E and to G."""

    g_in: np.ndarray
    e_in: np.ndarray
    to_e: np.ndarray
    to_g: np.ndarray

    @classmethod
    def of(cls, circuit: Circuit, roles: Roles) -> _Rows:
        return cls(
            _bit_rows(circuit, roles.owners, roles.garbler),
            _bit_rows(circuit, roles.owners, roles.evaluator),
            _output_rows(circuit, roles.receivers, roles.evaluator),
            _output_rows(circuit, roles.receivers, roles.garbler),
        )


async def _garble_side(
    session: Session, sub: Session, circuit: Circuit, roles: Roles, my_bits: np.ndarray, batch: int, signed: bool
) -> list[np.ndarray | None]:
    rows = _Rows.of(circuit, roles)
    chunks = chunk_instances(circuit, batch)
    first_call = _reserve_calls(session, (roles.garbler, roles.evaluator), len(chunks))
    prefetch = None
    if rows.e_in.size:
        ot = await ot_pair(session, sender=roles.garbler, receiver=roles.evaluator)
        delta = np.asarray(ot.delta, dtype=np.uint8).view(np.uint64).copy()
        if not int(delta[0]) & 1:
            raise ConfigError("the session's OT Delta for this pair has permute bit 0; it cannot serve as a free-XOR Delta")
        prefetch = _Prefetch(lambda k: ot.send_correlated(int(rows.e_in.size) * (chunks[k][1] - chunks[k][0])), len(chunks))
    else:
        delta = random_delta(session.prg.bytes(16))
    output_zero = np.empty((rows.to_g.size, batch, 2), dtype=np.uint64)
    try:
        for i, (b0, b1) in enumerate(chunks):
            rnd = sub.round("garbled")
            try:
                q = await prefetch.take() if prefetch is not None else None
            except (AbortError, ProtocolViolation) as exc:
                await rnd.send(roles.evaluator, {"error": exc.code})  # E learns of it at once
                raise
            seed = session.prg.bytes(16)  # drawn on the loop, in order; expanded in the thread
            # In a worker thread (numpy and AES release the GIL): the event loop keeps moving bytes.
            message, out0 = await asyncio.to_thread(
                _garble_chunk, circuit, q, seed, my_bits[:, b0:b1], delta, first_call + i, rows
            )
            output_zero[:, b0:b1] = out0
            await rnd.send(roles.evaluator, message)
    finally:
        if prefetch is not None:
            prefetch.close()
    if not rows.to_g.size:
        return [None] * len(circuit.output_widths)
    got = await sub.round("outputs").recv(roles.evaluator)
    if isinstance(got, dict) and set(got) == {"error"} and isinstance(got["error"], str):
        raise error_from_code(got["error"], "garbled circuit: the evaluator aborted")
    bits = decode_labels(got, output_zero, delta)
    return _split_outputs(circuit, roles.receivers, roles.me, bits, signed)


async def _evaluate_side(
    session: Session, sub: Session, circuit: Circuit, roles: Roles, my_bits: np.ndarray, batch: int, signed: bool
) -> list[np.ndarray | None]:
    rows = _Rows.of(circuit, roles)
    chunks = chunk_instances(circuit, batch)
    first_call = _reserve_calls(session, (roles.garbler, roles.evaluator), len(chunks))
    prefetch = None
    if rows.e_in.size:
        ot = await ot_pair(session, sender=roles.garbler, receiver=roles.evaluator)
        prefetch = _Prefetch(
            lambda k: ot.recv_correlated(np.ascontiguousarray(my_bits[:, chunks[k][0] : chunks[k][1]]).reshape(-1)),
            len(chunks),
        )
    out = np.empty((rows.to_g.size, batch, 2), dtype=np.uint64)
    decoded = np.empty((rows.to_e.size, batch), dtype=np.uint8)
    failure: AbortError | None = None
    try:
        for i, (b0, b1) in enumerate(chunks):
            rnd = sub.round("garbled")
            t = await prefetch.take() if prefetch is not None else None
            message = await rnd.recv(roles.garbler)
            if isinstance(message, dict) and set(message) == {"error"} and isinstance(message["error"], str):
                raise error_from_code(message["error"], "garbled circuit: the garbler aborted")
            if failure is not None:
                continue  # after a failed check: keep the rounds in step, evaluate nothing more
            try:
                out[:, b0:b1], decoded[:, b0:b1] = await asyncio.to_thread(
                    _evaluate_chunk, circuit, t, message, b1 - b0, first_call + i, rows
                )
            except AbortError as exc:
                failure = exc
    finally:
        if prefetch is not None:
            prefetch.close()
    if rows.to_g.size:
        # After a failed check G is told (a code only) instead of receiving labels.
        await sub.round("outputs").send(roles.garbler, {"error": failure.code} if failure is not None else out)
    if failure is not None:
        raise failure
    if not rows.to_e.size:
        return [None] * len(circuit.output_widths)
    return _split_outputs(circuit, roles.receivers, roles.me, decoded, signed)


# -- the standard two-party jobs ---------------------------------------------------------------


def _one_value(x: Any, width: int, signed: bool) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim > 1:
        raise ConfigError("compare/maximum take a scalar or a 1-d array of integers")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"compare/maximum take integers, got {arr.dtype}")
    if not 1 <= width <= 64:
        raise ConfigError("width must be in [1, 64]")
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    flat = np.atleast_1d(arr)
    if flat.size and (int(flat.min()) < lo or int(flat.max()) > hi):
        raise ConfigError(f"values must be in [{lo}, {hi}] for width={width}, signed={signed}")
    return flat.astype(np.int64) if signed else flat.astype(np.uint64)


async def compare(
    session: Session,
    x: Any,
    *,
    peer: str | int,
    width: int = 64,
    signed: bool = False,
    outputs_to: str | int | None = None,
) -> np.ndarray | None:
    """Millionaires: compare this party's values with the peer's, element by element.

    Both parties call it with their own ``x`` (the same number of elements). A receiver learns,
    for each element, the sign of ``x_mine - x_peer`` and nothing else: ``+1`` where its value is
    larger, ``-1`` where the peer's is, ``0`` where they are equal. (So both receivers learn the
    3-way order, including ties.) Circuit: :func:`~protocols.gc.builder.comparator`, 2 ``width``
    AND gates per element, garbled by the party with the lower id.

    Args:
        session: this party's session.
        x: an integer or a 1-d integer array; values of ``width`` bits (unsigned, or two's
            complement if ``signed``).
        peer: the other party (name or id).
        width: bits per value (1..64).
        signed: compare as signed integers.
        outputs_to: ``None`` (both) or the one party that learns the result.

    Returns:
        int8 array of signs (shape of ``x`` as 1-d) at a receiver, ``None`` elsewhere.
    """
    value = _one_value(x, width, signed)
    circuit = builder.comparator(width, signed=signed)
    res = await evaluate(session, circuit, [value], peer=peer, outputs_to=outputs_to)
    if res[0] is None:
        return None
    gt, lt = res[0].astype(np.int8), res[1].astype(np.int8)  # type: ignore[union-attr]
    sign = gt - lt  # sign of x_garbler - x_evaluator
    garbler = min(session.party_id, session.party_index(peer))
    return sign if session.party_id == garbler else -sign


async def _extremum(session: Session, x: Any, *, peer: str | int, width: int, signed: bool, outputs_to: str | int | None, largest: bool) -> np.ndarray | None:
    value = _one_value(x, width, signed)
    circuit = (builder.maximum if largest else builder.minimum)(width, signed=signed)
    res = await evaluate(session, circuit, [value], peer=peer, outputs_to=outputs_to, signed=signed)
    return res[0]


async def maximum(
    session: Session,
    x: Any,
    *,
    peer: str | int,
    width: int = 64,
    signed: bool = False,
    outputs_to: str | int | None = None,
) -> np.ndarray | None:
    """Element-wise maximum of this party's and the peer's values; nothing else is revealed.

    (A receiver whose own value is smaller learns the peer's value, and one whose value is
    larger learns that the peer's is not larger: inherent in the output.) 2 ``width`` AND gates
    per element. Arguments as in :func:`compare`.

    Returns:
        uint64 (int64 if ``signed``) array at a receiver, ``None`` elsewhere.
    """
    return await _extremum(session, x, peer=peer, width=width, signed=signed, outputs_to=outputs_to, largest=True)


async def minimum(
    session: Session,
    x: Any,
    *,
    peer: str | int,
    width: int = 64,
    signed: bool = False,
    outputs_to: str | int | None = None,
) -> np.ndarray | None:
    """Element-wise minimum; see :func:`maximum`."""
    return await _extremum(session, x, peer=peer, width=width, signed=signed, outputs_to=outputs_to, largest=False)


async def compare_and_maximum(
    session: Session,
    x: Any,
    *,
    peer: str | int,
    width: int = 64,
    signed: bool = False,
    outputs_to: str | int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`compare` and :func:`maximum` at once, from one circuit (3 ``width`` ANDs per element).

    "Which of us has the larger value, and what is the maximum": a receiver learns, per element,
    the sign of ``x_mine - x_peer`` and ``max(x_mine, x_peer)``, nothing else.

    Returns:
        ``(sign, maximum)`` at a receiver (int8; uint64, or int64 if ``signed``), ``None``
        elsewhere.
    """
    value = _one_value(x, width, signed)
    circuit = builder.comparator_max(width, signed=signed)
    res = await evaluate(session, circuit, [value], peer=peer, outputs_to=outputs_to)
    if res[0] is None:
        return None
    gt, lt, top = (np.asarray(r) for r in res)
    sign = gt.astype(np.int8) - lt.astype(np.int8)
    garbler = min(session.party_id, session.party_index(peer))
    if signed and width < 64:
        s = np.uint64(1 << (width - 1))
        top = ((top ^ s) - s).view(np.int64)
    elif signed:
        top = top.view(np.int64)
    return (sign if session.party_id == garbler else -sign), top

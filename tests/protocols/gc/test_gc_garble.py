"""Half-gates garbling without a network: garbled evaluation equals the plaintext oracle."""

from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import AbortError, ConfigError, ProtocolViolation
from mpc.prg import PRG
from protocols.gc import builder, load_published
from protocols.gc.circuit import Circuit
from protocols.ot.crhash import CRHash
from protocols.gc.garble import (
    CHUNK_BLOCKS,
    GC_DOMAIN,
    _Engine,
    check_tables,
    commit_outputs,
    decode,
    decode_labels,
    evaluate,
    garble,
    open_outputs,
    permute_bits,
    random_delta,
)


def garbled_run(prg: PRG, circuit: Circuit, bits: np.ndarray, *, call: int = 0, eval_call: int | None = None):  # type: ignore[no-untyped-def]
    batch = bits.shape[1]
    delta = random_delta(prg.bytes(16))
    zero = prg.uint64((circuit.n_inputs, batch, 2))
    g = garble(circuit, zero, delta, call=call)
    active = zero ^ (bits.astype(np.uint64)[:, :, None] * delta)
    out = evaluate(circuit, active, g.tables, call=call if eval_call is None else eval_call)
    return g, out, delta


def random_bits(prg: PRG, circuit: Circuit, batch: int) -> np.ndarray:
    return prg.bits((circuit.n_inputs, batch))


CIRCUITS = [
    builder.adder(8),
    builder.subtractor(64),
    builder.less_than(1),
    builder.less_than(33, signed=True),
    builder.equal(64),
    builder.mux(16),
    builder.maximum(20, signed=True),
    builder.argmax(6, 8),
    builder.relu(12),
    builder.comparator(64),
]


@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: c.name)
@pytest.mark.parametrize("batch", [1, 3, 257])
def test_builder_circuits_garbled_equal_plaintext(prg: PRG, circuit: Circuit, batch: int) -> None:
    bits = random_bits(prg, circuit, batch)
    g, out, delta = garbled_run(prg, circuit, bits)
    expected = circuit.evaluate_bits(bits)
    np.testing.assert_array_equal(decode(out, g.decode), expected)
    np.testing.assert_array_equal(decode_labels(out, g.output_zero, delta), expected)
    np.testing.assert_array_equal(open_outputs(out, commit_outputs(g.output_zero, delta)), expected)
    assert g.tables.nbytes == 32 * circuit.n_and * batch  # two 16-byte ciphertexts per AND, nothing else


@pytest.mark.parametrize("name", ["adder64", "zero_equal", "FP-add", "mult64"])
def test_published_circuits_garbled_equal_plaintext(prg: PRG, name: str) -> None:
    circuit = load_published(name)
    bits = random_bits(prg, circuit, 5)
    g, out, _ = garbled_run(prg, circuit, bits)
    np.testing.assert_array_equal(decode(out, g.decode), circuit.evaluate_bits(bits))


def test_large_batches_take_the_chunked_path(prg: PRG) -> None:
    circuit = builder.less_than(4)
    batch = CHUNK_BLOCKS + 1000  # instances split across chunks
    bits = random_bits(prg, circuit, batch)
    g, out, _ = garbled_run(prg, circuit, bits)
    np.testing.assert_array_equal(decode(out, g.decode), circuit.evaluate_bits(bits))
    wide = builder.argmax(64, 8)  # many gates per step, few instances: gate chunks
    bits = random_bits(prg, wide, 700)
    g, out, _ = garbled_run(prg, wide, bits)
    np.testing.assert_array_equal(decode(out, g.decode), wide.evaluate_bits(bits))


def test_labels_reveal_only_uniform_permute_bits(prg: PRG) -> None:
    """The evaluator's output permute bits do not follow the values (the decoding bits do)."""
    circuit = builder.less_than(8)
    bits = np.zeros((circuit.n_inputs, 4000), dtype=np.uint8)  # the output is 0 everywhere
    g, out, _ = garbled_run(prg, circuit, bits)
    lsb = permute_bits(out)
    assert 0.45 < lsb.mean() < 0.55
    assert not decode(out, g.decode).any()


def test_wrong_size_tables_are_refused(prg: PRG) -> None:
    circuit = builder.less_than(8)
    bits = random_bits(prg, circuit, 10)
    g, _, _ = garbled_run(prg, circuit, bits)
    assert check_tables(g.tables, circuit, 10) is g.tables
    for bad in (g.tables[:-1], g.tables[:, :, :9], g.tables.view(np.int64), g.tables.reshape(-1), g.tables.tobytes(), None):
        with pytest.raises(ProtocolViolation):
            check_tables(bad, circuit, 10)
    with pytest.raises(ProtocolViolation):
        check_tables(g.tables, circuit, 11)


def test_tampered_table_gives_refused_output_labels(prg: PRG) -> None:
    circuit = builder.less_than(16)
    bits = random_bits(prg, circuit, 50)
    delta = random_delta(prg.bytes(16))
    zero = prg.uint64((circuit.n_inputs, 50, 2))
    g = garble(circuit, zero, delta)
    active = zero ^ (bits.astype(np.uint64)[:, :, None] * delta)
    tables = g.tables.copy()
    tables[:, :, 9] ^= np.uint64(1 << 20)  # every ciphertext of instance 9
    out = evaluate(circuit, active, tables)
    clean = evaluate(circuit, active, g.tables)
    np.testing.assert_array_equal(np.delete(out, 9, axis=1), np.delete(clean, 9, axis=1))
    assert not np.array_equal(out[:, 9], clean[:, 9])
    with pytest.raises(AbortError):
        decode_labels(out, g.output_zero, delta)
    with pytest.raises(ProtocolViolation):
        decode_labels(out[:, :3], g.output_zero, delta)
    commitments = commit_outputs(g.output_zero, delta)
    with pytest.raises(AbortError):
        open_outputs(out, commitments)  # the evaluator's own check catches it too


def test_output_commitments(prg: PRG) -> None:
    """Both labels of each output wire are committed (distinct, 8 bytes each); a label decodes
    to the bit whose commitment it matches; any other label, or another circuit number, aborts."""
    circuit = builder.comparator(16)
    bits = random_bits(prg, circuit, 40)
    g, out, delta = garbled_run(prg, circuit, bits, call=3)
    commitments = commit_outputs(g.output_zero, delta, call=3)
    assert commitments.shape == (circuit.n_outputs, 40, 2) and commitments.dtype == np.uint64
    assert not np.any(commitments[..., 0] == commitments[..., 1])
    np.testing.assert_array_equal(open_outputs(out, commitments, call=3), circuit.evaluate_bits(bits))
    np.testing.assert_array_equal(open_outputs(out ^ delta, commitments, call=3), 1 - circuit.evaluate_bits(bits))
    with pytest.raises(AbortError):
        open_outputs(out, commitments, call=4)
    forged = out.copy()
    forged[1, 7, 0] ^= np.uint64(2)
    with pytest.raises(AbortError):
        open_outputs(forged, commitments, call=3)
    for bad in (commitments[:, :5], commitments.astype(np.int64), commitments[..., :1], commitments.tobytes()):
        with pytest.raises(ProtocolViolation):
            open_outputs(out, bad, call=3)
    same = commitments.copy()
    same[0, 0, 1] = same[0, 0, 0]
    with pytest.raises(ProtocolViolation):
        open_outputs(out, same, call=3)
    with pytest.raises(ConfigError):
        commit_outputs(g.output_zero[0], delta)


def test_tweak_domain_must_match(prg: PRG) -> None:
    circuit = builder.less_than(16)
    bits = random_bits(prg, circuit, 20)
    g, out, delta = garbled_run(prg, circuit, bits, call=5, eval_call=6)
    with pytest.raises(AbortError):
        decode_labels(out, g.output_zero, delta)


def test_parameter_checks(prg: PRG) -> None:
    circuit = builder.less_than(4)
    zero = prg.uint64((circuit.n_inputs, 2, 2))
    even = np.array([2, 7], dtype=np.uint64)
    with pytest.raises(ConfigError, match="permute bit"):
        garble(circuit, zero, even)
    delta = random_delta(prg.bytes(16))
    with pytest.raises(ConfigError):
        garble(circuit, zero[:-1], delta)
    with pytest.raises(ConfigError):
        garble(circuit, zero.astype(np.int64), delta)
    with pytest.raises(ConfigError):
        garble(circuit, zero, delta, call=1 << 32)
    with pytest.raises(ConfigError):
        evaluate(circuit, zero, np.zeros((1, 2, 2, 2), dtype=np.uint64))
    with pytest.raises(ConfigError):
        random_delta(b"short")
    assert int(random_delta(bytes(16))[0]) & 1


def test_engine_hash_is_the_tccr_of_crhash(prg: PRG) -> None:
    """The engine's in-place TMMO equals protocols.ot.crhash.CRHash.tccr with the GC tweaks."""
    batch, first, call = 8, 3, 5
    high = np.uint64(call | GC_DOMAIN << 32)
    eng = _Engine(batch, high, 2, None)
    inputs = prg.uint64((2 * batch, 2))
    eng.x[: 2 * batch] = inputs
    eng.tweaks(first, 0, batch, 1)
    got = eng.hash(batch).reshape(2 * batch, 2).copy()
    tweaks = np.empty((2, batch, 2), dtype=np.uint64)
    tweaks[:, :, 0] = 2 * (first * batch + np.arange(batch, dtype=np.uint64))
    tweaks[1, :, 0] += np.uint64(1)
    tweaks[:, :, 1] = high
    expected = CRHash().tccr(inputs.view(np.uint8), tweaks.reshape(-1, 2).view(np.uint8)).view(np.uint64)
    np.testing.assert_array_equal(got, expected)

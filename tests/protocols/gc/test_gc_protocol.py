"""Two-party garbled-circuit evaluation over the session: memory mesh, faults, tampering, processes."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from mpc.contracts import Payload
from mpc.errors import AbortError, ConfigError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import PartyOutcome, run_parties, run_parties_async
from protocols import gc
from protocols.gc import builder
from protocols.ot.extension import padded_rows

P = ["p0", "p1"]


def seeds_for(prg: PRG, names: list[str]) -> dict[str, bytes]:
    return {n: prg.bytes(16) for n in names}


async def run(prg: PRG, program: Callable[[Session, Any], Any], inputs: list[Any], names: list[str] | None = None, timeout: float = 5.0) -> list[PartyOutcome]:
    names = names or P[: len(inputs)]
    return await run_parties_async(program, inputs, names=names, recv_timeout=timeout, seeds=seeds_for(prg, names))


def results(outcomes: list[PartyOutcome]) -> list[Any]:
    for o in outcomes:
        if o.error is not None:
            raise o.error
    return [o.result for o in outcomes]


def signed_values(prg: PRG, n: int, width: int) -> np.ndarray:
    s = np.uint64(1 << (width - 1))
    return (((prg.uint64(n) & np.uint64((1 << width) - 1)) ^ s) - s).view(np.int64)


# -- correctness on the memory mesh ------------------------------------------------------------


@pytest.mark.parametrize("garbler", P)
@pytest.mark.parametrize("to", [None, "p0", "p1"])
async def test_batched_signed_less_than(prg: PRG, garbler: str, to: str | None) -> None:
    x, y = signed_values(prg, 1000, 32), signed_values(prg, 1000, 32)
    y[:100] = x[:100]
    circuit = builder.less_than(32, signed=True)

    async def program(s: Session, v: np.ndarray) -> Any:
        owners = ["p0", "p1"]  # x is p0's, y is p1's, whoever garbles
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, garbler=garbler, owners=owners, outputs_to=to)

    out = results(await run(prg, program, [x, y]))
    for i, name in enumerate(P):
        if to in (None, name):
            np.testing.assert_array_equal(out[i][0], (x < y).astype(np.uint64))
        else:
            assert out[i] == [None]


async def test_batches_of_several_chunks(prg: PRG) -> None:
    circuit = builder.less_than(64)
    batch = 10_000  # 640,000 ANDs: three pipelined chunks
    assert len(gc.protocol.chunk_instances(circuit, batch)) == 3
    x, y = prg.uint64(batch), prg.uint64(batch)

    async def program(s: Session, v: np.ndarray) -> Any:
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id)

    out = results(await run(prg, program, [x, y], timeout=20))
    for o in out:
        np.testing.assert_array_equal(o[0], (x < y).astype(np.uint64))


def test_chunks_have_enough_work_per_step() -> None:
    lt = builder.less_than(64)
    assert gc.protocol.chunk_instances(lt, 10_000) == [(0, 4096), (4096, 8192), (8192, 10_000)]
    mult = gc.load_published("mult64")  # ~4000 schedule steps for ~4000 ANDs: >= 512 instances
    assert gc.protocol.chunk_instances(mult, 256) == [(0, 256)]
    chunks = gc.protocol.chunk_instances(mult, 2000)
    assert chunks[0] == (0, 511) and chunks[-1][1] == 2000  # 512 * 4031 // 4033
    assert gc.protocol.chunk_instances(lt, 1) == [(0, 1)]


async def test_circuits_with_mixed_owners_and_receivers(prg: PRG) -> None:
    n = 300
    vals = [prg.uint64(n) & np.uint64(0xFFFF) for _ in range(4)]
    vals[2][:50] = vals[0][:50]  # ties
    arg = builder.argmax(4, 16)
    relu = builder.relu(16)
    adder = gc.load_published("adder64")
    a, b = prg.uint64(n), prg.uint64(n)

    async def program(s: Session, mine: dict[str, Any]) -> Any:
        me = s.party_id
        idx, best = await gc.evaluate(
            s, arg, mine["arg"], peer=1 - me, owners=[1, 0, 0, 1], outputs_to=[0, 1]
        )
        (r,) = await gc.evaluate(
            s, relu, mine["relu"], peer=1 - me, garbler=0, owners=[1], instances=n, signed=True
        )
        (total,) = await gc.evaluate(s, adder, mine["add"], peer=1 - me, garbler=1, owners=[1, 0], outputs_to=0)
        return idx, best, r, total

    inputs = [
        {"arg": [vals[1], vals[2]], "relu": [], "add": [b]},
        {"arg": [vals[0], vals[3]], "relu": [vals[0]], "add": [a]},
    ]
    (i0, b0, r0, t0), (i1, b1, r1, t1) = results(await run(prg, program, inputs))
    table = np.stack(vals, axis=1)
    np.testing.assert_array_equal(i0, table.argmax(axis=1).astype(np.uint64))
    assert b0 is None and i1 is None
    np.testing.assert_array_equal(b1, table.max(axis=1))
    s16 = ((vals[0] ^ np.uint64(0x8000)) - np.uint64(0x8000)).view(np.int64)
    for r in (r0, r1):
        np.testing.assert_array_equal(r, np.maximum(s16, 0))
    np.testing.assert_array_equal(t0, a + b)
    assert t1 is None


@pytest.mark.parametrize("n_parties", [2, 3])
async def test_compare_and_maximum_repeated_both_directions(prg: PRG, n_parties: int) -> None:
    """Two parties of the session compare (a third, if any, sits out); calls repeat under the
    session's cached OT Delta, garbled by each side in turn."""
    names = ["a", "b", "c"][:n_parties]
    xa, xb = prg.uint64(200) >> np.uint64(40), prg.uint64(200) >> np.uint64(40)
    xb[:30] = xa[:30]
    sa, sb = signed_values(prg, 200, 20), signed_values(prg, 200, 20)

    async def program(s: Session, inp: dict[str, Any]) -> Any:
        if s.party_id == 2:
            return None
        peer = "b" if s.party_id == 0 else "a"
        first = await gc.compare(s, inp["u"], peer=peer, width=24)
        again = await gc.compare(s, inp["u"], peer=peer, width=24, outputs_to="b")
        top = await gc.maximum(s, inp["s"], peer=peer, width=20, signed=True)
        low = await gc.minimum(s, inp["s"], peer=peer, width=20, signed=True, outputs_to="a")
        via_other = await gc.evaluate(s, builder.less_than(24), [inp["u"]], peer=peer, garbler="b", owners=["a", "b"])
        both = await gc.compare_and_maximum(s, inp["s"], peer=peer, width=20, signed=True)
        return first, again, top, low, via_other[0], both

    inputs = [{"u": xa, "s": sa}, {"u": xb, "s": sb}] + [{}] * (n_parties - 2)
    out = results(await run(prg, program, inputs, names=names))
    sign = np.sign(xa.astype(np.int64) - xb.astype(np.int64)).astype(np.int8)
    (fa, ga, ta, la, va, ca), (fb, gb, tb, lb, vb, cb) = out[0], out[1]
    ssign = np.sign(sa - sb).astype(np.int8)
    np.testing.assert_array_equal(ca[0], ssign)
    np.testing.assert_array_equal(cb[0], -ssign)
    for c in (ca, cb):
        np.testing.assert_array_equal(c[1], np.maximum(sa, sb))
    np.testing.assert_array_equal(fa, sign)
    np.testing.assert_array_equal(fb, -sign)
    assert fa.dtype == np.int8 and ga is None
    np.testing.assert_array_equal(gb, -sign)
    for t in (ta, tb):
        np.testing.assert_array_equal(t, np.maximum(sa, sb))
    np.testing.assert_array_equal(la, np.minimum(sa, sb))
    assert lb is None
    for v in (va, vb):
        np.testing.assert_array_equal(v, (xa < xb).astype(np.uint64))


async def test_wire_bytes_are_the_tables_plus_labels(prg: PRG) -> None:
    """Garbler -> evaluator: exactly 32 bytes per AND and instance, 16 per garbler input bit,
    16 per output bit the evaluator decodes (two 8-byte label commitments), plus framing;
    evaluator -> garbler: the IKNP matrix."""
    batch, width = 4096, 32
    circuit = builder.less_than(width)
    stats: dict[int, list[dict[str, int]]] = {0: [], 1: []}

    async def program(s: Session, v: np.ndarray) -> Any:
        await gc.evaluate(s, circuit, [v], peer=1 - s.party_id)  # base OTs happen here
        before = s.stats.as_dict()
        out = await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, outputs_to=1)
        after = s.stats.as_dict()
        stats[s.party_id] = [before, after]
        return out

    await run(prg, program, [prg.uint64(batch) >> np.uint64(32), prg.uint64(batch) >> np.uint64(32)])
    sent_g = stats[0][1]["bytes_sent"] - stats[0][0]["bytes_sent"]
    payload_g = 32 * circuit.n_and * batch + 16 * width * batch + 16 * batch
    assert payload_g <= sent_g < payload_g + 2048
    sent_e = stats[1][1]["bytes_sent"] - stats[1][0]["bytes_sent"]
    iknp = 16 * padded_rows(width * batch, active=True) + 32  # IKNP matrix (KOS padding) + check
    assert iknp <= sent_e < iknp + 1024
    assert stats[0][1]["rounds"] - stats[0][0]["rounds"] == 2  # OT extension + garbled circuit


# -- adversarial ---------------------------------------------------------------------------------


class Tampering:
    """A channel that rewrites this party's outgoing payloads of rounds whose tag contains ``round``."""

    def __init__(self, inner: Any, round_name: str, edit: Callable[[Payload], Payload]) -> None:
        self._inner = inner
        self._round = round_name
        self._edit = edit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, peer: int, tag: str, payload: Payload) -> None:
        if f"/{self._round}#" in tag:
            payload = self._edit(payload)
        await self._inner.send(peer, tag, payload)


def edit_tables(fn: Callable[[np.ndarray], Any]) -> Callable[[Payload], Payload]:
    def edit(msg: Payload) -> Payload:
        return {**msg, "tables": fn(msg["tables"].copy())}

    return edit


def flip_rows(tables: np.ndarray) -> np.ndarray:
    tables[:, :, 7] ^= np.uint64(1 << 40)  # every ciphertext of instance 7
    return tables


def tamper_program(party: int, round_name: str, edit: Callable[[Payload], Payload], to: Any = None) -> Callable[[Session, Any], Any]:
    circuit = builder.less_than(16)

    async def program(s: Session, v: np.ndarray) -> Any:
        if s.party_id == party:
            s = Session(Tampering(s.channel, round_name, edit), prg=s.prg, resources=s.resources)
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, garbler=0, outputs_to=to)

    return program


def edit_commit(fn: Callable[[np.ndarray], Any]) -> Callable[[Payload], Payload]:
    def edit(msg: Payload) -> Payload:
        return {**msg, "commit": fn(msg["commit"].copy())}

    return edit


def equal_commitments(c: np.ndarray) -> np.ndarray:
    c[0, 5, 1] = c[0, 5, 0]
    return c


@pytest.mark.parametrize(
    "edit",
    [
        edit_tables(lambda t: t[:-1]),
        edit_tables(lambda t: t[:, :, :-1]),
        edit_tables(lambda t: t.view(np.int64)),
        edit_tables(lambda t: t.reshape(-1)),
        edit_tables(lambda t: t.tobytes()),
        lambda msg: {**msg, "labels": msg["labels"][:, :-1]},
        edit_commit(lambda c: c[:, :1]),
        edit_commit(lambda c: c[..., :1]),
        edit_commit(lambda c: c.view(np.int64)),
        edit_commit(equal_commitments),
        lambda msg: {"tables": msg["tables"]},
        lambda msg: [msg["tables"]],
    ],
    ids=["short", "narrow", "dtype", "flat", "bytes", "labels", "commit-short", "commit-narrow", "commit-dtype", "commit-equal", "missing", "not-dict"],
)
async def test_malformed_garbled_message_is_refused(prg: PRG, edit: Callable[[Payload], Payload]) -> None:
    x = prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run(prg, tamper_program(0, "garbled", edit, to="p1"), [x, x])
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, ProtocolViolation)


def flip_label(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[3, 11, 0] ^= np.uint64(1 << 30)  # one input label of the garbler, instance 11
    return out


@pytest.mark.parametrize(
    "edit",
    [edit_tables(flip_rows), lambda msg: {**msg, "labels": flip_label(msg["labels"])}],
    ids=["table-entries", "garbler-input-label"],
)
async def test_tampered_circuit_aborts_the_evaluator(prg: PRG, edit: Callable[[Payload], Payload]) -> None:
    """Right sizes, altered contents: the evaluator's output label for that instance matches
    neither commitment, so it aborts (and, as the garbler expects outputs, tells it)."""
    x, y = prg.uint64(64) & np.uint64(0xFFFF), prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run(prg, tamper_program(0, "garbled", edit), [x, y])
    assert isinstance(outcomes[1].error, AbortError)
    assert isinstance(outcomes[0].error, AbortError)  # "the evaluator aborted", a code only


async def test_tampered_table_with_outputs_to_one_side(prg: PRG) -> None:
    """Outputs to E only: E aborts, G has nothing to wait for. Outputs to G only: E decodes
    nothing (no check), G refuses the labels it gets back."""
    x, y = prg.uint64(64) & np.uint64(0xFFFF), prg.uint64(64) & np.uint64(0xFFFF)
    to_e = await run(prg, tamper_program(0, "garbled", edit_tables(flip_rows), to="p1"), [x, y])
    assert to_e[0].ok and to_e[0].result == [None]
    assert isinstance(to_e[1].error, AbortError)
    to_g = await run(prg, tamper_program(0, "garbled", edit_tables(flip_rows), to="p0"), [x, y])
    assert isinstance(to_g[0].error, AbortError)
    assert to_g[1].ok and to_g[1].result == [None]


async def test_transport_tamper_of_a_label_aborts_the_evaluator(prg: PRG) -> None:
    """A byte flipped on the wire inside the garbled message (raw array data: framing cannot
    see it; here the last byte, in the garbler's last input label) makes the evaluator abort."""
    from transport.faults import Fault, FaultPlan

    circuit = builder.less_than(16)

    async def program(s: Session, v: np.ndarray) -> Any:
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, garbler=0, outputs_to="p1")

    # p0's data frames to p1: #0 the base-OT message, #1 the garbled message (one frame).
    plan = FaultPlan([Fault("tamper", src="p0", dst="p1", after=1, offset=-1, mask=0x40)])
    x, y = prg.uint64(64) & np.uint64(0xFFFF), prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run_parties_async(program, [x, y], names=P, recv_timeout=5.0, seeds=seeds_for(prg, P), faults=plan)
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, AbortError)


class TamperedOT:
    """A malicious garbler's OT endpoint: garbles with zero labels that differ from the OT
    outputs for one of the evaluator's input bits (as if that OT label had been tampered)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.delta = inner.delta
        self.active = inner.active

    async def send_correlated(self, n: int) -> np.ndarray:
        q = (await self._inner.send_correlated(n)).copy()
        q[5, 3] ^= 0x40  # E's first input bit, instance 5
        return q


async def test_tampered_ot_label_aborts_the_evaluator(prg: PRG) -> None:
    import asyncio

    from protocols.ot import ot_pair

    circuit = builder.less_than(16)

    async def program(s: Session, v: np.ndarray) -> Any:
        if s.party_id == 0:
            ot = await ot_pair(s, sender=0, receiver=1)  # base OTs, then swap in the cheat
            done = asyncio.get_running_loop().create_future()
            done.set_result(TamperedOT(ot))
            s.resources["protocols.ot/pair/0->1"] = done
        else:
            await ot_pair(s, sender=0, receiver=1)
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, garbler=0)

    x, y = prg.uint64(64) & np.uint64(0xFFFF), prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run(prg, program, [x, y])
    assert isinstance(outcomes[1].error, AbortError)
    assert isinstance(outcomes[0].error, AbortError)  # told by the evaluator


async def test_failed_ot_check_at_the_garbler_is_reported_to_the_evaluator(prg: PRG) -> None:
    """A byte of the evaluator's IKNP matrix flipped on the wire: the garbler's KOS check fails
    (AbortError) and it says so in the garbled round, so the evaluator aborts at once instead of
    timing out."""
    from transport.faults import Fault, FaultPlan

    circuit = builder.less_than(16)

    async def program(s: Session, v: np.ndarray) -> Any:
        return await gc.evaluate(s, circuit, [v], peer=1 - s.party_id, garbler=0)

    # p1's data frames to p0: #0 the base-OT answer, #1 the OT-extension matrix.
    plan = FaultPlan([Fault("tamper", src="p1", dst="p0", after=1, offset=-500, mask=0x08)])
    x = prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run_parties_async(program, [x, x], names=P, recv_timeout=5.0, seeds=seeds_for(prg, P), faults=plan)
    assert isinstance(outcomes[0].error, AbortError)
    assert isinstance(outcomes[1].error, AbortError)


async def test_forged_output_labels_are_refused(prg: PRG) -> None:
    def forge(labels: np.ndarray) -> np.ndarray:
        out = labels.copy()
        out[0, 3, 1] ^= np.uint64(1)
        return out

    x = prg.uint64(64) & np.uint64(0xFFFF)
    outcomes = await run(prg, tamper_program(1, "outputs", forge, to="p0"), [x, x])
    assert isinstance(outcomes[0].error, AbortError)
    assert outcomes[1].ok and outcomes[1].result == [None]


async def test_absent_peer_gives_peer_unavailable(prg: PRG) -> None:
    async def program(s: Session, v: Any) -> Any:
        if s.party_id == 0:
            return None
        return await gc.compare(s, v, peer=0, width=8)

    outcomes = await run(prg, program, [1, 2], timeout=0.5)
    assert isinstance(outcomes[1].error, PeerUnavailable)


async def test_bad_arguments_raise_config_error(prg: PRG) -> None:
    circuit = builder.less_than(8)
    bad_calls: list[Callable[[Session], Any]] = [
        lambda s: gc.evaluate(s, circuit, [1], peer=s.party_id),
        lambda s: gc.evaluate(s, circuit, [1, 2], peer=1 - s.party_id),
        lambda s: gc.evaluate(s, circuit, [1], peer=1 - s.party_id, owners=[0]),
        lambda s: gc.evaluate(s, circuit, [1], peer=1 - s.party_id, outputs_to=[0, 1]),
        lambda s: gc.evaluate(s, circuit, [1], peer="nobody"),
        lambda s: gc.evaluate(s, circuit, [], peer=1 - s.party_id, owners=[1 - s.party_id] * 2),
        lambda s: gc.evaluate(s, circuit, [256], peer=1 - s.party_id),
        lambda s: gc.compare(s, 1.5, peer=1 - s.party_id),
        lambda s: gc.compare(s, -1, peer=1 - s.party_id, width=8),
        lambda s: gc.maximum(s, 1, peer=1 - s.party_id, width=65),
    ]

    async def program(s: Session, _: Any) -> list[str]:
        errors = []
        for call in bad_calls:
            try:
                await call(s)
            except ConfigError as exc:
                errors.append(type(exc).__name__)
        return errors

    out = results(await run(prg, program, [None, None]))
    assert out == [["ConfigError"] * len(bad_calls)] * 2


# -- real processes ------------------------------------------------------------------------------


async def compare_program(s: Session, x: np.ndarray) -> Any:
    """Module level, for the processes transport."""
    sign = await gc.compare(s, x, peer=1 - s.party_id, width=32, signed=True)
    top = await gc.maximum(s, x, peer=1 - s.party_id, width=32, signed=True, outputs_to=0)
    return {"sign": sign, "top": top}


def test_compare_in_separate_processes(prg: PRG) -> None:
    x, y = signed_values(prg, 2000, 32), signed_values(prg, 2000, 32)
    y[:10] = x[:10]
    outcomes = run_parties(compare_program, [x, y], transport="processes", recv_timeout=20)
    a, b = results(outcomes)
    sign = np.sign(x - y).astype(np.int8)
    np.testing.assert_array_equal(a["sign"], sign)
    np.testing.assert_array_equal(b["sign"], -sign)
    np.testing.assert_array_equal(a["top"], np.maximum(x, y))
    assert b["top"] is None

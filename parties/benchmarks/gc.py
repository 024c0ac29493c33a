"""Benchmark suite ``gc``: half-gates garbling, two-party garbled circuits, batched comparisons.

Lines printed (JSON, DESIGN.md format):

- ``garble_and_per_s`` / ``evaluate_and_per_s`` — the pure engine in this process (no network),
  1,048,576 AND gates (16,384 instances of the 64-bit less-than), best of 5 warm runs by
  process CPU time (single-threaded, so on an idle core this is the wall time; on a shared
  machine it is the figure that does not depend on the other tenants).
- ``table_bytes_per_and`` — garbled-table bytes per AND gate (exactly 32: two ciphertexts).
- ``and_gates_per_s`` — end to end between two party processes over the real mesh (TLS
  websockets): OT of the evaluator's input labels, garbling, transfer, evaluation and output
  decoding for both parties, base OTs excluded (done once per session); 64-bit less-than x 16,384
  and the published mult64 x 256 (both ~10^6 ANDs). Best wall time of 3 runs; ``params`` also
  carry every run's wall time and each party's process CPU time per AND (the least of the 3),
  which a loaded machine inflates much less than the wall time.
- ``wire_bytes_per_and`` — every byte both parties sent in that run divided by the AND count,
  beside the half-gates minimum of 32 (input labels and IKNP rows come on top: 16 bytes per
  input bit each, which is 32 bytes per AND for a comparator of 1 AND per bit pair, so a
  comparator cannot reach the 36 bytes per AND target; output commitments add 16 bytes per
  output bit of the evaluator).
- ``comparisons_per_s`` — signed less-than, 32 and 64 bits, 10^4 and 10^5 per batch (one
  circuit, one message per round), end to end over processes, both parties learn the bits;
  best wall time of 2 runs, with each party's CPU time per comparison.

Peers: EMP-toolkit (C++) is not installable from the registries here, so its published figures
(PEERS.md: 21-27 M AND/s per core, 32.00 B/AND) are reported as peer ``emp-toolkit (published)``
and not measured; MPyC ``secint32``/``secint64`` less-than (3 parties, Shamir, honest majority:
MPyC has no meaningful 2-party mode) is measured in the same run in its own venv.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from mpc.prg import PRG
from mpc.session import Session
from parties.benchmarks.common import emit, run_mpyc
from parties.testing import run_parties_async
from protocols.gc import builder, load_published
from protocols.gc import evaluate as gc_evaluate
from protocols.gc.circuit import Circuit
from protocols.gc.garble import evaluate as evaluate_garbled
from protocols.gc.garble import garble, random_delta

SUITE = "gc"
EMP_AND_PER_S = 24e6  # midpoint of the published 21-27 M AND/s per core
EMP_NOTE = "EMP-toolkit published figures (PEERS.md: 21-27 M AND/s per core, 32.00 B/AND); C++, not installable from the registries here, not measured in this run"


def _circuit(name: str) -> Circuit:
    if name == "mult64":
        return load_published("mult64")
    width = int(name[2:])
    return builder.less_than(width, signed=True)


def _inputs(prg: PRG, circuit: Circuit, name: str, batch: int) -> np.ndarray:
    if name == "mult64":
        return prg.uint64(batch)
    width = circuit.input_widths[0]
    u = prg.uint64(batch) >> np.uint64(64 - width)
    s = np.uint64(1 << (width - 1))
    return ((u ^ s) - s).view(np.int64)


async def e2e_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """One party of the end-to-end run: a warm-up call (base OTs), then the timed evaluation."""
    circuit = _circuit(params["circuit"])
    peer = 1 - session.party_id
    await gc_evaluate(session, circuit, [_inputs(session.prg, circuit, params["circuit"], 8)], peer=peer)
    x = _inputs(session.prg, circuit, params["circuit"], params["batch"])
    before = session.stats.as_dict()
    cpu = time.process_time()
    t = time.perf_counter()
    (out,) = await gc_evaluate(session, circuit, [x], peer=peer)
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    after = session.stats.as_dict()
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "sent": after["bytes_sent"] - before["bytes_sent"],
        "rounds": after["rounds"] - before["rounds"],
        "x": x,
        "out": out,
    }


async def end_to_end(name: str, batch: int, runs: int = 1) -> dict[str, Any]:
    """Run ``name`` x ``batch`` between two processes ``runs`` times; check the outputs; the
    best wall time, every run's wall time, the least CPU time per party, bytes and rounds."""
    params = {"circuit": name, "batch": batch}
    walls, cpu_g, cpu_e = [], [], []
    for _ in range(runs):
        outcomes = await run_parties_async(e2e_program, [params, params], transport="processes", recv_timeout=120)
        for o in outcomes:
            if o.error is not None:
                raise o.error
        a, b = outcomes[0].result, outcomes[1].result
        expected = a["x"] * b["x"] if name == "mult64" else (a["x"] < b["x"])
        for r in (a, b):
            if not np.array_equal(np.asarray(r["out"]), np.asarray(expected).astype(np.asarray(r["out"]).dtype)):
                raise RuntimeError(f"gc benchmark {name}: wrong outputs")
        walls.append(max(a["seconds"], b["seconds"]))
        cpu_g.append(a["cpu_s"])
        cpu_e.append(b["cpu_s"])
    return {
        "seconds": min(walls),
        "walls": walls,
        "bytes": a["sent"] + b["sent"],
        "rounds": a["rounds"],
        "cpu_s_garbler": min(cpu_g),
        "cpu_s_evaluator": min(cpu_e),
    }


def engine_rates(circuit: Circuit, batch: int, reps: int = 5) -> tuple[float, float, float]:
    """(garble AND/s, evaluate AND/s, table bytes per AND) of the pure engine, best of ``reps``
    by process CPU time."""
    prg = PRG()
    bits = prg.bits((circuit.n_inputs, batch))
    delta = random_delta(prg.bytes(16))
    zero = prg.uint64((circuit.n_inputs, batch, 2))
    active = zero ^ (bits.astype(np.uint64)[:, :, None] * delta)
    tg = te = float("inf")
    for _ in range(reps):
        t = time.process_time()
        g = garble(circuit, zero, delta)
        tg = min(tg, time.process_time() - t)
        t = time.process_time()
        evaluate_garbled(circuit, active, g.tables)
        te = min(te, time.process_time() - t)
    ands = circuit.n_and * batch
    return ands / tg, ands / te, g.tables.nbytes / ands


MPYC_SCRIPT = r"""
import sys, time, json
import numpy as np
from mpyc.runtime import mpc

async def main():
    n, bits = int(sys.argv[1]), int(sys.argv[2])
    secint = mpc.SecInt(bits)
    await mpc.start()
    rng = np.random.default_rng(mpc.pid)  # not secret: benchmark inputs
    mine = rng.integers(-2**(bits - 1), 2**(bits - 1), size=n)
    await mpc.barrier()
    t = time.perf_counter()
    xs = mpc.input(secint.array(mine), senders=[0, 1])
    out = await mpc.output(xs[0] < xs[1])
    dt = time.perf_counter() - t
    await mpc.shutdown()
    if mpc.pid == 0:
        print("RESULT " + json.dumps({"seconds": dt, "n": n}), flush=True)

mpc.run(main())
"""


def mpyc_less_than(n: int, bits: int) -> float | None:
    """MPyC secint less-than, 3 parties on this machine: comparisons per second (None on failure)."""
    out = run_mpyc(MPYC_SCRIPT, [str(n), str(bits)], timeout=600, label="gc")
    for line in (out or "").splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            return float(res["n"]) / float(res["seconds"])
    return None


async def run() -> None:
    """Engine throughput, end-to-end AND gates/s and bytes, batched comparisons vs MPyC."""
    lt64 = builder.less_than(64, signed=True)
    g_rate, e_rate, table_bpa = engine_rates(lt64, 16384)
    base = {"circuit": "lt64 signed", "instances": 16384, "and_gates": lt64.n_and * 16384, "runs": "best of 5, process CPU time", "process": "one, no network"}
    emit(SUITE, "garble_and_per_s", g_rate, "AND/s", {**base, "peer_note": EMP_NOTE, "better": "higher"}, "emp-toolkit (published)", EMP_AND_PER_S)
    emit(SUITE, "evaluate_and_per_s", e_rate, "AND/s", {**base, "peer_note": EMP_NOTE, "better": "higher"}, "emp-toolkit (published)", EMP_AND_PER_S)
    emit(SUITE, "table_bytes_per_and", table_bpa, "B/AND", {**base, "half_gates_minimum": 32, "peer_note": EMP_NOTE, "better": "lower"}, "emp-toolkit (published)", 32.0)

    for name, batch in (("lt64", 16384), ("mult64", 256)):
        circuit = _circuit(name)
        res = await end_to_end(name, batch, runs=3)
        ands = circuit.n_and * batch
        params = {
            "circuit": name if name == "mult64" else "lt64 signed",
            "instances": batch,
            "and_gates": ands,
            "parties": 2,
            "transport": "processes (TLS websockets)",
            "includes": "OT of evaluator labels, garbling, transfer, evaluation, outputs to both; base OTs excluded",
            "seconds": round(res["seconds"], 4),
            "runs_seconds": [round(w, 4) for w in res["walls"]],
            "cpu_ns_per_and_garbler": round(res["cpu_s_garbler"] / ands * 1e9, 1),
            "cpu_ns_per_and_evaluator": round(res["cpu_s_evaluator"] / ands * 1e9, 1),
            "rounds": res["rounds"],
        }
        emit(SUITE, "and_gates_per_s", ands / res["seconds"], "AND/s", {**params, "peer_note": EMP_NOTE, "better": "higher"}, "emp-toolkit (published)", EMP_AND_PER_S)
        n_out = circuit.n_outputs
        emit(
            SUITE,
            "wire_bytes_per_and",
            res["bytes"] / ands,
            "B/AND",
            {
                **params,
                "half_gates_minimum": 32,
                "input_label_and_ot_bytes_per_and": round(16 * circuit.n_inputs / circuit.n_and, 3),
                "output_commitment_bytes_per_and": round(16 * n_out / circuit.n_and, 3),
                "better": "lower",
                "peer_note": EMP_NOTE,
            },
            "emp-toolkit (published)",
            32.0,
        )

    mpyc_n = 2000
    peers = {bits: mpyc_less_than(mpyc_n, bits) for bits in (32, 64)}
    for width in (32, 64):
        for batch in (10_000, 100_000):
            res = await end_to_end(f"lt{width}", batch, runs=2)
            emit(
                SUITE,
                "comparisons_per_s",
                batch / res["seconds"],
                "cmp/s",
                {
                    "op": f"signed {width}-bit less-than, both learn the bit",
                    "batch": batch,
                    "parties": 2,
                    "transport": "processes (TLS websockets)",
                    "bytes_per_cmp": round(res["bytes"] / batch, 1),
                    "seconds": round(res["seconds"], 4),
                    "runs_seconds": [round(w, 4) for w in res["walls"]],
                    "cpu_us_per_cmp_garbler": round(res["cpu_s_garbler"] / batch * 1e6, 2),
                    "cpu_us_per_cmp_evaluator": round(res["cpu_s_evaluator"] / batch * 1e6, 2),
                    "peer_setup": f"MPyC 0.11 secint{width} array less-than, 3 parties (Shamir, honest majority), {mpyc_n} per batch, same machine",
                    "better": "higher",
                },
                f"mpyc secint{width}",
                peers[width],
            )


if __name__ == "__main__":
    asyncio.run(run())

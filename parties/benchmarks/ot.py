"""Benchmark suite ``ot``: IKNP/KOS OT extension (random OT) throughput and bytes per OT.

Two parties run :func:`protocols.ot.ot_pair` (base OTs once, not timed) and then extend
``total`` random OTs in batches of ``2^20`` (one message R->S per batch), over the in-memory
mesh (both parties in this one process and event loop, so on one core) and between two
processes over the real mesh (mutual TLS 1.3 websockets, one party per process). Reported:
``ot_per_s`` (total / wall time of the slower party), ``bytes_per_ot`` (every byte both
parties wrote during extension, framing and acknowledgements included, / total) beside the
IKNP minimum of 16 bytes (kappa = 128 bits per OT), and the base-OT setup time. ``params``
also carry each party's CPU time per OT (process CPU time; on the memory mesh both parties share
one process, so both figures are the sum), which is less sensitive to a loaded machine than
the wall time.

Peer: EMP-toolkit's IKNP (C++, AES-NI) is not installable from the registries on this machine
(PEERS.md), so its *published* figures stand in: 24-52 M random OTs/s on one core at ~16 bytes
per OT; ``peer_value`` is the low end, and ``params.peer_source`` says it was not measured here.
"""

from __future__ import annotations

import time
from typing import Any

from mpc.session import Session
from parties.benchmarks.common import emit
from parties.testing import run_parties_async
from protocols.ot import OTExtSender, ot_pair

SUITE = "ot"
BATCH = 1 << 20
PEER = "emp-toolkit (published)"
PEER_OT_PER_S = 24e6
PEER_BYTES_PER_OT = 16.0
PEER_NOTE = "published figures (PEERS.md: IKNP 24-52 M OTs/s, ~16 B/OT); not installable here, not measured in this run"


async def bench_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Party 0 sends, party 1 receives ``params['total']`` random OTs in batches."""
    t0 = time.perf_counter()
    ot = await ot_pair(session, sender=0, receiver=1, active=params["active"])
    setup = time.perf_counter() - t0
    total, batch = params["total"], params["batch"]
    choices = session.prg.bits(batch) if session.party_id == 1 else None
    await session.exchange("bench-start", 0)  # a common start: both set up, both ready
    sent0 = session.stats.bytes_sent
    cpu0 = time.process_time()
    start = time.perf_counter()
    done = 0
    while done < total:
        n = min(batch, total - done)
        if isinstance(ot, OTExtSender):
            await ot.send_random(n)
        else:
            assert ot is not None and choices is not None
            await ot.recv_random(choices[:n])
        done += n
    await session.exchange("bench-end", 0)  # a common end: the slower party is done
    return {
        "setup_s": setup,
        "elapsed_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu0,
        "bytes_sent": session.stats.bytes_sent - sent0,
    }


async def measure(transport: str, total: int, active: bool) -> dict[str, float]:
    """One run; the slower party's wall time and both parties' bytes."""
    params = {"total": total, "batch": BATCH, "active": active}
    outcomes = await run_parties_async(bench_program, [params, params], transport=transport, recv_timeout=120.0)  # type: ignore[arg-type]
    for o in outcomes:
        if o.error is not None:
            raise o.error
    elapsed = max(o.result["elapsed_s"] for o in outcomes)
    return {
        "ot_per_s": total / elapsed,
        "bytes_per_ot": sum(o.result["bytes_sent"] for o in outcomes) / total,
        "setup_ms": max(o.result["setup_s"] for o in outcomes) * 1e3,
        "elapsed_s": elapsed,
        "cpu_s_sender": outcomes[0].result["cpu_s"],
        "cpu_s_receiver": outcomes[1].result["cpu_s"],
    }


async def run() -> None:
    """Random-OT throughput and traffic: memory mesh and two processes, 10^6 and 10^7 OTs."""
    cases = [
        ("memory", 10**6, True),
        ("memory", 10**7, True),
        ("processes", 10**6, True),
        ("processes", 10**7, True),
        ("processes", 10**7, False),
    ]
    for transport, total, active in cases:
        r = await measure(transport, total, active)
        params = {
            "transport": transport,
            "ots": total,
            "batch": BATCH,
            "security": "active (KOS check)" if active else "passive (IKNP)",
            "parties": 2,
            "cores": "one process, one core" if transport == "memory" else "one process per party",
            "elapsed_s": round(r["elapsed_s"], 3),
            "cpu_ns_per_ot_sender": round(r["cpu_s_sender"] / total * 1e9, 1),
            "cpu_ns_per_ot_receiver": round(r["cpu_s_receiver"] / total * 1e9, 1),
            "peer_source": PEER_NOTE,
            "better": "higher",
        }
        emit(SUITE, "ot_per_s", r["ot_per_s"], "OT/s", params, PEER, PEER_OT_PER_S)
        emit(
            SUITE,
            "bytes_per_ot",
            r["bytes_per_ot"],
            "B/OT",
            {**params, "better": "lower", "theoretical_min": 16.0},
            PEER,
            PEER_BYTES_PER_OT,
        )
        if total == 10**6:
            emit(SUITE, "base_ot_setup_ms", r["setup_ms"], "ms", {**params, "better": "lower", "base_ots": 128}, None, None)

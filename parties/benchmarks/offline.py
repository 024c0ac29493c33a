"""Benchmark suite ``offline``: dealer-free SPDZ2k preprocessing (triples, bits, matrix triples).

Every party runs in its own process over the real mesh (mutual TLS 1.3 websockets), as on
nodes. Each run creates a :class:`protocols.spdz_offline.DealerFreePreprocessing` (MAC key
shares and base OTs, not timed), then times :data:`REPEATS` productions of the same size, each
between two barriers, and reports the median one (``params`` list every repetition: the
reference machine's speed swings by ~40% from second to second, and one run would report
whichever state it fell in). Reported:

- ``triples_per_s`` (2 and 3 parties; 65,536 and 32,768 triples): triples / wall time of the
  production (``params`` also give the busiest party's CPU time and ``triples_per_cpu_s``:
  production is CPU-bound here, so on a machine shared with other work the wall time
  overstates the cost);
- ``bytes_per_triple``: every byte all parties wrote during it (framing and acknowledgements
  included) / triples, beside the protocol's theoretical payload
  (:func:`protocols.spdz_offline.theoretical_bytes_per_triple`) in ``params``;
- ``bits_per_s`` (2 parties);
- ``matrix_triple_128_s`` (2 parties): one 128 x 128 x 128 matrix triple costs ``k n tau`` OTs
  carrying ``2 m`` ring elements each (~17 GB per ordered pair at tau = 256): too long for a
  benchmark here, so a 16 x 16 x 16 one is measured and scaled by ``(128/16)^3`` (the work is
  linear in ``m k n``); ``params`` say so.

Peer: MASCOT / SPDZ2k (C++) are not installable from the registries here; the figure beside
ours is the *published* order of magnitude quoted in issue 7 (MASCOT, Keller-Orsini-Scholl CCS
2016: a few thousand triples per second per party pair, 128-bit field, LAN), not measured in
this run.
"""

from __future__ import annotations

import time
from typing import Any

from mpc.session import Session
from parties.benchmarks.common import emit
from parties.testing import run_parties_async
from protocols.spdz.preprocessing import Requirements
from protocols.spdz_offline import DEFAULT_LANES, DEFAULT_TAU, DealerFreePreprocessing, theoretical_bytes_per_triple

SUITE = "offline"
PEER = "mascot (published)"
PEER_TRIPLES_PER_S = 5000.0
PEER_NOTE = (
    "published order of magnitude only (issue 7: MASCOT CCS 2016 reports a few thousand triples/s per "
    "party pair, 128-bit field, LAN; SPDZ2k similar); C++, not installable here, not measured in this run"
)
MATRIX_MEASURED = 16
MATRIX_TARGET = 128
REPEATS = 3
"""Productions timed per measurement (the median one is reported)."""


async def bench_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Create a provider, then time :data:`REPEATS` productions of ``params``' need, each
    between barriers."""
    t0 = time.perf_counter()
    provider = await DealerFreePreprocessing.create(session, lanes=params.get("lanes", DEFAULT_LANES))
    setup = time.perf_counter() - t0
    need = Requirements(
        triples=params.get("triples", 0),
        bits=params.get("bits", 0),
        matrix_triples={tuple(params["matrix"]): 1} if params.get("matrix") else {},
    )
    runs = []
    for _ in range(REPEATS):
        await session.exchange("bench-start", 0)
        sent0 = session.stats.bytes_sent
        cpu0 = time.process_time()
        start = time.perf_counter()
        await provider.produce(need)
        await session.exchange("bench-end", 0)
        runs.append(
            {
                "elapsed_s": time.perf_counter() - start,
                "cpu_s": time.process_time() - cpu0,
                "bytes_sent": session.stats.bytes_sent - sent0,
            }
        )
    return {"setup_s": setup, "runs": runs}


async def measure(n: int, params: dict[str, Any]) -> dict[str, Any]:
    """:data:`REPEATS` productions over the real mesh (one process per party): the median one
    by wall time (its time, bytes and busiest party's CPU) and every repetition's wall time."""
    outcomes = await run_parties_async(bench_program, [params] * n, transport="processes", recv_timeout=300.0)
    for o in outcomes:
        if o.error is not None:
            raise o.error
    runs = [
        {
            "elapsed_s": max(o.result["runs"][i]["elapsed_s"] for o in outcomes),
            "bytes": float(sum(o.result["runs"][i]["bytes_sent"] for o in outcomes)),
            "cpu_s": max(o.result["runs"][i]["cpu_s"] for o in outcomes),
        }
        for i in range(REPEATS)
    ]
    median = sorted(runs, key=lambda r: r["elapsed_s"])[REPEATS // 2]
    return {
        **median,
        "setup_s": max(o.result["setup_s"] for o in outcomes),
        "runs_elapsed_s": [round(r["elapsed_s"], 3) for r in runs],
    }


async def run() -> None:
    """Triples for 2 and 3 parties, bits and a matrix triple for 2 parties."""
    common = {"transport": "processes", "tau": DEFAULT_TAU, "security": "active (SPDZ2k, k = s = 64)", "peer_source": PEER_NOTE}
    # Batches as a node's producer makes them ahead of need, long enough (several seconds) for
    # the steady rate: a short one is dominated by the pipeline's first and last rounds.
    for n, count in ((2, 65536), (3, 32768)):
        r = await measure(n, {"triples": count})
        theory = theoretical_bytes_per_triple(n, DEFAULT_TAU)
        params = {
            **common,
            "parties": n,
            "triples": count,
            "elapsed_s": round(r["elapsed_s"], 3),
            "repeats": REPEATS,
            "runs_triples_per_s": [round(count / e, 1) for e in r["runs_elapsed_s"]],
            "cpu_s_max_party": round(r["cpu_s"], 3),
            "triples_per_cpu_s": round(count / r["cpu_s"], 1),
            "setup_s": round(r["setup_s"], 3),
            "better": "higher",
        }
        emit(SUITE, "triples_per_s", count / r["elapsed_s"], "triples/s", params, PEER, PEER_TRIPLES_PER_S)
        bytes_params = {
            **params,
            "better": "lower",
            "theoretical_bytes_per_triple": theory,
            "ratio_to_theoretical": round(r["bytes"] / count / theory, 4),
            "counted": "all parties' bytes on the wire",
        }
        emit(SUITE, "bytes_per_triple", r["bytes"] / count, "B/triple", bytes_params, None, None)
    bits = 8192
    r = await measure(2, {"bits": bits})
    params = {**common, "parties": 2, "bits": bits, "elapsed_s": round(r["elapsed_s"], 3), "better": "higher"}
    params["runs_bits_per_s"] = [round(bits / e, 1) for e in r["runs_elapsed_s"]]
    params["bits_per_cpu_s"] = round(bits / r["cpu_s"], 1)
    params["bytes_per_bit"] = round(r["bytes"] / bits, 1)
    emit(SUITE, "bits_per_s", bits / r["elapsed_s"], "bits/s", params, None, None)
    d = MATRIX_MEASURED
    r = await measure(2, {"matrix": [d, d, d]})
    scale = (MATRIX_TARGET / d) ** 3
    params = {
        **common,
        "parties": 2,
        "shape": f"{MATRIX_TARGET}x{MATRIX_TARGET}x{MATRIX_TARGET}",
        "measured_shape": f"{d}x{d}x{d}",
        "measured_s": round(r["elapsed_s"], 3),
        "runs_measured_s": r["runs_elapsed_s"],
        "extrapolated": f"measured time x {scale:.0f} (work linear in m k n); not run at 128^3",
        "measured_bytes": r["bytes"],
        "better": "lower",
    }
    emit(SUITE, "matrix_triple_128_s", r["elapsed_s"] * scale, "s", params, None, None)

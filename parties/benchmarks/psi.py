"""Benchmark suite ``psi``.

Two-party PSI of ``n x n`` identifiers with half overlap (party 0 holds ``id-0 .. id-{n-1}``,
party 1 ``id-{n/2} .. id-{n/2+n-1}``), intersection revealed to party 0 only, as
openmined-psi's client/server protocol does:

- ours, ``protocol="ecdh"``: :func:`protocols.psi.psi_intersection` (ECDH over ristretto255),
  two party processes over our TLS websocket mesh (``transport="processes"``), default
  settings (worker processes on every core of the machine, shared by both parties here);
- ours, ``protocol="ot"``: the same call with ``protocol="ot"`` (KKRT OPRF, :mod:`protocols.psi.kkrt`);
- peer ``openmined-psi`` (PyPI ``openmined-psi==2.0.6``, DDH over P-256 in C++, raw container
  so both results are exact), client and server in one process on one core, in its own venv.

Metrics per ``n`` and protocol: ``psi_seconds`` (wall clock of the protocol, identifier hashing
included), ``psi_cpu_seconds`` (CPU of every process involved, ours summed over both parties and
their workers: the fair comparison with the single-threaded peer) and ``psi_bytes`` (both
directions, ours with framing; the minimum for DH PSI is ``96 n``: 32 bytes per element, three
sets). ``run(sizes, protocols)`` takes the set sizes and protocols; ``scripts/bench psi`` runs
10^5 and 10^6 (several minutes, mostly the ECDH paths).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any, Sequence

from mpc.compiled import available_cores
from mpc.session import Session
from parties.benchmarks.common import emit, peer_python
from parties.testing import run_parties_async
from protocols.psi import PsiConfig, psi_intersection

SUITE = "psi"
PEER = "openmined-psi"
PEER_REQUIREMENTS = ["openmined-psi==2.0.6"]

PEER_SCRIPT = r"""
import json, sys, time
import private_set_intersection.python as psi

n = int(sys.argv[1])
client_items = ["id-%d" % i for i in range(n)]
server_items = ["id-%d" % i for i in range(n // 2, n // 2 + n)]
t0, c0 = time.perf_counter(), time.process_time()
client = psi.client.CreateWithNewKey(True)
server = psi.server.CreateWithNewKey(True)
setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
request = client.CreateRequest(client_items)
response = server.ProcessRequest(request)
found = client.GetIntersection(setup, response)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
nbytes = sum(len(m.SerializeToString()) for m in (setup, request, response))
if len(found) != n - n // 2:
    raise SystemExit("openmined-psi found %d, expected %d" % (len(found), n - n // 2))
print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "bytes": nbytes}))
"""


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def psi_party(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """One party of the benchmark: its half-overlapping identifiers, the intersection to party 0."""
    n = params["n"]
    start = 0 if session.party_id == 0 else n // 2
    ids = [f"id-{i}" for i in range(start, start + n)]
    config = PsiConfig(salt=params["salt"])
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    rows = await psi_intersection(session, ids, config, receivers=[0], protocol=params["protocol"], workers=params["workers"])
    wall = time.perf_counter() - t0
    return {
        "seconds": wall,
        "cpu_seconds": _cpu_seconds() - cpu0,  # worker processes are reaped when the call ends
        "found": -1 if rows is None else int(rows.shape[0]),
        "bytes_sent": session.stats.bytes_sent,
    }


async def measure_ours(n: int, protocol: str, workers: int | None = None) -> dict[str, float]:
    """Run both parties in their own processes; wall clock is the slower party's."""
    params = {"n": n, "salt": b"bench-psi-salt-0123456789", "protocol": protocol, "workers": workers}
    # The harness gives the processes 60 s + 4 x recv_timeout to finish: scale it with n.
    outcomes = await run_parties_async(psi_party, [params, params], transport="processes", recv_timeout=max(60.0, n / 2000))
    for o in outcomes:
        if o.error is not None:
            raise o.error
    a, b = (o.result for o in outcomes)
    if a["found"] != n - n // 2:
        raise RuntimeError(f"ours found {a['found']}, expected {n - n // 2}")
    return {
        "seconds": max(a["seconds"], b["seconds"]),
        "cpu_seconds": a["cpu_seconds"] + b["cpu_seconds"],
        "bytes": a["bytes_sent"] + b["bytes_sent"],
    }


def measure_peer(n: int) -> dict[str, float]:
    """openmined-psi, client and server in one process (its usual benchmark setting)."""
    py = peer_python(PEER, PEER_REQUIREMENTS)
    out = subprocess.run([str(py), "-c", PEER_SCRIPT, str(n)], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def run(sizes: Sequence[int] = (10**5, 10**6), protocols: Sequence[str] = ("ecdh", "ot")) -> None:
    """Ours (each protocol) and openmined-psi for each ``n`` in ``sizes`` (10^6 takes minutes)."""
    cores = available_cores()
    for n in sizes:
        peer = measure_peer(n)
        for protocol in protocols:
            started = time.perf_counter()
            ours = await measure_ours(n, protocol)
            params = {"n": n, "protocol": protocol, "overlap": n - n // 2, "parties": 2, "receivers": 1, "cores": cores}
            emit(SUITE, "psi_seconds", ours["seconds"], "s", {**params, "better": "lower", "peer_cores": 1}, PEER, peer["seconds"])
            emit(SUITE, "psi_cpu_seconds", ours["cpu_seconds"], "s", {**params, "better": "lower"}, PEER, peer["cpu_seconds"])
            min_bytes = 96 * n if protocol == "ecdh" else None
            emit(SUITE, "psi_bytes", ours["bytes"], "B", {**params, "better": "lower", "min_bytes": min_bytes}, PEER, peer["bytes"])
            print(f"bench psi: n={n} {protocol} took {time.perf_counter() - started:.0f} s", file=sys.stderr)
        print(f"bench psi: n={n} openmined-psi took {peer['seconds']:.0f} s", file=sys.stderr)

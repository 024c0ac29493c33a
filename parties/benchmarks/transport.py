"""Benchmark suite ``transport``.

Two party processes over our mesh (mutual TLS 1.3 websockets, framing, reliable links,
routing) against two processes speaking raw ``websockets`` over the same TLS 1.3 contexts
(peer ``websockets-raw``): round-trip latency of a small message, and the throughput of a
16 MiB uint64 array echoed back (bytes moved in both directions / round-trip time).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mpc.session import Session
from parties.benchmarks.common import emit
from parties.testing import run_parties_async

ARRAY_MIB = 16
LATENCY_ROUNDS = 200
THROUGHPUT_ROUNDS = 5


async def echo_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Party 0 sends, party 1 echoes; party 0 returns round-trip times in seconds."""
    small = np.zeros(2, dtype=np.uint64)
    big = np.arange(ARRAY_MIB * (1 << 20) // 8, dtype=np.uint64)
    out: dict[str, Any] = {"latency": [], "throughput": []}
    for kind, payload, rounds in (("latency", small, params["latency_rounds"]), ("throughput", big, params["throughput_rounds"])):
        for _ in range(rounds):
            rnd = session.round(kind)
            if session.party_id == 0:
                t = time.perf_counter()
                await rnd.send(1, payload)
                back = await rnd.recv(1)
                out[kind].append(time.perf_counter() - t)
                if back.shape != payload.shape:
                    raise RuntimeError("echo mismatch")
            else:
                await rnd.send(0, await rnd.recv(0))
    if session.party_id == 0 and not np.array_equal(back, big):
        raise RuntimeError("echoed array differs")
    return out


RAW_SERVER = r"""
import asyncio, sys
from websockets.asyncio.server import serve
from transport.identity import Identity
from parties import aio
from parties.config import load_federation
from transport.tls import server_context

async def main(base, port):
    fed = load_federation(base + "/federation.toml")
    ctx = server_context(Identity("raw-b", base + "/raw-b/raw-b.key", base + "/raw-b/raw-b.crt"), fed)
    async def echo(ws):
        async for msg in ws:
            await ws.send(msg)
    async with serve(echo, "127.0.0.1", port, ssl=ctx, compression=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()

aio.run(main(sys.argv[1], int(sys.argv[2])))  # the party processes' event loop, as ours
"""


async def raw_client(base: Path, port: int, rounds_small: int, rounds_big: int) -> dict[str, list[float]]:
    """Raw websockets over TLS 1.3 echoing the same bytes (the peer)."""
    from websockets.asyncio.client import connect

    from parties.config import load_federation
    from transport.identity import Identity
    from transport.tls import client_context

    fed = load_federation(base / "federation.toml")
    ctx = client_context(Identity("raw-a", base / "raw-a" / "raw-a.key", base / "raw-a" / "raw-a.crt"), fed)
    small = np.zeros(2, dtype=np.uint64).tobytes()
    big = np.arange(ARRAY_MIB * (1 << 20) // 8, dtype=np.uint64)
    out: dict[str, list[float]] = {"latency": [], "throughput": []}
    async with connect(f"wss://127.0.0.1:{port}/", ssl=ctx, compression=None, max_size=None, server_hostname="raw-b") as ws:
        for kind, payload, rounds in (("latency", small, rounds_small), ("throughput", memoryview(big).cast("B"), rounds_big)):
            for _ in range(rounds):
                t = time.perf_counter()
                await ws.send(payload)
                back = await ws.recv()
                out[kind].append(time.perf_counter() - t)
                assert len(back) == len(payload)
    return out


async def measure_raw(rounds_small: int, rounds_big: int) -> dict[str, list[float]]:
    """Start the raw echo server process and measure from this process."""
    from parties.config import dump_federation
    from parties.local import free_ports
    from transport.identity import Federation, PeerInfo, generate_identity

    with tempfile.TemporaryDirectory(prefix="mpc-bench-") as tmp:
        base = Path(tmp)
        (port,) = free_ports(1)
        ids = {n: generate_identity(n, base / n) for n in ("raw-a", "raw-b")}
        dump_federation(
            Federation(tuple(PeerInfo.from_certificate(n, "127.0.0.1", port, ids[n].cert_path) for n in ids)),
            base / "federation.toml",
        )
        proc = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(base), str(port)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            await asyncio.to_thread(proc.stdout.readline)
            return await raw_client(base, port, rounds_small, rounds_big)
        finally:
            proc.terminate()
            proc.wait()


async def run() -> None:
    """Round-trip latency and 16 MiB array throughput: ours vs raw websockets over TLS."""
    params = {"latency_rounds": LATENCY_ROUNDS, "throughput_rounds": THROUGHPUT_ROUNDS}
    outcomes = await run_parties_async(echo_program, [params, params], transport="processes", recv_timeout=60)
    for o in outcomes:
        if o.error is not None:
            raise o.error
    ours = outcomes[0].result
    raw = await measure_raw(LATENCY_ROUNDS, THROUGHPUT_ROUNDS)
    lat_ours, lat_raw = statistics.median(ours["latency"]) * 1e3, statistics.median(raw["latency"]) * 1e3
    emit("transport", "roundtrip_latency_ms", lat_ours, "ms", {"payload_bytes": 16, "rounds": LATENCY_ROUNDS, "parties": 2, "better": "lower"}, "websockets-raw", lat_raw)
    size = ARRAY_MIB * (1 << 20)
    tp_ours = 2 * size / min(ours["throughput"]) / 1e6
    tp_raw = 2 * size / min(raw["throughput"]) / 1e6
    emit("transport", "array_throughput_MBps", tp_ours, "MB/s", {"array_mib": ARRAY_MIB, "dtype": "uint64", "rounds": THROUGHPUT_ROUNDS, "parties": 2, "direction": "echo, both ways counted"}, "websockets-raw", tp_raw)

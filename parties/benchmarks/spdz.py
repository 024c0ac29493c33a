"""Benchmark suite ``spdz``: the SPDZ2k online phase against MPyC (3 parties) and CrypTen (2).

Ours: party processes over the real mesh (mutual TLS 1.3 websockets, ``transport="processes"``)
and, for reference, the in-memory mesh; preprocessing from the InsecureDealer generated before
the clock starts (online phase only, like the peers' dealer-based figures).

- ``mul_per_s``: 10^6 elementwise 64-bit multiplications, one batched round plus the MAC check
  of everything opened (active security), per second.
- ``bytes_per_mul``: bytes sent per party per multiplication beside the protocol's theoretical
  minimum ``2 * 16 * (n - 1)`` (``d`` and ``e``, 128-bit shares, to every peer).
- ``matmul100_s`` / ``matmul128_s``: a fixed-point (f = 16) secret matrix product (one matrix
  triple, one truncation) including the MAC check, in seconds.
- ``lt_per_s`` is not reported: comparisons are not implemented yet.

Peers, measured in the same run: MPyC 0.11 (3 parties, Shamir, passive, honest majority; its
numpy-vectorized ``secint`` / ``secfxp`` arrays), CrypTen 0.4.1 (2 parties, passive, trusted
third party dealer). A peer that cannot be installed is reported on stderr and left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mpc.session import Session
from parties.benchmarks.common import emit, peer_python
from parties.testing import run_parties_async
from protocols import spdz
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.preprocessing import Requirements

SUITE = "spdz"
N_MUL = 1_000_000
REPEATS = 3


async def bench_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Inputs, then timed batched multiplications and a fixed-point matmul (every party)."""
    n, m = params["n"], params["m"]
    owners = {0: 2 * n + 2 * m * m, 1: 2 * n}
    need = Requirements(
        triples=n * params["repeats"],
        matrix_triples={(m, m, m): params["repeats"]},
        input_masks=owners,
        truncation_pairs={16: m * m * params["repeats"]},
    )
    dealer = InsecureDealer(session.party_id, session.n_parties, params["seed"], allow_insecure=True)
    dealer.reserve(need)  # generated before the clock starts
    engine = spdz.setup(session, dealer)
    x = await spdz.input(session, np.arange(n, dtype=np.int64), owner=0)
    y = await spdz.input(session, np.arange(n, dtype=np.int64) + 3, owner=1)
    a = await spdz.input(session, np.full((m, m), 0.5), owner=0)
    b = await spdz.input(session, np.full((m, m), 0.25), owner=0)
    await engine.check()
    out: dict[str, Any] = {"mul": [], "mul_bytes": [], "matmul": []}
    for _ in range(params["repeats"]):
        sent = session.stats.bytes_sent
        t = time.perf_counter()
        z = x * y
        await engine.flush()
        await engine.check()
        out["mul"].append(time.perf_counter() - t)
        out["mul_bytes"].append(session.stats.bytes_sent - sent)
        t = time.perf_counter()
        c = a @ b
        await engine.flush()
        await engine.check()
        out["matmul"].append(time.perf_counter() - t)
    got = await spdz.reveal(session, [z[:3], c[0, :2]])
    out["check"] = [got[0].tolist(), got[1].tolist()]
    return out


async def measure_ours(parties: int, transport: str, m: int) -> dict[str, Any]:
    params = {"n": N_MUL, "m": m, "repeats": REPEATS, "seed": os.urandom(16)}
    outcomes = await run_parties_async(bench_program, [params] * parties, transport=transport, recv_timeout=120)  # type: ignore[arg-type]
    for o in outcomes:
        if o.error is not None:
            raise o.error
    res = outcomes[0].result
    if res["check"][0] != [0, 4, 10] or abs(res["check"][1][0] - 0.125 * m) > 1e-3:
        raise RuntimeError(f"benchmark computed a wrong result: {res['check']}")
    return res


# -- MPyC ------------------------------------------------------------------------------------------

MPYC_PROGRAM = r"""
import json, sys, time
import numpy as np
from mpyc.runtime import mpc

async def main(n, m, reps):
    await mpc.start()
    secint = mpc.SecInt(64)
    secfxp = mpc.SecFxp(64, 16)
    x = mpc.input(secint.array(np.arange(n)), senders=0)
    y = mpc.input(secint.array(np.arange(n) + 3), senders=0)
    a = mpc.input(secfxp.array(np.full((m, m), 0.5)), senders=0)
    b = mpc.input(secfxp.array(np.full((m, m), 0.25)), senders=0)
    await mpc.output(x[:1])
    muls, mms, outs = [], [], []
    for _ in range(reps):
        t = time.perf_counter()
        await mpc.output(x[:1] + y[:1])
        outs.append(time.perf_counter() - t)
        t = time.perf_counter()
        z = x * y
        await mpc.output(z[:1])
        muls.append(time.perf_counter() - t)
        t = time.perf_counter()
        c = a @ b
        await mpc.output(c[0, :1])
        mms.append(time.perf_counter() - t)
    await mpc.shutdown()
    if mpc.pid == 0:
        print(json.dumps({"mul": muls, "matmul": mms, "output": outs}), flush=True)

mpc.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def measure_mpyc(m: int) -> dict[str, Any] | None:
    try:
        py = peer_python("mpyc", ["mpyc==0.11", "gmpy2"])
    except subprocess.CalledProcessError as exc:
        print(f"bench: cannot install MPyC: {exc}", file=sys.stderr)
        return None
    from parties.local import free_ports

    with tempfile.TemporaryDirectory(prefix="mpyc-bench-") as tmp:
        script = Path(tmp) / "mpyc_bench.py"
        script.write_text(MPYC_PROGRAM)
        (port,) = free_ports(1)
        procs = [
            subprocess.Popen(
                [str(py), str(script), str(N_MUL), str(m), str(REPEATS), "-M3", f"-I{i}", "-B", str(port), "--no-log"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmp,
            )
            for i in range(3)
        ]
        outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            print(f"bench: MPyC failed: {err.decode(errors='replace')[-800:]}", file=sys.stderr)
            return None
    return json.loads(outs[0][0].decode().strip().splitlines()[-1])


# -- CrypTen ---------------------------------------------------------------------------------------

CRYPTEN_PROGRAM = r"""
import json, sys, time, importlib
import torch.onnx._internal.torchscript_exporter.registration as _reg
sys.modules["torch.onnx._internal.registration"] = _reg
import torch
import crypten
import crypten.mpc as cmpc

N, M, REPS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

@cmpc.run_multiprocess(world_size=2)
def bench():
    x = crypten.cryptensor(torch.arange(N, dtype=torch.float64))
    y = crypten.cryptensor(torch.arange(N, dtype=torch.float64) + 3)
    a = crypten.cryptensor(torch.full((M, M), 0.5))
    b = crypten.cryptensor(torch.full((M, M), 0.25))
    muls, mms = [], []
    for _ in range(REPS):
        t = time.perf_counter()
        z = x * y
        muls.append(time.perf_counter() - t)
        t = time.perf_counter()
        c = a.matmul(b)
        mms.append(time.perf_counter() - t)
    crypten.print(json.dumps({"mul": muls, "matmul": mms}))
    return 0

crypten.init()
bench()
"""


def crypten_python() -> Path | None:
    """CrypTen's venv, installed as PEERS.md says (torch CPU first, crypten without deps)."""
    venv = peer_python("crypten", ["torch==2.13.0"])
    stamp = venv.parent.parent / ".crypten-installed"
    if not stamp.exists():
        steps = [["crypten==0.4.1", "--no-deps"], ["numpy", "omegaconf", "pyyaml", "onnx", "scikit-learn"]]
        for step in steps:
            subprocess.run([str(venv), "-m", "pip", "install", "--quiet", *step], check=True, stdout=sys.stderr)
        stamp.write_text("ok")
    return venv


def measure_crypten(m: int) -> dict[str, Any] | None:
    try:
        py = crypten_python()
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"bench: cannot install CrypTen: {exc}", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="crypten-bench-") as tmp:
        script = Path(tmp) / "crypten_bench.py"
        script.write_text(CRYPTEN_PROGRAM)
        proc = subprocess.run([str(py), str(script), str(N_MUL), str(m), str(REPEATS)], capture_output=True, timeout=900, cwd=tmp)
    if proc.returncode != 0:
        print(f"bench: CrypTen failed: {proc.stderr.decode(errors='replace')[-800:]}", file=sys.stderr)
        return None
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


# -- the suite -------------------------------------------------------------------------------------


async def run() -> None:
    """``mul_per_s``, ``bytes_per_mul``, ``matmul100_s``, ``matmul128_s`` for 2 and 3 parties."""
    mpyc = {m: await asyncio.to_thread(measure_mpyc, m) for m in (100,)}
    crypten = {m: await asyncio.to_thread(measure_crypten, m) for m in (100,)}
    # Our party processes compute single-threaded; OpenBLAS's thread pool (used by the float64
    # limb products of ring128.matmul) only fights the other parties for the cores.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    for parties in (2, 3):
        peer_name = "mpyc" if parties == 3 else "crypten"
        peer = (mpyc if parties == 3 else crypten).get(100)
        for transport in ("processes", "memory"):
            ours = await measure_ours(parties, transport, 100)
            mul_s = min(ours["mul"])
            base = {"parties": parties, "n": N_MUL, "transport": transport, "preprocessing": "InsecureDealer (online only)"}
            with_peer = transport == "processes" and peer is not None
            peer_mul = N_MUL / min(peer["mul"]) if with_peer else None  # type: ignore[index]
            emit(SUITE, "mul_per_s", N_MUL / mul_s, "mul/s", {**base, "includes": "one round + MAC check"}, peer_name if with_peer else None, peer_mul)
            per_mul = min(ours["mul_bytes"]) / N_MUL
            emit(SUITE, "bytes_per_mul", per_mul, "B", {**base, "theory": 32 * (parties - 1), "better": "lower"}, None, None)
            peer_mm = min(peer["matmul"]) if with_peer else None  # type: ignore[index]
            emit(SUITE, "matmul100_s", min(ours["matmul"]), "s", {**base, "n": 100, "frac_bits": 16, "better": "lower"}, peer_name if with_peer else None, peer_mm)
        ours128 = await measure_ours(parties, "processes", 128)
        emit(SUITE, "matmul128_s", min(ours128["matmul"]), "s", {"parties": parties, "n": 128, "transport": "processes", "frac_bits": 16, "better": "lower"}, None, None)

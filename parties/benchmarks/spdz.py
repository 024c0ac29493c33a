"""Benchmark suite ``spdz``: the SPDZ2k online phase against MPyC (3 parties) and CrypTen (2).

Ours: party processes over the real mesh (mutual TLS 1.3 websockets, ``transport="processes"``)
and, for reference, the in-memory mesh; preprocessing from the InsecureDealer generated before
the clock starts (online phase only, like the peers' dealer-based figures).

- ``mul_per_s``: 10^6 elementwise 64-bit multiplications, one batched round plus the MAC check
  of everything opened (active security), per second.
- ``bytes_per_mul``: bytes sent per party per multiplication beside the protocol's theoretical
  minimum ``2 * 16 * (n - 1)`` (``d`` and ``e``, 128-bit shares, to every peer), or with three
  parties ``2 * 16 * 2 (n - 1) / n``: the 2 x 10^6 opened elements are over the engine's
  ``relay_min``, so the open is relayed (two rounds, each party sums one slice).
- ``matmul100_s`` / ``matmul128_s``: a fixed-point (f = 16) secret matrix product (one matrix
  triple, one truncation) including the MAC check, in seconds.
- ``lt_per_s``: 64-bit signed less-than ``a < b`` of secret arrays (exact, by bit decomposition:
  6 rounds; with the dealer's comparison masks 57 triples and one mask per element online),
  ``N_LT`` per batch, including the MAC check; ``bytes_per_lt`` beside the protocol's
  ``16 (1 + 2 * 57) (n - 1)`` with every open direct (``theory``) and, with three parties, with
  every open relayed (``theory_relayed``: that times ``2 / n``); the levels whose opens reach
  ``relay_min`` are relayed and the others not, so the measured figure lies between the two.
- The same in the passive mode (``security: passive`` in params; no MAC check, openings of 8
  bytes), processes only.
- Every line's params carry ``cpu_us_per_op``: the CPU time of one party process per operation
  (mean over the parties), which is what the figure costs on a shared machine.

Peers, measured in the same run: MPyC 0.11 (3 parties, Shamir, passive, honest majority; its
numpy-vectorized ``secint`` / ``secfxp`` arrays; ``SecInt(64)`` less-than), CrypTen 0.4.1 (2
parties, passive, trusted third party dealer; its ``<`` on encrypted tensors). A peer that
cannot be installed is reported on stderr and left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import numpy as np

from mpc.session import Session
from parties.benchmarks.common import emit, run_crypten, run_mpyc
from parties.testing import run_parties_async
from protocols import spdz
from protocols.spdz import compare
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.preprocessing import Requirements

SUITE = "spdz"
N_MUL = 1_000_000
N_LT = 20_000
N_LT_MPYC = 2_000
REPEATS = 3


async def bench_program(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Inputs, then timed batched multiplications, a fixed-point matmul and comparisons."""
    n, m, nlt, reps = params["n"], params["m"], params["nlt"], params["repeats"]
    owners = {0: 2 * n + 2 * m * m + nlt, 1: 2 * n + nlt}
    dealer = InsecureDealer(session.party_id, session.n_parties, params["seed"], allow_insecure=True)
    need = Requirements(
        triples=n * reps,
        matrix_triples={(m, m, m): reps},
        input_masks=owners,
        truncation_pairs={16: m * m * reps},
    ) + compare.cost(compare.Want(lt=True), nlt * reps, dealer)
    dealer.reserve(need)  # generated before the clock starts
    engine = spdz.setup(session, dealer, security=params.get("security", "active"))
    x = await spdz.input(session, np.arange(n, dtype=np.int64), owner=0)
    y = await spdz.input(session, np.arange(n, dtype=np.int64) + 3, owner=1)
    a = await spdz.input(session, np.full((m, m), 0.5), owner=0)
    b = await spdz.input(session, np.full((m, m), 0.25), owner=0)
    u = await spdz.input(session, np.arange(nlt, dtype=np.int64) - nlt // 2, owner=0)
    v = await spdz.input(session, np.zeros(nlt, dtype=np.int64), owner=1)
    await engine.check()
    out: dict[str, Any] = {k: [] for k in ("mul", "mul_cpu", "mul_bytes", "matmul", "matmul_cpu", "lt", "lt_cpu", "lt_bytes")}

    async def timed(name: str, make: Any) -> Any:
        sent = session.stats.bytes_sent
        cpu = time.process_time()
        t = time.perf_counter()
        result = make()
        await engine.flush()
        await engine.check()
        out[name].append(time.perf_counter() - t)
        out[f"{name}_cpu"].append(time.process_time() - cpu)
        if f"{name}_bytes" in out:
            out[f"{name}_bytes"].append(session.stats.bytes_sent - sent)
        return result

    for _ in range(reps):
        z = await timed("mul", lambda: x * y)
        c = await timed("matmul", lambda: a @ b)
        w = await timed("lt", lambda: u < v)
    got = await spdz.reveal(session, [z[:3], c[0, :2], w[nlt // 2 - 2 : nlt // 2 + 1]])
    out["check"] = [got[0].tolist(), got[1].tolist(), got[2].tolist()]
    return out


async def measure_ours(parties: int, transport: str, m: int, nlt: int = N_LT, security: str = "active") -> dict[str, Any]:
    params = {"n": N_MUL, "m": m, "nlt": nlt, "repeats": REPEATS, "seed": os.urandom(16), "security": security}
    outcomes = await run_parties_async(bench_program, [params] * parties, transport=transport, recv_timeout=300)  # type: ignore[arg-type]
    for o in outcomes:
        if o.error is not None:
            raise o.error
    res = outcomes[0].result
    if res["check"][0] != [0, 4, 10] or abs(res["check"][1][0] - 0.125 * m) > 1e-3 or res["check"][2] != [1, 1, 0]:
        raise RuntimeError(f"benchmark computed a wrong result: {res['check']}")
    # CPU per operation: the mean over the party processes of each one's best repetition (on
    # the memory mesh all parties share one process: its CPU time is split evenly among them)
    share = parties if transport == "memory" else 1
    for key in ("mul_cpu", "matmul_cpu", "lt_cpu"):
        res[key] = float(np.mean([min(o.result[key]) for o in outcomes])) / share
    return res


# -- MPyC ------------------------------------------------------------------------------------------

MPYC_PROGRAM = r"""
import json, sys, time
import numpy as np
from mpyc.runtime import mpc

async def main(n, m, reps, nlt):
    await mpc.start()
    secint = mpc.SecInt(64)
    secfxp = mpc.SecFxp(64, 16)
    x = mpc.input(secint.array(np.arange(n)), senders=0)
    y = mpc.input(secint.array(np.arange(n) + 3), senders=0)
    u = mpc.input(secint.array(np.arange(nlt) - nlt // 2), senders=0)
    v = mpc.input(secint.array(np.zeros(nlt, dtype=np.int64)), senders=0)
    a = mpc.input(secfxp.array(np.full((m, m), 0.5)), senders=0)
    b = mpc.input(secfxp.array(np.full((m, m), 0.25)), senders=0)
    await mpc.output(x[:1])
    muls, mms, outs, lts, cpus = [], [], [], [], {"mul": [], "matmul": [], "lt": []}
    for _ in range(reps):
        t = time.perf_counter()
        await mpc.output(x[:1] + y[:1])
        outs.append(time.perf_counter() - t)
        t, c0 = time.perf_counter(), time.process_time()
        z = x * y
        await mpc.output(z[:1])
        muls.append(time.perf_counter() - t)
        cpus["mul"].append(time.process_time() - c0)
        t, c0 = time.perf_counter(), time.process_time()
        c = a @ b
        await mpc.output(c[0, :1])
        mms.append(time.perf_counter() - t)
        cpus["matmul"].append(time.process_time() - c0)
        t, c0 = time.perf_counter(), time.process_time()
        w = u < v
        await mpc.output(w[:1])
        lts.append(time.perf_counter() - t)
        cpus["lt"].append(time.process_time() - c0)
    await mpc.shutdown()
    if mpc.pid == 0:
        print(json.dumps({"mul": muls, "matmul": mms, "output": outs, "lt": lts, "cpu": cpus}), flush=True)

mpc.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def measure_mpyc(m: int) -> dict[str, Any] | None:
    out = run_mpyc(MPYC_PROGRAM, [str(N_MUL), str(m), str(REPEATS), str(N_LT_MPYC)], timeout=900, label="spdz")
    return None if out is None else json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- CrypTen ---------------------------------------------------------------------------------------

CRYPTEN_PROGRAM = r"""
import json, sys, time, importlib
import torch.onnx._internal.torchscript_exporter.registration as _reg
sys.modules["torch.onnx._internal.registration"] = _reg
import torch
import crypten
import crypten.mpc as cmpc

N, M, REPS, NLT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

@cmpc.run_multiprocess(world_size=2)
def bench():
    x = crypten.cryptensor(torch.arange(N, dtype=torch.float64))
    y = crypten.cryptensor(torch.arange(N, dtype=torch.float64) + 3)
    a = crypten.cryptensor(torch.full((M, M), 0.5))
    b = crypten.cryptensor(torch.full((M, M), 0.25))
    u = crypten.cryptensor(torch.arange(NLT, dtype=torch.float64) - NLT // 2)
    v = crypten.cryptensor(torch.zeros(NLT, dtype=torch.float64))
    muls, mms, lts = [], [], []
    for _ in range(REPS):
        t = time.perf_counter()
        z = x * y
        muls.append(time.perf_counter() - t)
        t = time.perf_counter()
        c = a.matmul(b)
        mms.append(time.perf_counter() - t)
        t = time.perf_counter()
        w = u < v
        lts.append(time.perf_counter() - t)
    crypten.print(json.dumps({"mul": muls, "matmul": mms, "lt": lts}))
    return 0

crypten.init()
bench()
"""


def measure_crypten(m: int) -> dict[str, Any] | None:
    return run_crypten(CRYPTEN_PROGRAM, [str(N_MUL), str(m), str(REPEATS), str(N_LT)], timeout=900, label="spdz")


# -- the suite -------------------------------------------------------------------------------------


def relayed(parties: int, per_peer: int) -> float:
    """Bytes per multiplication of the open of ``d, e`` (``per_peer`` to each peer if direct)."""
    if parties >= 3 and 2 * N_MUL >= spdz.DEFAULT_RELAY_MIN:
        return per_peer * 2 * (parties - 1) / parties
    return float(per_peer * (parties - 1))



async def run() -> None:
    """``mul_per_s``, ``bytes_per_mul``, ``matmul100_s``, ``matmul128_s``, ``lt_per_s``, ``bytes_per_lt``."""
    mpyc = await asyncio.to_thread(measure_mpyc, 100)
    crypten = await asyncio.to_thread(measure_crypten, 100)
    # Our party processes compute single-threaded; OpenBLAS's thread pool (used by the float64
    # limb products of ring128.matmul) only fights the other parties for the cores.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    probe = InsecureDealer(0, 1, bytes(16), allow_insecure=True)  # what the benchmark's provider offers
    lt_theory = 16 * (1 + 2 * compare.cost(compare.Want(lt=True), 1, probe).triples)
    for parties in (2, 3):
        peer_name = "mpyc" if parties == 3 else "crypten"
        peer = mpyc if parties == 3 else crypten
        for transport in ("processes", "memory"):
            ours = await measure_ours(parties, transport, 100)
            base = {"parties": parties, "n": N_MUL, "transport": transport, "preprocessing": "InsecureDealer (online only)", "security": "active"}
            with_peer = transport == "processes" and peer is not None
            name = peer_name if with_peer else None

            def best(key: str, src: dict[str, Any] | None = None) -> float:
                return float(min((src or ours)[key]))

            peer_mul = N_MUL / best("mul", peer) if with_peer else None
            mul_params = {**base, "includes": "one round + MAC check", "cpu_us_per_op": ours["mul_cpu"] / N_MUL * 1e6}
            if with_peer and parties == 3 and peer is not None and "cpu" in peer:
                mul_params["peer_cpu_us_per_op"] = min(peer["cpu"]["mul"]) / N_MUL * 1e6
            emit(SUITE, "mul_per_s", N_MUL / best("mul"), "mul/s", mul_params, name, peer_mul)
            emit(SUITE, "bytes_per_mul", best("mul_bytes") / N_MUL, "B", {**base, "theory": round(relayed(parties, 32), 3), "better": "lower"}, None, None)
            peer_mm = best("matmul", peer) if with_peer else None
            emit(SUITE, "matmul100_s", best("matmul"), "s",
                 {**base, "n": 100, "frac_bits": 16, "better": "lower", "cpu_s": ours["matmul_cpu"]}, name, peer_mm)
            lt_base = {**base, "n": N_LT, "bits": 64, "includes": "6 rounds + MAC check", "cpu_us_per_op": ours["lt_cpu"] / N_LT * 1e6}
            peer_lt = None
            if with_peer and peer is not None and "lt" in peer:
                peer_n = N_LT_MPYC if parties == 3 else N_LT
                peer_lt = peer_n / best("lt", peer)
                lt_base["peer_n"] = peer_n
                if parties == 3 and "cpu" in peer:
                    lt_base["peer_cpu_us_per_op"] = min(peer["cpu"]["lt"]) / N_LT_MPYC * 1e6
            emit(SUITE, "lt_per_s", N_LT / best("lt"), "lt/s", lt_base, name if peer_lt else None, peer_lt)
            emit(SUITE, "bytes_per_lt", best("lt_bytes") / N_LT, "B", {**base, "n": N_LT, "theory": lt_theory * (parties - 1), **({"theory_relayed": round(lt_theory * 2 * (parties - 1) / parties, 1)} if parties >= 3 else {}), "better": "lower"}, None, None)
        passive = await measure_ours(parties, "processes", 100, security="passive")
        base = {"parties": parties, "n": N_MUL, "transport": "processes", "preprocessing": "InsecureDealer (online only)", "security": "passive"}
        emit(SUITE, "mul_per_s", N_MUL / min(passive["mul"]), "mul/s",
             {**base, "includes": "one round, no check", "cpu_us_per_op": passive["mul_cpu"] / N_MUL * 1e6}, None, None)
        emit(SUITE, "bytes_per_mul", min(passive["mul_bytes"]) / N_MUL, "B", {**base, "theory": round(relayed(parties, 16), 3), "better": "lower"}, None, None)
        emit(SUITE, "lt_per_s", N_LT / min(passive["lt"]), "lt/s",
             {**base, "n": N_LT, "bits": 64, "cpu_us_per_op": passive["lt_cpu"] / N_LT * 1e6}, None, None)
        ours128 = await measure_ours(parties, "processes", 128, nlt=16)
        emit(SUITE, "matmul128_s", best_of(ours128["matmul"]), "s",
             {"parties": parties, "n": 128, "transport": "processes", "frac_bits": 16, "better": "lower", "cpu_s": ours128["matmul_cpu"]}, None, None)


def best_of(values: list[float]) -> float:
    """The best (smallest) of repeated timings."""
    return float(min(values))

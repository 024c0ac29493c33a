"""Benchmark suite ``secagg``: our SecAgg against Flower's SecAgg+ primitives, same workload.

Workloads: (clients, dim, dropped) in ``WORKLOADS``; the complete graph (classic SecAgg) and a
majority threshold on both sides; the ``dropped`` clients drop after sharing keys, before
sending their masked vectors (the costly case: the aggregator rebuilds their mask keys and
removes their pairwise masks). Updates are float vectors in [-1, 1) quantized by each system's
own quantizer (ours: fixed point, 16 fractional bits, in Z_2^32; Flower: its stochastic
quantization into [0, 2^22), summed modulo 2^32 as int64).

Metrics per workload (ratio = ours / Flower; lower is better for all three):

- ``client_seconds``: median over clients of the masking stage's compute (decrypt the
  neighbours' shares, quantize, self and pairwise masks, reduce);
- ``aggregator_seconds``: add the masked vectors, rebuild the secrets from shares, remove the
  masks, decode;
- ``bytes_per_client``: what one client uploads over the whole protocol (ours: the encoded
  messages exactly as framed on the wire minus the frame headers; Flower: the payload bytes of
  its messages, keys, ciphertexts, ``ndarray_to_bytes`` vectors and shares, without protobuf
  overhead), beside ``float32_bytes``, the unmasked update itself.

Both sides run their stages in one process, without a network, so only computation and
message sizes are compared. Peer: ``flwr`` in ``.venv-peers/flwr-secagg``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

import numpy as np

from mpc.prg import PRG
from parties.benchmarks.common import emit, peer_python
from protocols.secagg.client import (
    check_input,
    client_check_digests,
    client_mask,
    client_setup,
    client_share_keys,
    client_survivors,
    client_unmask,
)
from protocols.secagg.fedavg import encode_fixed
from protocols.secagg.params import SecAggParams
from protocols.secagg.server import server_collect_keys, server_collect_masked, server_relay_shares, server_unmask
from transport.framing import encode_payload

WORKLOADS = ((10, 100_000, 2), (10, 1_000_000, 2), (100, 100_000, 10))
CONTEXT = b"bench\x00/secagg#0"


def _wire_bytes(payload: Any) -> int:
    enc = encode_payload(payload)
    return len(enc.body) + sum(len(b) for b in enc.buffers)


def measure_ours(n_clients: int, dim: int, dropped: int) -> dict[str, float]:
    """Run every party's pure stages in this process; time the client mask and aggregator."""
    prg = PRG()
    plan = SecAggParams(dim=dim, max_dropouts=dropped).plan(n_clients + 1)
    graph = plan.graph(b"bench-graph")
    updates = {c: (prg.uint64(dim) >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0 for c in plan.clients}
    sent = {c: 0 for c in plan.clients}
    states: dict[int, Any] = {}
    msgs: dict[int, Any] = {}
    for c in plan.clients:
        states[c], msgs[c] = client_setup(plan, c, CONTEXT, graph, prg)
        sent[c] += (1 + len(graph[c])) * _wire_bytes(msgs[c])  # to the aggregator and each neighbour
    adverts = dict(msgs)
    keys, out = server_collect_keys(plan, CONTEXT, graph, msgs)
    msgs = {}
    for c, roster in out.items():
        direct = {v: adverts[v] for v in graph[c] if v in adverts}
        states[c], msgs[c] = client_share_keys(states[c], roster, direct, prg)
        sent[c] += _wire_bytes(msgs[c])
    shares, out = server_relay_shares(keys, msgs)
    gone = set(plan.clients[:dropped])
    msgs = {}
    client_times = []
    for c, fwd in out.items():
        if c in gone:
            continue
        t = time.perf_counter()
        x = check_input(encode_fixed(updates[c], 16, 32), plan)
        states[c], msgs[c] = client_mask(states[c], fwd, x)
        client_times.append(time.perf_counter() - t)
        sent[c] += _wire_bytes(msgs[c])
    t = time.perf_counter()
    masked, out = server_collect_masked(shares, msgs)
    agg_collect = time.perf_counter() - t
    msgs = {}
    views, digests = {}, {}
    for c, survivors in out.items():
        views[c], digests[c] = client_survivors(states[c], survivors)
    for c, view in views.items():  # the consistency round: each client's digest to its peers
        msgs[c] = client_unmask(client_check_digests(view, {w: digests[w] for w in view.peers}))
        sent[c] += _wire_bytes(msgs[c]) + 32 * len(view.peers)
    t = time.perf_counter()
    result = server_unmask(masked, msgs)
    signed = result.total.astype(np.int64)
    signed[signed >= 1 << 31] -= 1 << 32
    total = signed.astype(np.float64) / 2.0**16
    agg_seconds = agg_collect + time.perf_counter() - t
    expected = sum(updates[c] for c in result.survivors)
    if not np.allclose(total, expected, atol=len(result.survivors) * 2.0**-16):
        raise RuntimeError("our secure sum is wrong")
    survivors_sent = [sent[c] for c in result.survivors]
    return {
        "client_seconds": statistics.median(client_times),
        "aggregator_seconds": agg_seconds,
        "bytes_per_client": statistics.median(survivors_sent),
    }


FLOWER_PEER = r"""
import json, statistics, sys, time
import numpy as np
from flwr.common import ndarray_to_bytes, bytes_to_ndarray
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt, encrypt, generate_shared_key
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine, factor_extract, parameters_addition, parameters_mod, parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_utils import (
    pseudo_rand_gen, share_keys_plaintext_concat, share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key, bytes_to_public_key, generate_key_pairs, private_key_to_bytes, public_key_to_bytes,
)

n, dim, dropped = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
clip, target, mod = 8.0, 1 << 22, 1 << 32
threshold = n // 2 + 1                       # majority of the n shares (own share included)
rng = np.random.default_rng(7)  # not secret: benchmark data only
updates = {c: rng.uniform(-1, 1, dim) for c in range(n)}  # not secret: benchmark data only
ids = list(range(n))
sent = {c: 0 for c in ids}
# stage 0: two key pairs each
keys = {}
for c in ids:
    sk1, pk1 = generate_key_pairs(); sk2, pk2 = generate_key_pairs()
    keys[c] = (private_key_to_bytes(sk1), public_key_to_bytes(pk1), private_key_to_bytes(sk2), public_key_to_bytes(pk2))
    sent[c] += len(keys[c][1]) + len(keys[c][3])
# stage 1: share rd_seed and sk1 among all (own share kept), encrypt to each other client
seeds, held, ss2, inbox = {}, {c: {} for c in ids}, {}, {c: [] for c in ids}
import os
for c in ids:
    seeds[c] = os.urandom(32)
    b_shares = create_shares(seeds[c], threshold, n)
    sk_shares = create_shares(keys[c][0], threshold, n)
    for idx, v in enumerate(ids):
        if v == c:
            held[c][c] = (b_shares[idx], sk_shares[idx]); continue
        key = generate_shared_key(bytes_to_private_key(keys[c][2]), bytes_to_public_key(keys[v][3]))
        ss2[(c, v)] = key
        ct = encrypt(key, share_keys_plaintext_concat(c, v, b_shares[idx], sk_shares[idx]))
        inbox[v].append((c, ct))
        sent[c] += len(ct)
gone = set(ids[:dropped])
alive = [c for c in ids if c not in gone]
# stage 2: masked vectors (timed per client)
client_times, masked_bytes = [], {}
for c in alive:
    t = time.perf_counter()
    for src, ct in inbox[c]:
        key = generate_shared_key(bytes_to_private_key(keys[c][2]), bytes_to_public_key(keys[src][3]))
        s, d, b_share, sk_share = share_keys_plaintext_separate(decrypt(key, ct))
        held[c][src] = (b_share, sk_share)
    q = quantize([updates[c]], clip, target)
    q = factor_combine(1, q)
    q = parameters_addition(q, pseudo_rand_gen(seeds[c], mod, [a.shape for a in q]))
    for v in ids:
        if v == c:
            continue
        shared = generate_shared_key(bytes_to_private_key(keys[c][0]), bytes_to_public_key(keys[v][1]))
        pm = pseudo_rand_gen(shared, mod, [a.shape for a in q])
        q = parameters_addition(q, pm) if c > v else parameters_subtraction(q, pm)
    q = parameters_mod(q, mod)
    blob = [ndarray_to_bytes(a) for a in q]
    client_times.append(time.perf_counter() - t)
    masked_bytes[c] = blob
    sent[c] += sum(len(b) for b in blob)
# stage 3: shares of b for alive, of sk1 for dropped
share_lists = {c: [] for c in ids}
for v in alive:
    for owner in ids:
        b_share, sk_share = held[v][owner]
        share = b_share if owner in alive else sk_share
        share_lists[owner].append(share)
        sent[v] += len(share)
t = time.perf_counter()
acc = None
for c in alive:
    vec = [bytes_to_ndarray(b) for b in masked_bytes[c]]
    acc = vec if acc is None else parameters_addition(acc, vec)
acc = parameters_mod(acc, mod)
shape = [a.shape for a in acc]
for owner in ids:
    secret = combine_shares(share_lists[owner])
    if owner in alive:
        acc = parameters_subtraction(acc, pseudo_rand_gen(secret, mod, shape))
    else:
        for v in alive:
            shared = generate_shared_key(bytes_to_private_key(secret), bytes_to_public_key(keys[v][1]))
            pm = pseudo_rand_gen(shared, mod, shape)
            acc = parameters_addition(acc, pm) if owner > v else parameters_subtraction(acc, pm)
acc = parameters_mod(acc, mod)
ratio, acc = factor_extract(acc)
agg = dequantize(acc, clip, target)[0] - (len(alive) - 1) * clip
agg_seconds = time.perf_counter() - t
expected = sum(updates[c] for c in alive)
ok = bool(np.allclose(agg, expected, atol=len(alive) * 2 * clip / target * 2))
print(json.dumps({"client_seconds": statistics.median(client_times), "aggregator_seconds": agg_seconds,
                  "bytes_per_client": statistics.median([sent[c] for c in alive]), "ok": ok}))
"""


def measure_flower(n_clients: int, dim: int, dropped: int) -> dict[str, float]:
    """Drive Flower's SecAgg+ primitives for the same workload in its own venv."""
    py = peer_python("flwr-secagg", ["flwr"])
    proc = subprocess.run(
        [str(py), "-c", FLOWER_PEER, str(n_clients), str(dim), str(dropped)],
        check=True,
        capture_output=True,
        text=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out.pop("ok"):
        raise RuntimeError("Flower's aggregate is wrong: the peer driver is broken")
    return out


def measure_dp_encode(dim: int) -> float:
    """Seconds for one client's DDGauss encoding (clip, rotate, round, exact noise)."""
    from protocols.dp.mechanism import DDGParams

    prg = PRG()
    plan = DDGParams(dim=dim, clip=1.0, noise_multiplier=1.0, n_clients=10, max_dropouts=2).plan()
    x = (prg.uint64(dim) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    t = time.perf_counter()
    plan.encode(x, b"bench-rotation", prg)
    return time.perf_counter() - t


async def run() -> None:
    """For each workload: client masking, aggregator unmasking and upload bytes, ours vs Flower;
    then our DP encoding time per client (Flower has no distributed DP: no peer figure)."""
    for n_clients, dim, dropped in WORKLOADS:
        ours = await asyncio.to_thread(measure_ours, n_clients, dim, dropped)
        peer = await asyncio.to_thread(measure_flower, n_clients, dim, dropped)
        params = {
            "clients": n_clients,
            "dim": dim,
            "dropped": dropped,
            "graph": "complete",
            "float32_bytes": 4 * dim,
            "better": "lower",
        }
        emit("secagg", "client_seconds", ours["client_seconds"], "s", params, "flwr-secagg+", peer["client_seconds"])
        emit("secagg", "aggregator_seconds", ours["aggregator_seconds"], "s", params, "flwr-secagg+", peer["aggregator_seconds"])
        emit("secagg", "bytes_per_client", ours["bytes_per_client"], "B", params, "flwr-secagg+", peer["bytes_per_client"])
        emit(
            "secagg",
            "bytes_per_client_over_float32",
            ours["bytes_per_client"] / (4 * dim),
            "x",
            params,
            "flwr-secagg+",
            peer["bytes_per_client"] / (4 * dim),
        )
    for dim in (100_000, 1_000_000):
        seconds = await asyncio.to_thread(measure_dp_encode, dim)
        emit("secagg", "dp_encode_seconds", seconds, "s", {"dim": dim, "clients": 10, "dropouts": 2, "noise": "exact discrete Gaussian"}, None, None)

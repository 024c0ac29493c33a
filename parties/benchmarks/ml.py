"""Benchmark suite ``ml``: secret-shared logistic-regression training and MLP inference.

Workload (identical for every system): scikit-learn's breast-cancer data, a stratified 80/20
split (455 training rows, 114 test rows, 30 features), standardized with the training rows'
mean and standard deviation; logistic regression by mini-batch gradient descent, 10 epochs,
batch 64 (8 steps per epoch, the last of 7 rows), learning rate 0.5, the same public batch
order (:func:`protocols.ml.data.batch_order`, seed 1), the clipped-linear sigmoid
``clip(z / 4 + 1/2, 0, 1)`` (MPyC's logistic regression demo's choice); and inference of a
30-16-1 ReLU MLP (trained in plaintext here) on 100 test patients, features held by one party
and the model by another, the logits output to the patients' party only.

Metrics:

- ``logreg_epoch_s`` (``parties`` 2 with peer ``crypten``, 3 with peer ``mpyc``): mean wall
  time of an epoch, online phase, ours over party processes on real mutual-TLS websockets
  (``transport="processes"``) with the InsecureDealer's material generated before the clock;
  rounds and bytes per epoch in ``params``; a second line with ``security: passive`` (the
  engine's passive mode, the peers' security model: openings of 64 bits, no MAC check). With
  ``preprocessing: "dealer-free"`` (2 parties,
  when :mod:`protocols.spdz_offline` produces): the same online epoch on dealer-free
  material, and the production time of one epoch's material in ``params``.
- ``logreg_accuracy``: test accuracy of our model, beside plaintext float64 training with the
  same hyper-parameters, activation and batch order (peer ``plaintext``); the peers' accuracies
  and the exact-sigmoid plaintext in ``params``.
- ``mlp_inference_s``: inputs, forward pass (exact ReLU) and output of 100 rows, ours against
  CrypTen (2 parties) and MPyC (3 parties); the max error against float in ``params``.

Peers, measured in the same run: CrypTen 0.4.1 (2 parties, its trusted-first-party triples,
passive; torch 2.13 CPU; hand-written gradient steps with ``hardtanh`` as the clip) and MPyC
0.11 (3 parties, Shamir, passive, honest majority; ``secfxp`` arrays with 32 bits, 16
fractional: its default, the cheapest for it). Ours is actively secure (SPDZ2k MACs, every
opening checked). A peer that cannot be installed is reported on stderr and left out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from mpc.prg import PRG
from mpc.session import Session
from parties.benchmarks.common import emit, run_crypten, run_mpyc
from parties.testing import run_parties_async
from protocols import ml, spdz
from protocols.ml.data import batch_order, column_stats, split_rows
from protocols.ml.reference import accuracy, train_plain
from protocols.spdz.dealer import InsecureDealer

SUITE = "ml"
EPOCHS = 10
BATCH = 64
LR = 0.5
SEED = 1
MLP_ROWS = 100
HIDDEN = 16


def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and test rows (raw features) and labels: the stratified 80/20 split."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return xtr, xte, ytr.astype(np.float64), yte.astype(np.float64)


def plain_mlp(x: np.ndarray, y: np.ndarray) -> ml.Model:
    """A 30-16-1 ReLU MLP trained in float64 (full-batch gradient descent, deterministic init)."""
    mean, scale = column_stats(x)
    xs = (x - mean) / scale
    prg = PRG(hashlib.sha256(b"ml-bench-mlp").digest()[:16])  # public initialization, not secret
    w1 = ((prg.uint64((30, HIDDEN)) >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * 0.5
    w2 = ((prg.uint64((HIDDEN, 1)) >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * 0.5
    b1, b2 = np.zeros(HIDDEN), np.zeros(1)
    for _ in range(300):
        h = np.maximum(xs @ w1 + b1, 0)
        p = 0.5 * (1 + np.tanh((h @ w2 + b2)[:, 0] / 2))
        d2 = ((p - y) / len(y)).reshape(-1, 1)
        dh = (d2 @ w2.T) * (h > 0)
        w2 -= 0.5 * h.T @ d2
        b2 -= 0.5 * d2.sum(axis=0)
        w1 -= 0.5 * xs.T @ dh
        b1 -= 0.5 * dh.sum(axis=0)
    return ml.Model((w1, w2), (b1, b2), mean, scale)


# -- ours ------------------------------------------------------------------------------------------


async def train_program(session: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Reserve the training's preprocessing, then train (every party); party 0 gets the model."""
    params = ml.TrainParams(epochs=inp["epochs"], batch_size=BATCH, learning_rate=LR, seed=SEED)
    n = session.n_parties
    offline_s = 0.0
    if inp["provider"] == "dealer-free":
        from protocols.spdz_offline import DealerFreePreprocessing

        provider: Any = await DealerFreePreprocessing.create(session)
        need = ml.train_requirements(params, partition="horizontal", rows=inp["rows"], columns=[30] * n, receivers=[0], prep=provider)
        t = time.perf_counter()
        await provider.produce(need)
        offline_s = time.perf_counter() - t
        provider.reserve(need)
    else:
        provider = InsecureDealer(session.party_id, n, inp["seed"], allow_insecure=True)
        need = ml.train_requirements(params, partition="horizontal", rows=inp["rows"], columns=[30] * n, receivers=[0], prep=provider)
        provider.reserve(need)  # generated before the clock
    spdz.setup(session, provider, security=inp["security"])
    await session.exchange("bench-start", 0)
    result = await ml.train_logreg(session, inp["x"], inp["y"], partition="horizontal", params=params, receivers=[0])
    model = result.model
    return {
        "epochs": [[e.seconds, e.rounds, e.bytes_sent] for e in result.epochs],
        "offline_s": offline_s,
        "w": None if model is None else np.concatenate([model.weights[0][:, 0], model.biases[0]]),
        "mean": None if model is None else model.mean,
        "scale": None if model is None else model.scale,
    }


async def predict_program(session: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Reserve, then predict: party 0 holds the rows, party 1 the model (logits to party 0)."""
    spec = ml.ModelSpec(tuple(inp["sizes"]))
    provider = InsecureDealer(session.party_id, session.n_parties, inp["seed"], allow_insecure=True)
    need = ml.predict_requirements(spec, inp["rows"], n_parties=session.n_parties, data_owner=0, model_owner=1, prep=provider)
    provider.reserve(need)
    spdz.setup(session, provider)
    model = None
    if session.party_id == 1:
        k = len(inp["sizes"]) - 1
        model = ml.Model(tuple(inp[f"W{i}"] for i in range(k)), tuple(inp[f"b{i}"] for i in range(k)), inp["mean"], inp["scale"])
    await session.exchange("bench-start", 0)
    t = time.perf_counter()
    rounds, sent = session.stats.rounds, session.stats.bytes_sent
    out = await ml.predict(session, inp.get("x"), model, spec=spec, data_owner=0, model_owner=1, output="logit")
    return {"seconds": time.perf_counter() - t, "logits": out, "rounds": session.stats.rounds - rounds, "bytes": session.stats.bytes_sent - sent}


async def measure_train(parties: int, provider: str, epochs: int, security: str = "active") -> dict[str, Any]:
    xtr, _, ytr, _ = dataset()
    parts = split_rows(xtr, ytr, parties)
    rows = [p[0].shape[0] for p in parts]
    seed = os.urandom(16)
    inputs = [{"x": x, "y": y, "rows": rows, "seed": seed, "provider": provider, "epochs": epochs, "security": security} for x, y in parts]
    outcomes = await run_parties_async(train_program, inputs, transport="processes", recv_timeout=600)  # type: ignore[arg-type]
    for o in outcomes:
        if o.error is not None:
            raise o.error
    per_party = [np.array(o.result["epochs"], dtype=np.float64) for o in outcomes]
    seconds = np.max([p[:, 0] for p in per_party], axis=0)  # the slowest party per epoch
    res = outcomes[0].result
    return {
        "epoch_s": float(np.mean(seconds)),
        "rounds": int(per_party[0][0, 1]),
        "bytes": int(np.mean([p[:, 2].mean() for p in per_party])),
        "offline_s": max(o.result["offline_s"] for o in outcomes),
        "model": ml.Model.logistic(res["w"], res["mean"], res["scale"]),
    }


async def measure_predict(parties: int, model: ml.Model, x: np.ndarray) -> dict[str, Any]:
    inp: dict[str, Any] = {"sizes": list(model.spec.sizes), "rows": x.shape[0], "seed": os.urandom(16)}
    inputs = [dict(inp) for _ in range(parties)]
    inputs[0]["x"] = x
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        inputs[1][f"W{i}"], inputs[1][f"b{i}"] = w, b
    inputs[1]["mean"], inputs[1]["scale"] = model.mean, model.scale
    outcomes = await run_parties_async(predict_program, inputs, transport="processes", recv_timeout=600)  # type: ignore[arg-type]
    for o in outcomes:
        if o.error is not None:
            raise o.error
    res = outcomes[0].result
    err = float(np.max(np.abs(res["logits"] - model.logits(x)[:, 0])))
    return {"seconds": max(o.result["seconds"] for o in outcomes), "error": err, "rounds": res["rounds"], "bytes": res["bytes"]}


# -- peers -----------------------------------------------------------------------------------------

MPYC_PROGRAM = r"""
import json, sys, time
import numpy as np
from mpyc.runtime import mpc

async def main(path):
    data = json.load(open(path))
    await mpc.start()
    secfxp = mpc.SecFxp()
    out = {}
    if data["task"] == "train":
        X = np.array(data["x"]); y = np.array(data["y"]); order = np.array(data["order"], dtype=np.int64)
        n, d = X.shape
        Xa = np.hstack([X, np.ones((n, 1))])
        Xs = mpc.input(secfxp.array(Xa), senders=0)
        ys = mpc.input(secfxp.array(y), senders=0)
        w = secfxp.array(np.zeros(d + 1))
        await mpc.barrier()
        times = []
        for epoch in order:
            t = time.perf_counter()
            for i in range(0, n, data["batch"]):
                idx = epoch[i:i + data["batch"]]
                xb, yb = Xs[idx], ys[idx]
                z = xb @ w
                a = z >= -2
                b = z >= 2
                u = z * 0.25 + 0.5
                s = b + (a - b) * u
                g = xb.T @ (s - yb)
                w = w - g * (data["lr"] / len(idx))
            await mpc.barrier()
            times.append(time.perf_counter() - t)
        out["epochs"] = times
        out["w"] = [float(v) for v in await mpc.output(w)]
    else:
        x = np.array(data["x"]); model = data["model"]
        t = time.perf_counter()
        a = mpc.input(secfxp.array(x), senders=0)
        ws = [mpc.input(secfxp.array(np.array(w)), senders=1) for w in model["W"]]
        bs = [mpc.input(secfxp.array(np.array(b)), senders=1) for b in model["b"]]
        mean = mpc.input(secfxp.array(np.array(model["mean"])), senders=1)
        inv = mpc.input(secfxp.array(1.0 / np.array(model["scale"])), senders=1)
        a = (a - mean) * inv
        for i, (w, b) in enumerate(zip(ws, bs)):
            a = a @ w + b
            if i + 1 < len(ws):
                a = mpc.np_maximum(a, 0)
        logits = await mpc.output(a, receivers=[0])
        out["seconds"] = time.perf_counter() - t
        if mpc.pid == 0:
            out["logits"] = [float(v) for v in np.asarray(logits).reshape(-1)]
    await mpc.shutdown()
    if mpc.pid == 0:
        print(json.dumps(out), flush=True)

mpc.run(main(sys.argv[1]))
"""

CRYPTEN_PROGRAM = r"""
import json, sys, time
import torch.onnx._internal.torchscript_exporter.registration as _reg
sys.modules["torch.onnx._internal.registration"] = _reg
import torch
import crypten
import crypten.mpc as cmpc

DATA = json.load(open(sys.argv[1]))

@cmpc.run_multiprocess(world_size=2)
def job():
    torch.set_num_threads(1)
    out = {}
    if DATA["task"] == "train":
        X = torch.tensor(DATA["x"], dtype=torch.float64); y = torch.tensor(DATA["y"], dtype=torch.float64)
        n, d = X.shape
        Xs = crypten.cryptensor(torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1), src=0)
        ys = crypten.cryptensor(y, src=0)
        w = crypten.cryptensor(torch.zeros(d + 1), src=0)
        times = []
        for epoch in DATA["order"]:
            t = time.perf_counter()
            for i in range(0, n, DATA["batch"]):
                idx = torch.tensor(epoch[i:i + DATA["batch"]], dtype=torch.long)
                xb, yb = Xs[idx], ys[idx]
                s = (xb.matmul(w) * 0.25 + 0.5).hardtanh(0, 1)
                g = xb.t().matmul(s - yb)
                w = w - g * (DATA["lr"] / len(idx))
            w.share  # noqa: computed eagerly (CrypTen is synchronous)
            times.append(time.perf_counter() - t)
        out["epochs"] = times
        out["w"] = w.get_plain_text().tolist()
    else:
        m = DATA["model"]
        t = time.perf_counter()
        a = crypten.cryptensor(torch.tensor(DATA["x"]), src=0)
        ws = [crypten.cryptensor(torch.tensor(w), src=1) for w in m["W"]]
        bs = [crypten.cryptensor(torch.tensor(b), src=1) for b in m["b"]]
        mean = crypten.cryptensor(torch.tensor(m["mean"]), src=1)
        inv = crypten.cryptensor(1.0 / torch.tensor(m["scale"]), src=1)
        a = (a - mean) * inv
        for i, (w, b) in enumerate(zip(ws, bs)):
            a = a.matmul(w) + b
            if i + 1 < len(ws):
                a = a.relu()
        logits = a.get_plain_text(dst=0)
        out["seconds"] = time.perf_counter() - t
        out["logits"] = logits.reshape(-1).tolist()
    crypten.print(json.dumps(out))
    return 0

crypten.init()
job()
"""


def _peer_data(task: str, **kw: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return v.tolist() if isinstance(v, np.ndarray) else v

    return {"task": task, **{k: plain(v) for k, v in kw.items()}}


def measure_mpyc(data: dict[str, Any]) -> dict[str, Any] | None:
    out = run_mpyc(MPYC_PROGRAM, ["data.json"], timeout=1800, label="ml", files={"data.json": json.dumps(data)})
    return None if out is None else json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure_crypten(data: dict[str, Any]) -> dict[str, Any] | None:
    return run_crypten(CRYPTEN_PROGRAM, ["data.json"], timeout=1800, label="ml", files={"data.json": json.dumps(data)})


# -- the suite -------------------------------------------------------------------------------------


def _test_accuracy(w: list[float] | None, xte: np.ndarray, yte: np.ndarray) -> float | None:
    return None if w is None else accuracy(xte, yte, np.asarray(w, dtype=np.float64))


async def run() -> None:
    """``logreg_epoch_s`` and ``logreg_accuracy`` (2 and 3 parties), ``mlp_inference_s``."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # one BLAS thread per party process
    xtr, xte, ytr, yte = dataset()
    mean, scale = column_stats(xtr)
    xs_tr, xs_te = (xtr - mean) / scale, (xte - mean) / scale
    order = batch_order(xtr.shape[0], EPOCHS, SEED)
    train_data = _peer_data("train", x=xs_tr, y=ytr, order=order, batch=BATCH, lr=LR)
    plain_w = train_plain(xs_tr, ytr, epochs=EPOCHS, batch_size=BATCH, learning_rate=LR, seed=SEED, sigmoid="clip")
    plain_acc = accuracy(xs_te, yte, plain_w)
    exact_acc = accuracy(xs_te, yte, train_plain(xs_tr, ytr, epochs=EPOCHS, batch_size=BATCH, learning_rate=LR, seed=SEED, sigmoid="piecewise"))
    mlp = plain_mlp(xtr, ytr)
    x_inf = xte[:MLP_ROWS]
    infer_data = _peer_data(
        "predict",
        x=x_inf,
        model={"W": [w.tolist() for w in mlp.weights], "b": [b.tolist() for b in mlp.biases], "mean": mlp.mean.tolist(), "scale": mlp.scale.tolist()},  # type: ignore[union-attr]
    )
    peers = {
        2: ("crypten", await asyncio.to_thread(measure_crypten, train_data), await asyncio.to_thread(measure_crypten, infer_data)),
        3: ("mpyc", await asyncio.to_thread(measure_mpyc, train_data), await asyncio.to_thread(measure_mpyc, infer_data)),
    }
    for parties in (2, 3):
        name, peer_train, peer_infer = peers[parties]
        ours = await measure_train(parties, "dealer", EPOCHS)
        base = {"parties": parties, "epochs": EPOCHS, "batch": BATCH, "rows": int(xtr.shape[0]), "features": 30, "transport": "processes"}
        peer_epoch = statistics.mean(peer_train["epochs"]) if peer_train else None
        emit(
            SUITE,
            "logreg_epoch_s",
            ours["epoch_s"],
            "s",
            {**base, "security": "active", "preprocessing": "InsecureDealer (online only)", "rounds_per_epoch": ours["rounds"], "bytes_per_epoch_per_party": ours["bytes"], "better": "lower"},
            name if peer_epoch else None,
            peer_epoch,
        )
        passive = await measure_train(parties, "dealer", EPOCHS, "passive")
        emit(
            SUITE,
            "logreg_epoch_s",
            passive["epoch_s"],
            "s",
            {**base, "security": "passive (as the peers)", "preprocessing": "InsecureDealer (online only)", "rounds_per_epoch": passive["rounds"], "bytes_per_epoch_per_party": passive["bytes"], "better": "lower"},
            name if peer_epoch else None,
            peer_epoch,
        )
        our_acc = float(np.mean((ours["model"].logits(xte)[:, 0] > 0) == (yte == 1)))
        emit(
            SUITE,
            "logreg_accuracy",
            our_acc,
            "fraction",
            {**base, "sigmoid": "clip", f"{name}_accuracy": _test_accuracy(peer_train and peer_train.get("w"), xs_te, yte), "plaintext_exact_sigmoid": exact_acc, "better": "higher"},
            "plaintext",
            plain_acc,
        )
        inf = await measure_predict(parties, mlp, x_inf)
        peer_inf = peer_infer.get("seconds") if peer_infer else None
        peer_err = float(np.max(np.abs(np.asarray(peer_infer["logits"]) - mlp.logits(x_inf)[:, 0]))) if peer_infer and peer_infer.get("logits") else None
        emit(
            SUITE,
            "mlp_inference_s",
            inf["seconds"],
            "s",
            {**base, "rows": MLP_ROWS, "sizes": [30, HIDDEN, 1], "relu": "exact", "rounds": inf["rounds"], "bytes_per_party": inf["bytes"], "max_abs_error": inf["error"], "peer_max_abs_error": peer_err, "better": "lower"},
            name if peer_inf else None,
            peer_inf,
        )
    try:
        free = await measure_train(2, "dealer-free", 1)
    except Exception as exc:  # the dealer-free provider is optional here: report and go on
        print(f"bench ml: dealer-free training failed: {exc!r}", file=sys.stderr)
        return
    emit(
        SUITE,
        "logreg_epoch_s",
        free["epoch_s"],
        "s",
        {"parties": 2, "epochs": 1, "batch": BATCH, "transport": "processes", "preprocessing": "dealer-free (protocols.spdz_offline)", "offline_s_per_epoch": free["offline_s"], "rounds_per_epoch": free["rounds"], "better": "lower"},
        None,
        None,
    )

"""Logistic regression on secret-shared breast-cancer data against float training (same order).

Accuracy within one percentage point of plaintext training with identical hyper-parameters,
activation and batch order; weights close to it; the weights only at the receivers, never in
what a non-receiver sees; the exact preprocessing count; typed errors for tampering, bad shapes
and a silent peer; one run over party processes.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import pytest

from mpc import fixedpoint
from mpc.errors import AbortError, ConfigError, MPCError, PeerUnavailable
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.ml import ModelShares, ModelSpec, TrainParams, decode, exchange_shapes, predict, train_logreg, train_requirements
from protocols.ml.data import column_stats, split_columns, split_rows
from protocols.ml.reference import accuracy, train_plain
from protocols.spdz.dealer import InsecureDealer

EPOCHS = 2


@functools.lru_cache(maxsize=1)
def breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return xtr, xte, ytr.astype(np.float64), yte.astype(np.float64)


class RecordingChannel:
    """A channel that keeps every payload this party sends and receives (and may tamper)."""

    def __init__(self, inner: Any, tamper_open: int | None = None) -> None:
        self._inner = inner
        self.sent: dict[str, Any] = {}
        self.received: list[tuple[str, Any]] = []
        self._tamper = tamper_open
        self._opens = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, peer: int, tag: str, payload: Any) -> None:
        if self._tamper is not None and "/open#" in tag and isinstance(payload, dict):
            self._opens += 1
            if self._opens == self._tamper:
                v = payload["v"].copy()
                v[0, 0] += np.uint64(1)
                payload = {**payload, "v": v}
        self.sent[tag] = payload
        await self._inner.send(peer, tag, payload)

    async def recv(self, peer: int, tag: str) -> Any:
        payload = await self._inner.recv(peer, tag)
        self.received.append((tag, payload))
        return payload

    def opened(self) -> list[np.ndarray]:
        """The values this party learnt in the engine's openings (low 64 bits)."""
        out: dict[str, np.ndarray] = {}
        for tag, payload in self.received:
            if "/open#" in tag and tag in self.sent:
                base = out.get(tag, self.sent[tag]["v"][0].copy())
                out[tag] = base + payload["v"][0]
        return list(out.values())


def _arrays(payload: Any) -> list[np.ndarray]:
    if isinstance(payload, np.ndarray):
        return [payload]
    if isinstance(payload, dict):
        return [a for v in payload.values() for a in _arrays(v)]
    if isinstance(payload, (list, tuple)):
        return [a for v in payload for a in _arrays(v)]
    return []


async def prog_train(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Train with an InsecureDealer whose capacity is exactly train_requirements."""
    channel = RecordingChannel(s.channel, inp.get("tamper")) if inp.get("record") or inp.get("tamper") else None
    if channel is not None:
        s = Session(channel, prg=s.prg)
    params = TrainParams(**inp["params"])
    owner = inp.get("label_owner")
    rows, columns = await exchange_shapes(s, inp["x"])
    if (rows, columns) != (inp["rows"], inp["columns"]):
        raise ConfigError("exchange_shapes disagrees with the test's layout")
    need = train_requirements(
        params,
        partition=inp["partition"],
        rows=rows,
        columns=columns,
        label_owner=owner,
        receivers=inp["receivers"],
        prep=InsecureDealer,
    )
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, capacity=need)
    spdz.setup(s, dealer)
    progress: list[float] = []
    res = await train_logreg(
        s,
        inp["x"],
        inp.get("y"),
        partition=inp["partition"],
        params=params,
        receivers=inp["receivers"],
        keep_shared=inp.get("keep_shared", False),
        label_owner=owner,
        progress=lambda frac, label: progress.append(frac),
    )
    out: dict[str, Any] = {
        "left": int(sum(dealer.remaining().values())),
        "progress": progress,
        "rounds": [e.rounds for e in res.epochs],
        "model": None,
        "share": None if res.shares is None else res.shares.share,
    }
    if res.model is not None:
        out["model"] = {
            "w": np.concatenate([res.model.weights[0][:, 0], res.model.biases[0]]),
            "mean": res.model.mean,
            "scale": res.model.scale,
        }
    if channel is not None:
        received = [a for _, p in channel.received for a in _arrays(p) if a.dtype == np.uint64 and a.size >= 2]
        opened = channel.opened()
        flat = np.concatenate([a.reshape(-1) for a in received + opened])
        out["seen"] = {
            "elements": int(flat.size),
            "small": int(np.count_nonzero(np.abs(flat.view(np.int64).astype(np.float64)) < 2.0**40)),
            "bit_mean": float(np.unpackbits(flat.view(np.uint8)).mean()),
            "arrays": received + opened,
        }
    return out


def _inputs(partition: str, n: int, seed: bytes, receivers: list[int], label_owner: int = 0, **extra: Any) -> list[dict[str, Any]]:
    xtr, _, ytr, _ = breast_cancer()
    base = {"partition": partition, "seed": seed, "receivers": receivers, "params": {"epochs": EPOCHS, "seed": 5, **extra.pop("params", {})}, **extra}
    if partition == "horizontal":
        parts = split_rows(xtr, ytr, n)
        rows = [p[0].shape[0] for p in parts]
        return [{**base, "x": x, "y": y, "rows": rows, "columns": [30] * n} for x, y in parts]
    cols = split_columns(xtr, n)
    out = []
    for j, c in enumerate(cols):
        out.append({**base, "x": c, "y": ytr if j == label_owner else None, "rows": [xtr.shape[0]] * n, "columns": [c.shape[1] for c in cols], "label_owner": label_owner})
    return out


def _check_model(model: dict[str, Any], sigmoid: str = "clip", epochs: int = EPOCHS, w_tol: float = 0.02) -> None:
    xtr, xte, ytr, yte = breast_cancer()
    mean, scale = column_stats(xtr)
    assert np.allclose(model["mean"], mean, rtol=1e-4, atol=1e-4)
    assert np.allclose(model["scale"], scale, rtol=1e-3)  # pooled sums carry 2^-17 per party
    w_plain = train_plain((xtr - mean) / scale, ytr, epochs=epochs, batch_size=64, learning_rate=0.5, seed=5, sigmoid=sigmoid)
    assert np.max(np.abs(model["w"] - w_plain)) <= w_tol
    ours = accuracy((xte - model["mean"]) / model["scale"], yte, model["w"])
    plain = accuracy((xte - mean) / scale, yte, w_plain)
    assert abs(ours - plain) <= 0.01 and ours >= 0.93


@pytest.mark.parametrize(
    ("partition", "n", "receivers", "label_owner"),
    [("horizontal", 2, [0], 0), ("horizontal", 3, [0, 2], 0), ("horizontal", 5, [4], 0), ("vertical", 2, [1], 0), ("vertical", 3, [2], 1)],
)
def test_training_matches_plaintext(seed: bytes, partition: str, n: int, receivers: list[int], label_owner: int) -> None:
    outs = run_local(prog_train, _inputs(partition, n, seed, receivers, label_owner))
    for j, out in enumerate(outs):
        assert out["left"] == 0  # train_requirements is exact
        assert out["progress"] == [1 / EPOCHS * (e + 1) for e in range(EPOCHS)]
        assert out["rounds"] == [8 * 6] * EPOCHS  # 8 batches of 6 rounds
        assert (out["model"] is not None) == (j in receivers)
    _check_model(outs[receivers[0]]["model"])


def test_piecewise_sigmoid_matches_exact_plaintext(seed: bytes) -> None:
    inputs = _inputs("horizontal", 2, seed, [0], params={"epochs": 1, "sigmoid": "piecewise"})
    outs = run_local(prog_train, inputs)
    assert outs[0]["left"] == 0 and outs[0]["rounds"] == [8 * 12]
    _check_model(outs[0]["model"], sigmoid="piecewise", epochs=1, w_tol=0.005)


async def prog_predict_shares(s: Session, inp: dict[str, Any]) -> Any:
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True)
    spdz.setup(s, dealer)
    shares = ModelShares(ModelSpec((30, 1)), 16, inp["share"])
    return await predict(s, inp.get("x"), shares, spec=shares.spec, data_owner=1, output="logit")


def test_model_kept_shared_then_used_for_inference(seed: bytes) -> None:
    outs = run_local(prog_train, _inputs("vertical", 2, seed, [], keep_shared=True))
    assert all(o["model"] is None and o["left"] == 0 for o in outs)
    packed = outs[0]["share"] + outs[1]["share"]
    model = decode(packed, ModelSpec((30, 1)), 16)
    _check_model({"w": np.concatenate([model.weights[0][:, 0], model.biases[0]]), "mean": model.mean, "scale": model.scale})
    _, xte, _, _ = breast_cancer()
    got = run_local(prog_predict_shares, [{"seed": seed, "share": o["share"], "x": xte if j == 1 else None} for j, o in enumerate(outs)])
    assert got[0] is None
    assert np.max(np.abs(got[1] - model.logits(xte)[:, 0])) < 5e-3


def test_weights_never_reach_a_non_receiver(seed: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    inputs = _inputs("vertical", 2, seed, [0])
    inputs[1]["record"] = True
    outs = run_local(prog_train, inputs)
    assert outs[1]["model"] is None
    w = outs[0]["model"]["w"]
    enc = fixedpoint.encode(w, 16)
    seen = outs[1]["seen"]
    assert seen["elements"] > 100_000
    for a in seen["arrays"]:
        flat = a.reshape(-1)
        assert not any(np.array_equal(flat[i : i + w.size], enc) for i in range(0, max(0, flat.size - w.size + 1), w.size))
        assert not np.isin(enc[np.abs(w) > 1e-3], flat).any()
    # everything party 1 received looks uniform: no small ring elements, balanced bits
    assert seen["small"] <= 2
    assert abs(seen["bit_mean"] - 0.5) < 0.005
    assert not [r for r in caplog.records if r.name.startswith("protocols")]


def test_tampered_opening_aborts_every_honest_party(seed: bytes) -> None:
    inputs = _inputs("horizontal", 3, seed, [0], params={"epochs": 1})
    inputs[2]["tamper"] = 40  # party 2 adds 1 to one value it opens, mid-training
    outcomes = run_parties(prog_train, inputs)
    for o in outcomes[:2]:
        assert isinstance(o.error, AbortError), o.error


def test_mismatched_feature_counts_raise_config_error(seed: bytes) -> None:
    inputs = _inputs("horizontal", 2, seed, [0], params={"epochs": 1})
    inputs[1]["x"] = inputs[1]["x"][:, :29]
    outcomes = run_parties(prog_train, inputs)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)


def test_bad_labels_fail_locally_and_the_peer_sees_it_unavailable(seed: bytes) -> None:
    inputs = _inputs("horizontal", 2, seed, [0], params={"epochs": 1})
    inputs[1]["y"] = inputs[1]["y"] * 2
    outcomes = run_parties(prog_train, inputs, recv_timeout=1.0)
    assert isinstance(outcomes[1].error, ConfigError)
    assert isinstance(outcomes[0].error, PeerUnavailable)


def test_training_over_party_processes(seed: bytes) -> None:
    inputs = _inputs("horizontal", 2, seed, [1], params={"epochs": 1})
    outcomes = run_parties(prog_train, inputs, transport="processes", recv_timeout=60)
    for o in outcomes:
        assert o.error is None, o.error
        assert isinstance(o.result, dict) and o.result["left"] == 0
    assert outcomes[0].result["model"] is None
    _check_model(outcomes[1].result["model"], epochs=1)


def test_invalid_arguments(seed: bytes) -> None:
    inputs = _inputs("vertical", 2, seed, [0], params={"epochs": 1})
    inputs[0].pop("label_owner")
    inputs[1].pop("label_owner")
    outcomes = run_parties(prog_train, inputs, recv_timeout=1.0)
    assert all(isinstance(o.error, MPCError) for o in outcomes)


async def prog_train_dealer_free(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Produce exactly train_requirements dealer-free (OT-based), then train on it."""
    from protocols.spdz_offline import DealerFreePreprocessing

    params = TrainParams(**inp["params"])
    provider = await DealerFreePreprocessing.create(s)
    need = train_requirements(params, partition="horizontal", rows=inp["rows"], columns=[30] * s.n_parties, receivers=[0], prep=provider)
    await provider.produce(need)
    provider.reserve(need)
    spdz.setup(s, provider)
    res = await train_logreg(s, inp["x"], inp["y"], partition="horizontal", params=params, receivers=[0])
    left = {k: v for k, v in provider.remaining().items() if v}
    w = None if res.model is None else np.concatenate([res.model.weights[0][:, 0], res.model.biases[0]])
    return {"w": w, "mean": None if res.model is None else res.model.mean, "scale": None if res.model is None else res.model.scale, "left": left}


def test_training_on_dealer_free_material_matches_plaintext() -> None:
    # a small run (80 rows, batches of 16) on material the parties made by OT: the clipped
    # sigmoid's composed window mask (no comparison masks) and the truncation it shares
    xtr, _, ytr, _ = breast_cancer()
    x, y = xtr[:80], ytr[:80]
    parts = split_rows(x, y, 2)
    rows = [p[0].shape[0] for p in parts]
    params = {"epochs": 1, "batch_size": 16, "learning_rate": 0.5, "seed": 2}
    outs = run_local(prog_train_dealer_free, [{"x": px, "y": py, "rows": rows, "params": params} for px, py in parts])
    assert outs[0]["left"] == {} and outs[1]["left"] == {}  # exactly what train_requirements said
    mean, scale = column_stats(x)
    w_plain = train_plain((x - mean) / scale, y, epochs=1, batch_size=16, learning_rate=0.5, seed=2)
    assert outs[1]["w"] is None
    assert np.max(np.abs(outs[0]["w"] - w_plain)) <= 0.02

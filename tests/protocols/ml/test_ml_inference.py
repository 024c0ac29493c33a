"""Inference with a secret model on secret rows: logistic regression and a 30-16-1 ReLU MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError, PeerUnavailable
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.ml import Model, ModelShares, ModelSpec, encode, predict, predict_requirements
from protocols.ml.data import column_stats
from protocols.spdz.dealer import InsecureDealer

TOL = 5e-3
"""Logit error bound for these models (fixed point, f = 16; see protocols.ml.inference)."""


def uniform(prg: PRG, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * (prg.uint64(shape) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def patients() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)[0]


def make_model(prg: PRG, sizes: tuple[int, ...], x: np.ndarray) -> Model:
    mean, scale = column_stats(x)
    ws = tuple(uniform(prg, (a, b), -1, 1) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:]))
    bs = tuple(uniform(prg, (b,), -0.2, 0.2) for b in sizes[1:])
    return Model(ws, bs, mean, scale)


def _model_arrays(model: Model) -> dict[str, Any]:
    return {"W": list(model.weights), "b": list(model.biases), "mean": model.mean, "scale": model.scale}


async def prog_predict(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Predict with the model from ``inp`` (plaintext at its owner, or this party's shares)."""
    spec = ModelSpec(tuple(inp["sizes"]))
    owner = inp.get("model_owner")
    to = inp.get("to") or [inp["data_owner"]]
    need = predict_requirements(spec, inp["rows"], n_parties=s.n_parties, data_owner=inp["data_owner"], model_owner=owner, to=to, prep=InsecureDealer)
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, capacity=need)
    spdz.setup(s, dealer)
    model: Any = None
    if "share" in inp:
        model = ModelShares(spec, 16, inp["share"])
    elif "model" in inp:
        m = inp["model"]
        model = Model(tuple(m["W"]), tuple(m["b"]), m["mean"], m["scale"])
    rounds = s.stats.rounds
    out = await predict(s, inp.get("x"), model, spec=spec, data_owner=inp["data_owner"], model_owner=owner, to=to, output=inp.get("output", "logit"))
    return {"out": out, "left": int(sum(dealer.remaining().values())), "rounds": s.stats.rounds - rounds}


def _inputs(n: int, seed: bytes, model: Model, x: np.ndarray, data_owner: int, model_owner: int | None, **extra: Any) -> list[dict[str, Any]]:
    base = {"sizes": list(model.spec.sizes), "rows": x.shape[0], "seed": seed, "data_owner": data_owner, "model_owner": model_owner, **extra}
    inputs = [dict(base) for _ in range(n)]
    inputs[data_owner]["x"] = x
    if model_owner is not None:
        inputs[model_owner]["model"] = _model_arrays(model)
    return inputs


@pytest.mark.parametrize(("n", "sizes", "rounds"), [(2, (30, 1), 11), (3, (30, 1), 11), (2, (30, 16, 1), 19), (3, (30, 16, 1), 19)])
def test_inference_equals_plaintext(seed: bytes, prg: PRG, n: int, sizes: tuple[int, ...], rounds: int) -> None:
    x_all = patients()
    model = make_model(prg, sizes, x_all)
    x = x_all[:40]
    outs = run_local(prog_predict, _inputs(n, seed, model, x, data_owner=0, model_owner=n - 1))
    assert all(o["left"] == 0 and o["rounds"] == rounds for o in outs)  # exact preprocessing
    assert all(o["out"] is None for o in outs[1:])
    assert outs[0]["out"].shape == (40,)
    assert np.max(np.abs(outs[0]["out"] - model.logits(x)[:, 0])) <= TOL


def test_secret_shared_model_and_several_receivers(seed: bytes, prg: PRG) -> None:
    x_all = patients()
    model = make_model(prg, (30, 16, 1), x_all)
    packed = encode(model, 16)
    shares = [prg.uint64(packed.shape) for _ in range(2)]
    shares.append(packed - shares[0] - shares[1])
    x = x_all[100:130]
    inputs = _inputs(3, seed, model, x, data_owner=1, model_owner=None, to=[1, 2], output="probability")
    for inp, share in zip(inputs, shares):
        inp["share"] = share
    outs = run_local(prog_predict, inputs)
    assert outs[0]["out"] is None and all(o["left"] == 0 for o in outs)
    want = 0.5 * (1 + np.tanh(model.logits(x)[:, 0] / 2))
    for o in outs[1:]:
        assert np.max(np.abs(o["out"] - want)) <= TOL


def test_wrong_features_fail_before_any_message(seed: bytes, prg: PRG) -> None:
    x_all = patients()
    model = make_model(prg, (30, 1), x_all)
    inputs = _inputs(2, seed, model, x_all[:5, :29], data_owner=0, model_owner=1)
    outcomes = run_parties(prog_predict, inputs, recv_timeout=1.0)
    assert isinstance(outcomes[0].error, ConfigError)
    assert isinstance(outcomes[1].error, PeerUnavailable)


def test_model_of_the_wrong_shape_is_refused(seed: bytes, prg: PRG) -> None:
    x_all = patients()
    model = make_model(prg, (30, 16, 1), x_all)
    inputs = _inputs(2, seed, model, x_all[:5], data_owner=0, model_owner=1)
    for inp in inputs:
        inp["sizes"] = [30, 8, 1]  # the job says 30-8-1, the owner has 30-16-1
    outcomes = run_parties(prog_predict, inputs, recv_timeout=1.0)
    assert isinstance(outcomes[1].error, ConfigError)
    assert isinstance(outcomes[0].error, PeerUnavailable)


def test_inference_over_party_processes(seed: bytes, prg: PRG) -> None:
    x_all = patients()
    model = make_model(prg, (30, 16, 1), x_all)
    x = x_all[200:220]
    outcomes = run_parties(prog_predict, _inputs(2, seed, model, x, data_owner=1, model_owner=0), transport="processes", recv_timeout=60)
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    assert outcomes[0].result["out"] is None
    assert np.max(np.abs(outcomes[1].result["out"] - model.logits(x)[:, 0])) <= TOL

"""train-logreg and predict jobs on in-process nodes (real TLS websockets), breast-cancer data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest

from nodekit import allow_insecure_dealer, running_nodes

from parties.config import BudgetConfig, NodeConfig
from parties.node import Node
from protocols import ml

NAMES = ("hospital-a", "hospital-b")
COLS = [f"f{i}" for i in range(30)] + ["label"]


def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data, d.target.astype(np.float64)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    x, y = data()
    parts = {"hospital-a": slice(0, 300), "hospital-b": slice(300, 455)}
    datasets: dict[str, Any] = {}
    for name, rows in parts.items():
        (tmp_path / name).mkdir()
        table = np.column_stack([x[rows], y[rows]])
        lines = [",".join(COLS)] + [",".join(repr(float(v)) for v in row) for row in table]
        (tmp_path / name / "rows.csv").write_text("\n".join(lines) + "\n")
        test = x[455:]
        lines = [",".join(COLS[:-1])] + [",".join(repr(float(v)) for v in row) for row in test]
        (tmp_path / name / "patients.csv").write_text("\n".join(lines) + "\n")
        datasets[name] = {
            "rows": {"path": "rows.csv", "columns": {c: "float" for c in COLS}},
            "patients": {"path": "patients.csv", "columns": {c: "float" for c in COLS[:-1]}},
        }
    # Tests use the insecure dealer for speed (dealer-free production of a training run takes
    # minutes here); the dealer-free provider is tested with the engine elsewhere.
    async with running_nodes(tmp_path, NAMES, datasets, configure=allow_insecure_dealer) as started:
        yield started


TRAIN = {"partition": "horizontal", "label": "label", "epochs": 2, "batch_size": 64, "learning_rate": 0.5, "seed": 3, "preprocessing": "insecure-dealer"}


async def test_train_then_predict(nodes: dict[str, Node]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    m = {
        "kind": "train-logreg",
        "parties": list(NAMES),
        "inputs": {n: {"dataset": "rows", "columns": COLS} for n in NAMES},
        "outputs": {"model": ["hospital-a"]},
        "params": TRAIN,
    }
    resp = await a.submit(m)
    assert resp["ok"], resp
    job_id = resp["job"]["job_id"]
    assert not (b.config.results_dir / f"{job_id}.json").exists()  # only hospital-a learns the weights
    model = resp["outputs"]["model"]
    x, y = data()
    mean, std = x[:455].mean(0), x[:455].std(0)
    xs = (x - mean) / std
    w_plain = ml.train_plain(xs[:455], y[:455], epochs=2, batch_size=64, learning_rate=0.5, seed=3)
    w_mpc = np.concatenate([np.asarray(model["weights"][0]).reshape(-1), np.asarray(model["biases"][0])])
    acc_plain = ml.accuracy(xs[455:], y[455:], w_plain)
    acc_mpc = ml.accuracy((x[455:] - np.asarray(model["mean"])) / np.asarray(model["scale"]), y[455:], w_mpc)
    assert abs(acc_mpc - acc_plain) <= 0.01 and acc_mpc >= 0.93

    p = {
        "kind": "predict",
        "parties": list(NAMES),
        "roles": {"model_owner": "hospital-a", "data_owner": "hospital-b"},
        "inputs": {"hospital-b": {"dataset": "patients", "columns": COLS[:-1]}},
        "outputs": {"prediction": ["hospital-b"]},
        "params": {"model_job": job_id, "preprocessing": "insecure-dealer"},
    }
    resp = await b.submit(p)
    assert resp["ok"], resp
    probs = np.asarray(resp["outputs"]["prediction"]["probability"])
    z = ((x[455:] - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["weights"][0]).reshape(-1) + model["biases"][0][0]
    assert probs.shape == (114,)
    assert np.max(np.abs(probs - 1 / (1 + np.exp(-z)))) < 0.01
    assert not (a.config.results_dir / f"{resp['job']['job_id']}.json").exists()
    result = json.loads((b.config.results_dir / f"{resp['job']['job_id']}.json").read_text())
    assert result["outputs"]["prediction"]["probability"] == probs.tolist()


async def test_train_refusals(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    base = {"kind": "train-logreg", "parties": list(NAMES), "inputs": {n: {"dataset": "rows", "columns": COLS} for n in NAMES}, "outputs": {"model": ["hospital-a"]}}
    resp = await a.submit({**base, "params": {**TRAIN, "partition": "diagonal"}})
    assert not resp["ok"] and resp["rule"] == "params"
    resp = await a.submit({**base, "params": {**TRAIN, "partition": "vertical"}})
    assert not resp["ok"] and resp["rule"] == "params"  # two parties name the label column
    resp = await a.submit({**base, "params": {k: v for k, v in TRAIN.items() if k != "preprocessing"} | {"epochs": 0}})
    assert not resp["ok"] and resp["rule"] == "params"


async def test_dp_training_job_charges_and_releases(tmp_path: Path) -> None:
    x, y = data()
    datasets: dict[str, Any] = {}
    for name, rows in {"hospital-a": slice(0, 250), "hospital-b": slice(250, 455)}.items():
        (tmp_path / name).mkdir()
        table = np.column_stack([x[rows], y[rows]])
        (tmp_path / name / "rows.csv").write_text("\n".join([",".join(COLS)] + [",".join(repr(float(v)) for v in r) for r in table]) + "\n")
        datasets[name] = {"rows": {"path": "rows.csv", "columns": {c: "float" for c in COLS}}}

    def configure(name: str, config: NodeConfig) -> NodeConfig:
        return dataclasses.replace(allow_insecure_dealer(name, config), budgets={"rows": BudgetConfig(100.0, 1e-4)})

    async with running_nodes(tmp_path, NAMES, datasets, configure=configure) as nodes:
        a = nodes["hospital-a"]
        scaling = {"mean": x.mean(0).tolist(), "std": x.std(0).tolist()}  # public reference statistics
        params = {"label": "label", "epochs": 2, "batch_size": 64, "learning_rate": 0.5, "seed": 1, "clip": 4.0, "noise_multiplier": 0.5, "scaling": scaling, "preprocessing": "insecure-dealer"}
        # Mild noise, so the accuracy check cannot flake; noise calibration is tested in
        # tests/protocols/ml/test_ml_dpsgd.py.
        eps = ml.planned_epsilon(ml.TrainParams(epochs=2, batch_size=64, standardize=False), 64, 64, 0.5, 1e-5)
        m = {
            "kind": "train-logreg-dp",
            "parties": list(NAMES),
            "inputs": {n: {"dataset": "rows", "columns": COLS} for n in NAMES},
            "outputs": {"model": ["hospital-a"]},
            "params": params,
            "dp": {"epsilon": round(eps + 0.01, 2), "delta": 1e-5},
        }
        resp = await a.submit(m)
        assert resp["ok"], resp
        model = resp["outputs"]["model"]
        assert model["epsilon"] == pytest.approx(eps) and model["mean"] is None
        w = np.concatenate([np.asarray(model["weights"][0]).reshape(-1), np.asarray(model["biases"][0])])
        xs = (x[455:] - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
        assert ml.accuracy(xs, y[455:], w) > 0.8
        for node in nodes.values():
            charge = node.ledger.charges("rows")[-1]
            assert charge.job_id == resp["job"]["job_id"] and charge.epsilon == m["dp"]["epsilon"]
        short = {**m, "dp": {"epsilon": round(eps / 2, 3), "delta": 1e-5}}
        refused = await a.submit(short)
        assert not refused["ok"] and refused["rule"] == "params" and "planned epsilon" in refused["message"]

"""A private join, then vertical training on the joined records (``params.align_with``), on nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest
from nodekit import allow_insecure_dealer, running_nodes

from mpc.errors import ConfigError
from mpc.prg import PRG
from parties.alignment import aligned_rows, check_align_param
from parties.datasets import DatasetConfig
from parties.manifest import parse_manifest
from parties.node import Node
from protocols import ml

NAMES = ("hospital-a", "hospital-b")
A_COLS = [f"f{i}" for i in range(15)]
B_COLS = [f"f{i}" for i in range(15, 30)] + ["label"]
A_ROWS, B_ROWS = range(0, 420), range(60, 569)  # 360 patients in common


def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data, d.target.astype(np.float64)


def write_csv(path: Path, header: list[str], ids: list[str], table: np.ndarray) -> None:
    lines = [",".join(["id", *header])] + [",".join([i, *(repr(float(v)) for v in row)]) for i, row in zip(ids, table)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
async def nodes(tmp_path: Path, prg: PRG) -> AsyncIterator[dict[str, Node]]:
    x, y = data()
    full = np.column_stack([x, y])
    tables = {"hospital-a": (A_ROWS, A_COLS, full[:, :15]), "hospital-b": (B_ROWS, B_COLS, full[:, 15:])}
    datasets: dict[str, Any] = {}
    for name, (rows, cols, table) in tables.items():
        (tmp_path / name).mkdir()
        order = np.array(list(rows))[np.argsort(prg.uint64(len(rows)))]  # each hospital keeps its own order
        write_csv(tmp_path / name / "records.csv", cols, [f"patient-{i}" for i in order], table[order])
        datasets[name] = {"records": {"path": "records.csv", "id_column": "id", "columns": {"id": "string", **{c: "float" for c in cols}}}}
    # the insecure dealer for speed, as in test_ml_jobs (dealer-free is tested elsewhere)
    async with running_nodes(tmp_path, NAMES, datasets, configure=allow_insecure_dealer) as started:
        yield started


JOIN = {
    "kind": "psi-join",
    "parties": list(NAMES),
    "inputs": {n: {"dataset": "records", "columns": ["id"]} for n in NAMES},
    "outputs": {"result": list(NAMES)},
}
TRAIN = {"partition": "vertical", "label": "label", "epochs": 2, "batch_size": 64, "learning_rate": 0.5, "seed": 5, "preprocessing": "insecure-dealer"}


def train_manifest(align_with: str, **params: Any) -> dict[str, Any]:
    return {
        "kind": "train-logreg",
        "parties": list(NAMES),
        "inputs": {"hospital-a": {"dataset": "records", "columns": A_COLS}, "hospital-b": {"dataset": "records", "columns": B_COLS}},
        "outputs": {"model": ["hospital-a"]},
        "params": {**TRAIN, "align_with": align_with, **params},
    }


async def test_vertical_training_on_a_private_join(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    joined = await a.submit(JOIN)
    assert joined["ok"], joined
    join_id = joined["job"]["job_id"]
    ids = joined["outputs"]["result"]["identifiers"]
    assert sorted(ids) == sorted(f"patient-{i}" for i in range(60, 420))

    resp = await a.submit(train_manifest(join_id))
    assert resp["ok"], resp
    model = resp["outputs"]["model"]

    # plaintext: the same patients in the join's order, each party's columns standardized locally
    x, y = data()
    order = np.array([int(i.split("-")[1]) for i in ids])
    xj, yj = x[order], y[order]
    mean, std = xj.mean(0), xj.std(0)
    w_plain = ml.train_plain((xj - mean) / std, yj, epochs=2, batch_size=64, learning_rate=0.5, seed=5)
    w_mpc = np.concatenate([np.asarray(model["weights"][0]).reshape(-1), np.asarray(model["biases"][0])])
    xs_model = (xj - np.asarray(model["mean"])) / np.asarray(model["scale"])
    acc_plain, acc_mpc = ml.accuracy((xj - mean) / std, yj, w_plain), ml.accuracy(xs_model, yj, w_mpc)
    assert abs(acc_mpc - acc_plain) <= 0.01 and acc_mpc >= 0.93
    np.testing.assert_allclose(w_mpc, w_plain, atol=0.05)


async def test_alignment_refusals(nodes: dict[str, Node]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    resp = await a.submit(train_manifest("not-hex"))
    assert not resp["ok"] and resp["rule"] == "params"
    resp = await a.submit(train_manifest("ab" * 16, partition="horizontal"))
    assert not resp["ok"] and resp["rule"] == "params"
    resp = await a.submit(train_manifest("ab" * 16))  # no such join at either node
    assert not resp["ok"] and resp["job"]["state"] == "failed"

    joined = await a.submit(JOIN)
    assert joined["ok"], joined
    path = b.config.datasets["records"].path
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # hospital-b reorders its file after the join
    path.write_text("\n".join(lines) + "\n")
    resp = await a.submit(train_manifest(joined["job"]["job_id"]))
    assert not resp["ok"] and resp["job"]["state"] == "failed"


def test_aligned_rows_checks_the_join_result(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,v\nx,1\ny,2\nz,3\n")
    dataset = DatasetConfig("records", tmp_path / "d.csv", "csv", {"id": "string", "v": "float"}, "id", ("id", "v"))
    job = parse_manifest(train_manifest("aa"))
    join = {**JOIN, "timeout": 60, "roles": {}, "params": {}, "name": ""}

    def write(kind: str = "psi-join", parties: list[str] = list(NAMES), dataset_name: str = "records", rows: Any = (2, 0), idents: Any = ("z", "x")) -> None:
        doc = {"manifest": {**join, "kind": kind, "parties": parties, "inputs": {n: {"dataset": dataset_name, "columns": ["id"]} for n in parties}}, "outputs": {"result": {"rows": list(rows), "identifiers": list(idents)}}}
        (tmp_path / "aa.json").write_text(json.dumps(doc))

    write()
    assert aligned_rows(tmp_path, job, "hospital-a", dataset).tolist() == [2, 0]
    for bad in ({"kind": "psi"}, {"parties": ["hospital-a", "hospital-c"]}, {"dataset_name": "other"}, {"idents": ("z", "y")}, {"rows": (3, 0)}, {"rows": (2,)}):
        write(**bad)
        with pytest.raises(ConfigError, match="align_with"):
            aligned_rows(tmp_path, job, "hospital-a", dataset)
    (tmp_path / "aa.json").write_text("{not json")
    with pytest.raises(ConfigError, match="no psi-join result"):
        aligned_rows(tmp_path, job, "hospital-a", dataset)
    for bad_id in ("", "XYZ", 3, "a" * 65):
        with pytest.raises(ConfigError):
            check_align_param(bad_id)

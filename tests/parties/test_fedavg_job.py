"""The secagg-fedavg job on three in-process nodes (real TLS websockets): an aggregator, two hospitals."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest
from nodekit import running_nodes

from parties.config import BudgetConfig, NodeConfig
from parties.jobs import JOB_KINDS, fedavg_config
from parties.manifest import parse_manifest
from parties.node import Node

NAMES = ("coordinator", "hospital-a", "hospital-b")
N_FEATURES = 30


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data, data.target
    cols = [f"f{i}" for i in range(N_FEATURES)] + ["label"]
    halves = {"hospital-a": slice(0, 285), "hospital-b": slice(285, None)}
    datasets: dict[str, dict[str, Any]] = {}
    for name, rows in halves.items():
        (tmp_path / name).mkdir()
        table = np.column_stack([x[rows], y[rows]])
        lines = [",".join(cols)] + [",".join(repr(float(v)) for v in row) for row in table]
        (tmp_path / name / "rows.csv").write_text("\n".join(lines) + "\n")
        datasets[name] = {"rows": {"path": "rows.csv", "columns": {c: "float" for c in cols}}}
    def with_budgets(name: str, config: NodeConfig) -> NodeConfig:
        budgets = {"rows": BudgetConfig(30.0, 1e-4)} if name != "coordinator" else {}
        return dataclasses.replace(config, budgets=budgets)

    async with running_nodes(tmp_path, NAMES, datasets, configure=with_budgets) as started:
        yield started


def manifest(**params: Any) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data  # public reference statistics for feature scaling
    cols = [f"f{i}" for i in range(N_FEATURES)] + ["label"]
    m = {
        "kind": "secagg-fedavg",
        "parties": list(NAMES),
        "roles": {"server": "coordinator"},
        "inputs": {h: {"dataset": "rows", "columns": cols} for h in NAMES[1:]},
        "outputs": {"model": list(NAMES)},
        "params": {"label": "label", "rounds": 4, "noise_multiplier": 0.7, "scaling": {"mean": x.mean(0).tolist(), "std": x.std(0).tolist()}, **params},
        "dp": {"epsilon": 1.0, "delta": 1e-5},
    }
    spend = fedavg_config(parse_manifest(m)).planned_spend()
    m["dp"]["epsilon"] = float(np.ceil(spend.epsilon * 100) / 100)
    return m


async def test_fedavg_job_trains_charges_and_releases(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    m = manifest()
    resp = await a.submit(m)
    assert resp["ok"], resp
    model = resp["outputs"]["model"]
    assert len(model["weights"]) == N_FEATURES + 1 and len(model["rounds"]) == 4
    # DP noise (from the nodes' CSPRNGs) makes single rounds vary; the class prior is 0.63 and
    # noise-free training reaches 0.97 (exactness without noise is tested in protocols/secagg).
    # One noisy round can be bad (a first round of 0.28, then 0.88-0.93, was seen in CI, and the
    # mean of the four then missed 0.75): the model must beat the prior clearly in some round.
    accuracies = [r["accuracy"] for r in model["rounds"]]
    assert max(accuracies) > 0.8, accuracies
    assert model["epsilon"] <= m["dp"]["epsilon"]
    job_id = resp["job"]["job_id"]
    for name in ("hospital-a", "hospital-b"):
        charge = nodes[name].ledger.charges("rows")[-1]
        assert charge.job_id == job_id and charge.epsilon == m["dp"]["epsilon"] and charge.status == "released"
        events = [e.event for e in nodes[name].audit.entries(job_id)]
        assert events.index("charged") < events.index("finished")
    assert not nodes["coordinator"].ledger.charges()
    # Every party has the same final model.
    results = [(n.config.results_dir / f"{job_id}.json").read_text() for n in nodes.values()]
    import json

    weights = [json.loads(r)["outputs"]["model"]["weights"] for r in results]
    assert weights[0] == weights[1] == weights[2]


async def test_fedavg_refusals(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    m = manifest()
    m["dp"] = {"epsilon": 0.01, "delta": 1e-5}
    resp = await a.submit(m)
    assert not resp["ok"] and resp["rule"] == "params" and "planned spend" in resp["message"]
    m = manifest()
    m["outputs"] = {"model": ["hospital-a", "hospital-b"]}
    resp = await a.submit(m)
    assert not resp["ok"] and resp["rule"] == "params"
    m = manifest()
    m["inputs"]["coordinator"] = m["inputs"]["hospital-a"]
    resp = await a.submit(m)
    assert not resp["ok"] and resp["rule"] == "params"
    assert "secagg-fedavg" in JOB_KINDS

"""Nodes in one event loop (real TLS websockets): what a peer cannot do with a proposal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest

from parties.config import load_node_config
from parties.local import create_local_federation
from parties.node import Node

NAMES = ("hospital-a", "hospital-b")
DATASET = {"path": "d.csv", "columns": {"x": "float"}}


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    for n in NAMES:
        (tmp_path / n).mkdir()
        (tmp_path / n / "d.csv").write_text("x\n1\n2\n3\n")
    parties = create_local_federation(tmp_path, NAMES, recv_timeout=3.0, datasets={n: {"d": DATASET} for n in NAMES})
    started = {p.name: Node(load_node_config(p.config_path)) for p in parties}
    for node in started.values():
        await node.start()
    try:
        for _ in range(200):
            if all(all(v["state"] == "connected" for v in n.mesh.stats()["peers"].values()) for n in started.values()):
                break
            await asyncio.sleep(0.02)
        yield started
    finally:
        for node in started.values():
            await node.stop()


def manifest() -> dict[str, Any]:
    return {
        "kind": "secure-sum",
        "parties": list(NAMES),
        "inputs": {n: {"dataset": "d", "columns": ["x"]} for n in NAMES},
        "outputs": {"result": list(NAMES)},
    }


async def propose(a: Node, payload: dict[str, Any]) -> dict[str, Any]:
    fut = a._expect(payload["job_id"], "hospital-b", "reply")
    await a.mesh.router.send_control("hospital-b", "propose", payload)
    return await asyncio.wait_for(fut, 5)


async def test_manifest_changed_in_flight_is_refused(nodes: dict[str, Node]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    from parties.manifest import parse_manifest

    good = parse_manifest(manifest())
    changed = manifest()
    changed["outputs"] = {"result": ["hospital-a"]}
    job_id = os.urandom(16).hex()
    reply = await propose(a, {"job_id": job_id, "proposer": "hospital-a", "manifest": changed, "hash": good.digest()})
    assert reply["accept"] is False and reply["rule"] == "hash-mismatch"
    assert job_id not in b.jobs
    assert b.audit.entries(job_id)[-1].detail["rule"] == "hash-mismatch"


async def test_proposer_cannot_be_impersonated(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    from parties.manifest import parse_manifest

    m = parse_manifest(manifest())
    job_id = os.urandom(16).hex()
    reply = await propose(a, {"job_id": job_id, "proposer": "hospital-b", "manifest": m.to_dict(), "hash": m.digest()})
    assert reply["accept"] is False and reply["rule"] == "proposer-mismatch"


async def test_start_and_abort_only_from_the_right_party(nodes: dict[str, Node]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    # A start for a job b never accepted is ignored; so is garbage.
    await a.mesh.router.send_control("hospital-b", "start", {"job_id": os.urandom(16).hex(), "hash": "0" * 64})
    await a.mesh.router.send_control("hospital-b", "start", {"job_id": "not-hex"})
    await a.mesh.router.send_control("hospital-b", "start", ["not", "a", "map"])
    await asyncio.sleep(0.2)
    assert not b.jobs
    # The node still works.
    resp = await a.submit(manifest())
    assert resp["ok"], resp
    assert resp["outputs"]["result"]["sum"] == {"x": 12.0}


async def test_two_jobs_at_once(nodes: dict[str, Node]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    m2 = manifest()
    m2["outputs"] = {"result": ["hospital-b"]}
    r1, r2 = await asyncio.gather(a.submit(manifest()), b.submit(m2))
    assert r1["ok"] and r2["ok"]
    assert r1["outputs"]["result"]["rows"] == 6 and r2["outputs"]["result"]["rows"] == 6
    assert r1["job"]["job_id"] != r2["job"]["job_id"]


async def test_duplicate_submission_and_bad_manifest(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    first, second = await asyncio.gather(a.submit(manifest()), a.submit(manifest()))
    outcomes = sorted([first.get("rule") or "ok", second.get("rule") or "ok"])
    assert outcomes == ["duplicate-job", "ok"]
    bad = await a.submit({"kind": "secure-sum"})
    assert bad["ok"] is False and bad["rule"] == "manifest"


async def test_audit_log_is_append_only(nodes: dict[str, Node]) -> None:
    import sqlite3

    a = nodes["hospital-a"]
    await a.submit(manifest())
    db = sqlite3.connect(str(a.config.database))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET event = 'nothing'")
    db.close()


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"statistic": "count"}, {"statistic": "count", "larger": "hospital-b"}),
        ({"statistic": "sum", "reveal_maximum": True}, {"statistic": "sum", "larger": "hospital-b", "maximum": 9.0}),
        ({"statistic": "max", "scale_bits": 8, "reveal_maximum": True}, {"statistic": "max", "larger": "tie", "maximum": 3.0}),
    ],
)
async def test_compare_job(nodes: dict[str, Node], params: dict[str, Any], expected: dict[str, Any]) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    (b.config.datasets["d"].path).write_text("x\n1\n2\n3\n3\n")  # b: 4 rows, sum 9, max 3; a: 3 rows, sum 6, max 3
    m = {**manifest(), "kind": "compare", "params": params, "outputs": {"result": ["hospital-a"]}}
    resp = await a.submit(m)
    assert resp["ok"], resp
    assert resp["outputs"]["result"] == expected
    assert resp["parties"]["hospital-b"]["state"] == "done"
    assert not (b.config.results_dir / f"{resp['job']['job_id']}.json").exists()


async def test_compare_refuses_bad_params(nodes: dict[str, Node]) -> None:
    a = nodes["hospital-a"]
    m = {**manifest(), "kind": "compare", "params": {"statistic": "median"}}
    resp = await a.submit(m)
    assert not resp["ok"] and resp["rule"] == "params"


async def test_dp_budget_is_charged_before_running_and_refused_when_spent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DP job kind (a test stand-in: secure-sum declared as DP) charges each input dataset."""
    import dataclasses

    from mpc.errors import BudgetExceeded
    from parties import jobs
    from parties.config import BudgetConfig

    dp_kind = dataclasses.replace(jobs.JOB_KINDS["secure-sum"], name="dp-sum", dp=True)
    monkeypatch.setitem(jobs.JOB_KINDS, "dp-sum", dp_kind)
    for n in NAMES:
        (tmp_path / n).mkdir()
        (tmp_path / n / "d.csv").write_text("x\n1\n2\n3\n")
    parties = create_local_federation(tmp_path, NAMES, recv_timeout=3.0, datasets={n: {"d": DATASET} for n in NAMES})
    started = []
    for p in parties:
        cfg = load_node_config(p.config_path)
        policy = dataclasses.replace(cfg.policy, allowed_jobs=("secure-sum", "dp-sum"))
        budget = BudgetConfig(1.0, 1e-6) if p.name == "hospital-b" else BudgetConfig(10.0, 1e-5)
        node = Node(dataclasses.replace(cfg, policy=policy, budgets={"d": budget}))
        await node.start()
        started.append(node)
    a, b = started
    try:
        m = {**manifest(), "kind": "dp-sum", "dp": {"epsilon": 0.6, "delta": 1e-7}}
        first = await a.submit(m)
        assert first["ok"], first
        job_id = first["job"]["job_id"]
        for node in started:
            events = [e.event for e in node.audit.entries(job_id)]
            assert events.index("charged") < events.index("finished")
            charge = node.ledger.charges("d")[-1]
            assert charge.job_id == job_id and charge.epsilon == 0.6 and charge.status == "released"
        assert b.ledger.remaining("d").epsilon == pytest.approx(0.4)
        # hospital-b has 0.4 left: the next job is refused by b before anything runs.
        second = await a.submit(m)
        assert not second["ok"] and second["rule"] == "budget-exceeded"
        assert any(r["party"] == "hospital-b" for r in second["refusals"])
        assert b.ledger.remaining("d").epsilon == pytest.approx(0.4)
        assert a.ledger.remaining("d").epsilon == pytest.approx(9.4)
        # A DP job without a [dp] table is refused by the proposer's own policy.
        no_dp = await a.submit({**manifest(), "kind": "dp-sum"})
        assert not no_dp["ok"] and no_dp["rule"] == "dp"
        with pytest.raises(BudgetExceeded):
            b._check_budget("d", 0.5, 0.0)
        st = await a._on_request({"op": "status"})
        assert st["budgets"]["d"]["remaining_epsilon"] == pytest.approx(9.4)  # type: ignore[index]
    finally:
        for node in started:
            await node.stop()


@pytest.mark.parametrize("preprocessing", ["dealer-free", "insecure-dealer"])
async def test_statistics_job(nodes: dict[str, Node], preprocessing: str) -> None:
    import dataclasses

    a, b = nodes["hospital-a"], nodes["hospital-b"]
    b.config.datasets["d"].path.write_text("x\n10\n-4\n0.5\n7\n")
    m = {**manifest(), "kind": "statistics", "params": {"preprocessing": preprocessing}, "outputs": {"result": ["hospital-b"]}}
    if preprocessing == "insecure-dealer":
        refused = await a.submit(m)
        assert not refused["ok"] and refused["rule"] == "insecure-dealer"
        for node in (a, b):
            node.config = dataclasses.replace(node.config, policy=dataclasses.replace(node.config.policy, allow_insecure_dealer=True))
    resp = await a.submit(m)
    assert resp["ok"], resp
    values = np.array([1, 2, 3, 10, -4, 0.5, 7])
    out = json.loads((b.config.results_dir / f"{resp['job']['job_id']}.json").read_text())["outputs"]["result"]
    assert out["count"] == 7
    assert out["sum"] == pytest.approx(values.sum(), abs=1e-3)
    assert out["mean"] == pytest.approx(values.mean(), abs=1e-3)
    assert out["variance"] == pytest.approx(values.var(), abs=1e-3)
    assert out["sample_variance"] == pytest.approx(values.var(ddof=1), abs=1e-3)
    assert out["min"] == pytest.approx(-4, abs=1e-4) and out["max"] == pytest.approx(10, abs=1e-4)
    assert resp["outputs"] == {}  # hospital-a is not a receiver


@pytest.mark.parametrize("kind", ["psi", "psi-cardinality", "psi-join"])
async def test_psi_jobs(nodes: dict[str, Node], kind: str) -> None:
    a, b = nodes["hospital-a"], nodes["hospital-b"]
    a.config.datasets["ids"] = dataclasses.replace(a.config.datasets["d"], name="ids", path=a.config.datasets["d"].path.with_name("ids.csv"), columns={"pid": "string"}, allowed_columns=("pid",))
    b.config.datasets["ids"] = dataclasses.replace(b.config.datasets["d"], name="ids", path=b.config.datasets["d"].path.with_name("ids.csv"), columns={"pid": "string"}, allowed_columns=("pid",))
    a.config.datasets["ids"].path.write_text("pid\nAnn\nBob\n  carl \nDora\n")
    b.config.datasets["ids"].path.write_text("pid\nzed\nCARL\nann\nEve\nBob\n")
    receivers = list(NAMES) if kind == "psi-join" else ["hospital-a"]
    m = {
        **manifest(),
        "kind": kind,
        "inputs": {n: {"dataset": "ids", "columns": ["pid"]} for n in NAMES},
        "outputs": {"result": receivers},
        "params": {"casefold": True},
    }
    resp = await a.submit(m)
    assert resp["ok"], resp
    out = resp["outputs"]["result"]
    if kind == "psi-cardinality":
        assert out == {"count": 3}
        return
    assert out["count"] == 3
    assert sorted(out["rows"]) == [0, 1, 2]
    if kind == "psi-join":
        theirs = json.loads((b.config.results_dir / f"{resp['job']['job_id']}.json").read_text())["outputs"]["result"]
        fold = lambda ids: [i.strip().casefold() for i in ids]  # noqa: E731
        assert fold(out["identifiers"]) == fold(theirs["identifiers"])  # the same order at both
    else:
        assert not (b.config.results_dir / f"{resp['job']['job_id']}.json").exists()

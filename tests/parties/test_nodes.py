"""Real node processes (mpc-party start) on 127.0.0.1: jobs by manifest, policies, audit, failures."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from parties.config import load_federation
from parties.control import request
from parties.local import LocalParty, NodeProcesses, create_local_federation
from transport.identity import Federation, PeerInfo, generate_identity

NAMES = ("hospital-a", "hospital-b", "hospital-c")
ROWS = {"hospital-a": [[30, 2.5], [41, 3]], "hospital-b": [[50, 1], [60, 7], [25, 0.5]], "hospital-c": [[70, 10], [20, 1]]}
BIG_ROWS = 600_000  # hospital-c's "big" dataset: reading it takes long enough to act mid-job
DATASET = {"path": "patients.csv", "columns": {"age": "float", "stay": "float", "pid": "string"}, "allowed_columns": ["age", "stay"]}
BIG = {"path": "big.csv", "columns": {"age": "float", "stay": "float"}}
# hospital-c lets only hospital-a and itself receive outputs of jobs on its data; so by default
# jobs here release their output to those two.
POLICIES: dict[str, dict[str, Any]] = {
    "hospital-a": {"allowed_jobs": ["secure-sum"], "min_group_size": 2},
    "hospital-b": {"allowed_jobs": ["secure-sum"], "min_group_size": 2, "allowed_receivers": ["hospital-a", "hospital-b", "hospital-c"]},
    "hospital-c": {"allowed_jobs": ["secure-sum"], "min_group_size": 2, "allowed_receivers": ["hospital-a", "hospital-c"]},
}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[LocalParty], NodeProcesses]]:
    base = tmp_path_factory.mktemp("fed")
    for name, rows in ROWS.items():
        (base / name).mkdir()
        lines = ["age,stay,pid"] + [f"{a},{s},{name}-{i}" for i, (a, s) in enumerate(rows)]
        (base / name / "patients.csv").write_text("\n".join(lines) + "\n")
    (base / "hospital-c" / "big.csv").write_text("age,stay\n" + "30,2\n" * BIG_ROWS)
    datasets = {n: {"patients": DATASET} for n in NAMES}
    datasets["hospital-c"]["patients"] = {**DATASET, "path": "patients.csv"}
    datasets["hospital-c"]["big"] = BIG
    parties = create_local_federation(base, NAMES, recv_timeout=3.0, datasets=datasets, policies=POLICIES)
    nodes = NodeProcesses(parties)
    nodes.start()
    try:
        asyncio.run(nodes.wait_ready(timeout=60))
        yield parties, nodes
    finally:
        nodes.stop()


def control(party: LocalParty, req: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    return asyncio.run(request(party.config().control_socket, req, timeout=timeout))


def manifest(parties: tuple[str, ...] = NAMES, receivers: list[str] | None = None, columns: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "kind": "secure-sum",
        "parties": list(parties),
        "inputs": {p: {"dataset": "patients", "columns": columns or ["age", "stay"]} for p in parties},
        "outputs": {"result": receivers or [p for p in parties if p != "hospital-b"]},
        "timeout": 60,
    }
    m.update(extra)
    return m


def submit(party: LocalParty, m: dict[str, Any]) -> dict[str, Any]:
    return control(party, {"op": "submit", "manifest": m})


def all_rows() -> np.ndarray:
    return np.array([r for rows in ROWS.values() for r in rows], dtype=float)


def result_file(party: LocalParty, job_id: str) -> Path:
    return party.config().results_dir / f"{job_id}.json"


def audit(party: LocalParty, job_id: str) -> list[dict[str, Any]]:
    return control(party, {"op": "audit", "job_id": job_id})["entries"]


def test_job_runs_and_every_step_is_audited(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    resp = submit(parties[0], manifest())
    assert resp["ok"], resp
    job_id, digest = resp["job"]["job_id"], resp["job"]["hash"]
    data = all_rows()
    assert {p: s["state"] for p, s in resp["parties"].items()} == {n: "done" for n in NAMES}
    assert not result_file(parties[1], job_id).exists()
    for p in (parties[0], parties[2]):
        doc = json.loads(result_file(p, job_id).read_text())
        assert doc["manifest_hash"] == digest
        out = doc["outputs"]["result"]
        assert out["rows"] == len(data)
        assert out["sum"]["age"] == pytest.approx(data[:, 0].sum(), abs=1e-4)
        assert out["mean"]["stay"] == pytest.approx(data[:, 1].mean(), abs=1e-4)
    events_a = [e["event"] for e in audit(parties[0], job_id)]
    assert events_a == ["proposed", "started", "finished", "released"]
    for p in parties[1:]:
        entries = audit(p, job_id)
        assert [e["event"] for e in entries] == ["accepted", "started", "finished", "released"]
        assert entries[-1]["detail"]["received_here"] == (p.name == "hospital-c")
        assert all(e["manifest_hash"] == digest for e in entries)
        assert entries[0]["detail"]["proposer"] == "hospital-a"
        finished = entries[2]["detail"]
        assert finished["state"] == "done" and finished["bytes_sent"] > 0 and finished["rounds"] == 2


def test_only_named_receiver_gets_the_output(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    resp = submit(parties[1], manifest(receivers=["hospital-c"]))
    assert resp["ok"] and resp["outputs"] == {}, resp
    job_id = resp["job"]["job_id"]
    assert result_file(parties[2], job_id).exists()
    assert not result_file(parties[0], job_id).exists() and not result_file(parties[1], job_id).exists()
    assert control(parties[2], {"op": "result", "job_id": job_id})["ok"]
    assert not control(parties[1], {"op": "result", "job_id": job_id})["ok"]
    released = [e for e in audit(parties[0], job_id) if e["event"] == "released"]
    assert released[0]["detail"] == {"output": "result", "receivers": ["hospital-c"], "received_here": False}


@pytest.mark.parametrize(
    "proposer,m,rule,refuser",
    [
        (0, manifest(columns=["pid"]), "columns", None),  # refused by the proposer itself
        (0, {**manifest(), "inputs": {**manifest()["inputs"], "hospital-b": {"dataset": "nope", "columns": ["age", "stay"]}}}, "datasets", "hospital-b"),
        (0, {**manifest(), "inputs": {**manifest()["inputs"], "hospital-c": {"dataset": "patients", "columns": ["age", "pid"]}}}, "columns", "hospital-c"),
        (0, manifest(receivers=["hospital-b"]), "receivers", "hospital-c"),
        (0, manifest(parties=("hospital-a", "mallory")), "federation", None),
        (0, manifest(receivers=["mallory"]), "manifest", None),
        (1, manifest(kind="psi-everything"), "unknown-job-kind", None),
    ],
)
def test_refusals(federation: tuple[list[LocalParty], NodeProcesses], proposer: int, m: dict[str, Any], rule: str, refuser: str | None) -> None:
    parties, _ = federation
    before = {p.name: set(p.config().results_dir.iterdir()) for p in parties}
    resp = submit(parties[proposer], m)
    assert not resp["ok"] and resp["rule"] == rule, resp
    if refuser is not None:
        job_id = resp["job"]["job_id"]
        assert resp["job"]["state"] == "refused"
        assert any(r["party"] == refuser and r["rule"] == rule for r in resp["refusals"])
        refusing = next(p for p in parties if p.name == refuser)
        entry = audit(refusing, job_id)[-1]
        assert entry["event"] == "refused" and entry["detail"]["rule"] == rule
        log = (refusing.config().state_dir / "node.log").read_text()
        assert f"rule {rule}" in log
        for p in parties:  # nothing ran anywhere
            assert not any(e["event"] == "started" for e in audit(p, job_id))
    assert {p.name: set(p.config().results_dir.iterdir()) for p in parties} == before


def run_in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["value"] = fn()

    t = threading.Thread(target=target)
    t.start()
    return t, box


def big_manifest() -> dict[str, Any]:
    m = manifest(columns=["age", "stay"])
    m["inputs"]["hospital-c"] = {"dataset": "big", "columns": ["age", "stay"]}
    return m


def wait_state(party: LocalParty, *states: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = control(party, {"op": "jobs"})["jobs"]
        running = [j for j in jobs if j["state"] in states]
        if running:
            return str(running[-1]["job_id"])
        time.sleep(0.02)
    raise AssertionError(f"no job reached {states}")


def test_second_submission_of_a_running_job_is_refused(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    thread, box = run_in_background(lambda: submit(parties[0], big_manifest()))
    wait_state(parties[0], "running")
    again = submit(parties[0], big_manifest())
    thread.join()
    assert not again["ok"] and again["rule"] == "duplicate-job"
    assert box["value"]["ok"], box["value"]
    assert box["value"]["outputs"]["result"]["rows"] == 5 + BIG_ROWS


def test_node_killed_mid_job_fails_everywhere_consistently(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, nodes = federation
    thread, box = run_in_background(lambda: submit(parties[0], big_manifest()))
    # hospital-c accepted (or started) the job; it still has to read its big dataset.
    job_id = wait_state(parties[2], "accepted", "running")
    nodes.signal("hospital-c", signal.SIGKILL)
    thread.join(timeout=60)
    resp = box["value"]
    assert not resp["ok"] and resp["job"]["state"] == "failed"
    assert "peer-unavailable" in resp["error"] or "abort" in resp["error"]
    for p in parties[:2]:
        job = next(j for j in control(p, {"op": "jobs"})["jobs"] if j["job_id"] == job_id)
        assert job["state"] == "failed" and job["error"]
        events = [e["event"] for e in audit(p, job_id)]
        assert events[-2:] == ["failed", "finished"] or events[-2:] == ["finished", "failed"] or "failed" in events
        assert "released" not in events and not result_file(p, job_id).exists()
    # Restart hospital-c: the federation heals and jobs run again.
    nodes.start("hospital-c")
    asyncio.run(nodes.wait_ready(timeout=60))
    resp = submit(parties[0], manifest())
    assert resp["ok"], resp


def test_cancel_from_the_cli(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    thread, box = run_in_background(lambda: submit(parties[0], big_manifest()))
    job_id = wait_state(parties[1], "running")
    resp = control(parties[1], {"op": "cancel", "job_id": job_id[:8]})  # hospital-c is still reading
    assert resp["ok"]
    thread.join(timeout=60)
    assert not box["value"]["ok"]
    for p in parties:
        job = next(j for j in control(p, {"op": "jobs"})["jobs"] if j["job_id"] == job_id)
        assert job["state"] in ("cancelled", "failed"), job
        assert not result_file(p, job_id).exists()
    assert next(j for j in control(parties[1], {"op": "jobs"})["jobs"] if j["job_id"] == job_id)["state"] == "cancelled"


def test_impostor_is_refused_and_nodes_keep_serving(federation: tuple[list[LocalParty], NodeProcesses], tmp_path: Path) -> None:
    parties, _ = federation
    from transport.tls import client_context
    from transport.websocket import MESH_PATH, PARTY_HEADER

    real = load_federation(parties[0].config().federation_path)
    target = real.by_name("hospital-c")

    async def attempt(identity: Any, fed: Federation, claim: str) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            f"wss://{target.host}:{target.port}{MESH_PATH}",
            ssl=client_context(identity, fed),
            additional_headers={PARTY_HEADER: claim},
            open_timeout=5,
            proxy=None,
        ) as ws:
            await ws.send(b"hello")
            await ws.recv()

    # 1. a fresh key claiming to be hospital-a: not in the trust store, TLS fails.
    fake = generate_identity("hospital-a", tmp_path / "fake")
    fake_fed = Federation(tuple(PeerInfo.from_certificate("hospital-a", "127.0.0.1", 1, fake.cert_path) if p.name == "hospital-a" else p for p in real))
    with pytest.raises(Exception):
        asyncio.run(attempt(fake, fake_fed, "hospital-a"))
    # 2. a genuine member (hospital-b's key) claiming to be hospital-a: refused before any message.
    from transport.identity import Identity

    b_cfg = parties[1].config()
    b_identity = Identity("hospital-b", b_cfg.key_path, b_cfg.cert_path)
    with pytest.raises(Exception):
        asyncio.run(attempt(b_identity, real, "hospital-a"))
    log = parties[2].config().state_dir / "node.log"
    deadline = time.monotonic() + 5
    while log.read_text().lower().count("refus") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text().lower().count("refus") >= 2
    resp = submit(parties[2], manifest(receivers=["hospital-c"]))
    assert resp["ok"], resp


def test_silent_peer_fails_the_proposal_within_timeout(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, nodes = federation
    nodes.signal("hospital-c", signal.SIGSTOP)
    try:
        t = time.monotonic()
        resp = submit(parties[0], manifest())
        elapsed = time.monotonic() - t
    finally:
        nodes.signal("hospital-c", signal.SIGCONT)
    assert not resp["ok"] and resp["error"] == "peer-unavailable"
    assert elapsed < 3.0 + 5.0
    asyncio.run(nodes.wait_ready(timeout=60))
    assert submit(parties[0], manifest())["ok"]


def test_status_and_cli(federation: tuple[list[LocalParty], NodeProcesses], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import tomli_w

    from parties.cli import main

    parties, _ = federation
    st = control(parties[0], {"op": "status"})
    assert st["ok"] and st["name"] == "hospital-a"
    assert {k: v["state"] for k, v in st["mesh"]["peers"].items()} == {"hospital-b": "connected", "hospital-c": "connected"}
    assert control(parties[0], {"op": "bogus"})["error"] == "config"
    job = tmp_path / "job.toml"
    job.write_text(tomli_w.dumps(manifest(receivers=["hospital-a"])))
    assert main(["submit", str(job), "--config", str(parties[0].config_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["outputs"]["result"]["sum"]["age"] == pytest.approx(all_rows()[:, 0].sum())
    assert main(["sum", "--config", str(parties[0].config_path), "--dataset", "patients", "--columns", "age", "--receivers", "hospital-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    assert main(["result", out["job"]["job_id"][:10], "--config", str(parties[0].config_path)]) == 0
    assert json.loads(capsys.readouterr().out)["manifest_hash"] == out["job"]["hash"]
    assert main(["audit", "--config", str(parties[0].config_path), "--job", out["job"]["job_id"], "--json"]) == 0
    assert [e["event"] for e in json.loads(capsys.readouterr().out)["entries"]] == ["proposed", "started", "finished", "released"]
    assert main(["jobs", "--config", str(parties[0].config_path), "--json"]) == 0


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    parties = create_local_federation(tmp_path, ("x-1", "x-2"), recv_timeout=3.0)
    with NodeProcesses(parties) as nodes:
        asyncio.run(nodes.wait_ready(timeout=60))
    assert nodes.stop() == {"x-1": 0, "x-2": 0}
    assert not parties[0].config().control_socket.exists()


def test_mpc_party_local_runs_a_federation_until_sigterm(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "parties.cli", "local", "3", "--dir", str(tmp_path / "fed")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "all nodes connected" in line:
                break
        assert any("all nodes connected" in line for line in lines), lines
        fed = load_federation(tmp_path / "fed" / "federation.toml")
        assert fed.names == ("party-0", "party-1", "party-2")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

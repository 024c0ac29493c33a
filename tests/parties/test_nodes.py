"""Real node processes (mpc-party start) on 127.0.0.1 over mutually authenticated TLS websockets."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from mpc.errors import HandshakeFailed
from parties.config import load_federation
from parties.control import request
from parties.local import LocalParty, NodeProcesses, create_local_federation
from transport.identity import Federation, PeerInfo, generate_identity

NAMES = ("hospital-a", "hospital-b", "hospital-c")
ROWS = {"hospital-a": [[30, 2.5], [41, 3]], "hospital-b": [[50, 1], [60, 7], [25, 0.5]], "hospital-c": [[70, 10]]}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[LocalParty], NodeProcesses]]:
    base = tmp_path_factory.mktemp("fed")
    for name, rows in ROWS.items():
        (base / name).mkdir()
        lines = ["age,stay"] + [f"{a},{s}" for a, s in rows]
        (base / name / "patients.csv").write_text("\n".join(lines) + "\n")
    parties = create_local_federation(base, NAMES, recv_timeout=3.0, datasets={n: {"patients": "patients.csv"} for n in NAMES})
    nodes = NodeProcesses(parties)
    nodes.start()
    try:
        asyncio.run(nodes.wait_ready(timeout=60))
        yield parties, nodes
    finally:
        nodes.stop()


def control(party: LocalParty, req: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(request(party.config().control_socket, req, timeout=60))


def submit_sum(party: LocalParty, **extra: Any) -> dict[str, Any]:
    params = {"dataset": "patients", "columns": ["age", "stay"], "scale_bits": 16}
    params.update(extra.pop("params", {}))
    return control(party, {"op": "submit", "kind": "secure-sum", "params": params, **extra})


def all_rows() -> np.ndarray:
    return np.array([r for rows in ROWS.values() for r in rows], dtype=float)


def log_of(party: LocalParty) -> str:
    return (party.config().state_dir / "node.log").read_text()


def test_secure_sum_reaches_every_party(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    resp = submit_sum(parties[0])
    assert resp["ok"], resp
    job_id = resp["job"]["job_id"]
    data = all_rows()
    for p in parties:
        doc = json.loads((p.config().results_dir / f"{job_id}.json").read_text())
        assert doc["hash"] == resp["job"]["hash"]
        assert doc["result"]["rows"] == len(data)
        assert doc["result"]["sum"]["age"] == pytest.approx(data[:, 0].sum(), abs=1e-4)
        assert doc["result"]["mean"]["stay"] == pytest.approx(data[:, 1].mean(), abs=1e-4)
    st = control(parties[1], {"op": "jobs"})
    job = next(j for j in st["jobs"] if j["job_id"] == job_id)
    assert job["state"] == "done" and job["stats"]["bytes_sent"] > 0 and job["stats"]["rounds"] == 2


def test_only_named_receiver_gets_the_output(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    resp = submit_sum(parties[1], receivers=["hospital-c"])
    assert resp["ok"] and resp["result"] is None
    job_id = resp["job"]["job_id"]
    assert (parties[2].config().results_dir / f"{job_id}.json").exists()
    assert not (parties[0].config().results_dir / f"{job_id}.json").exists()
    assert not (parties[1].config().results_dir / f"{job_id}.json").exists()


def test_refusal_names_the_rule_and_is_logged(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    resp = submit_sum(parties[0], params={"columns": ["ssn"]})
    assert not resp["ok"] and resp["rule"] == "columns"  # refused by the proposer's own policy first
    # A column only hospital-a lacks is refused by hospital-a; proposed by hospital-b.
    resp = submit_sum(parties[1], params={"dataset": "nope"})
    assert not resp["ok"]
    resp = control(parties[0], {"op": "submit", "kind": "secure-sum", "parties": ["hospital-a", "mallory"], "params": {"dataset": "patients", "columns": ["age"], "scale_bits": 16}})
    assert not resp["ok"] and resp["rule"] == "federation"


def test_impostor_is_refused_and_nodes_keep_serving(federation: tuple[list[LocalParty], NodeProcesses], tmp_path: Path) -> None:
    parties, _ = federation
    from transport.tls import client_context

    real = load_federation(parties[0].config().federation_path)
    # A fresh key claiming to be hospital-a (a member that dials hospital-c).
    fake = generate_identity("hospital-a", tmp_path / "fake")
    fake_fed = Federation(
        tuple(PeerInfo.from_certificate("hospital-a", "127.0.0.1", 1, fake.cert_path) if p.name == "hospital-a" else p for p in real)
    )
    target = real.by_name("hospital-c")

    async def attempt() -> None:
        from websockets.asyncio.client import connect

        ctx = client_context(fake, fake_fed)
        async with connect(
            f"wss://{target.host}:{target.port}/",
            ssl=ctx,
            server_hostname="hospital-c",
            additional_headers={"MPC-Party": "hospital-a"},
            open_timeout=5,
        ) as ws:
            await ws.send(b"hello")
            await ws.recv()

    with pytest.raises(Exception) as info:
        asyncio.run(attempt())
    assert not isinstance(info.value, AssertionError)
    deadline = time.monotonic() + 5
    while "refus" not in log_of(parties[2]).lower() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "refus" in log_of(parties[2]).lower()
    resp = submit_sum(parties[2])
    assert resp["ok"], resp


def test_silent_peer_fails_the_proposal_within_timeout(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, nodes = federation
    nodes.signal("hospital-c", signal.SIGSTOP)
    try:
        t = time.monotonic()
        resp = submit_sum(parties[0])
        elapsed = time.monotonic() - t
    finally:
        nodes.signal("hospital-c", signal.SIGCONT)
    assert not resp["ok"]
    assert resp["error"] == "peer-unavailable"
    assert elapsed < 3.0 + 5.0
    asyncio.run(nodes.wait_ready(timeout=60))
    resp = submit_sum(parties[0])
    assert resp["ok"], resp


def test_status_reports_connected_peers(federation: tuple[list[LocalParty], NodeProcesses]) -> None:
    parties, _ = federation
    st = control(parties[0], {"op": "status"})
    assert st["ok"] and st["name"] == "hospital-a"
    assert {k: v["state"] for k, v in st["mesh"]["peers"].items()} == {"hospital-b": "connected", "hospital-c": "connected"}
    resp = control(parties[0], {"op": "bogus"})
    assert not resp["ok"] and resp["error"] == "config"


def test_cli_status_and_sum_against_running_nodes(federation: tuple[list[LocalParty], NodeProcesses], capsys: pytest.CaptureFixture[str]) -> None:
    from parties.cli import main

    parties, _ = federation
    assert main(["sum", "--config", str(parties[0].config_path), "--dataset", "patients", "--columns", "age"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["result"]["sum"]["age"] == pytest.approx(all_rows()[:, 0].sum())
    assert main(["status", "--config", str(parties[0].config_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "hospital-a"


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    parties = create_local_federation(tmp_path, ("x-1", "x-2"), recv_timeout=3.0)
    with NodeProcesses(parties) as nodes:
        asyncio.run(nodes.wait_ready(timeout=60))
    assert nodes.stop() == {"x-1": 0, "x-2": 0}
    assert not parties[0].config().control_socket.exists()

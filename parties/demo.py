"""``scripts/demo``: three hospitals, three real node processes, one joint computation.

What it shows, on 127.0.0.1 only:

1. each hospital gets a fresh Ed25519 identity and a self-signed certificate; one federation file
   pins every certificate's fingerprint;
2. three ``mpc-party start`` processes find each other over mutually authenticated TLS 1.3
   websockets (an impostor would be refused before any application message);
3. hospital-a proposes a ``secure-sum`` job over each hospital's private patient table; every
   node checks it against its own policy, all agree on the job's hash, and the additive-sharing
   protocol computes the column totals and means; no hospital's rows or subtotals leave it;
4. a second job releases its result to hospital-a only;
5. the demo prints what each party learned, what crossed the wire, and checks the result against
   the plaintext computation (which only the demo, holding every synthetic table, can do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from mpc.prg import PRG
from parties.config import load_federation, load_node_config
from parties.control import request
from parties.local import NodeProcesses, create_local_federation

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
COLUMNS = ("age", "length_of_stay", "readmitted")
console = Console(width=max(Console().width, 110))


def synthetic_patients(name: str, rows: int) -> np.ndarray:
    """A reproducible synthetic patient table for one hospital (demo data, not secret)."""
    prg = PRG.derive(b"demo-synthetic-data-v1", name)
    age = 18 + prg.below(75, rows)
    stay = 1 + prg.below(12, rows) + (age > 65) * prg.below(5, rows)
    readmitted = prg.bits(rows).astype(np.int64)
    return np.stack([age, stay, readmitted], axis=1).astype(np.float64)


def write_csv(path: Path, data: np.ndarray) -> None:
    """Write the table with a header row."""
    lines = [",".join(COLUMNS)] + [",".join(str(int(v)) for v in row) for row in data]
    path.write_text("\n".join(lines) + "\n")


async def submit(cfg_path: Path, **job: Any) -> dict[str, Any]:
    """Submit a job to a node's control socket, as ``mpc-party sum`` does."""
    return await request(load_node_config(cfg_path).control_socket, {"op": "submit", **job}, timeout=120)


async def status(cfg_path: Path) -> dict[str, Any]:
    """Query a node's status over its control socket."""
    return await request(load_node_config(cfg_path).control_socket, {"op": "status"}, timeout=10)


def show_learned(parties: list[Any], job_id: str) -> None:
    """Print, per party, what the job released to it and what it sent."""
    table = Table("party", "learned (means)", "bytes sent", "messages", "rounds")
    for p in parties:
        result_file = p.config().results_dir / f"{job_id}.json"
        learned = "nothing (not a receiver)"
        if result_file.exists():
            res = json.loads(result_file.read_text())["result"]
            learned = f"rows={res['rows']} " + " ".join(f"{c}={v:.3f}" for c, v in res["mean"].items())
        st = asyncio.run(status(p.config_path))
        job = next(j for j in st["jobs"] if j["job_id"] == job_id)
        stats = job["stats"]
        table.add_row(p.name, learned, str(stats.get("bytes_sent")), str(stats.get("messages_sent")), str(stats.get("rounds")))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="keep the federation here (default: a temporary directory)")
    ap.add_argument("--rows", type=int, default=2000, help="patients per hospital")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mpc-demo-"))
    if args.dir and workdir.exists():
        shutil.rmtree(workdir)

    console.rule("[bold]1. identities and federation")
    tables = {h: synthetic_patients(h, args.rows) for h in HOSPITALS}
    datasets = {}
    for h in HOSPITALS:
        (workdir / h).mkdir(parents=True, exist_ok=True)
        write_csv(workdir / h / "patients.csv", tables[h])
        datasets[h] = {"patients": "patients.csv"}
    parties = create_local_federation(workdir, HOSPITALS, recv_timeout=20.0, datasets=datasets)
    for member in load_federation(workdir / "federation.toml"):
        console.print(f"  {member.name:<11} {member.host}:{member.port}  sha256 {member.fingerprint[:32]}...")

    console.rule("[bold]2. three node processes connect (mutual TLS 1.3, pinned certificates)")
    with NodeProcesses(parties) as nodes:
        asyncio.run(nodes.wait_ready(timeout=60))
        for p in parties:
            st = asyncio.run(status(p.config_path))
            peers = ", ".join(f"{k}: {v['state']}" for k, v in sorted(st["mesh"]["peers"].items()))
            console.print(f"  {p.name:<11} pid {nodes.procs[p.name].pid:<7} peers {peers}")

        console.rule("[bold]3. secure-sum of patient columns, result to every hospital")
        console.print(f"  $ mpc-party sum --config {parties[0].config_path} --dataset patients --columns {','.join(COLUMNS)}")
        params = {"dataset": "patients", "columns": list(COLUMNS), "scale_bits": 16}
        resp = asyncio.run(submit(parties[0].config_path, kind="secure-sum", params=params))
        if not resp.get("ok"):
            console.print(f"[red]job failed: {resp}")
            return 1
        job_id = resp["job"]["job_id"]
        console.print(f"  job {job_id} agreed by all parties, hash {resp['job']['hash'][:16]}...")
        show_learned(parties, job_id)

        everything = np.concatenate([tables[h] for h in HOSPITALS])
        expected = everything.mean(axis=0)
        got = np.array([resp["result"]["mean"][c] for c in COLUMNS])
        ok = resp["result"]["rows"] == everything.shape[0] and np.allclose(got, expected, atol=1e-4)
        console.print(
            f"  plaintext check (only this demo holds every table): means {np.round(expected, 4).tolist()} "
            + ("[green]match[/green]" if ok else "[red]MISMATCH[/red]")
        )

        console.rule("[bold]4. the same job, result released to hospital-a only")
        resp2 = asyncio.run(submit(parties[1].config_path, kind="secure-sum", params=params, receivers=["hospital-a"]))
        if not resp2.get("ok"):
            console.print(f"[red]job failed: {resp2}")
            return 1
        show_learned(parties, resp2["job"]["job_id"])
        ok = ok and not (parties[1].config().results_dir / f"{resp2['job']['job_id']}.json").exists()

        console.rule("[bold]5. stopping the nodes (SIGTERM)")
    codes = nodes.stop()
    console.print(f"  exit codes {codes}; logs in {workdir}/*/state/node.log")
    console.print(f"demo finished in {time.monotonic() - t0:.1f} s: " + ("[green]OK" if ok else "[red]FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""One party of a ``processes`` harness run: ``python -m parties.worker RUN_DIR NAME``.

Reads ``RUN_DIR/run.json`` (program reference, parties, timeouts, faults), its identity in
``RUN_DIR/NAME/``, the federation file and its input; runs the program over a real TLS websocket
mesh; writes ``output.bin`` (wire encoding) and ``outcome.json`` (error code and counters).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from pathlib import Path

from mpc.prg import PRG
from parties import aio
from mpc.session import Session
from parties.config import load_federation
from parties.testing import error_record, fault_plan_from_json, read_payload, resolve_program, write_payload
from transport.identity import Identity
from transport.websocket import WebsocketMesh


async def drain(mesh: WebsocketMesh, timeout: float) -> None:
    """Wait (bounded) until every peer acknowledged what this party sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peers = mesh.stats()["peers"].values()
        if all(p["unacked_bytes"] == 0 for p in peers):
            return
        await asyncio.sleep(0.02)


async def run(run_dir: Path, name: str) -> int:
    """Run this party; returns the process exit code."""
    spec = json.loads((run_dir / "run.json").read_text())
    me = run_dir / name
    federation = load_federation(run_dir / "federation.toml")
    identity = Identity(name, me / f"{name}.key", me / f"{name}.crt")
    program = resolve_program(spec["program"])
    seed_file = me / "seed.bin"
    prg = PRG(seed_file.read_bytes()) if seed_file.exists() else None
    my_input = read_payload(me / "input.bin")
    mesh = WebsocketMesh(
        identity,
        federation,
        recv_timeout=spec["recv_timeout"],
        connect_timeout=spec["recv_timeout"],
        faults=fault_plan_from_json(spec["faults"]),
    )
    error = None
    async with mesh:
        channel = mesh.channel(spec["session_id"], spec["parties"])
        # Setup's objects (modules, keys, the mesh) go to the permanent generation: the
        # collector's full passes during the program then skip them (~20% CPU in small rounds).
        gc.freeze()
        try:
            result = await program(Session(channel, prg=prg, offload=spec["offload"]), my_input)
            write_payload(me / "output.bin", result)
        except Exception as exc:  # reported to the harness as a typed error code
            error = error_record(exc)
            logging.getLogger("parties.worker").error("%s failed: %r", name, exc)
        await drain(mesh, spec["recv_timeout"])
        stats = channel.stats.as_dict()
        await channel.close()
    (me / "outcome.json").write_text(json.dumps({"error": error, "stats": stats}))
    return 0


def main() -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_dir, name = Path(sys.argv[1]), sys.argv[2]
    return aio.run(run(run_dir, name))  # one BLAS thread, tuned allocator (aio.prepare_process)


if __name__ == "__main__":
    sys.exit(main())

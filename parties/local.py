"""A local federation: N parties with fresh identities on 127.0.0.1, as real node processes.

Used by ``mpc-party local``, ``scripts/demo`` and the multi-process tests. Every party gets its
own directory (key, certificate, node.toml) and the shared federation file pins every
certificate's fingerprint, exactly as a real multi-site deployment does.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mpc.errors import ConfigError, TransportError
from parties.aio import offload_default
from parties.config import NodeConfig, dump_federation, load_node_config, write_node_config
from parties.control import request
from transport.identity import Federation, PeerInfo, generate_identity

__all__ = [
    "LocalParty",
    "create_local_federation",
    "free_ports",
    "NodeProcesses",
    "run_local_federation",
]


@dataclass(frozen=True)
class LocalParty:
    """One party of a local federation."""

    name: str
    directory: Path
    config_path: Path

    def config(self) -> NodeConfig:
        """Load this party's node config."""
        return load_node_config(self.config_path)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago on ``host``."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def create_local_federation(
    directory: Path,
    names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    ports: Sequence[int] | None = None,
    recv_timeout: float = 30.0,
    datasets: dict[str, dict[str, dict[str, Any]]] | None = None,
    policies: dict[str, dict[str, Any]] | None = None,
) -> list[LocalParty]:
    """Create identities, node configs and one shared federation file under ``directory``.

    Args:
        directory: parent directory; each party gets ``directory/NAME``.
        names: party names.
        host: address every node listens on.
        ports: one port per party (default: free ports).
        recv_timeout: the nodes' receive timeout.
        datasets: per party name, its ``[datasets]`` tables (dataset name -> path, columns...),
            paths relative to the party's directory.
        policies: per party name, its ``[policy]`` table (default: every job kind allowed).

    Raises:
        ConfigError: if a party directory already holds a key (keys are never overwritten).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ports = list(ports) if ports else free_ports(len(names), host)
    if len(ports) != len(names):
        raise ConfigError("one port per party is needed")
    parties, peers = [], []
    for name, port in zip(names, ports):
        pdir = directory / name
        identity = generate_identity(name, pdir)
        cfg = write_node_config(
            pdir,
            name=name,
            listen=f"{host}:{port}",
            federation="../federation.toml",
            recv_timeout=recv_timeout,
            datasets=(datasets or {}).get(name),
            policy=(policies or {}).get(name),
            offload_compute=offload_default(len(names)),  # the nodes share this machine's cores
        )
        parties.append(LocalParty(name, pdir, cfg))
        peers.append(PeerInfo.from_certificate(name, host, port, identity.cert_path))
    dump_federation(Federation(tuple(peers)), directory / "federation.toml")
    return parties


class NodeProcesses:
    """Real ``mpc-party start`` processes for a local federation.

    Use as a context manager: nodes are started on entry and stopped with SIGTERM on exit.
    """

    def __init__(self, parties: Sequence[LocalParty], *, log_level: str = "info") -> None:
        self.parties = list(parties)
        self.log_level = log_level
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str | None = None) -> None:
        """Start every node (or the one named)."""
        for p in self.parties:
            if name is not None and p.name != name:
                continue
            log = open(p.directory / "stderr.log", "ab")
            self.procs[p.name] = subprocess.Popen(
                [sys.executable, "-m", "parties.cli", "start", "--config", str(p.config_path), "--log-level", self.log_level],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to one node process."""
        self.procs[name].send_signal(sig)

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM every node, wait, and return their exit codes (killing stragglers)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        codes = {}
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    async def wait_ready(self, timeout: float = 30.0, names: Sequence[str] | None = None) -> None:
        """Wait until the nodes answer on their control sockets and see all their peers connected.

        Raises:
            TransportError: if not ready within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        pending = [p for p in self.parties if names is None or p.name in names]
        while pending:
            p = pending[0]
            proc = self.procs.get(p.name)
            if proc is not None and proc.poll() is not None:
                raise TransportError(f"node {p.name} exited with code {proc.returncode}; see {p.directory / 'stderr.log'}")
            try:
                st = await request(p.config().control_socket, {"op": "status"}, timeout=5)
                peers = st.get("mesh", {}).get("peers", {})
                if peers and all(v.get("state") == "connected" for v in peers.values()):
                    pending.pop(0)
                    continue
            except TransportError:
                pass
            if time.monotonic() > deadline:
                raise TransportError(f"node {p.name} not ready within {timeout} s")
            await asyncio.sleep(0.1)

    def __enter__(self) -> NodeProcesses:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_local_federation(directory: Path, n: int, *, base_port: int = 0) -> int:
    """``mpc-party local``: create N parties (if absent) and run their nodes until interrupted."""
    if n < 2:
        raise ConfigError("a federation needs at least two parties")
    names = [f"party-{i}" for i in range(n)]
    if (directory / "federation.toml").exists():
        parties = [LocalParty(nm, directory / nm, directory / nm / "node.toml") for nm in names]
        print(f"using the existing federation in {directory}")
    else:
        ports = [base_port + i for i in range(n)] if base_port else None
        parties = create_local_federation(directory, names, ports=ports)
        print(f"created {n} parties in {directory}")
    nodes = NodeProcesses(parties)
    stop = {"flag": False}

    def on_signal(*_: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with nodes:
        asyncio.run(nodes.wait_ready())
        for p in parties:
            print(f"{p.name}: running, config {p.config_path}")
        print("all nodes connected; Ctrl-C stops them", flush=True)
        while not stop["flag"] and all(proc.poll() is None for proc in nodes.procs.values()):
            time.sleep(0.2)
    return 0

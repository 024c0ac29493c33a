"""The protocol test harness: run an SPMD program on n parties and get every party's outcome.

Public and documented, for use in your own pytest suites::

    from parties.testing import run_parties
    from transport.faults import Fault, FaultPlan

    outcomes = run_parties(my_program, [x0, x1, x2], transport="memory",
                           faults=FaultPlan([Fault("disconnect", after=3)]))
    assert all(o.ok for o in outcomes)

Three transports run the very same program:

``"memory"``
    every party in this event loop over :class:`transport.memory.MemoryNetwork` (framing, Links
    and routers exactly as on the wire, no sockets). Fast; the default for protocol tests.
``"websocket"``
    every party in this event loop, each with its own :class:`transport.websocket.WebsocketMesh`
    over real mutually authenticated TLS 1.3 websockets on 127.0.0.1, with fresh identities.
``"processes"``
    every party in its own Python process (``python -m parties.worker``), over real TLS
    websockets. The program must be importable (a module-level function); inputs and outputs
    cross the process boundary in the wire encoding (msgpack + numpy arrays, never pickle).

Faults (:class:`transport.faults.FaultPlan`) apply to the frames every node writes, on every
transport. Each party's outcome is its result or the typed error it raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Mapping, Sequence

from mpc.errors import ConfigError, MPCError, TransportError, error_from_code
from mpc.prg import PRG
from mpc.session import Program, Session
from parties.aio import offload_default
from transport.faults import Fault, FaultPlan
from transport.framing import decode_payload, encode_payload
from transport.identity import Federation, PeerInfo, generate_identity
from transport.memory import MemoryNetwork
from transport.websocket import WebsocketMesh

__all__ = [
    "PartyOutcome",
    "Transport",
    "party_names",
    "run_parties",
    "run_parties_async",
    "run_local",
    "websocket_federation",
    "program_reference",
]

Transport = Literal["memory", "websocket", "processes"]


@dataclass(frozen=True)
class PartyOutcome:
    """What one party ended with.

    Attributes:
        name: the party's name.
        result: the program's return value (``None`` if it raised).
        error: the exception it raised, or ``None``.
        stats: the party's channel counters (bytes, messages, rounds).
    """

    name: str
    result: Any = None
    error: BaseException | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the party finished without an error."""
        return self.error is None


def party_names(n: int) -> tuple[str, ...]:
    """Default party names ``party-0 .. party-{n-1}``."""
    if n < 1:
        raise ConfigError("at least one party is needed")
    return tuple(f"party-{i}" for i in range(n))


def _inputs_by_name(inputs: Sequence[Any] | Mapping[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(inputs, Mapping):
        return dict(inputs)
    names = tuple(names) if names is not None else party_names(len(inputs))
    if len(names) != len(inputs):
        raise ConfigError("one input per party is needed")
    return dict(zip(names, inputs))


async def _run_sessions(
    program: Program,
    inputs: Mapping[str, Any],
    channels: Mapping[str, Any],
    seeds: Mapping[str, bytes] | None,
) -> list[PartyOutcome]:
    async def one(name: str) -> PartyOutcome:
        channel = channels[name]
        session = Session(channel, prg=PRG(seeds[name]) if seeds else None)
        try:
            result = await program(session, inputs[name])
        except Exception as exc:  # the harness reports every party's error, typed or not
            return PartyOutcome(name, None, exc, channel.stats.as_dict())
        finally:
            await channel.close()
        return PartyOutcome(name, result, None, channel.stats.as_dict())

    return list(await asyncio.gather(*(one(n) for n in inputs)))


@contextlib.asynccontextmanager
async def websocket_federation(
    names: Sequence[str],
    *,
    recv_timeout: float = 10.0,
    connect_timeout: float | None = None,
    faults: FaultPlan | None = None,
    directory: Path | None = None,
) -> AsyncIterator[dict[str, WebsocketMesh]]:
    """Fresh identities and one started :class:`WebsocketMesh` per party on 127.0.0.1.

    Yields:
        Party name -> its mesh (all stopped on exit).
    """
    from parties.local import free_ports

    with tempfile.TemporaryDirectory(prefix="mpc-fed-") as tmp:
        base = directory or Path(tmp)
        ports = free_ports(len(names))
        identities = {n: generate_identity(n, base / n) for n in names}
        federation = Federation(
            tuple(PeerInfo.from_certificate(n, "127.0.0.1", p, identities[n].cert_path) for n, p in zip(names, ports))
        )
        meshes = {
            n: WebsocketMesh(
                identities[n],
                federation,
                recv_timeout=recv_timeout,
                connect_timeout=connect_timeout or recv_timeout,
                faults=faults,
            )
            for n in names
        }
        started: list[WebsocketMesh] = []
        try:
            for mesh in meshes.values():
                await mesh.start()
                started.append(mesh)
            yield meshes
        finally:
            await asyncio.gather(*(m.stop() for m in started), return_exceptions=True)


async def run_parties_async(
    program: Program,
    inputs: Sequence[Any] | Mapping[str, Any],
    *,
    names: Sequence[str] | None = None,
    transport: Transport = "memory",
    faults: FaultPlan | None = None,
    recv_timeout: float = 10.0,
    seeds: Mapping[str, bytes] | None = None,
    session_id: str = "test-job",
) -> list[PartyOutcome]:
    """Run ``program`` on one party per input; see the module docstring.

    Args:
        program: ``async def program(session, my_input) -> my_output``.
        inputs: one input per party (a sequence, with ``names`` or default names) or a mapping
            party name -> input; the order is the parties' id order.
        names: party names for a sequence of inputs.
        transport: ``"memory"``, ``"websocket"`` or ``"processes"``.
        faults: fault plan applied to every node's outgoing frames.
        recv_timeout: seconds a receive waits before ``PeerUnavailable``.
        seeds: party name -> 16-byte PRG seed, for reproducible runs (tests only).
        session_id: the session's id.

    Returns:
        One :class:`PartyOutcome` per party, in party-id order.
    """
    by_name = _inputs_by_name(inputs, names)
    parties = list(by_name)
    if transport == "memory":
        async with MemoryNetwork(parties, recv_timeout=recv_timeout, faults=faults) as net:
            channels = {n: net[n].channel(session_id, parties) for n in parties}
            return await _run_sessions(program, by_name, channels, seeds)
    if transport == "websocket":
        async with websocket_federation(parties, recv_timeout=recv_timeout, faults=faults) as meshes:
            channels = {n: meshes[n].channel(session_id, parties) for n in parties}
            return await _run_sessions(program, by_name, channels, seeds)
    if transport == "processes":
        return await asyncio.to_thread(
            _run_processes, program, by_name, faults=faults, recv_timeout=recv_timeout, seeds=seeds, session_id=session_id
        )
    raise ConfigError(f"unknown transport {transport!r}")


def run_parties(program: Program, inputs: Sequence[Any] | Mapping[str, Any], **kwargs: Any) -> list[PartyOutcome]:
    """Synchronous :func:`run_parties_async` (starts its own event loop)."""
    return asyncio.run(run_parties_async(program, inputs, **kwargs))


def run_local(
    program: Program,
    inputs: Sequence[Any] | Mapping[str, Any],
    *,
    transport: Transport = "memory",
    **kwargs: Any,
) -> list[Any]:
    """Run ``program`` on a local federation and return every party's result.

    Raises:
        MPCError: the first error any party raised (others are chained in its notes).
    """
    outcomes = run_parties(program, inputs, transport=transport, **kwargs)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        first = failed[0].error
        assert first is not None
        for o in failed[1:]:
            first.add_note(f"{o.name} also failed: {o.error!r}")
        raise first
    return [o.result for o in outcomes]


# ---------------------------------------------------------------------------- processes


def program_reference(program: Program) -> dict[str, str]:
    """Where a worker process finds a module-level program: module, file and function name.

    Raises:
        ConfigError: the program is a lambda, a closure or a method.
    """
    module = getattr(program, "__module__", None)
    qualname = getattr(program, "__qualname__", "")
    if not module or "<" in qualname or "." in qualname:
        raise ConfigError("the 'processes' transport needs a module-level function")
    mod = sys.modules.get(module)
    source = getattr(mod, "__file__", None) or ""
    spec = getattr(mod, "__spec__", None)
    if module == "__main__" and spec is not None and spec.name:
        module = spec.name  # run as ``python -m package.module``: import it by its real name
    return {"module": module, "file": source, "name": qualname}


def resolve_program(ref: dict[str, str]) -> Program:
    """Import a program named by :func:`program_reference` (by module name, else from its file).

    Raises:
        ConfigError: it cannot be imported or is not callable.
    """
    try:
        module = importlib.import_module(ref["module"])
    except ImportError:
        spec = importlib.util.spec_from_file_location(ref["module"], ref["file"]) if ref["file"] else None
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import program module {ref['module']!r}") from None
        module = importlib.util.module_from_spec(spec)
        sys.modules[ref["module"]] = module
        spec.loader.exec_module(module)
    obj = getattr(module, ref["name"], None)
    if not callable(obj):
        raise ConfigError(f"{ref['module']}:{ref['name']} is not a callable program")
    return obj  # type: ignore[no-any-return]


def write_payload(path: Path, value: Any) -> None:
    """Write a value in the wire encoding (msgpack + numpy arrays)."""
    encoded = encode_payload(value)
    with open(path, "wb") as fh:
        fh.write(len(encoded.body).to_bytes(8, "little"))
        fh.write(encoded.body)
        for buf in encoded.buffers:
            fh.write(buf)


def read_payload(path: Path) -> Any:
    """Read a value written by :func:`write_payload`."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return decode_payload(data[8 : 8 + n], memoryview(data)[8 + n :])


def _run_processes(
    program: Program,
    inputs: Mapping[str, Any],
    *,
    faults: FaultPlan | None,
    recv_timeout: float,
    seeds: Mapping[str, bytes] | None,
    session_id: str,
) -> list[PartyOutcome]:
    from parties.local import free_ports

    ref = program_reference(program)
    names = list(inputs)
    with tempfile.TemporaryDirectory(prefix="mpc-procs-") as tmp:
        base = Path(tmp)
        ports = free_ports(len(names))
        identities = {n: generate_identity(n, base / n) for n in names}
        federation = Federation(
            tuple(PeerInfo.from_certificate(n, "127.0.0.1", p, identities[n].cert_path) for n, p in zip(names, ports))
        )
        from parties.config import dump_federation

        dump_federation(federation, base / "federation.toml")
        spec = {
            "program": ref,
            "parties": names,
            "session_id": session_id,
            "recv_timeout": recv_timeout,
            "faults": [asdict(f) for f in faults.faults] if faults is not None else [],
            "offload": offload_default(len(names)),  # the parties share this machine's cores
        }
        (base / "run.json").write_text(json.dumps(spec))
        procs = {}
        for n in names:
            write_payload(base / n / "input.bin", inputs[n])
            if seeds:
                (base / n / "seed.bin").write_bytes(seeds[n])
            log = open(base / n / "stderr.log", "wb")
            procs[n] = subprocess.Popen(
                [sys.executable, "-m", "parties.worker", str(base), n],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()
        deadline = time.monotonic() + 60 + 4 * recv_timeout
        outcomes = []
        for n in names:
            try:
                procs[n].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for p in procs.values():
                    p.kill()
                raise TransportError(f"party process {n} did not finish in time") from None
            outcomes.append(_read_outcome(base / n, n, procs[n].returncode))
        return outcomes


def _read_outcome(directory: Path, name: str, returncode: int) -> PartyOutcome:
    status_file = directory / "outcome.json"
    if not status_file.exists():
        log = (directory / "stderr.log").read_text(errors="replace")[-2000:]
        return PartyOutcome(name, None, TransportError(f"party process exited with {returncode}: {log}"))
    status = json.loads(status_file.read_text())
    if status["error"] is not None:
        err: BaseException = error_from_code(status["error"]["code"], status["error"]["message"])
        return PartyOutcome(name, None, err, status["stats"])
    return PartyOutcome(name, read_payload(directory / "output.bin"), None, status["stats"])


def fault_plan_from_json(items: list[dict[str, Any]]) -> FaultPlan | None:
    """Rebuild a fault plan written by the harness."""
    return FaultPlan([Fault(**item) for item in items]) if items else None


def error_record(exc: BaseException) -> dict[str, str]:
    """How a worker reports an error to the harness (its code and local message)."""
    code = exc.code if isinstance(exc, MPCError) else "mpc-error"
    return {"code": code, "message": f"{type(exc).__name__}: {exc}"}

"""An in-memory mesh: every party of a federation in one event loop, for protocol tests.

It has the same contract and the same moving parts as the websocket mesh — one sans-I/O
:class:`~transport.link.Link` per pair of nodes, one :class:`~transport.router.Router` per node,
the same :mod:`transport.faults` plan — only the wire is an ``asyncio.Queue`` per directed link.
So a protocol that passes here exercises sequence numbers, acknowledgements, resends after a
reconnect, chunking and the routers' checks, not a shortcut.

Connection model (per unordered pair of nodes):

- on connect, each side writes its Link's :meth:`~transport.link.Link.hello` first; a side may
  write data once it has processed the peer's hello (then it flushes what its Link resends);
- each directed link has a task that takes the next frame off the wire, asks the fault injector
  what to do with it, and feeds the result to the peer Link's ``receive_frame``; the messages
  that become deliverable go to the peer's ``Router.deliver``, and the peer's Link is flushed
  (acknowledgements);
- a ``disconnect`` fault tears the connection down: frames in flight are lost, both Links get
  ``connection_lost``, and after ``reconnect_delay`` the hellos are exchanged again and the Links
  resend whatever is unacknowledged;
- a frame the Link rejects (``FrameError``) is logged with its reason and counted in
  :meth:`MemoryMesh.stats`, and the connection is dropped (as the websocket mesh does): after the
  reconnect the sender's Link resends every message not yet delivered, so a corrupted frame
  costs a reconnect, not the message; a message the router rejects (``ProtocolViolation``) is
  logged, counted and dropped. The mesh keeps serving. Hello frames are not subject to faults.

:meth:`MemoryNetwork.kill` stops a node for good: its peers' receives from it raise
``PeerUnavailable`` at once (the websocket mesh does the same once re-dialling gives up), and
its own channels fail.

Example::

    async with MemoryNetwork(["a", "b", "c"], recv_timeout=2.0) as net:
        outputs = await net.run(secure_sum, {"a": xa, "b": xb, "c": xc})
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mpc.contracts import Payload
from mpc.errors import ConfigError, MPCError, PeerUnavailable, TransportError
from mpc.prg import PRG
from mpc.session import Program, Session
from transport.faults import Disconnect, FaultInjector, FaultPlan, Sleep, Write
from transport.framing import FrameLimits
from transport.link import Link
from transport.router import Router, RouterChannel

__all__ = ["MemoryNetwork", "MemoryMesh"]

_log = logging.getLogger(__name__)


@dataclass
class _Connection:
    """State of the connection between two nodes (shared by both directions)."""

    pair: tuple[str, str]
    epoch: int = 0
    up: bool = False
    ready: set[str] = field(default_factory=set)
    dead: bool = False


@dataclass
class _Counters:
    frames_sent: int = 0
    frames_received: int = 0
    frame_errors: int = 0
    delivery_errors: int = 0
    handshake_errors: int = 0
    internal_errors: int = 0
    reconnects: int = 0


class MemoryMesh:
    """One node of a :class:`MemoryNetwork`; implements :class:`mpc.contracts.Mesh`.

    Created by the network; use ``net[name]``.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        name: str,
        *,
        recv_timeout: float,
        max_buffered_bytes: int,
        max_buffered_messages: int,
    ) -> None:
        self._net = network
        self._name = name
        self._router = Router(
            name,
            self._send,
            recv_timeout=recv_timeout,
            max_buffered_bytes=max_buffered_bytes,
            max_buffered_messages=max_buffered_messages,
        )
        self._counters = _Counters()
        self.dead = False

    @property
    def local_name(self) -> str:
        """This node's name."""
        return self._name

    @property
    def router(self) -> Router:
        """The node's router (control plane: handler, ``send_control``, stats)."""
        return self._router

    def channel(
        self, session_id: str, parties: Sequence[str], *, timeout: float | None = None
    ) -> RouterChannel:
        """Open the channel of session ``session_id`` among ``parties`` (names, ours included).

        Raises:
            ConfigError: a party is not a node of the network, or the session is already open.
        """
        unknown = [p for p in parties if p not in self._net.names]
        if unknown:
            raise ConfigError(f"parties not in the network: {unknown}")
        return self._router.open_channel(session_id, parties, timeout=timeout)

    def stats(self) -> dict[str, Any]:
        """Frame and error counters of this node, and its router's counters."""
        c = self._counters
        return {
            "frames_sent": c.frames_sent,
            "frames_received": c.frames_received,
            "frame_errors": c.frame_errors,
            "delivery_errors": c.delivery_errors,
            "handshake_errors": c.handshake_errors,
            "internal_errors": c.internal_errors,
            "reconnects": c.reconnects,
            "router": self._router.stats(),
        }

    async def _send(self, peer: str, session_id: str, tag: str, payload: Payload) -> int:
        """The router's send function: queue on the peer's Link and flush to the wire."""
        if self.dead:
            raise PeerUnavailable(f"{self._name} was killed", peer=self._name)
        link = self._net._link(self._name, peer)
        if self._net.nodes[peer].dead:
            raise PeerUnavailable(f"{peer} is unavailable (killed)", peer=peer)
        nbytes = link.send(session_id, tag, payload)
        self._net._flush(self._name, peer)
        return nbytes


class MemoryNetwork:
    """A federation of in-memory nodes connected pairwise through Links.

    Args:
        names: the nodes' names (distinct, at least one).
        recv_timeout: seconds a channel's ``recv`` waits before ``PeerUnavailable``.
        faults: fault plan applied to every frame a node writes to a peer (hellos excepted).
        limits: frame and message size limits of every Link.
        reconnect_delay: seconds between a disconnect and the new connection's hellos.
        max_buffered_bytes: per-session router buffer bound (bytes).
        max_buffered_messages: per-session router buffer bound (messages).

    Use as ``async with MemoryNetwork(...) as net:``; all tasks stop cleanly on exit.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        recv_timeout: float = 5.0,
        faults: FaultPlan | None = None,
        limits: FrameLimits | None = None,
        reconnect_delay: float = 0.01,
        max_buffered_bytes: int = 1 << 31,
        max_buffered_messages: int = 1 << 16,
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ConfigError("a network needs distinct node names")
        if any(not isinstance(n, str) or not n for n in self.names):
            raise ConfigError("node names must be non-empty strings")
        if reconnect_delay < 0:
            raise ConfigError("reconnect_delay must be non-negative")
        self._reconnect_delay = reconnect_delay
        self._injector: FaultInjector | None = faults.injector() if faults is not None else None
        self.nodes: dict[str, MemoryMesh] = {
            name: MemoryMesh(
                self,
                name,
                recv_timeout=recv_timeout,
                max_buffered_bytes=max_buffered_bytes,
                max_buffered_messages=max_buffered_messages,
            )
            for name in self.names
        }
        self._links: dict[tuple[str, str], Link] = {
            (a, b): Link(a, b, limits) for a in self.names for b in self.names if a != b
        }
        self._conns: dict[frozenset[str], _Connection] = {}
        for i, a in enumerate(self.names):
            for b in self.names[i + 1 :]:
                self._conns[frozenset((a, b))] = _Connection((a, b))
        self._wires: dict[tuple[str, str], asyncio.Queue[tuple[int, bool, bytes]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> MemoryNetwork:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the wire tasks and connect every pair."""
        if self._running:
            raise TransportError("network already started")
        self._running = True
        loop = asyncio.get_running_loop()
        for src, dst in self._links:
            self._wires[(src, dst)] = asyncio.Queue()
            self._spawn(loop.create_task(self._pump(src, dst), name=f"wire:{src}->{dst}"))
        for conn in self._conns.values():
            self._connect(conn)

    async def stop(self) -> None:
        """Stop every task and close every router (waiting receives raise)."""
        if not self._running:
            return
        self._running = False
        for conn in self._conns.values():
            conn.up = False
            conn.dead = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for mesh in self.nodes.values():
            mesh.router.close(TransportError("the memory network was stopped"))
            await mesh.router.wait_closed()

    def __getitem__(self, name: str) -> MemoryMesh:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(f"no node named {name!r}") from None

    def kill(self, name: str) -> None:
        """Stop node ``name`` for good: no reconnects; peers' receives from it fail at once."""
        mesh = self[name]
        if mesh.dead:
            return
        mesh.dead = True
        for conn in self._conns.values():
            if name in conn.pair:
                conn.dead = True
                self._disconnect(conn)
        mesh.router.close(PeerUnavailable(f"{name} was killed", peer=name))
        for other in self.nodes.values():
            if other is not mesh:
                other.router.fail_peer(name, PeerUnavailable(f"{name} is unavailable", peer=name))

    def faults_fired(self) -> dict[str, int]:
        """How many frames each fault kind has hit so far."""
        return self._injector.fired() if self._injector is not None else {}

    async def run(
        self,
        program: Program,
        inputs: Mapping[str, Any],
        *,
        session_id: str = "job",
        seeds: Mapping[str, bytes] | None = None,
        return_exceptions: bool = False,
    ) -> dict[str, Any]:
        """Run an SPMD program on the parties named in ``inputs`` and collect the outputs.

        Args:
            program: ``async def program(session, my_input)``.
            inputs: party name -> its input; the keys' order is the parties' id order.
            session_id: the session's id.
            seeds: party name -> 16-byte PRG seed (reproducible tests); fresh seeds otherwise.
            return_exceptions: return a party's exception as its output instead of raising.

        Returns:
            Party name -> the program's output at that party.

        Raises:
            MPCError: with ``return_exceptions=False``, the first party's error (in party
                order), once every party's program has finished (each is bounded by the
                receive timeout, so this does not hang).
        """
        parties = list(inputs)
        channels: list[RouterChannel] = []
        try:
            for name in parties:
                channels.append(self[name].channel(session_id, parties))
            sessions = [
                Session(ch, prg=PRG(seeds[name]) if seeds is not None else None)
                for name, ch in zip(parties, channels, strict=True)
            ]
            results = await asyncio.gather(
                *(program(s, inputs[name]) for name, s in zip(parties, sessions, strict=True)),
                return_exceptions=True,
            )
        finally:
            for ch in channels:
                await ch.close()
        if not return_exceptions:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return dict(zip(parties, results, strict=True))

    # -- wires -----------------------------------------------------------------------------

    def _spawn(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _link(self, src: str, dst: str) -> Link:
        try:
            return self._links[(src, dst)]
        except KeyError:
            raise ConfigError(f"no link from {src!r} to {dst!r}") from None

    def _conn(self, a: str, b: str) -> _Connection:
        return self._conns[frozenset((a, b))]

    def _connect(self, conn: _Connection) -> None:
        if conn.dead or not self._running:
            return
        conn.epoch += 1
        conn.up = True
        conn.ready.clear()
        a, b = conn.pair
        for src, dst in ((a, b), (b, a)):
            self._wires[(src, dst)].put_nowait((conn.epoch, True, self._links[(src, dst)].hello()))
            self.nodes[src]._counters.frames_sent += 1

    def _disconnect(self, conn: _Connection) -> None:
        if not conn.up:
            return
        conn.up = False
        conn.epoch += 1
        conn.ready.clear()
        a, b = conn.pair
        for src, dst in ((a, b), (b, a)):
            wire = self._wires[(src, dst)]
            while not wire.empty():
                wire.get_nowait()
            self._links[(src, dst)].connection_lost()
            if self._injector is not None:
                self._injector.connection_lost(src, dst)
        if not conn.dead:
            self.nodes[a]._counters.reconnects += 1
            self.nodes[b]._counters.reconnects += 1
            self._spawn(asyncio.get_running_loop().create_task(self._reconnect(conn)))

    async def _reconnect(self, conn: _Connection) -> None:
        await asyncio.sleep(self._reconnect_delay)
        if not conn.up:
            self._connect(conn)

    def _flush(self, src: str, dst: str) -> None:
        """Move what ``src``'s Link to ``dst`` has to send onto the wire, if connected."""
        conn = self._conn(src, dst)
        if not conn.up or src not in conn.ready:
            return
        wire = self._wires[(src, dst)]
        frames = self._links[(src, dst)].data_to_send()
        self.nodes[src]._counters.frames_sent += len(frames)
        for frame in frames:
            wire.put_nowait((conn.epoch, False, bytes(frame)))

    async def _pump(self, src: str, dst: str) -> None:
        """Carry frames written by ``src`` to ``dst`` through the fault plan, forever."""
        wire = self._wires[(src, dst)]
        conn = self._conn(src, dst)
        while True:
            epoch, is_hello, frame = await wire.get()
            if epoch != conn.epoch:
                continue
            try:
                if is_hello:
                    self._on_hello(src, dst, frame)
                else:
                    await self._carry(conn, epoch, src, dst, frame)
            except Exception:  # a bug below must not stop the wire; it is logged loudly.
                self.nodes[dst]._counters.internal_errors += 1
                _log.exception("%s: internal error on a frame from %s", dst, src)

    async def _carry(self, conn: _Connection, epoch: int, src: str, dst: str, frame: bytes) -> None:
        """Perform the fault plan's actions for one data or ack frame."""
        if self._injector is None:
            self._on_frame(src, dst, frame)
            return
        for action in self._injector.on_frame(src, dst, frame):
            if epoch != conn.epoch:
                return  # the connection was torn down meanwhile: the rest is lost
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Disconnect):
                _log.info("fault: disconnecting %s <-> %s", src, dst)
                self._disconnect(conn)
            elif isinstance(action, Write):
                self._on_frame(src, dst, action.frame)

    def _on_hello(self, src: str, dst: str, frame: bytes) -> None:
        """``dst`` receives ``src``'s hello: it may now write data (and resend) to ``src``."""
        receiver = self.nodes[dst]
        try:
            self._links[(dst, src)].receive_hello(frame)
        except MPCError as exc:
            receiver._counters.handshake_errors += 1
            _log.warning("%s: bad hello from %s dropped (%s): %s", dst, src, exc.code, exc)
            return
        self._conn(src, dst).ready.add(dst)
        self._flush(dst, src)

    def _on_frame(self, src: str, dst: str, frame: bytes) -> None:
        """``dst`` receives a frame from ``src``: Link, then router, then acks back."""
        receiver = self.nodes[dst]
        receiver._counters.frames_received += 1
        try:
            delivered = self._links[(dst, src)].receive_frame(frame)
        except MPCError as exc:
            # As over websockets: the stream cannot resynchronise by itself after a bad frame,
            # so the connection is dropped and the next hello resends what was not delivered.
            receiver._counters.frame_errors += 1
            _log.warning("%s: frame from %s dropped with the connection (%s): %s", dst, src, exc.code, exc)
            self._disconnect(self._conn(src, dst))
            return
        for message in delivered:
            try:
                receiver.router.deliver(src, message)
            except MPCError as exc:
                receiver._counters.delivery_errors += 1
                _log.warning(
                    "%s: message %r/%r from %s dropped (%s): %s",
                    dst,
                    message.session_id,
                    message.tag,
                    src,
                    exc.code,
                    exc,
                )
        self._flush(dst, src)

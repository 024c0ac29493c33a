"""The federation mesh over mutually authenticated TLS 1.3 websockets.

One :class:`WebsocketMesh` per node. It serves on the node's own address and keeps exactly one
websocket to every other member: the party whose name sorts lower (Python string order) dials,
the higher one accepts. Each connection carries one :class:`~transport.link.Link`, which lives as
long as the mesh and survives reconnects: on every new connection both sides first exchange link
hellos, then a writer task drains :meth:`Link.data_to_send` into the websocket (a one-frame
message sent while the writer is idle is written at once by the sender, synchronously), while every
received frame is fed, synchronously and in order as the connection parses it, to
:meth:`Link.receive_frame` and delivered messages to the :class:`~transport.router.Router`
(TLS decrypts into one reusable buffer per connection, :class:`_FrameReader`; a frame is a view
of it, never copied before the Link copies its arrays out). Acknowledgements ride on outgoing
data; one that nothing carries is sent alone after ``ack_delay``. A dropped connection is re-dialled (by the dialling side); the
hello tells each Link where the peer resumes, so unacknowledged messages are resent and
de-duplicated and a job goes on with nothing lost or repeated.

Authentication, before any application frame:

1. TLS 1.3 with certificates on both sides; the trust store holds only the federation's pinned
   certificates (:mod:`transport.tls`). It runs below the websocket, on the OpenSSL that
   ``cryptography`` ships (:class:`~transport.tlsconn.TLSLayer`, created by the connection
   when TCP connects; the websocket itself is then ``ws://`` over it).
2. The dialler checks that the server's certificate is the one pinned for the party it dialled,
   before it sends its HTTP upgrade request.
3. The acceptor reads the party the dialler claims to be from the ``MPC-Party`` request header
   and refuses the upgrade (HTTP 403, reason logged locally only) unless the client certificate
   is the one pinned for that party and that party is one that dials this node.
4. The link hellos name both parties; the Link refuses a hello that names others.

Threat model: the network is hostile (eavesdropping, injection, impersonation, dropped
connections); federation members are authenticated but may send malformed frames, which are
logged and dropped without harming other peers or sessions. Liveness: a peer that cannot be
reached for ``connect_timeout`` seconds, at start or after a drop, is declared unavailable:
waiting and later receives from it raise :class:`~mpc.errors.PeerUnavailable` (and sends to it
too) until it is reachable again, while dialling goes on in the background with capped
exponential backoff. Keepalive pings detect dead connections that TCP does not report.

Dependency: for speed the receive path swaps the connection's stream reader before the first
byte (:class:`_FrameReader`) and overrides ``process_event``, and small writes serialize their
websocket frame themselves into the protocol's ``writes`` and call ``send_data`` directly
(:meth:`_MeshConnection.write_binary`, used by :meth:`WebsocketMesh._write_inline` and by the
writer through :meth:`WebsocketMesh._send_frame`, which then waits for the drain): these are
websockets 17 internals, so ``pyproject.toml`` pins ``websockets>=17.4,<18``; a new major
version needs these two places re-checked (tests/transport/test_websocket_mesh.py covers both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np
from OpenSSL import SSL
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import DATA_OPCODES, Frame, Opcode, apply_mask
from websockets.http11 import Request, Response
from websockets.protocol import Side, State
from websockets.streams import StreamReader

from mpc.contracts import Channel, Payload
from mpc.errors import (
    ConfigError,
    HandshakeFailed,
    MPCError,
    PeerUnavailable,
    ProtocolViolation,
    TLSFailure,
    TransportError,
)
from transport.faults import Disconnect, FaultInjector, FaultPlan, Sleep, Write
from transport.framing import FrameLimits, FramePieces
from transport.identity import Federation, Identity, PeerInfo
from transport.link import Link
from transport.router import Router
from transport.tls import mesh_context, verify_peer
from transport.tlsconn import TLSLayer

__all__ = ["WebsocketMesh", "PARTY_HEADER", "MESH_PATH"]

PARTY_HEADER = "MPC-Party"
"""Request header in which the dialling party names itself."""

MESH_PATH = "/mpc/v1"
"""Request path of the mesh's websocket endpoint."""

_FRAME_SLACK = 64 * 1024
"""Headroom of the websocket message size limit above ``limits.max_frame_bytes``."""

_POLICY_VIOLATION = 1008
_GOING_AWAY = 1001

_MAX_EARLY_FRAMES = 8
"""Data frames a connection buffers before the mesh attaches to it (the peer's hello and a few)."""

_READ_CHUNK = 64 * 1024
"""Least free space offered to the TLS layer for one read into the receive buffer."""

_SEND_FRAME_BYTES = 1 << 20
"""Size of the frames the mesh sends (receivers accept up to ``limits.max_frame_bytes``): each
frame is copied several times on its way into TLS, and a frame of this size stays in cache."""

_MIN_VIEW_BYTES = 1024
"""Reads at least this long are returned as views of the receive buffer, shorter ones as bytes."""

_STOP_ACK_GRACE = 1.0
"""Seconds :meth:`WebsocketMesh.stop` waits for owed acknowledgements to be written."""

_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


_JOIN_BELOW = 1 << 16
"""Frames smaller than this are written as one piece (header and data joined); larger ones as
two, so their data is not copied once more only to prepend a few header bytes (each write
becomes its own TLS record, which costs little next to a large payload)."""


def _binary_frame(data: bytes | memoryview | FramePieces, mask: bool) -> list[bytes | memoryview]:
    """One final, unfragmented binary websocket frame carrying ``data`` (RFC 6455 section 5.2),
    as the pieces to write in order.

    What ``websockets.frames.Frame.serialize`` writes for such a frame without extensions;
    ``mask`` (a client's frames) masks it with a fresh random key, as RFC 6455 requires. A
    :class:`~transport.framing.FramePieces` frame is written piece by piece (its small header
    joined to the websocket header), each masked from its offset in the frame.
    """
    pieces = data.pieces if isinstance(data, FramePieces) else (data,)
    n = len(data)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((0x82, bit | n))
    elif n < 1 << 16:
        head = _HEAD16.pack(0x82, bit | 126, n)
    else:
        head = _HEAD64.pack(0x82, bit | 127, n)
    if mask:
        key = secrets.token_bytes(4)
        head += key
        masked: list[bytes | memoryview] = []
        offset = 0
        for piece in pieces:  # a loop over the pieces (a few per frame)
            k = offset % 4
            masked.append(apply_mask(piece, key[k:] + key[:k]))
            offset += memoryview(piece).nbytes
        pieces = tuple(masked)
    first = pieces[0]
    if memoryview(first).nbytes < _JOIN_BELOW:
        return [head + first, *pieces[1:]]
    return [head, *pieces]


@dataclass
class _Peer:
    """Mutable connection state of one peer (owned by the mesh's event loop)."""

    info: PeerInfo
    link: Link
    dials: bool
    state: str = "down"  # down | connecting | connected
    ws: _MeshWebsocket | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    unavailable: PeerUnavailable | None = None
    fail_handle: asyncio.TimerHandle | None = None
    down_since: float = field(default_factory=time.monotonic)
    connects: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_dropped: int = 0
    messages_dropped: int = 0
    refusals: int = 0
    last_error: str = ""
    ack_timer: asyncio.TimerHandle | None = None
    ack_due: bool = False
    ack_owed_since: float | None = None  # loop time since which an acknowledgement is owed
    idle_ws: _MeshWebsocket | None = None  # the connection whose writer waits for work

    @property
    def name(self) -> str:
        return self.info.name


@dataclass
class _ConnState:
    """Receive-side state of one connection (owned by the mesh's event loop)."""

    hello: asyncio.Future[None]
    state: str = "hello"  # hello | open | failed | closed
    hello_frame: bytes | None = None  # a refused hello, to tell a restarted peer apart
    reason: str | None = None  # why the mesh aborted the connection


class _FrameReader(StreamReader):
    """A websockets stream reader that lets TLS decrypt into one reusable buffer.

    ``websockets``' own reader appends every received chunk to a ``bytearray`` and slices each
    frame out of it (two copies into freshly allocated memory, plus the join of TLS records in
    the TLS layer). This reader owns one buffer per connection, which the connection
    offers to the TLS layer (:class:`asyncio.BufferedProtocol`), so records are decrypted
    into it in place, and it returns long reads (frame payloads) as read-only views of it.

    Lifetime rule: a view is valid until the next :meth:`get_buffer` or :meth:`feed_data`. The
    connection processes every event of a chunk before it asks for the next one, and
    :class:`_MeshConnection` consumes data frames synchronously (or copies them), so no view is
    used after the buffer moves. Short reads (HTTP lines, control frames) are copies.
    """

    def __init__(self) -> None:
        super().__init__()
        self._array = np.empty(4 * _READ_CHUNK, dtype=np.uint8)
        self._view = memoryview(self._array)
        self._start = 0  # first unread byte
        self._end = 0  # end of the received bytes

    def _reserve(self, need: int) -> None:
        """Make room for ``need`` more bytes after the unread ones (moves them: views die)."""
        if len(self._view) - self._end >= need:
            return
        unread = self._end - self._start
        if unread + need <= len(self._view):
            self._array[:unread] = self._array[self._start : self._end]  # overlap-safe
        else:  # grows to hold the largest frame once, then is reused
            array = np.empty(max(2 * len(self._view), unread + need), dtype=np.uint8)
            array[:unread] = self._array[self._start : self._end]
            self._array, self._view = array, memoryview(array)
        self._start, self._end = 0, unread

    def get_buffer(self, sizehint: int) -> memoryview:
        """The free space where the TLS layer may write received bytes."""
        if self._start == self._end:
            self._start = self._end = 0
        self._reserve(max(sizehint, _READ_CHUNK))
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`."""
        self._end += nbytes

    def feed_data(self, data: bytes | bytearray) -> None:
        if self.eof:
            raise EOFError("stream ended")
        n = len(data)
        if n:
            self._reserve(n)
            self._view[self._end : self._end + n] = data
            self._end += n

    def _take(self, n: int) -> memoryview:
        view = self._view[self._start : self._start + n]
        self._start += n
        return view

    def read_line(
        self, m: int, too_long_exc_type: type[Exception] = RuntimeError
    ) -> Generator[None, None, bytearray]:
        p = 0  # bytes known to hold no newline
        while True:
            n = bytes(self._view[self._start + p : self._end]).find(b"\n") + 1
            if n > 0:
                n += p
                break
            p = self._end - self._start
            if p > m:
                raise too_long_exc_type(f"read {p} bytes, expected no more than {m} bytes")
            if self.eof:
                raise EOFError(f"stream ends after {p} bytes, before end of line")
            yield
        if n > m:
            raise too_long_exc_type(f"read {n} bytes, expected no more than {m} bytes")
        return bytearray(self._take(n))

    def read_exact(self, n: int) -> Generator[None, None, Any]:
        while self._end - self._start < n:
            if self.eof:
                p = self._end - self._start
                raise EOFError(f"stream ends after {p} bytes, expected {n} bytes")
            yield
        start = self._start
        self._start = start + n
        view = self._view[start : start + n]
        return view.toreadonly() if n >= _MIN_VIEW_BYTES else bytes(view)

    def read_to_eof(
        self, m: int, too_long_exc_type: type[Exception] = RuntimeError
    ) -> Generator[None, None, bytearray]:
        while not self.eof:
            p = self._end - self._start
            if p > m:
                raise too_long_exc_type(f"read {p} bytes, expected no more than {m} bytes")
            yield
        return bytearray(self._take(self._end - self._start))

    def at_eof(self) -> Generator[None, None, bool]:
        while True:
            if self._end > self._start:
                return False
            if self.eof:
                return True
            yield

    def discard(self) -> None:
        self._start = self._end


@dataclass(frozen=True)
class _TLSSetup:
    """How a mesh connection runs TLS below itself (:class:`~transport.tlsconn.TLSLayer`)."""

    context: SSL.Context
    server_side: bool
    timeout: float
    on_failure: Callable[[TLSFailure], None] | None


class _MeshConnection:
    """Receive path shared by the mesh's client and server connections.

    Installs :class:`_FrameReader` and hands every data frame, synchronously and in order, to
    the callback given to :meth:`attach` (frames that arrive earlier are copied and kept, at
    most :data:`_MAX_EARLY_FRAMES`). Data frames never enter ``websockets``' message queue, so
    ``recv`` is not used on these connections. The TLS layer below decrypts straight into the
    reader's buffer (``get_buffer`` / ``buffer_updated``).
    """

    protocol: Any
    transport: Any
    tls: _TLSSetup | None = None
    _tls_layer: TLSLayer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        setup = self.tls
        if setup is not None and self._tls_layer is None:
            # The TCP connection: run TLS below this connection, which is made (with the TLS
            # layer as its transport) once the handshake is done.
            layer = TLSLayer(setup.context, setup.server_side, self, handshake_timeout=setup.timeout, on_failure=setup.on_failure)
            self._tls_layer = layer
            self.transport = layer  # so that an abort before the handshake ends reaches TCP
            transport.set_protocol(layer)
            layer.connection_made(transport)
            return
        super().connection_made(transport)  # type: ignore[misc]

    async def tls_ready(self) -> None:
        """Wait for the TLS handshake below this connection (raises its ``TLSFailure``)."""
        if self._tls_layer is not None:
            await self._tls_layer.ready

    def _setup_receive(self) -> None:
        self._on_frame: Callable[[Frame], None] | None = None
        self._on_lost: Callable[[], None] | None = None
        self._early: list[Frame] = []
        protocol = self.protocol
        # Nothing was received yet: restart the parser on our reader.
        if protocol.state is State.CONNECTING and type(protocol.reader) is StreamReader:
            protocol.reader = _FrameReader()
            protocol.parser = protocol.parse()
            next(protocol.parser)
        self._scratch = bytearray()

    def attach(self, on_frame: Callable[[Frame], None], on_lost: Callable[[], None]) -> None:
        """Send data frames to ``on_frame`` from now on (earlier ones first); ``on_lost`` at the end."""
        self._on_frame, self._on_lost = on_frame, on_lost
        early, self._early = self._early, []
        for frame in early:
            on_frame(frame)

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        reader = self.protocol.reader
        if isinstance(reader, _FrameReader):
            return reader.get_buffer(sizehint)
        if len(self._scratch) < max(sizehint, _READ_CHUNK):
            self._scratch = bytearray(max(sizehint, _READ_CHUNK))
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        reader = self.protocol.reader
        if isinstance(reader, _FrameReader):
            reader.buffer_updated(nbytes)
            self.data_received(b"")  # type: ignore[attr-defined]  # runs the parser
        else:
            self.data_received(bytes(self._scratch[:nbytes]))  # type: ignore[attr-defined]

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if self._on_frame is not None:
                self._on_frame(event)
            elif len(self._early) < _MAX_EARLY_FRAMES:
                self._early.append(dataclasses.replace(event, data=bytes(event.data)))
            else:
                self.transport.abort()  # a peer that floods before its hello is answered
            return
        super().process_event(event)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        if self._on_lost is not None:
            self._on_lost()

    def write_binary(self, data: bytes | memoryview | FramePieces) -> None:
        """Write ``data`` as one binary message now, never waiting (no drain).

        ``protocol.send_binary`` then ``send_data``, without building a ``Frame`` when the
        connection is open with no extension and no fragmented message in progress (the mesh
        negotiates none and never fragments); otherwise ``send_binary`` itself (which raises
        as it does).
        """
        protocol = self.protocol
        if protocol.state is State.OPEN and not protocol.extensions and not protocol.expect_continuation_frame:
            protocol.writes.extend(_binary_frame(data, protocol.side is Side.CLIENT))
        else:
            protocol.send_binary(bytes(data) if isinstance(data, FramePieces) else data)
        self.send_data()  # type: ignore[attr-defined]


class _MeshClientConnection(_MeshConnection, ClientConnection, asyncio.BufferedProtocol):
    """A client connection that checks the server's certificate pin before its HTTP request."""

    pin: tuple[Federation, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_receive()

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        federation, expected = self.pin
        await self.tls_ready()
        verify_peer(self.transport.get_extra_info("ssl_object"), federation, expected)
        await super().handshake(*args, **kwargs)


class _MeshServerConnection(_MeshConnection, ServerConnection, asyncio.BufferedProtocol):
    """A server connection with the mesh's receive path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_receive()


_MeshWebsocket = _MeshClientConnection | _MeshServerConnection


class WebsocketMesh:
    """This node's authenticated connections to every other federation member.

    Implements :class:`mpc.contracts.Mesh`. Use as ``async with WebsocketMesh(...) as mesh:``
    or call :meth:`start` and :meth:`stop`.

    Args:
        identity: this party's name, key and certificate.
        federation: the pinned members, this party included; every member must carry its
            certificate (it goes into the TLS trust store).
        recv_timeout: seconds a receive waits before raising ``PeerUnavailable``.
        connect_timeout: seconds a peer may stay unreachable (at start or after a drop) before
            receives from it and sends to it raise ``PeerUnavailable``; dialling goes on.
        ping_interval: seconds between keepalive pings; a pong missing for ``ping_timeout``
            (default: ``ping_interval``) drops the connection (and it is re-dialled).
        ping_timeout: see ``ping_interval``.
        faults: fault rules applied to outgoing frames (tests only).
        limits: frame and message size limits of the links.
        logger: where connection events go; ``logging.getLogger("transport.websocket")`` if
            omitted.
        listen: ``(host, port)`` to bind to instead of this party's federation address.
        backoff_initial: first delay between dial attempts, in seconds (doubled up to
            ``backoff_max`` after every failure, with jitter).
        backoff_max: cap of the delay between dial attempts.
        max_unacked_bytes: a send waits while this many bytes to a peer are unacknowledged.
        max_buffered_bytes: per-session bound on received, not yet consumed bytes.
        ack_delay: seconds an acknowledgement may wait for outgoing data to carry it before it
            is sent on its own (0: at once). Bulk data is acknowledged at once regardless
            (:data:`transport.link.EAGER_ACK_BYTES`).

    Raises:
        ConfigError: invalid parameters, identity files or federation (see
            :func:`transport.tls.mesh_context`).
    """

    def __init__(
        self,
        identity: Identity,
        federation: Federation,
        *,
        recv_timeout: float = 30.0,
        connect_timeout: float = 30.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = None,
        faults: FaultPlan | None = None,
        limits: FrameLimits | None = None,
        logger: logging.Logger | None = None,
        listen: tuple[str, int] | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        max_unacked_bytes: int = 64 << 20,
        max_buffered_bytes: int = 1 << 31,
        ack_delay: float = 0.01,
    ) -> None:
        for label, value in (
            ("recv_timeout", recv_timeout),
            ("connect_timeout", connect_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            if not value > 0:
                raise ConfigError(f"{label} must be positive, got {value!r}")
        if ping_interval is not None and not ping_interval > 0:
            raise ConfigError("ping_interval must be positive or None")
        if max_unacked_bytes < 1:
            raise ConfigError("max_unacked_bytes must be positive")
        if not ack_delay >= 0:
            raise ConfigError(f"ack_delay must be non-negative, got {ack_delay!r}")
        self._ack_delay = float(ack_delay)
        self._identity = identity
        self._federation = federation
        self._local = federation.by_name(identity.name)
        self._limits = limits if limits is not None else FrameLimits()
        self._log = logger if logger is not None else logging.getLogger("transport.websocket")
        self._tls: SSL.Context = mesh_context(identity, federation)
        self._recv_timeout = float(recv_timeout)
        self._connect_timeout = float(connect_timeout)
        self._open_timeout = min(self._connect_timeout, 10.0)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout if ping_timeout is not None else ping_interval
        self._listen = listen if listen is not None else (self._local.host, self._local.port)
        self._backoff_initial = float(backoff_initial)
        self._backoff_max = float(max(backoff_max, backoff_initial))
        self._max_unacked = int(max_unacked_bytes)
        self._max_size = self._limits.max_frame_bytes + _FRAME_SLACK
        self._frame_bytes = min(self._limits.max_frame_bytes, _SEND_FRAME_BYTES)
        self._faults: FaultInjector | None = faults.injector() if faults is not None else None
        self._peers: dict[str, _Peer] = {
            p.name: _Peer(p, self._new_link(p.name), dials=self.local_name < p.name)
            for p in federation.others(self.local_name)
        }
        self.router = Router(
            self.local_name,
            self._send,
            recv_timeout=self._recv_timeout,
            max_buffered_bytes=max_buffered_bytes,
        )
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closing = False
        self._refused = 0

    # -- the Mesh contract ----------------------------------------------------------------

    @property
    def local_name(self) -> str:
        """This party's name in the federation."""
        return self._local.name

    @property
    def federation(self) -> Federation:
        """The pinned members."""
        return self._federation

    def channel(self, session_id: str, parties: Sequence[str], *, timeout: float | None = None) -> Channel:
        """Open the channel of session ``session_id`` among ``parties`` (names, ours included).

        Args:
            session_id: unique id of the session (job).
            parties: the session's party names in party-id order.
            timeout: receive timeout of this channel; the mesh's ``recv_timeout`` if omitted.

        Raises:
            ConfigError: a party is not a federation member, or the router refuses the session.
        """
        names = tuple(parties)
        for name in names:
            if name not in self._federation:
                raise ConfigError(f"party {name!r} is not a member of the federation")
        return self.router.open_channel(session_id, names, timeout=timeout)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on this party's address and start dialling the peers that sort higher.

        Raises:
            TransportError: the mesh was already started, or the address cannot be bound.
        """
        if self._started:
            raise TransportError("mesh already started")
        self._started = True
        host, port = self._listen
        try:
            self._server = await serve(
                self._handle,
                host,
                port,
                compression=None,
                process_request=self._process_request,
                create_connection=self._server_connection,  # type: ignore[arg-type]
                server_header=None,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=2.0,
                max_size=self._max_size,
                write_limit=self._limits.max_frame_bytes,
                logger=self._log.getChild("server"),
            )
        except OSError as exc:
            raise TransportError(f"{self.local_name}: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._log.info("%s: listening on %s:%d", self.local_name, host, port)
        loop = asyncio.get_running_loop()
        for p in self._peers.values():
            p.down_since = time.monotonic()
            p.fail_handle = loop.call_later(self._connect_timeout, self._declare_unavailable, p)
            if p.dials:
                self._spawn(self._dial_loop(p), f"dial:{self.local_name}->{p.name}")

    async def stop(self) -> None:
        """Close every connection and the server cleanly; no task is left running.

        Waiting receives raise ``PeerUnavailable``; the mesh cannot be restarted.
        """
        if self._closing:
            return
        self._closing = True
        await self._flush_owed_acks(_STOP_ACK_GRACE)
        for p in self._peers.values():
            if p.fail_handle is not None:
                p.fail_handle.cancel()
                p.fail_handle = None
            p.progress.set()
        closing = [p.ws.close(_GOING_AWAY, "node stopping") for p in self._peers.values() if p.ws is not None]
        await asyncio.gather(*closing, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.router.close(PeerUnavailable(f"{self.local_name}: mesh stopped"))
        await self.router.wait_closed()
        self._log.info("%s: mesh stopped", self.local_name)

    async def _flush_owed_acks(self, grace: float) -> None:
        """Send the delayed acknowledgements still owed (bounded by ``grace`` seconds).

        A peer waits for the acknowledgement of its last messages (e.g. before it stops), and
        a delayed one would otherwise die with this mesh.
        """
        owed = {name: p.frames_sent for name, p in self._peers.items() if p.ws is not None and p.link.ack_owed}
        for name in owed:
            p = self._peers[name]
            p.ack_due = True
            p.wake.set()
        deadline = time.monotonic() + grace
        # Polls until each owed peer's writer has written a frame (its ACK) or the grace ends.
        while time.monotonic() < deadline and any(
            self._peers[name].ws is not None and self._peers[name].frames_sent == sent for name, sent in owed.items()
        ):
            await asyncio.sleep(0.001)

    async def __aenter__(self) -> WebsocketMesh:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server is bound to (the real port if 0 was asked)."""
        if self._server is not None:
            for sock in self._server.sockets:
                name = sock.getsockname()
                return (str(name[0]), int(name[1]))
        return self._listen

    def stats(self) -> dict[str, Any]:
        """Per-peer connection state, reconnect counts and traffic, and the router's counters.

        Bytes and frames count link frames (websocket message payloads), without websocket and
        TLS overhead; ``frame_errors`` are frames dropped as malformed, ``delivery_errors``
        messages the router refused.
        """
        now = time.monotonic()
        peers = {}
        for p in self._peers.values():
            peers[p.name] = {
                "state": "unavailable" if p.unavailable is not None and p.state != "connected" else p.state,
                "role": "dialler" if p.dials else "acceptor",
                "connects": p.connects,
                "reconnects": max(p.connects - 1, 0),
                "down_seconds": 0.0 if p.state == "connected" else round(now - p.down_since, 3),
                "bytes_sent": p.bytes_sent,
                "bytes_received": p.bytes_received,
                "frames_sent": p.frames_sent,
                "frames_received": p.frames_received,
                "frames_dropped": p.frames_dropped,
                "messages_dropped": p.messages_dropped,
                "refusals": p.refusals,
                "unacked_bytes": p.link.unacked_bytes,
                "last_error": p.last_error,
            }
        totals = {
            key: sum(int(peer[key]) for peer in peers.values())
            for key in ("bytes_sent", "bytes_received", "frames_sent", "frames_received", "reconnects")
        }
        return {
            "local": self.local_name,
            **totals,
            "frame_errors": sum(p.frames_dropped for p in self._peers.values()),
            "delivery_errors": sum(p.messages_dropped for p in self._peers.values()),
            "listening": list(self.address),
            "refused_connections": self._refused,
            "peers": peers,
            "router": self.router.stats(),
            "faults": self._faults.fired() if self._faults is not None else {},
        }

    # -- sending ----------------------------------------------------------------------------

    async def _send(self, peer: str, session_id: str, tag: str, payload: Payload) -> int:
        """The router's send function: queue on the peer's link, waiting for window."""
        p = self._peers.get(peer)
        if p is None:
            raise ProtocolViolation(f"{peer!r} is not a peer of {self.local_name}")
        if self._closing:
            raise TransportError(f"{self.local_name}: mesh stopped")
        while p.link.unacked_bytes >= self._max_unacked:
            # Backpressure: wait for the peer to acknowledge (any received frame may carry the
            # ack); a peer that stays silent that long, or is declared unavailable, fails the send.
            self._check_reachable(p)
            p.progress.clear()
            try:
                await asyncio.wait_for(p.progress.wait(), self._recv_timeout)
            except TimeoutError:
                raise PeerUnavailable(
                    f"{peer} acknowledged nothing for {self._recv_timeout:g} s "
                    f"({p.link.unacked_bytes} bytes unacknowledged)",
                    peer=peer,
                ) from None
        if self._closing or p.unavailable is not None:
            self._check_reachable(p)
        nbytes = p.link.send(session_id, tag, payload)
        if not self._write_inline(p, nbytes):
            p.wake.set()
        return nbytes

    def _write_inline(self, p: _Peer, nbytes: int) -> bool:
        """Write the message just queued on ``p``'s link now, if the writer is idle.

        Saves the writer task's wake-up for the common small message. Only when it is safe
        and cannot block: the writer waits for work with nothing in hand (so the link's queue
        holds just this message and no frames of another are half written), the message is one
        frame, the connection is open and its write buffer below the high-water mark. The whole
        write is synchronous, so nothing can run in between. Otherwise the writer does it
        (backpressure, multi-frame messages, fault injection, resends).

        Returns:
            Whether the message was handled here (else the caller wakes the writer).
        """
        ws = p.idle_ws
        if (
            ws is None
            or p.wake.is_set()
            or self._faults is not None
            or nbytes > self._frame_bytes
            or ws.protocol.state is not State.OPEN
            or ws.paused
            or ws.send_in_progress is not None
            or ws.transport.is_closing()
        ):
            return False
        link = p.link
        frames = link.data_to_send(flush_ack=self._ack_delay == 0)
        try:
            for frame in frames:
                ws.write_binary(frame)  # hands the bytes to TLS; never waits
                p.bytes_sent += len(frame)
                p.frames_sent += 1
        except Exception as exc:
            self._fail_write(p, ws, exc)
            return True
        if not link.ack_owed:
            p.ack_owed_since = None  # the data carried it (a pending timer will find nothing)
            return True
        return False  # an ACK is still owed: the writer schedules it

    def _check_reachable(self, p: _Peer) -> None:
        if self._closing:
            raise TransportError(f"{self.local_name}: mesh stopped")
        if p.unavailable is not None:
            raise PeerUnavailable(str(p.unavailable), peer=p.name)

    # -- dialling -----------------------------------------------------------------------------

    async def _dial_loop(self, p: _Peer) -> None:
        """Keep one connection to ``p`` (which we dial), re-dialling with capped backoff."""
        delay = self._backoff_initial
        host = f"[{p.info.host}]" if ":" in p.info.host else p.info.host
        # TLS runs below the websocket (transport.tlsconn), so the websocket itself is ws://.
        uri = f"ws://{host}:{p.info.port}{MESH_PATH}"
        pin = (self._federation, p.name)

        def factory(*args: Any, **kwargs: Any) -> ClientConnection:
            conn = _MeshClientConnection(*args, **kwargs)
            conn.pin = pin
            conn.tls = _TLSSetup(self._tls, False, self._open_timeout, None)
            return conn

        while not self._closing:
            if p.state != "connected":
                p.state = "connecting"
            try:
                ws = await connect(
                    uri,
                    compression=None,
                    proxy=None,
                    additional_headers={PARTY_HEADER: self.local_name},
                    user_agent_header=None,
                    open_timeout=self._open_timeout,
                    ping_interval=self._ping_interval,
                    ping_timeout=self._ping_timeout,
                    close_timeout=2.0,
                    max_size=self._max_size,
                    write_limit=self._limits.max_frame_bytes,
                    logger=self._log.getChild("client"),
                    create_connection=factory,  # type: ignore[arg-type]
                )
            except HandshakeFailed as exc:
                p.refusals += 1
                self._note_error(p, f"refused {p.name}: {exc}", logging.WARNING)
            except InvalidStatus as exc:
                self._note_error(
                    p, f"{p.name} refused our connection (HTTP {exc.response.status_code})", logging.WARNING
                )
            except (OSError, TimeoutError, InvalidHandshake, TLSFailure) as exc:
                self._note_error(p, f"cannot reach {p.name}: {type(exc).__name__}: {exc}", logging.DEBUG)
            else:
                self._log.debug("%s: connected to %s at %s (TLS 1.3 below the websocket)", self.local_name, p.name, uri)
                if await self._run_connection(p, ws):
                    delay = self._backoff_initial
            if self._closing:
                break
            if p.state != "connected":
                p.state = "down"
            # Jitter spreads re-dials; it need not be secret, but the project uses no other RNG.
            await asyncio.sleep(delay * (0.5 + secrets.randbelow(1024) / 2048))
            delay = min(delay * 2, self._backoff_max)

    # -- accepting ------------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Refuse the upgrade unless the client certificate is pinned for the claimed party."""
        claimed = request.headers.get(PARTY_HEADER)
        try:
            if request.path != MESH_PATH:
                raise HandshakeFailed(f"unexpected path {request.path[:64]!r}")
            if claimed is None:
                raise HandshakeFailed(f"no {PARTY_HEADER} header")
            verify_peer(conn.transport.get_extra_info("ssl_object"), self._federation, claimed)
            if claimed == self.local_name:
                raise HandshakeFailed("peer claims to be this party")
            if not claimed < self.local_name:
                raise HandshakeFailed(f"{claimed!r} sorts after {self.local_name!r} and must accept, not dial")
        except HandshakeFailed as exc:
            self._refused += 1
            peer = self._peers.get(claimed or "")
            if peer is not None:
                peer.refusals += 1
            self._log.warning(
                "%s: refused connection from %s: %s", self.local_name, _remote(conn), exc
            )
            response = conn.respond(403, "Forbidden\n")
            return response
        return None

    def _server_connection(self, *args: Any, **kwargs: Any) -> _MeshServerConnection:
        """A connection for ``serve``, which runs TLS below itself (:class:`_TLSSetup`)."""
        conn = _MeshServerConnection(*args, **kwargs)
        conn.tls = _TLSSetup(self._tls, True, self._open_timeout, self._on_tls_failure)
        return conn

    def _on_tls_failure(self, exc: TLSFailure) -> None:
        """A TLS handshake of an incoming connection failed (e.g. a certificate nobody pinned)."""
        self._refused += 1
        self._log.warning("%s: refused an incoming connection: %s", self.local_name, exc)

    async def _handle(self, conn: ServerConnection) -> None:
        """Server handler of an accepted (already authenticated) connection."""
        assert conn.request is not None  # set before the handler runs
        p = self._peers[conn.request.headers[PARTY_HEADER]]
        self._log.debug("%s: accepted connection from %s (%s)", self.local_name, p.name, _remote(conn))
        old = p.ws
        if old is not None:
            # The peer re-dialled: the connection we hold is dead to it. Replace it.
            self._log.info("%s: %s reconnected; dropping the previous connection", self.local_name, p.name)
            old.transport.abort()
        await self._run_connection(p, conn)  # type: ignore[arg-type]  # made by serve()

    # -- one connection ---------------------------------------------------------------------------

    async def _run_connection(self, p: _Peer, ws: _MeshWebsocket) -> bool:
        """Drive one authenticated connection to ``p`` until it closes.

        Returns:
            Whether the hello exchange succeeded (the connection carried messages).
        """
        async with p.lock:
            if self._closing:
                await ws.close(_GOING_AWAY, "node stopping")
                return False
            p.ws = ws
            conn = _ConnState(asyncio.get_running_loop().create_future())
            reason = "closed"
            try:
                if not await self._exchange_hello(p, ws, conn):
                    return False
                self._mark_up(p)
                reason = await self._pump(p, ws, conn)
                return True
            finally:
                conn.state = "closed"  # frames still arriving on it are ignored
                if not conn.hello.done():
                    conn.hello.cancel()
                p.ws = None
                p.link.connection_lost()
                self._cancel_ack_timer(p)
                if self._faults is not None:
                    self._faults.connection_lost(self.local_name, p.name)
                if p.state == "connected":
                    self._mark_down(p, reason)

    async def _exchange_hello(self, p: _Peer, ws: _MeshWebsocket, conn: _ConnState) -> bool:
        """Exchange link hellos; returns whether the connection may carry messages.

        The peer's hello is processed by :meth:`_on_frame` as soon as it arrives, so the frames
        that follow it are handled in order.
        """
        try:
            hello = p.link.hello()
            ws.attach(
                functools.partial(self._on_frame, p, ws, conn),
                functools.partial(self._on_lost, conn),
            )
            await ws.send(hello)
            await asyncio.wait_for(asyncio.shield(conn.hello), self._open_timeout)
        except HandshakeFailed as exc:
            if conn.hello_frame is not None:
                self._replace_link_if_peer_restarted(p, conn.hello_frame)
            p.refusals += 1
            self._refused += 1
            self._note_error(p, f"refused {p.name} ({_remote(ws)}): bad hello: {exc}", logging.WARNING)
            await ws.close(_POLICY_VIOLATION, "handshake failed")
            return False
        except (ConnectionClosed, TimeoutError, TransportError) as exc:
            conn.state = "failed"
            self._note_error(p, f"connection to {p.name} lost during hello: {type(exc).__name__}", logging.INFO)
            ws.transport.abort()
            return False
        return True

    def _on_lost(self, conn: _ConnState) -> None:
        if not conn.hello.done():
            conn.hello.set_exception(TransportError("connection lost"))
            conn.hello.exception()  # retrieved: nobody may be waiting any more

    def _on_frame(self, p: _Peer, ws: _MeshWebsocket, conn: _ConnState, frame: Frame) -> None:
        """A data frame arrived on ``ws`` (called synchronously by the connection, in order)."""
        if conn.state == "open":
            try:
                self._on_data_frame(p, ws, conn, frame)
            except Exception as exc:  # a bug here must not reach websockets' protocol callbacks
                self._log.error(
                    "%s: connection to %s failed: %r", self.local_name, p.name, exc, exc_info=exc
                )
                self._abort(ws, conn, f"error: {type(exc).__name__}")
        elif conn.state == "hello":
            try:
                if frame.opcode is not Opcode.BINARY or not frame.fin:
                    raise HandshakeFailed("hello is not a binary frame")
                try:
                    p.link.receive_hello(frame.data)
                except HandshakeFailed:
                    conn.hello_frame = bytes(frame.data)
                    raise
            except HandshakeFailed as exc:
                conn.state = "failed"
                conn.hello.set_exception(exc)
                return
            conn.state = "open"
            conn.hello.set_result(None)

    def _on_data_frame(self, p: _Peer, ws: _MeshWebsocket, conn: _ConnState, frame: Frame) -> None:
        """Feed a received frame to the link and delivered messages to the router."""
        p.frames_received += 1
        if frame.opcode is not Opcode.BINARY or not frame.fin:
            p.frames_dropped += 1
            if frame.opcode is Opcode.TEXT and frame.fin:
                self._log.warning("%s: dropped a text frame from %s", self.local_name, p.name)
                return
            # Our peers never fragment: a fragment cannot be a Link frame.
            self._note_error(
                p, f"dropped a fragmented message from {p.name} and the connection", logging.WARNING
            )
            self._abort(ws, conn, "aborted")
            return
        p.bytes_received += len(frame.data)
        try:
            delivered = p.link.receive_frame(frame.data)
        except MPCError as exc:
            # The stream cannot resynchronise by itself after a bad frame (a chunk may be
            # missing): drop the connection; the next hello resends what was not delivered.
            p.frames_dropped += 1
            self._note_error(
                p, f"dropped a bad frame from {p.name} and the connection: {exc}", logging.WARNING
            )
            self._abort(ws, conn, "aborted")
            return
        p.progress.set()
        for message in delivered:
            try:
                self.router.deliver(p.name, message)
            except MPCError as exc:
                p.messages_dropped += 1
                self._note_error(
                    p, f"dropped a message from {p.name} ({message.session_id!r}): {exc}", logging.WARNING
                )
        if p.link.ack_owed:
            if self._ack_delay == 0 or p.link.ack_urgent:
                p.wake.set()
            else:
                loop = asyncio.get_running_loop()
                if p.ack_owed_since is None:
                    p.ack_owed_since = loop.time()
                if p.ack_timer is None:
                    p.ack_timer = loop.call_later(self._ack_delay, self._ack_due, p)

    def _abort(self, ws: _MeshWebsocket, conn: _ConnState, reason: str) -> None:
        conn.state = "closed"
        conn.reason = reason
        ws.transport.abort()

    def _ack_due(self, p: _Peer) -> None:
        """The delayed acknowledgement's timer fired: the writer sends it now, if still owed.

        Outgoing data that carries the acknowledgement does not cancel the timer (one timer per
        ``ack_delay`` rather than one per message): if the acknowledgement owed now became owed
        less than ``ack_delay`` ago, the timer waits for the rest of it.
        """
        p.ack_timer = None
        if not p.link.ack_owed:
            p.ack_owed_since = None
            return
        since = p.ack_owed_since
        if since is not None:
            loop = asyncio.get_running_loop()
            left = since + self._ack_delay - loop.time()
            if left > 0:
                p.ack_timer = loop.call_later(left, self._ack_due, p)
                return
        p.ack_due = True
        p.wake.set()

    def _cancel_ack_timer(self, p: _Peer) -> None:
        if p.ack_timer is not None:
            p.ack_timer.cancel()
            p.ack_timer = None
        p.ack_due = False
        p.ack_owed_since = None

    def _new_link(self, peer: str) -> Link:
        return Link(self.local_name, peer, self._limits, frame_bytes=self._frame_bytes)

    def _replace_link_if_peer_restarted(self, p: _Peer, hello: bytes) -> None:
        """If a fresh link accepts a hello that ours refused, the peer restarted: start over.

        Messages the old incarnation of the peer had not acknowledged are lost with it, so
        receives waiting on the peer fail now (its sessions cannot complete); the connection is
        closed because the peer refuses our stale hello, and the next one starts both links
        afresh.
        """
        fresh = self._new_link(p.name)
        try:
            fresh.receive_hello(hello)
        except HandshakeFailed:
            return  # the hello is bad for any link: a plain refusal
        lost = p.link.pending_messages
        p.link = self._new_link(p.name)
        self.router.fail_peer(p.name, PeerUnavailable(f"{p.name} restarted", peer=p.name))
        self.router.restore_peer(p.name)
        self._log.warning(
            "%s: %s restarted; its link starts over (%d unacknowledged messages lost)",
            self.local_name,
            p.name,
            lost,
        )

    async def _pump(self, p: _Peer, ws: _MeshWebsocket, conn: _ConnState) -> str:
        """Run the writer until it or the connection ends; returns why the connection ended."""
        writer = asyncio.create_task(self._writer(p, ws), name=f"write:{self.local_name}->{p.name}")
        closed = asyncio.create_task(self._until_closed(ws, conn), name=f"read:{self.local_name}<-{p.name}")
        try:
            done, _ = await asyncio.wait({writer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, closed):
                task.cancel()
            results = await asyncio.gather(writer, closed, return_exceptions=True)
        reason = "closed"
        for task, result in zip((writer, closed), results):
            if task in done and isinstance(result, str):
                reason = result
            elif task in done and isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError
            ):
                self._log.error(
                    "%s: connection to %s failed: %r", self.local_name, p.name, result, exc_info=result
                )
                reason = f"error: {type(result).__name__}"
                ws.transport.abort()
        if conn.reason is not None:
            reason = conn.reason
        if reason != "aborted" and ws.state is not State.CLOSED:
            await ws.close()
        return reason

    async def _until_closed(self, ws: _MeshWebsocket, conn: _ConnState) -> str:
        """Wait for the connection to end (frames are handled by :meth:`_on_frame`)."""
        await ws.wait_closed()
        if conn.reason is not None:
            return conn.reason
        tls = ws.transport if isinstance(ws.transport, TLSLayer) else None
        if tls is not None and tls.error is not None:
            return str(tls.error)
        return "closed" if ws.protocol.close_rcvd is not None else "lost"

    async def _writer(self, p: _Peer, ws: _MeshWebsocket) -> str:
        """Write the link's frames as binary messages (``ws.send`` waits for the TCP drain).

        An acknowledgement that outgoing data does not carry waits up to ``ack_delay`` (the
        timer set by :meth:`_on_data_frame`) for data to carry it.
        """
        try:
            while True:
                link = p.link
                flush = p.ack_due or self._ack_delay == 0
                p.ack_due = False
                frames = link.data_to_send(flush_ack=flush)
                if not link.ack_owed:
                    p.ack_owed_since = None  # a pending timer will find nothing owed
                if not frames:
                    if link.ack_owed and p.ack_timer is None:
                        loop = asyncio.get_running_loop()
                        if p.ack_owed_since is None:
                            p.ack_owed_since = loop.time()
                        p.ack_timer = loop.call_later(self._ack_delay, self._ack_due, p)
                    p.wake.clear()
                    p.idle_ws = ws
                    try:
                        await p.wake.wait()
                    finally:
                        p.idle_ws = None
                    continue
                for frame in frames:
                    if not await self._write(p, ws, frame):
                        return "aborted"
        except ConnectionClosed:
            return "closed"

    async def _write(self, p: _Peer, ws: _MeshWebsocket, frame: bytes | memoryview | FramePieces) -> bool:
        if self._faults is None:
            return await self._send_frame(p, ws, frame)
        for action in self._faults.on_frame(self.local_name, p.name, frame):
            if isinstance(action, Write):
                if not await self._send_frame(p, ws, action.frame):
                    return False
            elif isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Disconnect):
                self._log.info("%s: fault injection: aborting the connection to %s", self.local_name, p.name)
                ws.transport.abort()
                return False
        return True

    async def _send_frame(self, p: _Peer, ws: _MeshWebsocket, frame: bytes | memoryview | FramePieces) -> bool:
        """``ws.send(frame)`` without its copy of the frame (:meth:`_MeshConnection.write_binary`
        and the same flow control), while the connection is open.

        Returns:
            False if the write failed (the connection is then failed, as ``ws.send`` would;
            the link resends on the next connection).

        Raises:
            ConnectionClosed: the connection was not open (from ``ws.send``).
        """
        if ws.protocol.state is not State.OPEN or ws.send_in_progress is not None:
            await ws.send(bytes(frame) if isinstance(frame, FramePieces) else frame)
        else:
            try:
                ws.write_binary(frame)
                await ws.drain()
            except Exception as exc:
                self._fail_write(p, ws, exc)
                return False
        p.bytes_sent += len(frame)
        p.frames_sent += 1
        return True

    def _fail_write(self, p: _Peer, ws: _MeshWebsocket, exc: Exception) -> None:
        """What ``ws.send`` does when a write fails: fail the connection (the link resends)."""
        self._log.error("%s: writing to %s failed: %r", self.local_name, p.name, exc, exc_info=exc)
        ws.set_connection_exc(exc)
        ws.transport.abort()

    # -- peer state ----------------------------------------------------------------------------------

    def _mark_up(self, p: _Peer) -> None:
        p.state = "connected"
        p.connects += 1
        if p.fail_handle is not None:
            p.fail_handle.cancel()
            p.fail_handle = None
        if p.unavailable is not None:
            p.unavailable = None
            self.router.restore_peer(p.name)
            self._log.info("%s: %s is reachable again", self.local_name, p.name)
        p.progress.set()
        p.wake.set()
        verb = "connected to" if p.connects == 1 else "reconnected to"
        self._log.info("%s: %s %s (%s)", self.local_name, verb, p.name, "dialled" if p.dials else "accepted")

    def _mark_down(self, p: _Peer, reason: str) -> None:
        p.state = "down"
        p.down_since = time.monotonic()
        self._log.info("%s: disconnected from %s (%s)", self.local_name, p.name, reason)
        if not self._closing and p.fail_handle is None:
            loop = asyncio.get_running_loop()
            p.fail_handle = loop.call_later(self._connect_timeout, self._declare_unavailable, p)

    def _declare_unavailable(self, p: _Peer) -> None:
        p.fail_handle = None
        if p.state == "connected" or self._closing:
            return
        error = PeerUnavailable(
            f"{p.name} unreachable for {self._connect_timeout:g} s"
            + (f" (last error: {p.last_error})" if p.last_error else ""),
            peer=p.name,
        )
        p.unavailable = error
        self.router.fail_peer(p.name, error)
        p.progress.set()
        self._log.warning("%s: %s is unavailable: %s", self.local_name, p.name, error)

    def _note_error(self, p: _Peer, message: str, level: int) -> None:
        p.last_error = message
        self._log.log(level, "%s: %s", self.local_name, message)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s: task %s failed", self.local_name, task.get_name(), exc_info=task.exception())


def _remote(conn: ClientConnection | ServerConnection) -> str:
    peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    if not peer:
        return "unknown address"
    return f"{peer[0]}:{peer[1]}"


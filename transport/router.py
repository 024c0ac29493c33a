"""Per-node session registry and inbound buffers, shared by the memory and websocket meshes.

The mesh owns one :class:`~transport.link.Link` per peer and calls :meth:`Router.deliver` for
every message its links deliver; the router matches the message to its session's channel and
either hands it to a waiting ``recv`` or buffers it (bounded) until the program asks for it.
Session :data:`CONTROL_SESSION` is the node-level control plane (job proposals); its messages go
to the control handler instead of a channel.

Rules enforced here (each violation raises :class:`~mpc.errors.ProtocolViolation`):

- a message for a session that is not open is rejected (the mesh logs and drops it). The job
  layer must therefore open a session's channel *before* telling peers it accepts the job, so
  no peer can send into the session before it exists here;
- a message from a name that is not a party of the session is rejected;
- a second message with the same ``(peer, tag)`` in a session is a replay and is rejected (the
  first one stands; the session goes on);
- a session whose buffered (received, not yet consumed) messages exceed ``max_buffered_bytes``
  or ``max_buffered_messages`` is failed: its waiting and later receives raise the violation.

A ``recv`` waits at most the channel's timeout and then raises
:class:`~mpc.errors.PeerUnavailable`; nothing waits forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NoReturn, Sequence

from mpc.checks import check_int
from mpc.contracts import ChannelStats, Payload
from mpc.errors import ConfigError, MPCError, PeerUnavailable, ProtocolViolation, TransportError
from transport.link import Delivered

__all__ = ["CONTROL_SESSION", "Router", "RouterChannel", "SendFn", "ControlHandler"]

_log = logging.getLogger(__name__)

CONTROL_SESSION = "control"

SendFn = Callable[[str, str, str, Payload], Awaitable[int]]
"""``send(peer_name, session_id, tag, payload) -> wire bytes``, provided by the mesh."""

ControlHandler = Callable[[str, str, Payload], Awaitable[None]]
"""``handler(peer_name, tag, payload)`` for control-plane messages."""

_Key = tuple[str, str]
"""``(peer_name, tag)``."""

_RECENTLY_CLOSED = 1024
"""How many closed session ids are remembered, only to give a clearer reason when dropping."""


@dataclass
class _SessionState:
    """Mutable state of one open session (owned by the router, reached through its channel)."""

    session_id: str
    parties: tuple[str, ...]
    party_id: int
    timeout: float
    stats: ChannelStats = field(default_factory=ChannelStats)
    buffered: dict[_Key, tuple[Payload, int]] = field(default_factory=dict)
    buffered_bytes: int = 0
    waiters: dict[_Key, asyncio.Future[Payload]] = field(default_factory=dict)
    # Each waiting receive's future -> (loop time by which it times out, its key), in the order
    # the receives started, which is deadline order (one timeout per session): one timer serves
    # them all.
    deadlines: dict[asyncio.Future[Payload], tuple[float, _Key]] = field(default_factory=dict)
    expiry: asyncio.TimerHandle | None = None  # fires at the first deadline
    received: set[_Key] = field(default_factory=set)
    consumed: set[_Key] = field(default_factory=set)
    sent: set[_Key] = field(default_factory=set)
    error: MPCError | None = None
    closed: bool = False


class RouterChannel:
    """The :class:`mpc.contracts.Channel` of one session, backed by a :class:`Router`.

    Created by :meth:`Router.open_channel`; not constructed directly.
    """

    def __init__(self, router: Router, state: _SessionState) -> None:
        self._router = router
        self._state = state

    @property
    def party_id(self) -> int:
        """This party's index in :attr:`parties`."""
        return self._state.party_id

    @property
    def n_parties(self) -> int:
        """Number of parties in the session."""
        return len(self._state.parties)

    @property
    def parties(self) -> tuple[str, ...]:
        """Names of the session's parties; index = party id."""
        return self._state.parties

    @property
    def session_id(self) -> str:
        """Identifier of the session."""
        return self._state.session_id

    @property
    def stats(self) -> ChannelStats:
        """Live traffic counters of this channel."""
        return self._state.stats

    @property
    def timeout(self) -> float:
        """Seconds a :meth:`recv` waits before raising ``PeerUnavailable``."""
        return self._state.timeout

    async def send(self, peer: int, tag: str, payload: Payload) -> None:
        """Send ``payload`` to party ``peer`` under ``tag``.

        Raises:
            ProtocolViolation: the channel is closed, ``peer`` is not another party, ``tag`` is
                not a string, or this tag was already sent to this peer.
            FrameError: the payload cannot be encoded (nothing was sent; the tag stays free).
            PeerUnavailable: the mesh cannot reach the peer.
            MPCError: the error that failed the session, if it failed.
        """
        st = self._state
        if st.error is not None:
            raise st.error
        name = self._peer_name(peer)
        if not isinstance(tag, str):
            raise ProtocolViolation("a tag must be a string")
        key = (name, tag)
        if key in st.sent:
            raise ProtocolViolation(
                f"tag {tag!r} already sent to {name} in session {st.session_id!r}"
            )
        st.sent.add(key)
        try:
            nbytes = await self._router._send(name, st.session_id, tag, payload)
        except BaseException:
            st.sent.discard(key)
            raise
        stats = st.stats
        stats.bytes_sent += nbytes
        stats.messages_sent += 1
        stats.per_peer_bytes_sent[name] = stats.per_peer_bytes_sent.get(name, 0) + nbytes

    async def recv(self, peer: int, tag: str) -> Payload:
        """Wait for the message from party ``peer`` under ``tag``.

        A message that already arrived is returned even if the peer has failed since.

        Raises:
            PeerUnavailable: nothing arrived within :attr:`timeout`, or the peer was failed.
            ProtocolViolation: the channel is closed, ``peer`` is invalid, the tag was already
                received or is already awaited, or the session was failed by a violation.
        """
        st = self._state
        if st.error is not None:
            raise st.error
        name = self._peer_name(peer)
        if not isinstance(tag, str):
            raise ProtocolViolation("a tag must be a string")
        key = (name, tag)
        if key in st.consumed:
            raise ProtocolViolation(f"tag {tag!r} from {name} was already received")
        if key in st.waiters:
            raise ProtocolViolation(f"tag {tag!r} from {name} is already being awaited")
        item = st.buffered.pop(key, None)
        if item is not None:
            st.buffered_bytes -= item[1]
            st.consumed.add(key)
            return item[0]
        peer_error = self._router._failed_peers.get(name)
        if peer_error is not None:
            raise peer_error
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Payload] = loop.create_future()
        st.waiters[key] = fut
        # The session's one expiry timer (cheaper than a timer per receive on the hot path).
        deadline = loop.time() + st.timeout
        st.deadlines[fut] = (deadline, key)
        if st.expiry is None:
            st.expiry = loop.call_at(deadline, _expire, st, deadline)
        try:
            payload = await fut
        finally:
            del st.deadlines[fut]
            if st.waiters.get(key) is fut:
                del st.waiters[key]
        st.consumed.add(key)
        return payload

    async def close(self) -> None:
        """Release the session's buffers; waiting receives and later calls raise."""
        self._router._close_session(
            self._state, ProtocolViolation(f"session {self._state.session_id!r} is closed")
        )

    def _peer_name(self, peer: int) -> str:
        st = self._state
        if type(peer) is int and 0 <= peer < len(st.parties) and peer != st.party_id:
            return st.parties[peer]  # the usual case
        check_int(peer, "peer", error=ProtocolViolation, message=f"peer must be a party id, got {type(peer).__name__}")
        if not 0 <= peer < len(st.parties) or peer == st.party_id:
            raise ProtocolViolation(f"invalid peer {peer} for party {st.party_id}")
        return st.parties[peer]


class Router:
    """Routes delivered messages to session channels; implements :class:`mpc.Channel` for them.

    Args:
        local_name: this party's name.
        send: the mesh's send function.
        recv_timeout: seconds a ``recv`` waits before raising ``PeerUnavailable`` (default for
            every channel; :meth:`open_channel` may override it).
        max_buffered_bytes: bound on wire bytes buffered per session before the session fails
            with ``ProtocolViolation``.
        max_buffered_messages: bound on messages buffered per session, likewise.
        max_control_tasks: bound on control handlers running at once; a control message
            beyond it is rejected with ``ProtocolViolation``.
    """

    def __init__(
        self,
        local_name: str,
        send: SendFn,
        *,
        recv_timeout: float = 30.0,
        max_buffered_bytes: int = 1 << 31,
        max_buffered_messages: int = 1 << 16,
        max_control_tasks: int = 64,
    ) -> None:
        if not isinstance(local_name, str) or not local_name:
            raise ConfigError("local_name must be a non-empty string")
        if not recv_timeout > 0:
            raise ConfigError("recv_timeout must be positive")
        if max_buffered_bytes < 0 or max_buffered_messages < 0 or max_control_tasks < 1:
            raise ConfigError("buffer bounds must be non-negative, max_control_tasks positive")
        self._local = local_name
        self._send = send
        self._recv_timeout = float(recv_timeout)
        self._max_bytes = max_buffered_bytes
        self._max_messages = max_buffered_messages
        self._max_control_tasks = max_control_tasks
        self._sessions: dict[str, _SessionState] = {}
        self._recently_closed: OrderedDict[str, None] = OrderedDict()
        self._failed_peers: dict[str, MPCError] = {}
        self._control: ControlHandler | None = None
        self._control_tasks: set[asyncio.Task[None]] = set()
        self._dropped: dict[str, int] = {}
        self._control_errors = 0
        self._closed: MPCError | None = None

    @property
    def local_name(self) -> str:
        """This party's name."""
        return self._local

    def open_channel(
        self, session_id: str, parties: Sequence[str], *, timeout: float | None = None
    ) -> RouterChannel:
        """Open a session's channel (``parties`` are names and include ``local_name``).

        Args:
            session_id: unique id of the session; not :data:`CONTROL_SESSION`.
            parties: the session's party names in party-id order.
            timeout: receive timeout of this channel; the router's ``recv_timeout`` if omitted.

        Raises:
            ConfigError: invalid id or parties, or the session is already open.
            TransportError: the router is closed.
        """
        if self._closed is not None:
            raise TransportError("router is closed")
        if not isinstance(session_id, str) or not session_id or session_id == CONTROL_SESSION:
            raise ConfigError(f"invalid session id {session_id!r}")
        if session_id in self._sessions:
            raise ConfigError(f"session {session_id!r} is already open")
        names = tuple(parties)
        if any(not isinstance(p, str) or not p for p in names) or len(set(names)) != len(names):
            raise ConfigError("parties must be distinct non-empty names")
        if self._local not in names:
            raise ConfigError(f"{self._local!r} is not a party of session {session_id!r}")
        t = self._recv_timeout if timeout is None else float(timeout)
        if not t > 0:
            raise ConfigError("timeout must be positive")
        self._recently_closed.pop(session_id, None)
        state = _SessionState(session_id, names, names.index(self._local), t)
        self._sessions[session_id] = state
        return RouterChannel(self, state)

    def deliver(self, peer: str, message: Delivered) -> None:
        """Route a delivered message.

        Raises:
            ProtocolViolation: unknown session, peer not in the session, duplicate tag, buffer
                overflow (which also fails the session), no control handler or too many
                running. The mesh logs the reason and drops the message; other sessions go on.
        """
        if message.session_id == CONTROL_SESSION:
            self._deliver_control(peer, message)
            return
        st = self._sessions.get(message.session_id)
        if st is None:
            if message.session_id in self._recently_closed:
                self._reject("closed-session", f"message for closed session {message.session_id!r}")
            self._reject("unknown-session", f"message for unknown session {message.session_id!r}")
        if st.error is not None:
            self._reject("failed-session", f"message for failed session {st.session_id!r}")
        if peer == self._local or peer not in st.parties:
            self._reject("not-a-party", f"{peer!r} is not a party of session {st.session_id!r}")
        key = (peer, message.tag)
        if key in st.received:
            self._reject("replay", f"replayed tag {message.tag!r} from {peer} in {st.session_id!r}")
        fut = st.waiters.pop(key, None)
        if fut is not None and not fut.done():
            self._accept(st, key, message)
            fut.set_result(message.payload)
            return
        if (
            st.buffered_bytes + message.nbytes > self._max_bytes
            or len(st.buffered) + 1 > self._max_messages
        ):
            error = ProtocolViolation(
                f"session {st.session_id!r} buffer overflow ({len(st.buffered)} messages, "
                f"{st.buffered_bytes} bytes buffered; message from {peer})"
            )
            self._fail_session(st, error)
            self._count("overflow")
            raise error
        self._accept(st, key, message)
        st.buffered[key] = (message.payload, message.nbytes)
        st.buffered_bytes += message.nbytes

    def fail_peer(self, peer: str, error: MPCError) -> None:
        """Make pending and future receives from ``peer`` raise ``error`` (until restored).

        Messages from ``peer`` that already arrived are still returned by ``recv``.
        """
        self._failed_peers[peer] = error
        for st in self._sessions.values():
            for key, fut in list(st.waiters.items()):
                if key[0] == peer:
                    del st.waiters[key]
                    if not fut.done():
                        fut.set_exception(error)

    def restore_peer(self, peer: str) -> None:
        """Undo :meth:`fail_peer` once the peer is reachable again."""
        self._failed_peers.pop(peer, None)

    def set_control_handler(self, handler: ControlHandler | None) -> None:
        """Install the handler of control-plane messages (``None`` removes it)."""
        self._control = handler

    async def send_control(self, peer: str, tag: str, payload: Payload) -> None:
        """Send a control-plane message to ``peer``.

        Raises:
            TransportError: the router is closed (or the mesh's send error).
            FrameError: the payload cannot be encoded.
        """
        if self._closed is not None:
            raise TransportError("router is closed")
        await self._send(peer, CONTROL_SESSION, tag, payload)

    def close(self, error: MPCError | None = None) -> None:
        """Close every channel; waiting receives raise ``error`` (or PeerUnavailable).

        Running control handlers are cancelled; await :meth:`wait_closed` to let them finish.
        """
        err = error if error is not None else PeerUnavailable("the local node is shutting down")
        self._closed = err
        for st in list(self._sessions.values()):
            self._close_session(st, err)
        for task in self._control_tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the control handler tasks cancelled by :meth:`close` have finished."""
        if self._control_tasks:
            await asyncio.gather(*self._control_tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Counters of the router (open sessions, dropped messages by reason, ...)."""
        return {
            "open_sessions": len(self._sessions),
            "buffered_messages": sum(len(s.buffered) for s in self._sessions.values()),
            "buffered_bytes": sum(s.buffered_bytes for s in self._sessions.values()),
            "failed_peers": sorted(self._failed_peers),
            "dropped": dict(self._dropped),
            "control_tasks": len(self._control_tasks),
            "control_errors": self._control_errors,
        }

    # -- internals -------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1

    @staticmethod
    def _accept(st: _SessionState, key: _Key, message: Delivered) -> None:
        st.received.add(key)
        st.stats.bytes_received += message.nbytes
        st.stats.messages_received += 1

    def _reject(self, reason: str, message: str) -> NoReturn:
        self._count(reason)
        raise ProtocolViolation(message)

    def _deliver_control(self, peer: str, message: Delivered) -> None:
        handler = self._control
        if handler is None or self._closed is not None:
            self._reject(
                "no-control-handler", f"control message {message.tag!r} from {peer} unhandled"
            )
        if len(self._control_tasks) >= self._max_control_tasks:
            self._reject(
                "control-backlog",
                f"control message {message.tag!r} from {peer}: "
                f"{len(self._control_tasks)} handlers already running",
            )
        task = asyncio.get_running_loop().create_task(
            _run_handler(handler, peer, message.tag, message.payload),
            name=f"control:{peer}:{message.tag}",
        )
        self._control_tasks.add(task)
        task.add_done_callback(self._control_done)

    def _control_done(self, task: asyncio.Task[None]) -> None:
        self._control_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._control_errors += 1
            _log.error(
                "%s: control handler %s failed: %s",
                self._local,
                task.get_name(),
                exc,
                exc_info=exc,
            )

    def _fail_session(self, st: _SessionState, error: MPCError) -> None:
        st.error = error
        st.buffered.clear()
        st.buffered_bytes = 0
        waiters = list(st.waiters.values())
        st.waiters.clear()
        if st.expiry is not None:
            st.expiry.cancel()
            st.expiry = None
        for fut in waiters:
            if not fut.done():
                fut.set_exception(error)

    def _close_session(self, st: _SessionState, error: MPCError) -> None:
        if st.closed:
            return
        st.closed = True
        self._fail_session(st, error)
        st.received.clear()
        st.consumed.clear()
        st.sent.clear()
        if self._sessions.get(st.session_id) is st:
            del self._sessions[st.session_id]
            self._recently_closed[st.session_id] = None
            while len(self._recently_closed) > _RECENTLY_CLOSED:
                self._recently_closed.popitem(last=False)


def _expire(st: _SessionState, when: float) -> None:
    """The session's expiry timer, due at ``when``: the receives waiting since ``when - timeout``
    or earlier time out (nothing arrived from the peer under the tag in time); the timer is set
    again for the next deadline."""
    st.expiry = None
    expired = []
    for fut, (deadline, key) in st.deadlines.items():  # in deadline order
        if deadline > when:
            st.expiry = asyncio.get_running_loop().call_at(deadline, _expire, st, deadline)
            break
        expired.append((fut, key))
    for fut, (name, tag) in expired:
        if not fut.done():
            fut.set_exception(
                PeerUnavailable(
                    f"no message {tag!r} from {name} within {st.timeout:g} s "
                    f"(session {st.session_id!r})",
                    peer=name,
                )
            )


async def _run_handler(handler: ControlHandler, peer: str, tag: str, payload: Payload) -> None:
    await handler(peer, tag, payload)

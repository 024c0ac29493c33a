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
  or ``max_buffered_messages`` is failed: its waiting and later receives raise the violation;
- a session whose replay state (below) would exceed ``max_replay_entries`` entries is failed
  likewise (by the receive or delivery that would record one more).

Replay state. The ``(peer, tag)`` pairs received in a session are remembered exactly, for the
whole session, but not one by one. :class:`mpc.Session` tags are ``f"{key}#{k}"`` with ``k``
counting the key's rounds from 0, so for each ``(peer, key)`` the ``k`` are kept as runs of
consecutive integers ``[lo, hi)``, and the next ``k`` of a key extends the last run (checked by
one string comparison, without parsing the number). A tag is split at its last ``#``; one whose
``k`` is not canonical (1 to 18 ASCII digits, no leading zero) or whose key is empty (``"t"``,
``"t#01"``, ``"#3"``) is kept as itself, so two spellings of a number never alias. An *entry*
is a run or such a tag.

A tag is recorded when its message is handed to a receive: at delivery if a receive waits for
it, else when a receive takes it from the buffer (until then the buffered message stands for
it). So the state holds only tags this party's program received, and what a peer sends cannot
make it grow: junk and out-of-order messages wait in the bounded buffer. Its size is one entry
per ``(peer, key)`` plus one per gap between the ``k`` received under the key (e.g. rounds of the
key in which that peer sends nothing to this party, such as other parties' broadcasts), whatever
the number of messages. A session holds at most ``max_replay_entries`` entries (default
``2**20``; measured ~0.1 KB per extra run of a key, 0.2 to 0.5 KB per key or tag kept as itself,
with its string): recording beyond that fails the session. The tags sent are kept in the same
form, without a bound (they are the local program's).

A ``recv`` waits at most the channel's timeout and then raises
:class:`~mpc.errors.PeerUnavailable`; nothing waits forever.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
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

_Waiter = tuple[asyncio.Future[Payload], list[Any] | None, str, str, int, str]
"""A waiting receive ``(future, runs, prefix, ks, hi, str(hi))``: its tag split at its last
``#`` (``prefix``, ``ks``) and, if the tag is the next ``k`` of its key, the key's runs and
``hi = k + 1`` (else ``runs`` is ``None``), for :meth:`Router.deliver` to record the tag without
parsing it."""

_RECENTLY_CLOSED = 1024
"""How many closed session ids are remembered, only to give a clearer reason when dropping."""


_MAX_K_DIGITS = 18
"""Longest round counter ``k`` kept in a run (``k < 10**18``); longer ones are exact tags."""


class _TagSet:
    """An exact set of ``(peer, tag)`` pairs whose size grows with gaps, not with messages.

    ``runs[peer][key]`` holds the ``k`` of the tags ``f"{key}#{k}"`` of ``peer`` in the set as
    the list ``[str(hi_m), lo_0, hi_0, ..., lo_m, hi_m]``: sorted, disjoint, non-adjacent runs
    ``[lo, hi)`` after the decimal string of the next ``k`` in order, so that the next tag is
    recognised by one string comparison, without parsing its number. Tags that are not
    canonical ``key#k`` (see :func:`_canonical`) are in ``exact``. ``entries`` counts runs plus
    exact tags.

    Args:
        peers: the names this set may hold tags of (no other name may be passed).
    """

    __slots__ = ("runs", "exact", "entries")

    def __init__(self, peers: Sequence[str]) -> None:
        self.runs: dict[str, dict[str, list[Any]]] = {p: {} for p in peers}
        self.exact: set[_Key] = set()
        self.entries = 0

    def add(self, key: _Key) -> bool:
        """Add ``key``; ``False`` if it was already in the set."""
        prefix, _, ks = key[1].rpartition("#")
        runs = self.runs[key[0]].get(prefix)
        if runs is not None and runs[0] == ks:  # the next k of its key: extend the last run
            hi = runs[-1] + 1
            runs[-1] = hi
            runs[0] = str(hi)
            return True
        return self.add_parsed(key, prefix, ks, runs)

    def add_parsed(self, key: _Key, prefix: str, ks: str, runs: list[Any] | None) -> bool:
        """:meth:`add` once the tag is split at its last ``#`` and its key's runs looked up."""
        if runs is None and ks == "0" and prefix:  # a new key's first round, the usual new one
            self.runs[key[0]][prefix] = ["1", 0, 1]
            self.entries += 1
            return True
        if not _canonical(prefix, ks):
            if key in self.exact:
                return False
            self.exact.add(key)
            self.entries += 1
            return True
        k = int(ks)
        if runs is None:
            self.runs[key[0]][prefix] = [str(k + 1), k, k + 1]
            self.entries += 1
            return True
        i = bisect_right(runs, k, 1)
        if not i & 1:  # runs[i - 1] is the lo of a run holding k
            return False
        # k lies between the hi at runs[i - 1] (if i > 1) and the lo at runs[i] (if any).
        joins_left = i > 1 and runs[i - 1] == k
        joins_right = i < len(runs) and runs[i] == k + 1
        if joins_left and joins_right:
            del runs[i - 1 : i + 1]
            self.entries -= 1
        elif joins_left:
            runs[i - 1] = k + 1
        elif joins_right:
            runs[i] = k
        else:
            runs[i:i] = [k, k + 1]
            self.entries += 1
        runs[0] = str(runs[-1])
        return True

    def __contains__(self, key: _Key) -> bool:
        prefix, _, ks = key[1].rpartition("#")
        return self.contains_parsed(key, prefix, ks, self.runs[key[0]].get(prefix))

    def contains_parsed(self, key: _Key, prefix: str, ks: str, runs: list[Any] | None) -> bool:
        """``key in self`` once the tag is split at its last ``#`` and its key's runs looked up."""
        if runs is None or not _canonical(prefix, ks):  # (a canonical tag is never in exact)
            return key in self.exact
        return not bisect_right(runs, int(ks), 1) & 1

    def discard(self, key: _Key) -> None:
        """Remove ``key`` if present."""
        prefix, _, ks = key[1].rpartition("#")
        if not _canonical(prefix, ks):
            if key in self.exact:
                self.exact.discard(key)
                self.entries -= 1
            return
        runs = self.runs[key[0]].get(prefix)
        if runs is None:
            return
        k = int(ks)
        i = bisect_right(runs, k, 1)
        if i & 1:  # not in a run
            return
        lo, hi = runs[i - 1], runs[i]
        if lo == k and hi == k + 1:
            del runs[i - 1 : i + 1]
            self.entries -= 1
            if len(runs) == 1:
                del self.runs[key[0]][prefix]
                return
        elif lo == k:
            runs[i - 1] = k + 1
        elif hi == k + 1:
            runs[i] = k
        else:  # split [lo, hi) into [lo, k) and [k + 1, hi)
            runs[i:i] = [k, k + 1]
            self.entries += 1
        runs[0] = str(runs[-1])

    def clear(self) -> None:
        """Empty the set."""
        for by_key in self.runs.values():
            by_key.clear()
        self.exact.clear()
        self.entries = 0


def _above(ks: str, nxt: str) -> bool:
    """Whether ``ks`` is a canonical ``k`` above ``int(nxt)`` (``nxt`` canonical, not ``"0"``),
    by comparing strings."""
    return (
        (len(ks) > len(nxt) or len(ks) == len(nxt) and ks > nxt)
        and len(ks) <= _MAX_K_DIGITS
        and ks.isdigit()
        and ks.isascii()
        and ks[0] != "0"
    )


def _canonical(prefix: str, ks: str) -> bool:
    """Whether ``f"{prefix}#{ks}"`` is kept in a run: a non-empty key and a canonical ``k``."""
    return (
        bool(prefix)
        and len(ks) <= _MAX_K_DIGITS
        and ks.isdigit()
        and ks.isascii()
        and (ks[0] != "0" or len(ks) == 1)
    )


@dataclass
class _SessionState:
    """Mutable state of one open session (owned by the router, reached through its channel)."""

    session_id: str
    parties: tuple[str, ...]
    party_id: int
    timeout: float
    stats: ChannelStats = field(default_factory=ChannelStats)
    # Each buffered message: its payload, its wire bytes, and for recording its tag when a
    # receive takes it, its key's runs (None if the key had none) and its tag split at its
    # last "#".
    buffered: dict[_Key, tuple[Payload, int, list[Any] | None, str, str]] = field(
        default_factory=dict
    )
    buffered_bytes: int = 0
    waiters: dict[_Key, _Waiter] = field(default_factory=dict)  # each waiting receive
    # Each waiting receive's future -> (loop time by which it times out, its key), in the order
    # the receives started, which is deadline order (one timeout per session): one timer serves
    # them all.
    deadlines: dict[asyncio.Future[Payload], tuple[float, _Key]] = field(default_factory=dict)
    expiry: asyncio.TimerHandle | None = None  # fires at the first deadline
    error: MPCError | None = None
    closed: bool = False
    # The names of the other parties; every (peer, tag) received (the replay state: recorded
    # when the message is handed to a receive; a buffered message stands for its own tag) and
    # sent, for the whole session.
    peers: frozenset[str] = field(init=False)
    received: _TagSet = field(init=False)
    sent: _TagSet = field(init=False)

    def __post_init__(self) -> None:
        others = [p for i, p in enumerate(self.parties) if i != self.party_id]
        self.peers = frozenset(others)
        self.received = _TagSet(others)
        self.sent = _TagSet(others)


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
        if not st.sent.add(key):
            raise ProtocolViolation(
                f"tag {tag!r} already sent to {name} in session {st.session_id!r}"
            )
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
                received or is already awaited, the replay state overflows (which fails the
                session), or the session was failed by a violation.
        """
        st = self._state
        if st.error is not None:
            raise st.error
        name = self._peer_name(peer)
        if not isinstance(tag, str):
            raise ProtocolViolation("a tag must be a string")
        key = (name, tag)
        item = st.buffered.pop(key, None)
        if item is not None:
            st.buffered_bytes -= item[1]
            self._router._record(st, key, item[2], item[3], item[4])
            return item[0]
        if key in st.waiters:
            raise ProtocolViolation(f"tag {tag!r} from {name} is already being awaited")
        # Recorded means consumed, or handed to a receive. The usual case, the next k of its
        # key, is not: Router.deliver will then extend the run as prepared here.
        seen = st.received
        prefix, _, ks = tag.rpartition("#")
        runs = seen.runs[name].get(prefix)
        if runs is None or runs[0] != ks:
            if seen.contains_parsed(key, prefix, ks, runs):
                raise ProtocolViolation(f"tag {tag!r} from {name} was already received")
            runs = None
        peer_error = self._router._failed_peers.get(name)
        if peer_error is not None:
            raise peer_error
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Payload] = loop.create_future()
        if runs is None:
            st.waiters[key] = (fut, None, prefix, ks, 0, "")
        else:
            hi = runs[-1] + 1
            st.waiters[key] = (fut, runs, prefix, ks, hi, str(hi))
        # The session's one expiry timer (cheaper than a timer per receive on the hot path).
        deadline = loop.time() + st.timeout
        st.deadlines[fut] = (deadline, key)
        if st.expiry is None:
            st.expiry = loop.call_at(deadline, _expire, st, deadline)
        try:
            payload = await fut
        finally:
            del st.deadlines[fut]
            waiter = st.waiters.get(key)
            if waiter is not None and waiter[0] is fut:
                del st.waiters[key]
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
        max_replay_entries: bound on the entries of a session's replay state (see the module
            docstring), likewise.
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
        max_replay_entries: int = 1 << 20,
        max_control_tasks: int = 64,
    ) -> None:
        if not isinstance(local_name, str) or not local_name:
            raise ConfigError("local_name must be a non-empty string")
        if not recv_timeout > 0:
            raise ConfigError("recv_timeout must be positive")
        if max_buffered_bytes < 0 or max_buffered_messages < 0 or max_control_tasks < 1:
            raise ConfigError("buffer bounds must be non-negative, max_control_tasks positive")
        if max_replay_entries < 1:
            raise ConfigError("max_replay_entries must be positive")
        self._local = local_name
        self._send = send
        self._recv_timeout = float(recv_timeout)
        self._max_bytes = max_buffered_bytes
        self._max_messages = max_buffered_messages
        self._max_replay = max_replay_entries
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
                or replay state overflow (which also fails the session), no control handler or
                too many running. The mesh logs the reason and drops the message; other
                sessions go on.
        """
        sid = message.session_id
        if sid == CONTROL_SESSION:
            self._deliver_control(peer, message)
            return
        st = self._sessions.get(sid)
        if st is None:
            if sid in self._recently_closed:
                self._reject("closed-session", f"message for closed session {sid!r}")
            self._reject("unknown-session", f"message for unknown session {sid!r}")
        if st.error is not None:
            self._reject("failed-session", f"message for failed session {st.session_id!r}")
        if peer not in st.peers:
            self._reject("not-a-party", f"{peer!r} is not a party of session {st.session_id!r}")
        tag = message.tag
        key = (peer, tag)
        nbytes = message.nbytes
        waiter = st.waiters.pop(key, None) if st.waiters else None
        if waiter is not None and not waiter[0].done():
            # A receive waits for this tag: it checked that the tag was not received, and a
            # message with the tag since would have taken the receive. Record the tag.
            fut, runs, prefix, ks, hi, nxt = waiter
            if runs is not None and runs[0] == ks:  # still the next k of its key
                runs[-1] = hi
                runs[0] = nxt
            else:
                seen = st.received
                seen.add_parsed(key, prefix, ks, seen.runs[peer].get(prefix))
                if seen.entries > self._max_replay:
                    st.waiters[key] = waiter  # failing the session fails this receive too
                    self._replay_overflow(st, peer)
            stats = st.stats
            stats.bytes_received += nbytes
            stats.messages_received += 1
            fut.set_result(message.payload)
            return
        # Not awaited: a replay if the tag is recorded or buffered (the receive that takes the
        # message from the buffer records the tag). A k at or above the next one of its key is
        # not recorded: string comparisons tell, without parsing the number.
        prefix, _, ks = tag.rpartition("#")
        runs = st.received.runs[peer].get(prefix)
        if runs is None:  # no k of its key recorded: only an exact tag may be
            replay = key in st.buffered or key in st.received.exact
        elif runs[0] == ks or _above(ks, runs[0]):
            replay = key in st.buffered
        else:
            replay = key in st.buffered or st.received.contains_parsed(key, prefix, ks, runs)
        if replay:
            self._reject("replay", f"replayed tag {tag!r} from {peer} in {st.session_id!r}")
        if st.buffered_bytes + nbytes > self._max_bytes or len(st.buffered) >= self._max_messages:
            self._overflow(
                st,
                "overflow",
                f"buffer overflow ({len(st.buffered)} messages, "
                f"{st.buffered_bytes} bytes buffered; message from {peer})",
            )
        st.buffered[key] = (message.payload, nbytes, runs, prefix, ks)
        st.buffered_bytes += nbytes
        stats = st.stats
        stats.bytes_received += nbytes
        stats.messages_received += 1

    def fail_peer(self, peer: str, error: MPCError) -> None:
        """Make pending and future receives from ``peer`` raise ``error`` (until restored).

        Messages from ``peer`` that already arrived are still returned by ``recv``.
        """
        self._failed_peers[peer] = error
        for st in self._sessions.values():
            for key, waiter in list(st.waiters.items()):
                if key[0] == peer:
                    del st.waiters[key]
                    if not waiter[0].done():
                        waiter[0].set_exception(error)

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
            "replay_entries": sum(s.received.entries for s in self._sessions.values()),
            "failed_peers": sorted(self._failed_peers),
            "dropped": dict(self._dropped),
            "control_tasks": len(self._control_tasks),
            "control_errors": self._control_errors,
        }

    # -- internals -------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def _record(
        self, st: _SessionState, key: _Key, runs: list[Any] | None, prefix: str, ks: str
    ) -> None:
        """Record the tag of a message handed to a receive (not recorded: checked at delivery
        or by the waiting receive), split at its last ``#`` (``prefix``, ``ks``); ``runs`` are
        its key's when the message arrived, or ``None``.

        Raises:
            ProtocolViolation: the replay state overflows (the session is failed).
        """
        if runs is not None and runs[0] == ks:  # the next k of its key: extend its run
            hi = runs[-1] + 1
            runs[-1] = hi
            runs[0] = str(hi)
            return
        seen = st.received
        seen.add_parsed(key, prefix, ks, seen.runs[key[0]].get(prefix))
        if seen.entries > self._max_replay:
            self._replay_overflow(st, key[0])

    def _replay_overflow(self, st: _SessionState, peer: str) -> NoReturn:
        self._overflow(
            st,
            "replay-overflow",
            f"replay state overflow ({st.received.entries} entries; message from {peer})",
        )

    def _overflow(self, st: _SessionState, reason: str, detail: str) -> NoReturn:
        error = ProtocolViolation(f"session {st.session_id!r} {detail}")
        self._fail_session(st, error)
        self._count(reason)
        raise error

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
        waiters = [waiter[0] for waiter in st.waiters.values()]
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

"""Per-node session registry and inbound buffers, shared by the memory and websocket meshes
(API stub; see helper B).

The mesh owns one :class:`~transport.link.Link` per peer and calls :meth:`Router.deliver` for
every delivered message; the router matches it to the session's channel, buffering (bounded)
until the program receives it. Session ``CONTROL_SESSION`` is the node-level control plane (job
proposals); its messages go to the control handler instead of a channel.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from mpc.contracts import Channel, Payload
from mpc.errors import MPCError
from transport.link import Delivered

__all__ = ["CONTROL_SESSION", "Router", "SendFn", "ControlHandler"]

CONTROL_SESSION = "control"

SendFn = Callable[[str, str, str, Payload], Awaitable[int]]
"""``send(peer_name, session_id, tag, payload) -> wire bytes``, provided by the mesh."""

ControlHandler = Callable[[str, str, Payload], Awaitable[None]]
"""``handler(peer_name, tag, payload)`` for control-plane messages."""


class Router:
    """Routes delivered messages to session channels; implements :class:`mpc.Channel` for them.

    Args:
        local_name: this party's name.
        send: the mesh's send function.
        recv_timeout: seconds a ``recv`` waits before raising ``PeerUnavailable``.
        max_buffered_bytes: bound on bytes buffered per session before ``ProtocolViolation``.
    """

    def __init__(
        self,
        local_name: str,
        send: SendFn,
        *,
        recv_timeout: float = 30.0,
        max_buffered_bytes: int = 1 << 31,
    ) -> None:
        raise NotImplementedError

    def open_channel(self, session_id: str, parties: Sequence[str]) -> Channel:
        """Open a session's channel (``parties`` are names and include ``local_name``)."""
        raise NotImplementedError

    def deliver(self, peer: str, message: Delivered) -> None:
        """Route a delivered message.

        Raises:
            ProtocolViolation: unknown session, peer not in the session, duplicate tag, or buffer
                overflow. The mesh logs the reason and drops the message; other sessions go on.
        """
        raise NotImplementedError

    def fail_peer(self, peer: str, error: MPCError) -> None:
        """Make pending and future receives from ``peer`` raise ``error`` (until restored)."""
        raise NotImplementedError

    def restore_peer(self, peer: str) -> None:
        """Undo :meth:`fail_peer` once the peer is reachable again."""
        raise NotImplementedError

    def set_control_handler(self, handler: ControlHandler | None) -> None:
        """Install the handler of control-plane messages."""
        raise NotImplementedError

    async def send_control(self, peer: str, tag: str, payload: Payload) -> None:
        """Send a control-plane message to ``peer``."""
        raise NotImplementedError

    def close(self, error: MPCError | None = None) -> None:
        """Close every channel; waiting receives raise ``error`` (or PeerUnavailable)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters of the router (open sessions, dropped messages by reason)."""
        raise NotImplementedError

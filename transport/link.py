"""Sans-I/O reliable message stream between this party and one peer (API stub; see helper A).

A :class:`Link` lives as long as the two nodes do and survives reconnects. It assigns each
outgoing message a sequence number, keeps it until the peer acknowledges it, and on a new
connection resends what the peer has not received; on the receiving side it delivers messages in
sequence order exactly once (duplicates and replays of old sequence numbers are dropped).

Bytes in, events and bytes out (like ``websockets.protocol``): the driver (memory mesh or
websocket mesh) writes every item of :meth:`Link.data_to_send` as one binary websocket message,
feeds every received binary message to :meth:`Link.receive_frame`, and on a new connection sends
:meth:`Link.hello` first and passes the peer's first message to :meth:`Link.receive_hello`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transport.framing import FrameLimits

__all__ = ["Delivered", "Link"]


@dataclass(frozen=True)
class Delivered:
    """A message delivered in order, exactly once.

    Attributes:
        session_id: the session (job) the message belongs to.
        tag: the round tag.
        payload: the decoded payload (arrays as numpy arrays, possibly read-only).
        nbytes: bytes this message took on the wire (all its frames).
    """

    session_id: str
    tag: str
    payload: Any
    nbytes: int


class Link:
    """Reliable, ordered, de-duplicated message stream to one peer.

    Args:
        local: this party's name.
        peer: the peer's name.
        limits: size limits for frames and messages.
    """

    def __init__(self, local: str, peer: str, limits: FrameLimits | None = None) -> None:
        raise NotImplementedError

    def send(self, session_id: str, tag: str, payload: Any) -> int:
        """Queue a message; returns its size on the wire in bytes.

        Raises:
            FrameError: the payload cannot be encoded (unsupported type or dtype).
            FrameTooLarge: the encoded message exceeds ``limits.max_message_bytes``.
        """
        raise NotImplementedError

    def data_to_send(self) -> list[bytes | memoryview]:
        """Frames to write now, in order (chunks of queued messages, then a coalesced ack)."""
        raise NotImplementedError

    def receive_frame(self, frame: bytes | bytearray | memoryview) -> list[Delivered]:
        """Process one received frame; returns messages that became deliverable.

        Raises:
            FrameError: the frame is malformed (the link's state is unchanged).
            FrameTooLarge: the frame or the message it belongs to is over the limit.
        """
        raise NotImplementedError

    def hello(self) -> bytes:
        """The first frame to send on a new connection (names and resume point)."""
        raise NotImplementedError

    def receive_hello(self, frame: bytes | bytearray | memoryview) -> None:
        """Process the peer's hello on a new connection; schedules resending unacked messages.

        Raises:
            HandshakeFailed: the hello is malformed or names the wrong parties.
        """
        raise NotImplementedError

    def connection_lost(self) -> None:
        """Forget partial frames of the dead connection; unacknowledged messages are kept."""
        raise NotImplementedError

    @property
    def unacked_bytes(self) -> int:
        """Wire bytes of messages sent but not yet acknowledged."""
        raise NotImplementedError

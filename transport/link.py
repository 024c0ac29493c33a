"""Sans-I/O reliable message stream between this party and one peer.

A :class:`Link` lives as long as the two nodes do and survives reconnects. It assigns each
outgoing message a sequence number, keeps it until the peer acknowledges it, and on a new
connection resends what the peer has not received; on the receiving side it delivers messages in
sequence order exactly once (duplicates and replays of old sequence numbers are dropped).

Bytes in, events and bytes out (like ``websockets.protocol``): the driver (memory mesh or
websocket mesh) writes every item of :meth:`Link.data_to_send` as one binary websocket message,
feeds every received binary message to :meth:`Link.receive_frame`, and on a new connection sends
:meth:`Link.hello` first and passes the peer's first message to :meth:`Link.receive_hello`.
Nothing is sent before the first hello exchange; after :meth:`Link.connection_lost`, nothing is
sent until the next one. The driver should call :meth:`Link.data_to_send` after every
:meth:`Link.send`, :meth:`Link.receive_frame` and :meth:`Link.receive_hello`. Frames of one
connection must reach :meth:`Link.receive_frame` in the order they were written (websockets over
TCP guarantee it); repeated frames are ignored, but a lost or reordered chunk raises
:class:`~mpc.errors.FrameError`. After such an error the stream cannot recover by itself: the
driver should drop the connection, and the next hello exchange resends what was lost.

Threat model: the peer is authenticated by the transport (TLS with pinned certificates) but may
send arbitrary bytes. Every malformed or inconsistent frame raises a typed error and leaves the
link unchanged; memory held for the peer is bounded by :class:`FrameLimits` (one message being
reassembled plus ``max_out_of_order`` complete messages buffered ahead of a gap). Sequence
numbers make replays of old frames harmless (they are dropped), not undetectable.

Wire: see :mod:`transport.framing`. Each message is encoded into its frames once, at
:meth:`Link.send` (the sender's one copy of array data), and those frames are kept until
acknowledged, so resending costs no re-encoding and later changes to the caller's arrays do not
affect what is sent.

Acknowledgements are cumulative. Every MSG frame carries one (the receive position when the
message was sent), so a party that answers soon owes no separate ACK frame; what the outgoing
data does not cover is sent as one ACK frame at the end of a :meth:`Link.data_to_send` batch.
A driver may delay that standalone ACK (``data_to_send(flush_ack=False)`` while
:attr:`Link.ack_owed`, then a flushing call after a short timer) so that data flowing back soon
carries it instead; the Link still acknowledges at once after :data:`EAGER_ACK_BYTES` of
delivered messages, so a sender's window never waits on that timer for bulk data.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from mpc.errors import ConfigError, FrameError, HandshakeFailed
from transport.framing import (
    MAX_NAME_CHARS,
    PROTOCOL_VERSION,
    AckHeader,
    ChunkHeader,
    Frame,
    FrameLimits,
    HelloHeader,
    MessageAssembler,
    MessageEncoder,
    MsgHeader,
    decode_frame,
    decode_whole_message,
    encode_ack,
    encode_hello,
)

__all__ = ["EAGER_ACK_BYTES", "Delivered", "Link"]

_INSTANCE_BYTES = 16

EAGER_ACK_BYTES = 1 << 20
"""Wire bytes of delivered, unacknowledged messages above which an ACK is never delayed."""


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


@dataclass(frozen=True)
class _Outgoing:
    frames: tuple[Frame, ...]
    nbytes: int
    ack: int  # the acknowledgement piggybacked on the first frame


class Link:
    """Reliable, ordered, de-duplicated message stream to one peer.

    Args:
        local: this party's name.
        peer: the peer's name.
        limits: size limits for frames and messages.
        frame_bytes: size of the frames this link sends (at most ``limits.max_frame_bytes``,
            the default); smaller frames keep the driver's copies of a frame in cache.

    Raises:
        ConfigError: a name is not a str of 1 to 256 characters, both names are equal, or
            ``frame_bytes`` is not an int in [:data:`~transport.framing.MIN_FRAME_BYTES`, 2**31].
    """

    def __init__(
        self,
        local: str,
        peer: str,
        limits: FrameLimits | None = None,
        *,
        frame_bytes: int | None = None,
    ) -> None:
        for what, name in (("local", local), ("peer", peer)):
            if type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS:
                raise ConfigError(f"{what} name must be a str of 1 to {MAX_NAME_CHARS} characters")
        if local == peer:
            raise ConfigError("a link needs two distinct parties")
        if limits is not None and not isinstance(limits, FrameLimits):
            raise ConfigError("limits must be a FrameLimits")
        self.local = local
        self.peer = peer
        self.limits = limits or FrameLimits()
        self._encoder = MessageEncoder(self.limits, frame_bytes=frame_bytes)  # checks frame_bytes
        self._instance = os.urandom(_INSTANCE_BYTES)
        self._peer_instance: bytes | None = None
        self._established = False
        # Sending side.
        self._next_send_seq = 0
        self._acked = 0
        self._unacked: dict[int, _Outgoing] = {}
        self._unacked_bytes = 0
        self._to_send: deque[int] = deque()
        # Receiving side.
        self._next_expected = 0
        self._assembler: MessageAssembler | None = None
        self._assembler_nbytes = 0
        self._ahead: dict[int, tuple[Delivered, int]] = {}  # seq -> (message, declared size)
        self._ahead_bytes = 0
        self._ack_sent = 0  # highest acknowledgement handed out on this connection
        self._ack_remind = False  # the peer resent a delivered message: acknowledge again
        self._unacked_in_bytes = 0  # wire bytes delivered since the last acknowledgement

    # ----------------------------------------------------------------------- sending

    def send(self, session_id: str, tag: str, payload: Any) -> int:
        """Queue a message; returns its size on the wire in bytes.

        The payload is encoded (and its arrays copied into frames, or, if read-only and the
        message takes several frames, referenced by them until acknowledged) now.

        Raises:
            FrameError: the payload cannot be encoded (unsupported type or dtype), or the
                session id or tag is not a str of 1 to 256 characters.
            FrameTooLarge: the encoded message exceeds ``limits.max_message_bytes``.
        """
        seq = self._next_send_seq
        ack = self._next_expected
        frames = self._encoder.message(seq, session_id, tag, payload, ack=ack)
        nbytes = len(frames[0]) if len(frames) == 1 else sum(len(f) for f in frames)
        message = _Outgoing(tuple(frames), nbytes, ack)
        self._next_send_seq += 1
        self._unacked[seq] = message
        self._unacked_bytes += message.nbytes
        if self._established:
            self._to_send.append(seq)
        return message.nbytes

    def data_to_send(self, *, flush_ack: bool = True) -> list[Frame]:
        """Frames to write now, in order (chunks of queued messages, then maybe an ACK).

        Every message's frames are returned together, in sequence order. The MSG frames carry
        acknowledgements; if they do not acknowledge everything delivered, one ACK frame ends
        the batch, unless ``flush_ack`` is false and less than :data:`EAGER_ACK_BYTES` is owed
        (the ACK stays owed, see :attr:`ack_owed`). Empty while no connection is established.
        """
        if not self._established:
            return []
        out: list[Frame] = []
        while self._to_send:
            message = self._unacked.get(self._to_send.popleft())
            if message is not None:  # else acknowledged while queued
                out.extend(message.frames)
                if message.ack >= self._ack_sent:
                    self._ack_sent = message.ack
                    if message.ack == self._next_expected:
                        self._ack_remind = False
                        self._unacked_in_bytes = 0
        if (flush_ack or self._unacked_in_bytes >= EAGER_ACK_BYTES) and self.ack_owed:
            out.append(encode_ack(self._next_expected))
            self._ack_sent = self._next_expected
            self._ack_remind = False
            self._unacked_in_bytes = 0
        return out

    @property
    def ack_owed(self) -> bool:
        """Whether the peer has not been told everything delivered (an ACK is due)."""
        return self._established and (self._ack_remind or self._next_expected > self._ack_sent)

    @property
    def ack_urgent(self) -> bool:
        """Whether the owed ACK covers :data:`EAGER_ACK_BYTES` or more (it is never delayed)."""
        return self._unacked_in_bytes >= EAGER_ACK_BYTES and self.ack_owed

    def _check_ack(self, next_seq: int) -> None:
        if next_seq > self._next_send_seq:
            raise FrameError(
                f"ack of message {next_seq - 1}, but only {self._next_send_seq} were sent"
            )

    def _free_below(self, next_seq: int) -> None:
        # One iteration per freed message.
        for seq in range(self._acked, next_seq):
            message = self._unacked.pop(seq, None)
            if message is not None:
                self._unacked_bytes -= message.nbytes
        self._acked = max(self._acked, next_seq)

    # ----------------------------------------------------------------------- receiving

    def receive_frame(self, frame: bytes | bytearray | memoryview) -> list[Delivered]:
        """Process one received frame; returns messages that became deliverable.

        Frames of messages already delivered (replays, resends) and exact repeats of a chunk
        or of the first frame of the message being reassembled are ignored.

        Raises:
            FrameError: the frame is malformed or out of place (a chunk that leaves a gap in
                or disagrees with the message being reassembled, a chunk without its message's
                first frame, a new message before the current one is complete, a hello outside
                the handshake, an ack of a message never sent), or its message is too far ahead
                of a missing one. The link's state is unchanged.
            FrameTooLarge: the frame or the message it belongs to is over the limit.
        """
        header, data = decode_frame(frame, self.limits)
        current = self._assembler
        if isinstance(header, AckHeader):
            self._check_ack(header.next_seq)
            self._free_below(header.next_seq)
            return []
        if isinstance(header, MsgHeader):
            ack = header.ack
            if ack is not None:
                self._check_ack(ack)
            if current is not None:
                if header == current.header or header.seq < self._next_expected:
                    if ack is not None:
                        self._free_below(ack)
                    return []  # a repeated first frame, or a stale frame of a delivered message
                raise FrameError(
                    f"message {header.seq} starts before message {current.header.seq} is complete"
                )
            discard = header.seq < self._next_expected or header.seq in self._ahead
            if not discard:
                self._check_room(header)
                if len(data) == header.total_len:  # the usual case: a whole message in one frame
                    payload = decode_whole_message(header, data, self.limits)
                    # Valid: commit.
                    if ack is not None:
                        self._free_below(ack)
                    nbytes = frame.nbytes if type(frame) is memoryview else len(frame)
                    return self._deliver(header, payload, nbytes)
            current = MessageAssembler(header, data, self.limits, discard=discard)
            # Valid: commit.
            if ack is not None:
                self._free_below(ack)
            self._assembler, self._assembler_nbytes = current, 0
        elif isinstance(header, ChunkHeader):
            if current is None or header.seq != current.header.seq:
                if header.seq < self._next_expected:
                    return []  # a stale chunk of a delivered message
                raise FrameError(f"chunk of message {header.seq} without its first frame")
            if not current.feed(header, data):
                return []  # a repeated chunk
        else:  # HelloHeader
            raise FrameError("unexpected HELLO frame outside the handshake")
        self._assembler_nbytes += memoryview(frame).nbytes
        if not current.done:
            return []
        self._assembler = None
        return self._complete(current, self._assembler_nbytes)

    def _check_room(self, header: MsgHeader) -> None:
        ahead = header.seq - self._next_expected
        if ahead == 0:
            return
        if ahead > self.limits.max_out_of_order or len(self._ahead) >= self.limits.max_out_of_order:
            raise FrameError(
                f"message {header.seq} is too far ahead of missing message {self._next_expected}"
            )
        if self._ahead_bytes + header.total_len > self.limits.max_message_bytes:
            raise FrameError("out-of-order buffer is full (max_message_bytes)")

    def _complete(self, assembler: MessageAssembler, nbytes: int) -> list[Delivered]:
        if assembler.discard:
            self._ack_remind = True  # the peer resent something we have: remind it
            return []
        return self._deliver(assembler.header, assembler.payload, nbytes)

    def _deliver(self, header: MsgHeader, payload: Any, nbytes: int) -> list[Delivered]:
        """Deliver a complete new message (and those buffered behind it), or buffer it."""
        message = Delivered(header.session_id, header.tag, payload, nbytes)
        if header.seq != self._next_expected:
            self._ahead[header.seq] = (message, header.total_len)
            self._ahead_bytes += header.total_len
            return []
        out = [message]
        self._next_expected += 1
        self._unacked_in_bytes += nbytes
        # One iteration per buffered message that becomes deliverable.
        while self._next_expected in self._ahead:
            out.append(self._pop_ahead(self._next_expected))
            self._unacked_in_bytes += out[-1].nbytes
            self._next_expected += 1
        return out

    def _pop_ahead(self, seq: int) -> Delivered:
        message, size = self._ahead.pop(seq)
        self._ahead_bytes -= size
        return message

    # ----------------------------------------------------------------------- connections

    def hello(self) -> bytes:
        """The first frame to send on a new connection (names and resume point)."""
        return encode_hello(
            HelloHeader(
                PROTOCOL_VERSION, self.local, self.peer, self._next_expected, self._instance
            )
        )

    def receive_hello(self, frame: bytes | bytearray | memoryview) -> None:
        """Process the peer's hello on a new connection; schedules resending unacked messages.

        Messages below the peer's resume point are acknowledged and freed; every other kept
        message is queued again, whole, in sequence order. Any partial message of the previous
        connection is discarded.

        Raises:
            HandshakeFailed: the hello is malformed, names the wrong parties, has another
                protocol version, or a resume point inconsistent with this link (the peer lost
                its state, e.g. restarted: the mesh must replace this link).
        """
        try:
            header, _ = decode_frame(frame, self.limits)
        except FrameError as exc:
            raise HandshakeFailed(f"malformed hello from {self.peer!r}: {exc}") from exc
        if not isinstance(header, HelloHeader):
            raise HandshakeFailed(f"first frame from {self.peer!r} is not a hello")
        if header.version != PROTOCOL_VERSION:
            raise HandshakeFailed(
                f"peer speaks protocol version {header.version}, not {PROTOCOL_VERSION}"
            )
        if header.sender != self.peer or header.receiver != self.local:
            raise HandshakeFailed(
                f"hello from {header.sender!r} to {header.receiver!r} on the link "
                f"{self.local!r} <- {self.peer!r}"
            )
        resume = header.next_expected_seq
        if resume > self._next_send_seq or resume < self._acked:
            raise HandshakeFailed(
                f"peer resumes at message {resume}, but {self._acked} were acknowledged "
                f"and {self._next_send_seq} sent (peer lost its state?)"
            )
        fresh = self._next_send_seq == 0 and self._next_expected == 0
        if self._peer_instance not in (None, header.instance) and not fresh:
            raise HandshakeFailed(f"peer {self.peer!r} restarted; this link's state is stale")
        # Valid: commit.
        self._peer_instance = header.instance
        self._free_below(resume)
        self._to_send = deque(sorted(self._unacked))
        self._drop_partial()
        self._ack_sent = self._next_expected  # our hello told the peer where we resume
        self._ack_remind = False
        self._unacked_in_bytes = 0
        self._established = True

    def connection_lost(self) -> None:
        """Forget partial frames of the dead connection; unacknowledged messages are kept.

        Queued frames not yet handed out are dropped (their messages are resent whole after the
        next hello exchange), as are the partial message being reassembled and messages
        buffered ahead of a gap (the peer resends them too).
        """
        self._established = False
        self._to_send.clear()
        self._drop_partial()
        self._ack_remind = False

    def _drop_partial(self) -> None:
        self._assembler = None
        self._assembler_nbytes = 0
        self._ahead.clear()
        self._ahead_bytes = 0

    # ----------------------------------------------------------------------- introspection

    @property
    def unacked_bytes(self) -> int:
        """Wire bytes of messages sent but not yet acknowledged."""
        return self._unacked_bytes

    @property
    def pending_messages(self) -> int:
        """Number of messages sent but not yet acknowledged."""
        return len(self._unacked)

    @property
    def next_expected(self) -> int:
        """Sequence number of the next message to deliver (= messages delivered so far)."""
        return self._next_expected

    @property
    def next_send_seq(self) -> int:
        """Sequence number the next sent message will get (= messages sent so far)."""
        return self._next_send_seq

    @property
    def buffered_messages(self) -> int:
        """Complete messages held back until a missing earlier one arrives."""
        return len(self._ahead)

    @property
    def established(self) -> bool:
        """Whether a hello was received on the current connection."""
        return self._established

"""Deterministic fault injection for mesh tests (memory mesh and websocket mesh alike).

A :class:`FaultPlan` is a frozen list of :class:`Fault` rules. A mesh driver asks a
:class:`FaultInjector` (one per node, made by :meth:`FaultPlan.injector`) what to do with every
frame the node is about to write to a peer, and performs the returned actions in order:

- :class:`Write` ``(frame)``: write these bytes to the peer now;
- :class:`Sleep` ``(seconds)``: wait before performing the next action (the link stays in
  order, like a slow TCP connection);
- :class:`Disconnect` ``()``: tear the connection down (the frame is not written; both Links
  get ``connection_lost``; the mesh reconnects and the Link resends what is unacknowledged).

What each fault kind does to a matching frame:

===========  ============================================================================
drop         the frame is not written. On a live connection a Link never resends it, so
             the message it carried is lost: the receiver's ``recv`` times out with
             ``PeerUnavailable``. (Only a reconnect makes a Link resend.)
delay        ``Sleep(delay)`` then the frame.
duplicate    the frame is written twice (the receiving Link drops the copy).
reorder      the frame is held back and written right after the next frame on the same
             directed link; if no frame follows, it is never written (like a drop). Whole
             messages may arrive in any order; chunks of one message out of order make the
             receiver drop the connection, and the message is resent after the reconnect.
             Whole messages are reordered by the Link; swapping two frames *of one
             multi-frame message* breaks that message (``FrameError`` at the receiver).
tamper       the byte at ``offset`` (negative: from the end) is XORed with ``mask``. If the
             receiver's Link detects it (``FrameError``), the receiver drops the connection
             and the sender resends the message intact after the reconnect; a byte inside
             raw array data is not detected by framing and delivers a modified payload
             (integrity against a malicious party is the MAC check's job).
disconnect   ``Disconnect()``: the connection is torn down before the frame is written.
===========  ============================================================================

Which frames count. The injector reads each frame's kind (:func:`transport.framing.decode_frame`):
HELLO frames are never faulted nor counted (the handshake is tested separately). A fault with
``frames="data"`` (the default) sees only the frames that carry messages (MSG and CHUNK), so its
window does not depend on when acknowledgements happen to be coalesced; ``frames="ack"`` sees
only ACK frames (a dropped ACK is repaired by the next cumulative one, or by the resume point of
the next hello) and ``frames="all"`` both. A frame that is not a valid frame counts as data.

Matching is deterministic: the frames of each scope are numbered ``0, 1, 2, ...`` per directed
link ``(src, dst)`` in the order they are submitted (over all connections of that pair), and a
fault matches frame ``i`` of every directed link its ``src``/``dst`` filters accept when
``after <= i < after + count``. When several faults match a frame, the first one in the plan
applies. No randomness is involved, so a failing test replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Union

from mpc.errors import ConfigError, FrameError
from transport.framing import AckHeader, FrameLimits, HelloHeader, decode_frame

__all__ = [
    "FAULT_KINDS",
    "FaultKind",
    "FrameScope",
    "Fault",
    "FaultPlan",
    "FaultInjector",
    "Write",
    "Sleep",
    "Disconnect",
    "Action",
    "flip_byte",
    "frame_kind",
]

FaultKind = Literal["drop", "delay", "duplicate", "reorder", "tamper", "disconnect"]
FAULT_KINDS: tuple[str, ...] = ("drop", "delay", "duplicate", "reorder", "tamper", "disconnect")
FrameScope = Literal["data", "ack", "all"]

# Limits for classifying frames this node itself wrote (sizes were checked when encoding).
_PEEK_LIMITS = FrameLimits(max_frame_bytes=1 << 31, max_message_bytes=1 << 62)


@dataclass(frozen=True)
class Fault:
    """One fault rule.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        src: name of the writing node, or ``None`` for any.
        dst: name of the peer written to, or ``None`` for any.
        after: number of frames on the directed link to let through first.
        count: number of consecutive frames the fault applies to (per directed link).
        delay: seconds of delay (``delay`` kind only).
        offset: index of the byte to flip (``tamper`` only); negative counts from the end.
        mask: XOR mask applied to that byte (``tamper`` only), 1..255.
        frames: which frames the fault counts and hits: ``"data"`` (MSG and CHUNK frames),
            ``"ack"`` (ACK frames) or ``"all"`` (both).
    """

    kind: FaultKind
    src: str | None = None
    dst: str | None = None
    after: int = 0
    count: int = 1
    delay: float = 0.0
    offset: int = -1
    mask: int = 0xFF
    frames: FrameScope = "data"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.after < 0 or self.count < 1:
            raise ConfigError("fault window needs after >= 0 and count >= 1")
        if self.kind == "delay" and not self.delay > 0:
            raise ConfigError("a delay fault needs delay > 0")
        if not 1 <= self.mask <= 0xFF:
            raise ConfigError("tamper mask must be in 1..255")
        if self.frames not in ("data", "ack", "all"):
            raise ConfigError("frames must be 'data', 'ack' or 'all'")

    def matches(self, src: str, dst: str, index: int) -> bool:
        """Whether this fault applies to frame number ``index`` (in its scope) on ``src -> dst``."""
        return (
            (self.src is None or self.src == src)
            and (self.dst is None or self.dst == dst)
            and self.after <= index < self.after + self.count
        )


@dataclass(frozen=True)
class Write:
    """Write ``frame`` to the peer."""

    frame: bytes


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next action."""

    seconds: float


@dataclass(frozen=True)
class Disconnect:
    """Tear the connection down (the triggering frame is not written)."""


Action = Union[Write, Sleep, Disconnect]


@dataclass(frozen=True)
class FaultPlan:
    """A frozen, ordered set of fault rules.

    Args:
        faults: the rules; the first matching rule applies to a frame.
    """

    faults: tuple[Fault, ...] = ()

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        rules = tuple(faults)
        if any(not isinstance(f, Fault) for f in rules):
            raise ConfigError("a FaultPlan holds Fault rules only")
        object.__setattr__(self, "faults", rules)

    def injector(self) -> FaultInjector:
        """A fresh stateful injector following this plan (one per node, or per mesh)."""
        return FaultInjector(self)


def frame_kind(frame: bytes | bytearray | memoryview) -> Literal["data", "ack", "hello"]:
    """Classify a frame for fault matching (anything unparsable counts as data)."""
    try:
        header, _ = decode_frame(frame, _PEEK_LIMITS)
    except FrameError:
        return "data"
    if isinstance(header, HelloHeader):
        return "hello"
    if isinstance(header, AckHeader):
        return "ack"
    return "data"


def flip_byte(frame: bytes, offset: int, mask: int) -> bytes:
    """``frame`` with the byte at ``offset`` XORed with ``mask`` (unchanged if out of range)."""
    if not -len(frame) <= offset < len(frame):
        return frame
    out = bytearray(frame)
    out[offset] ^= mask
    return bytes(out)


class FaultInjector:
    """The mutable state of a :class:`FaultPlan` applied to frames: counters and held frames.

    Args:
        plan: the rules to apply.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self._plan = plan
        self._index: dict[tuple[str, str, FrameScope], int] = {}
        self._held: dict[tuple[str, str], bytes] = {}
        self._fired: dict[str, int] = {}

    @property
    def plan(self) -> FaultPlan:
        """The rules applied."""
        return self._plan

    def on_frame(self, src: str, dst: str, frame: bytes | bytearray | memoryview) -> list[Action]:
        """The actions to perform for a frame ``src`` is about to write to ``dst``.

        Args:
            src: the writing node's name.
            dst: the peer's name.
            frame: the frame's bytes.

        Returns:
            Actions to perform in order (an empty list drops the frame).
        """
        link = (src, dst)
        data = bytes(frame)
        kind = frame_kind(data)
        if kind == "hello":
            return [Write(data)]
        index = {"all": self._count(src, dst, "all"), kind: self._count(src, dst, kind)}
        fault = next(
            (
                f
                for f in self._plan.faults
                if f.frames in index and f.matches(src, dst, index[f.frames])
            ),
            None,
        )
        actions: list[Action]
        if fault is None:
            actions = [Write(data)]
        else:
            self._fired[fault.kind] = self._fired.get(fault.kind, 0) + 1
            actions = self._apply(fault, link, data)
        if fault is None or fault.kind != "reorder":
            held = self._held.pop(link, None)
            if held is not None and not any(isinstance(a, Disconnect) for a in actions):
                actions.append(Write(held))
        return actions

    def connection_lost(self, src: str, dst: str) -> None:
        """Forget a frame held back on ``src -> dst``: it was lost with the connection."""
        self._held.pop((src, dst), None)

    def fired(self) -> dict[str, int]:
        """How many frames each fault kind has applied to so far."""
        return dict(self._fired)

    def frames_seen(self, src: str, dst: str, frames: FrameScope = "data") -> int:
        """Frames of scope ``frames`` submitted so far on the directed link ``src -> dst``."""
        return self._index.get((src, dst, frames), 0)

    def _count(self, src: str, dst: str, scope: FrameScope) -> int:
        key = (src, dst, scope)
        index = self._index.get(key, 0)
        self._index[key] = index + 1
        return index

    def _apply(self, fault: Fault, link: tuple[str, str], data: bytes) -> list[Action]:
        kind = fault.kind
        if kind == "drop":
            return []
        if kind == "delay":
            return [Sleep(fault.delay), Write(data)]
        if kind == "duplicate":
            return [Write(data), Write(data)]
        if kind == "tamper":
            return [Write(flip_byte(data, fault.offset, fault.mask))]
        if kind == "disconnect":
            self._held.pop(link, None)
            return [Disconnect()]
        # reorder: hold this frame; a frame already held is released first so none is lost.
        actions: list[Action] = []
        previous = self._held.pop(link, None)
        if previous is not None:
            actions.append(Write(previous))
        self._held[link] = data
        return actions

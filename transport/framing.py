"""Sans-I/O framing: how a tagged payload becomes websocket frames, and back.

Threat model: the peer is authenticated (TLS) but may be malicious or buggy, so every received
byte is untrusted. Decoding never unpickles, never trusts a size it has not checked against
:class:`FrameLimits` before allocating, and fails only with :class:`~mpc.errors.FrameError`
(:class:`~mpc.errors.FrameTooLarge` for sizes). Integrity and confidentiality of the bytes are
TLS's job; a flipped bit inside raw array data is not detected here (SPDZ MACs catch tampered
shares).

Wire format. A *frame* is one binary websocket message::

    frame  := 0xCE  H  header  data      H: uint32 big-endian, the length of ``header``
    header := msgpack array whose first element is the frame kind

(``0xCE H`` is msgpack's encoding of the integer ``H``, so a frame is a msgpack stream of two
objects followed by raw data; the length prefix lets the receiver find ``data`` without copying.)

====== ============================================== ==========================================
kind   header                                         data
====== ============================================== ==========================================
MSG    ``[1, seq, session_id, tag, body_len, raw_len,  the first ``length`` bytes of the message
       length]`` or the same with an 8th field
       ``ack``
CHUNK  ``[2, seq, offset, length, total_len]``         message bytes ``[offset, offset+length)``
ACK    ``[3, next_seq]``                               none
HELLO  ``[4, {version, from, to, next_expected_seq,    none
       instance}]``
====== ============================================== ==========================================

The optional ``ack`` of a MSG header is a piggybacked cumulative acknowledgement, with the
meaning of an ACK frame's ``next_seq`` (every message the sender of the MSG frame received with
``seq < ack`` was delivered), so a party that sends data back soon needs no separate ACK frame.

A *message* is the byte string ``body || raw`` (``total_len = body_len + raw_len``). ``body`` is
the msgpack encoding of the payload in which every numpy array is an ext of type
:data:`ARRAY_EXT` holding ``dtype code (u8), ndim (u8), shape (ndim x u64 LE), nbytes (u64 LE)``;
``raw`` is the concatenation of the arrays' bytes (C order, little-endian) in the order the arrays
occur in ``body``. Arrays thus travel out of band: the sender copies each byte once (into the
frame that carries it) and the receiver copies it once (from the frame into an array allocated
from the checked header). A message that fits in ``max_frame_bytes`` is one MSG frame; a larger
one is a MSG frame followed by CHUNK frames, in order.

Read-only arrays of a message that takes several frames are not copied at all: its frames are
:class:`FramePieces`, each its header and views of the arrays' bytes, which the transport writes
in order. The sender hands such arrays over (see :meth:`mpc.contracts.Channel.send`): an OT
extension's matrices and corrections are sent once and never written again, and copying them
(tens of megabytes per call) was a pass over memory per byte sent.
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import msgpack
import numpy as np

from mpc.checks import check_int
from mpc.errors import FrameError, FrameTooLarge

__all__ = [
    "ARRAY_EXT",
    "MAX_NAME_CHARS",
    "MIN_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "AckHeader",
    "ChunkHeader",
    "EncodedPayload",
    "Frame",
    "FramePieces",
    "FrameHeader",
    "FrameLimits",
    "HelloHeader",
    "MessageAssembler",
    "MessageEncoder",
    "MsgHeader",
    "decode_frame",
    "decode_message",
    "decode_payload",
    "decode_whole_message",
    "encode_ack",
    "encode_hello",
    "encode_message",
    "encode_payload",
]

ARRAY_EXT = 1
"""The msgpack ext type code of a numpy array (the only ext type accepted)."""

MAX_NAME_CHARS = 256
"""Longest party name, session id or tag, in characters."""

MIN_FRAME_BYTES = 4096
"""Smallest allowed ``max_frame_bytes`` (a MSG header with maximal names must fit)."""

PROTOCOL_VERSION = 1
"""Version carried in the hello; peers with another version are refused."""

KIND_MSG = 1
KIND_CHUNK = 2
KIND_ACK = 3
KIND_HELLO = 4

_PREFIX_LEN = 5
_PREFIX_BYTE = 0xCE
_PREFIX = bytes((_PREFIX_BYTE,))
_MAX_HEADER_BYTES = 8192
_MAX_SEQ = (1 << 63) - 1
_INSTANCE_BYTES = 16
_MAX_MSGPACK_DEPTH = 512

# Allow-list of array dtypes: wire code -> little-endian dtype.
_DTYPE_BY_CODE: dict[int, np.dtype[Any]] = {
    1: np.dtype("?"),
    2: np.dtype("<i1"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
    6: np.dtype("<u1"),
    7: np.dtype("<u2"),
    8: np.dtype("<u4"),
    9: np.dtype("<u8"),
    10: np.dtype("<f4"),
    11: np.dtype("<f8"),
}
_CODE_BY_KIND_SIZE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _DTYPE_BY_CODE.items()
}
_CODE_BY_DTYPE: dict[np.dtype[Any], int] = {dt: code for code, dt in _DTYPE_BY_CODE.items()}
_ARRAY_META = tuple(struct.Struct(f"<BB{n}QQ") for n in range(33))
"""Packers of an array ext's metadata by ndim (``FrameLimits.max_ndim`` is at most 32)."""
_U64S = tuple(struct.Struct(f"<{n}Q") for n in range(34))
"""Unpackers of ``n`` little-endian uint64 (an array ext's shape and byte length)."""
_DECODED_LEAVES = (type(None), bool, int, float, str, bytes, np.ndarray)
_ENCODED_LEAVES = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    return check_int(value, name, lo=low, hi=high, message=f"{name} must be an int in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class FrameLimits:
    """Size limits, checked before allocation.

    Both peers should use the same limits; a receiver refuses what exceeds its own. The driver
    must let its websocket accept messages of ``max_frame_bytes`` (``websockets``' ``max_size``
    defaults to 1 MiB).

    Attributes:
        max_frame_bytes: largest single frame (one websocket message); messages are chunked
            below it.
        max_message_bytes: largest reassembled message (msgpack body plus array bytes).
        max_body_bytes: largest msgpack body (the payload without its array bytes). Bulk data
            belongs in arrays; decoding a body builds Python objects, which can take several
            times its size in memory, so it has its own, smaller bound.
        max_depth: deepest nesting of lists and dicts in a payload.
        max_ndim: most dimensions of an array.
        max_out_of_order: most complete messages a link buffers ahead of a missing one.

    Raises:
        ConfigError: a limit is not an int in its allowed range.
    """

    max_frame_bytes: int = 4 << 20
    max_message_bytes: int = 1 << 30
    max_body_bytes: int = 64 << 20
    max_depth: int = 32
    max_ndim: int = 32
    max_out_of_order: int = 256

    def __post_init__(self) -> None:
        _check_int("max_frame_bytes", self.max_frame_bytes, MIN_FRAME_BYTES, 1 << 31)
        _check_int("max_message_bytes", self.max_message_bytes, 1, 1 << 62)
        _check_int("max_body_bytes", self.max_body_bytes, 1, 1 << 62)
        _check_int("max_depth", self.max_depth, 1, _MAX_MSGPACK_DEPTH)
        _check_int("max_ndim", self.max_ndim, 0, 32)
        _check_int("max_out_of_order", self.max_out_of_order, 0, 1 << 20)


# --------------------------------------------------------------------------- frame headers


@dataclass(frozen=True)
class MsgHeader:
    """Header of the first frame of a message.

    ``ack``, if not ``None``, is a piggybacked cumulative acknowledgement (see
    :class:`AckHeader`); it does not take part in comparisons (a resent first frame is the same
    frame whatever it acknowledges).
    """

    seq: int
    session_id: str
    tag: str
    body_len: int
    raw_len: int
    ack: int | None = field(default=None, compare=False)

    @property
    def total_len(self) -> int:
        """Length of the message (body plus array bytes)."""
        return self.body_len + self.raw_len


@dataclass(frozen=True)
class ChunkHeader:
    """Header of a continuation frame of message ``seq``."""

    seq: int
    offset: int
    total_len: int


@dataclass(frozen=True)
class AckHeader:
    """Cumulative acknowledgement: every message with ``seq < next_seq`` was delivered."""

    next_seq: int


@dataclass(frozen=True)
class HelloHeader:
    """First frame on a new connection.

    Attributes:
        version: :data:`PROTOCOL_VERSION` of the sender.
        sender: the sender's party name.
        receiver: the party name the sender believes it talks to.
        next_expected_seq: the first sequence number the sender has not yet delivered.
        instance: random bytes identifying the sender's link object (a restart changes them).
    """

    version: int
    sender: str
    receiver: str
    next_expected_seq: int
    instance: bytes


FrameHeader = Union[MsgHeader, ChunkHeader, AckHeader, HelloHeader]


def _frame(header: list[Any], *data: bytes | memoryview) -> bytes:
    packed = msgpack.packb(header, use_bin_type=True)
    return b"".join((bytes((_PREFIX_BYTE,)), len(packed).to_bytes(4, "big"), packed, *data))


def _check_name(what: str, value: Any, error: type[Exception] = FrameError) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME_CHARS and value.isascii():
        return value  # the usual case (ASCII cannot hold a lone surrogate)
    if type(value) is not str:
        raise error(f"{what} must be a str, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_NAME_CHARS:
        raise error(f"{what} must have 1 to {MAX_NAME_CHARS} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{what} is not valid unicode (lone surrogate)") from exc
    return value


def _check_seq(what: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_SEQ:
        raise FrameError(f"{what} must be an int in [0, 2**63), got {value!r}")
    return value


def encode_ack(next_seq: int) -> bytes:
    """The ACK frame acknowledging every message below ``next_seq``."""
    return _frame([KIND_ACK, _check_seq("next_seq", next_seq)])


def encode_hello(hello: HelloHeader) -> bytes:
    """The HELLO frame carrying ``hello``."""
    return _frame(
        [
            KIND_HELLO,
            {
                "version": hello.version,
                "from": _check_name("sender", hello.sender),
                "to": _check_name("receiver", hello.receiver),
                "next_expected_seq": _check_seq("next_expected_seq", hello.next_expected_seq),
                "instance": bytes(hello.instance),
            },
        ]
    )


def _as_byte_view(frame: Any) -> memoryview:
    if type(frame) is memoryview and frame.format == "B" and frame.ndim == 1:
        return frame  # the usual case (a view of the driver's receive buffer)
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise FrameError(f"a frame must be bytes-like, got {type(frame).__name__}")
    view = memoryview(frame)
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise FrameError("a frame must be a contiguous buffer")
        view = view.cast("B")
    return view


def _reject_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"unexpected msgpack ext type {code} in a frame header")


def decode_frame(
    frame: bytes | bytearray | memoryview, limits: FrameLimits
) -> tuple[FrameHeader, memoryview]:
    """Split a frame into its validated header and its data (a view, not a copy).

    Checks the frame size against ``limits`` first, then the header's structure, types and the
    consistency of the data length with the header.

    Raises:
        FrameTooLarge: the frame, or the message its header declares, is over the limits.
        FrameError: anything else that is not a well-formed frame.
    """
    view = _as_byte_view(frame)
    size = view.nbytes
    if size > limits.max_frame_bytes:
        raise FrameTooLarge(
            f"frame of {size} bytes exceeds max_frame_bytes={limits.max_frame_bytes}"
        )
    if size < _PREFIX_LEN or view[0] != _PREFIX_BYTE:
        raise FrameError("not a frame: missing the msgpack uint32 header length prefix")
    header_len = int.from_bytes(view[1:_PREFIX_LEN], "big")
    if header_len > _MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {header_len} bytes is over {_MAX_HEADER_BYTES}")
    if _PREFIX_LEN + header_len > size:
        raise FrameError("truncated frame: header length exceeds the frame")
    try:
        fields = msgpack.unpackb(
            view[_PREFIX_LEN : _PREFIX_LEN + header_len],
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
        )
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise FrameError(f"frame header is not valid msgpack ({type(exc).__name__})") from exc
    data = view[_PREFIX_LEN + header_len :]
    if type(fields) is not list or not fields or type(fields[0]) is not int:
        raise FrameError("frame header must be a msgpack array starting with the frame kind")
    kind = fields[0]
    header: FrameHeader
    if kind == KIND_MSG:
        header = _parse_msg(fields, len(data), limits)
    elif kind == KIND_CHUNK:
        header = _parse_chunk(fields, len(data), limits)
    elif kind == KIND_ACK:
        if len(fields) != 2:
            raise FrameError("ACK header must have 2 fields")
        header = AckHeader(_check_seq("ack next_seq", fields[1]))
    elif kind == KIND_HELLO:
        header = _parse_hello(fields)
    else:
        raise FrameError(f"unknown frame kind {kind}")
    if kind in (KIND_ACK, KIND_HELLO) and len(data):
        raise FrameError(f"trailing {len(data)} bytes after an ACK or HELLO frame header")
    return header, data


def _check_message_size(total: int, limits: FrameLimits, body_len: int = 0) -> None:
    if total > limits.max_message_bytes:
        raise FrameTooLarge(
            f"message of {total} bytes exceeds max_message_bytes={limits.max_message_bytes}"
        )
    if body_len > limits.max_body_bytes:
        raise FrameTooLarge(
            f"message body of {body_len} bytes exceeds max_body_bytes={limits.max_body_bytes}"
        )


def _check_data_len(declared: Any, actual: int) -> None:
    if _check_seq("data length", declared) != actual:
        raise FrameError(
            f"frame declares {declared} data bytes but carries {actual} (truncated or padded)"
        )


def _parse_msg(fields: list[Any], data_len: int, limits: FrameLimits) -> MsgHeader:
    if len(fields) == 8:  # the usual case: accept it in one test (else the checks below say why)
        _, seq, session_id, tag, body_len, raw_len, declared, ack = fields
        if (
            type(seq) is int
            and type(body_len) is int
            and type(raw_len) is int
            and type(ack) is int
            and 0 <= seq <= _MAX_SEQ
            and 0 <= ack <= _MAX_SEQ
            and 0 < body_len <= limits.max_body_bytes
            and 0 <= raw_len
            and body_len + raw_len <= limits.max_message_bytes
            and type(declared) is int
            and declared == data_len
            and 0 < data_len <= body_len + raw_len
            # Names decoded from msgpack are valid UTF-8: only type and length to check.
            and type(session_id) is str
            and 0 < len(session_id) <= MAX_NAME_CHARS
            and type(tag) is str
            and 0 < len(tag) <= MAX_NAME_CHARS
        ):
            return MsgHeader(seq, session_id, tag, body_len, raw_len, ack)
    if len(fields) == 8:
        ack: int | None = _check_seq("MSG ack", fields[7])
    elif len(fields) == 7:
        ack = None
    else:
        raise FrameError("MSG header must have 7 or 8 fields")
    _, seq, session_id, tag, body_len, raw_len, declared = fields[:7]
    header = MsgHeader(
        _check_seq("seq", seq),
        _check_name("session_id", session_id),
        _check_name("tag", tag),
        _check_seq("body_len", body_len),
        _check_seq("raw_len", raw_len),
        ack,
    )
    if header.body_len == 0:
        raise FrameError("MSG header declares an empty body")
    _check_message_size(header.total_len, limits, header.body_len)
    _check_data_len(declared, data_len)
    if not 0 < data_len <= header.total_len:
        raise FrameError(f"MSG frame carries {data_len} bytes of a {header.total_len}-byte message")
    return header


def _parse_chunk(fields: list[Any], data_len: int, limits: FrameLimits) -> ChunkHeader:
    if len(fields) != 5:
        raise FrameError("CHUNK header must have 5 fields")
    header = ChunkHeader(
        _check_seq("seq", fields[1]),
        _check_seq("offset", fields[2]),
        _check_seq("total_len", fields[4]),
    )
    _check_message_size(header.total_len, limits)
    _check_data_len(fields[3], data_len)
    if not 0 < data_len <= header.total_len - header.offset:
        raise FrameError(
            f"CHUNK frame carries {data_len} bytes at offset {header.offset} "
            f"of a {header.total_len}-byte message"
        )
    return header


def _parse_hello(fields: list[Any]) -> HelloHeader:
    if len(fields) != 2 or type(fields[1]) is not dict:
        raise FrameError("HELLO header must be [4, map]")
    body = fields[1]
    expected = {"version", "from", "to", "next_expected_seq", "instance"}
    if set(body) != expected:
        raise FrameError(f"HELLO must have exactly the fields {sorted(expected)}")
    version = body["version"]
    if type(version) is not int:
        raise FrameError("HELLO version must be an int")
    instance = body["instance"]
    if type(instance) is not bytes or len(instance) != _INSTANCE_BYTES:
        raise FrameError(f"HELLO instance must be {_INSTANCE_BYTES} bytes")
    return HelloHeader(
        version,
        _check_name("HELLO from", body["from"]),
        _check_name("HELLO to", body["to"]),
        _check_seq("HELLO next_expected_seq", body["next_expected_seq"]),
        instance,
    )


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class EncodedPayload:
    """A payload as a msgpack body plus out-of-band array buffers (views, not copies).

    Attributes:
        body: msgpack encoding of the payload, arrays as :data:`ARRAY_EXT` headers.
        buffers: the arrays' bytes in body order, as flat byte views (none for an empty array).
    """

    body: bytes
    buffers: tuple[memoryview, ...]

    @property
    def raw_len(self) -> int:
        """Total bytes of the array buffers."""
        return sum(b.nbytes for b in self.buffers)


def _walk(obj: Any, max_depth: int, leaves: tuple[type, ...]) -> None:
    """Check nesting depth, dict keys and leaf types of a payload tree (iteratively).

    This visits every element of every list and dict (a Python loop over elements): payloads
    carry bulk data in arrays, so the containers are small.
    """
    if type(obj) is np.ndarray or type(obj) in leaves:
        return  # a bare array or scalar: nothing to walk
    if type(obj) is dict:  # the usual payload: a flat dict of arrays and scalars (max_depth >= 1)
        for key, value in obj.items():
            if type(key) is not str or not (type(value) is np.ndarray or type(value) in leaves):
                break
        else:
            return
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            items: Any = node.values()
            for key in node:
                if type(key) is not str:
                    raise FrameError(f"dict keys must be str, got {type(key).__name__}")
        elif isinstance(node, (list, tuple)):
            items = node
        elif isinstance(node, (np.ndarray, np.generic)) or type(node) in leaves:
            continue
        else:
            raise FrameError(f"cannot carry a value of type {type(node).__name__}")
        if depth >= max_depth:
            raise FrameError(f"payload nested deeper than max_depth={max_depth}")
        for item in items:
            if isinstance(item, (dict, list, tuple)):
                stack.append((item, depth + 1))
            elif not (type(item) in leaves or isinstance(item, (np.ndarray, np.generic))):
                raise FrameError(f"cannot carry a value of type {type(item).__name__}")


class MessageEncoder:
    """Encodes payloads and messages, reusing its msgpack packers from one call to the next.

    :func:`encode_payload` and :func:`encode_message` build one per call; a sender of many
    messages (:class:`~transport.link.Link`) keeps one, since making the packers costs about as
    much as packing a small message. One call at a time (a call does not return control before
    it is done).

    Args:
        limits: the limits messages are checked against.
        frame_bytes: size of the frames :meth:`message` makes (by default and at most
            ``limits.max_frame_bytes``).

    Raises:
        ConfigError: ``frame_bytes`` is not an int in [:data:`MIN_FRAME_BYTES`, 2**31].
    """

    def __init__(self, limits: FrameLimits | None = None, *, frame_bytes: int | None = None) -> None:
        self.limits = limits or FrameLimits()
        self._max_frame = self.limits.max_frame_bytes
        if frame_bytes is not None:
            self._max_frame = min(
                _check_int("frame_bytes", frame_bytes, MIN_FRAME_BYTES, 1 << 31), self._max_frame
            )
        self._buffers: list[memoryview] = []
        self._raw_len = 0
        # autoreset (the default): a pack that raises leaves the packer empty for the next one.
        self._body_packer = msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)
        self._head_packer = msgpack.Packer(use_bin_type=True)

    def payload(self, payload: Any) -> tuple[bytes, list[memoryview], int]:
        """``(body, array buffers, their total length)`` of ``payload`` (see :func:`encode_payload`)."""
        limits = self.limits
        _walk(payload, limits.max_depth, _ENCODED_LEAVES)
        self._buffers, self._raw_len = [], 0
        try:
            body = self._body_packer.pack(payload)
        except FrameError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise FrameError(f"payload cannot be encoded: {exc}") from exc
        buffers, raw_len = self._buffers, self._raw_len
        self._buffers = []  # do not keep the caller's arrays alive
        _check_message_size(len(body) + raw_len, limits, len(body))
        return body, buffers, raw_len

    def _default(self, obj: Any) -> Any:
        """The msgpack ``default`` hook: moves arrays out of band."""
        if isinstance(obj, (np.ndarray, np.generic)):
            return self._array(obj)
        if isinstance(obj, dict):
            return dict(obj)
        if isinstance(obj, (list, tuple)):
            return list(obj)
        raise FrameError(f"cannot carry a value of type {type(obj).__name__}")

    def _array(self, obj: np.ndarray[Any, Any] | np.generic) -> msgpack.ExtType:
        if type(obj) is np.ndarray:  # the common case; subclasses and scalars are checked
            array = obj
        else:
            if isinstance(obj, np.ma.MaskedArray):
                raise FrameError("masked arrays cannot be carried (the mask would be lost)")
            array = np.asarray(obj)
        dtype = array.dtype
        code = _CODE_BY_DTYPE.get(dtype)  # exactly a wire dtype: the common case
        convert = code is None
        if convert:
            code = _CODE_BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
            if code is None or dtype.fields is not None:
                raise FrameError(f"array dtype {dtype} is not in the allow-list")
        ndim, shape = array.ndim, array.shape
        if ndim > self.limits.max_ndim:
            raise FrameError(f"array has {ndim} dimensions, over max_ndim={self.limits.max_ndim}")
        if ndim and max(shape) > self.limits.max_message_bytes:
            raise FrameTooLarge(f"array dimension of {max(shape)} is over max_message_bytes")
        if convert or not array.flags.c_contiguous:
            # Copies only a non-contiguous or big-endian array; the common case is a view.
            array = np.asarray(array, dtype=_DTYPE_BY_CODE[code], order="C")
        nbytes = array.nbytes
        if nbytes:  # empty arrays take no bytes (and memoryview's cast refuses them)
            self._buffers.append(memoryview(array).cast("B"))
            self._raw_len += nbytes
        return msgpack.ExtType(ARRAY_EXT, _ARRAY_META[ndim].pack(code, ndim, *shape, nbytes))

    def message(
        self,
        seq: int,
        session_id: str,
        tag: str,
        payload: Any,
        *,
        ack: int | None = None,
    ) -> list[Frame]:
        """The frames of a message; see :func:`encode_message`.

        A message of several frames with arrays, all of them read-only, is returned as
        :class:`FramePieces` that reference the arrays' memory; otherwise every frame is one
        buffer (the arrays copied into it).
        """
        max_frame = self._max_frame
        _check_seq("seq", seq)
        if ack is not None:
            _check_seq("ack", ack)
        _check_name("session_id", session_id)
        _check_name("tag", tag)
        body, buffers, raw_len = self.payload(payload)
        body_len = len(body)
        total = body_len + raw_len
        head = [KIND_MSG, seq, session_id, tag, body_len, raw_len, total]
        if ack is not None:
            head.append(ack)
        packed = self._head_packer.pack(head)
        if _PREFIX_LEN + len(packed) + total <= max_frame:  # the usual case: one frame
            return [b"".join((_PREFIX, len(packed).to_bytes(4, "big"), packed, body, *buffers))]
        segments = [memoryview(body), *buffers]
        layout: list[tuple[bytes, int]] = []  # (prefix and header, data length) of each frame
        offset = 0
        while offset < total:  # one iteration per frame
            # The header holds the data length n; size it with an upper bound of n (a msgpack
            # int never gets shorter as it grows), then pack it with the real n.
            n = min(total - offset, max_frame)
            for _ in range(2):
                if offset == 0:
                    header = [KIND_MSG, seq, session_id, tag, body_len, raw_len, n]
                    if ack is not None:
                        header.append(ack)
                else:
                    header = [KIND_CHUNK, seq, offset, n, total]
                packed = self._head_packer.pack(header)
                n = min(n, max_frame - _PREFIX_LEN - len(packed))
            layout.append((_PREFIX + len(packed).to_bytes(4, "big") + packed, n))
            offset += n
        if len(layout) == 1:
            return [b"".join((layout[0][0], *segments))]
        if buffers and all(b.readonly for b in buffers):
            return _pieces(layout, segments)
        buffer = np.empty(sum(len(h) + n for h, n in layout), dtype=np.uint8)
        frames: list[bytes | memoryview] = []
        view = buffer.data.toreadonly()
        pos, index, inner = 0, 0, 0
        for head_bytes, n in layout:  # one iteration per frame and per segment boundary
            start = pos
            buffer[pos : pos + len(head_bytes)] = np.frombuffer(head_bytes, np.uint8)
            pos += len(head_bytes)
            while n:
                segment = segments[index]
                k = min(n, segment.nbytes - inner)
                buffer[pos : pos + k] = np.frombuffer(segment, np.uint8, k, inner)
                pos, n, inner = pos + k, n - k, inner + k
                if inner == segment.nbytes:
                    index, inner = index + 1, 0
            frames.append(view[start:pos])
        return frames


class FramePieces:
    """One frame as the pieces to write in order: its prefix and header, then views of message
    bytes (the body and read-only arrays, never copied).

    ``len()`` is the frame's size and ``bytes()`` its bytes (joined: for transports that need
    one buffer, e.g. the in-memory one, and for fault injection).
    """

    __slots__ = ("pieces", "nbytes")

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        self.pieces: tuple[bytes | memoryview, ...] = tuple(pieces)
        self.nbytes = sum(memoryview(p).nbytes for p in self.pieces)

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)


Frame = Union[bytes, memoryview, FramePieces]
"""A frame as a transport writes it (:meth:`MessageEncoder.message`)."""


def _pieces(layout: list[tuple[bytes, int]], segments: list[memoryview]) -> list[Frame]:
    """The frames of ``layout`` ((prefix and header, data length) per frame) as views of
    ``segments`` (the message bytes in order, 1-d byte views)."""
    frames: list[Frame] = []
    index, inner = 0, 0
    for head_bytes, n in layout:  # one iteration per frame and per segment boundary
        pieces: list[bytes | memoryview] = [head_bytes]
        while n:
            segment = segments[index]
            k = min(n, segment.nbytes - inner)
            pieces.append(segment[inner : inner + k])
            n, inner = n - k, inner + k
            if inner == segment.nbytes:
                index, inner = index + 1, 0
        frames.append(FramePieces(pieces))
    return frames


def encode_payload(payload: Any, limits: FrameLimits | None = None) -> EncodedPayload:
    """Encode a payload (see :mod:`mpc.contracts`) as a body plus array buffers.

    Tuples become lists and numpy scalars become 0-d arrays. No array data is copied unless an
    array is non-contiguous or big-endian.

    Raises:
        FrameError: an unsupported type or dtype, a non-str dict key, nesting over
            ``limits.max_depth``, or an int outside [-2**63, 2**64).
        FrameTooLarge: the message is over ``limits.max_message_bytes``.
    """
    body, buffers, _ = MessageEncoder(limits).payload(payload)
    return EncodedPayload(body, tuple(buffers))


class _Decoder:
    """msgpack hooks that validate dict keys and allocate arrays from checked headers.

    Given the message's raw bytes (``raw``, when they are all in hand), each array is filled
    from them as it is allocated; otherwise the arrays are returned empty, for an
    :class:`_ArraySink` to fill.
    """

    def __init__(self, raw_len: int, limits: FrameLimits, raw: memoryview | None = None) -> None:
        self.remaining = raw_len
        self.limits = limits
        self.arrays: list[np.ndarray[Any, Any]] = []
        self.raw = raw

    def pairs(self, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise FrameError("duplicate dict key in payload")
        for key in out:
            if type(key) is not str:
                raise FrameError(f"dict keys must be str, got {type(key).__name__}")
        return out

    def ext(self, code: int, data: bytes) -> np.ndarray[Any, Any]:
        if code != ARRAY_EXT:
            raise FrameError(f"unknown msgpack ext type {code}")
        if len(data) < 2:
            raise FrameError("array ext too short")
        dtype = _DTYPE_BY_CODE.get(data[0])
        if dtype is None:
            raise FrameError(f"array dtype code {data[0]} is not in the allow-list")
        ndim = data[1]
        if ndim > self.limits.max_ndim:
            raise FrameError(f"array has {ndim} dimensions, over max_ndim={self.limits.max_ndim}")
        if len(data) != 2 + 8 * ndim + 8:
            raise FrameError("array ext length does not match its ndim")
        *shape, nbytes = _U64S[ndim + 1].unpack_from(data, 2)
        if ndim and max(shape) > self.limits.max_message_bytes:
            raise FrameTooLarge("array dimension is over max_message_bytes")
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise FrameError("array shape * itemsize does not equal its byte length")
        if nbytes > self.remaining:
            raise FrameError("arrays declare more bytes than the message carries")
        try:
            array = np.empty(shape, dtype=dtype)
        except (ValueError, OverflowError) as exc:  # numpy refuses the shape (size overflow)
            raise FrameError("array shape is not allocatable") from exc
        if self.raw is not None and nbytes:
            start = len(self.raw) - self.remaining
            source = self.raw[start : start + nbytes]
            if dtype.kind == "b" and np.frombuffer(source, np.uint8).max() > 1:
                raise FrameError("bool array holds a byte other than 0 or 1")
            memoryview(array).cast("B")[:] = source
        self.remaining -= nbytes
        self.arrays.append(array)
        return array


def _decode_body(
    body: bytes | bytearray | memoryview,
    raw_len: int,
    limits: FrameLimits,
    raw: memoryview | None = None,
) -> tuple[Any, list[np.ndarray[Any, Any]]]:
    """Decode a message body; returns the payload and its arrays in raw order.

    The arrays are filled from ``raw`` (all ``raw_len`` bytes) if it is given, else unfilled.
    """
    decoder = _Decoder(raw_len, limits, raw)
    size = len(body)
    try:
        payload = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=False,
            object_pairs_hook=decoder.pairs,
            ext_hook=decoder.ext,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise FrameError(f"message body is not valid msgpack ({type(exc).__name__})") from exc
    if decoder.remaining:
        raise FrameError("message carries more array bytes than its arrays declare")
    _walk(payload, limits.max_depth, _DECODED_LEAVES)
    return payload, decoder.arrays


class _ArraySink:
    """Copies the raw part of a message into its arrays (the receiver's one copy)."""

    def __init__(self, arrays: list[np.ndarray[Any, Any]]) -> None:
        # Flat byte views of the (fresh, C-contiguous) arrays; empty arrays take no bytes.
        self._targets: list[memoryview] = []
        self._is_bool: list[bool] = []
        self._starts = [0]
        end = 0
        for a in arrays:  # one iteration per array, not per element
            if a.nbytes:
                self._targets.append(memoryview(a).cast("B"))
                self._is_bool.append(a.dtype.kind == "b")
                end += a.nbytes
                self._starts.append(end)

    def plan(self, pos: int, data: memoryview) -> list[tuple[int, int, int, int]]:
        """Segments ``(array index, dest offset, src offset, length)`` for ``data`` at ``pos``.

        Validates the bytes of bool arrays (only 0 and 1), so a failing frame writes nothing.
        """
        out: list[tuple[int, int, int, int]] = []
        index = bisect.bisect_right(self._starts, pos) - 1
        src, remaining = 0, len(data)
        # One iteration per array touched by this frame, not per element.
        while remaining:
            dest = pos + src - self._starts[index]
            n = min(remaining, len(self._targets[index]) - dest)
            if self._is_bool[index] and np.frombuffer(data, np.uint8, n, src).max() > 1:
                raise FrameError("bool array holds a byte other than 0 or 1")
            out.append((index, dest, src, n))
            src += n
            remaining -= n
            index += 1
        return out

    def write(self, data: memoryview, segments: list[tuple[int, int, int, int]]) -> None:
        for index, dest, src, n in segments:
            self._targets[index][dest : dest + n] = data[src : src + n]


class MessageAssembler:
    """Incremental decoder of one message from its MSG frame and CHUNK frames.

    Each ``feed`` is all-or-nothing: if it raises, the assembler is as it was before.

    Args:
        header: the MSG frame's header.
        data: the MSG frame's data.
        limits: the receiver's limits.
        discard: only check the frames' framing and drop the content (a duplicate message).

    Raises:
        FrameError: the data is not a valid start of the message.
    """

    def __init__(
        self, header: MsgHeader, data: memoryview, limits: FrameLimits, *, discard: bool = False
    ) -> None:
        self.header = header
        self.limits = limits
        self.discard = discard
        self.received = 0
        self._body = bytearray()
        self._payload: Any = None
        self._sink: _ArraySink | None = None
        self._absorb(data)

    @property
    def done(self) -> bool:
        """Whether every byte of the message has arrived."""
        return self.received == self.header.total_len

    @property
    def payload(self) -> Any:
        """The decoded payload (``None`` until :attr:`done`, or when discarding)."""
        return self._payload if self.done else None

    def feed(self, header: ChunkHeader, data: memoryview) -> bool:
        """Add a CHUNK frame.

        Returns:
            ``False`` if the chunk repeats bytes already received (a duplicate, ignored),
            ``True`` if it was added.

        Raises:
            FrameError: the chunk belongs to another message, disagrees on the total size,
                leaves a gap or overlaps the received bytes, or carries invalid content.
        """
        if header.seq != self.header.seq:
            raise FrameError(
                f"chunk of message {header.seq} while message {self.header.seq} is incomplete"
            )
        if header.total_len != self.header.total_len:
            raise FrameError(
                f"chunk of message {header.seq} declares {header.total_len} bytes, "
                f"its start declared {self.header.total_len}"
            )
        if header.offset + len(data) <= self.received:
            return False
        if header.offset != self.received:
            raise FrameError(
                f"chunk at offset {header.offset} of message {header.seq}, expected {self.received}"
            )
        self._absorb(data)
        return True

    def _absorb(self, data: memoryview) -> None:
        pos, end = self.received, self.received + len(data)
        if end > self.header.total_len:
            raise FrameError("frame runs past the end of its message")
        if self.discard:
            self.received = end
            return
        body_len = self.header.body_len
        rest = data
        parsed: tuple[Any, list[np.ndarray[Any, Any]]] | None = None
        try:
            if pos < body_len:
                k = min(end, body_len) - pos
                if pos == 0 and end == self.header.total_len:  # the usual case: all in one frame
                    self._payload = decode_whole_message(self.header, data, self.limits)
                    self.received = end
                    return
                if pos == 0 and k == body_len:  # parse the body in place, no copy
                    parsed = _decode_body(data[:k], self.header.raw_len, self.limits)
                else:
                    self._body += data[:k]
                    if pos + k == body_len:
                        parsed = _decode_body(self._body, self.header.raw_len, self.limits)
                rest = data[k:]
            sink = _ArraySink(parsed[1]) if parsed is not None else self._sink
            segments = sink.plan(max(pos, body_len) - body_len, rest) if len(rest) and sink else []
        except FrameError:
            del self._body[pos:]  # the body bytes received before this frame stay
            raise
        # Everything is validated: commit.
        if parsed is not None:
            self._payload, self._sink, self._body = parsed[0], sink, bytearray()
        if segments and sink is not None:
            sink.write(rest, segments)
        self.received = end


def decode_whole_message(header: MsgHeader, data: memoryview, limits: FrameLimits) -> Any:
    """The payload of a message whose MSG frame's ``data`` (from :func:`decode_frame`) holds all
    of it, arrays filled (the receiver's one copy).

    Raises:
        FrameError: ``data`` is not the whole message, or is not a valid one.
        FrameTooLarge: a size is over the limits.
    """
    if len(data) != header.total_len:
        raise FrameError(f"{len(data)} bytes of a {header.total_len}-byte message")
    body_len = header.body_len
    return _decode_body(data[:body_len], header.raw_len, limits, data[body_len:])[0]


def encode_message(
    seq: int,
    session_id: str,
    tag: str,
    payload: Any,
    limits: FrameLimits | None = None,
    *,
    ack: int | None = None,
    frame_bytes: int | None = None,
) -> list[Frame]:
    """Encode a message as its frames (each at most ``frame_bytes``, by default and at most
    ``limits.max_frame_bytes``).

    ``ack``, if given, is piggybacked on the MSG frame (a cumulative acknowledgement of the
    messages this party received, see :class:`AckHeader`).

    The frames hold a copy of the payload's bytes (the sender's one copy), so the caller may
    change its arrays afterwards. A message that fits in one frame is one ``bytes``; a larger
    one is laid out in a single buffer (allocated by numpy, which asks for huge pages, so the
    copy runs near memory bandwidth) and its frames are read-only views of it. The exception:
    a larger message whose arrays are all read-only is not copied; its frames are
    :class:`FramePieces` that view the arrays (the caller hands them over and must not change
    them until the peer has them).

    Raises:
        FrameError: bad names or an unencodable payload (see :func:`encode_payload`).
        FrameTooLarge: the message is over ``limits.max_message_bytes``.
        ConfigError: ``frame_bytes`` is out of range (see :class:`MessageEncoder`).
    """
    return MessageEncoder(limits, frame_bytes=frame_bytes).message(seq, session_id, tag, payload, ack=ack)


def decode_message(
    frames: Sequence[bytes | bytearray | memoryview], limits: FrameLimits | None = None
) -> tuple[MsgHeader, Any]:
    """Decode one whole message from its frames (a pure helper for tests and tools).

    Raises:
        FrameError: the frames are not exactly one well-formed message.
        FrameTooLarge: a size is over the limits.
    """
    limits = limits or FrameLimits()
    if not frames:
        raise FrameError("no frames")
    header, data = decode_frame(frames[0], limits)
    if not isinstance(header, MsgHeader):
        raise FrameError("a message must start with a MSG frame")
    assembler = MessageAssembler(header, data, limits)
    for frame in frames[1:]:
        chunk, data = decode_frame(frame, limits)
        if not isinstance(chunk, ChunkHeader) or assembler.done:
            raise FrameError("frames after a complete message, or a non-CHUNK frame inside one")
        if not assembler.feed(chunk, data):
            raise FrameError(f"duplicate chunk at offset {chunk.offset}")
    if not assembler.done:
        raise FrameError(f"truncated message: {assembler.received} of {header.total_len} bytes")
    return header, assembler.payload


def decode_payload(
    body: bytes | bytearray | memoryview,
    raw: bytes | bytearray | memoryview = b"",
    limits: FrameLimits | None = None,
) -> Any:
    """Decode a payload from its msgpack body and raw array bytes (inverse of ``encode_payload``).

    Raises:
        FrameError: malformed body, arrays that disagree with ``raw``, bad types or nesting.
        FrameTooLarge: a size is over the limits.
    """
    limits = limits or FrameLimits()
    body_view, raw_view = _as_byte_view(body), _as_byte_view(raw)
    _check_message_size(body_view.nbytes + raw_view.nbytes, limits, body_view.nbytes)
    return _decode_body(body_view, raw_view.nbytes, limits, raw_view)[0]

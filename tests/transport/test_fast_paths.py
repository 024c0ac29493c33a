"""The per-message fast paths of the transport accept and reject exactly what the general paths do.

Fast paths under test: a message whose MSG frame holds all of it is decoded with its arrays
filled as they are allocated (:func:`transport.framing.decode_whole_message`, taken by
:class:`~transport.link.Link` and :class:`~transport.framing.MessageAssembler`), versus the
same bytes split into frames (body parsed first, then arrays filled by chunks); the MSG header
parser's one-test accept; the flat-dict shortcut of the payload walk; the reused packers of
:class:`~transport.framing.MessageEncoder`; the mesh's own websocket frame serializer; the
router's single expiry timer per session.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from mpc.errors import FrameError, FrameTooLarge, PeerUnavailable
from mpc.prg import PRG
from tests.transport.test_framing import MALFORMED_BODIES, PLAIN_LEAVES, raw_frame, same_array
from transport.framing import (
    MAX_NAME_CHARS,
    FrameLimits,
    MessageAssembler,
    MessageEncoder,
    MsgHeader,
    decode_frame,
    decode_message,
    decode_whole_message,
    encode_message,
    encode_payload,
)
from transport.link import Delivered, Link
from transport.router import Router
from transport.websocket import _binary_frame

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
LIMITS = FrameLimits()
_MAX_SEQ = (1 << 63) - 1


def whole_frame(body: bytes, raw: bytes, seq: int = 0, ack: int | None = None) -> bytes:
    """One MSG frame carrying the whole message."""
    head = [1, seq, "s", "t", len(body), len(raw), len(body) + len(raw)]
    return raw_frame(head if ack is None else [*head, ack], body + raw)


def split_frames(body: bytes, raw: bytes, seq: int = 0) -> list[bytes]:
    """The same message as a MSG frame with just the body and one CHUNK frame per raw byte run."""
    total = len(body) + len(raw)
    frames = [raw_frame([1, seq, "s", "t", len(body), len(raw), len(body)], body)]
    for offset in range(0, len(raw), 5):
        part = raw[offset : offset + 5]
        frames.append(raw_frame([2, seq, len(body) + offset, len(part), total], part))
    return frames


def outcome(fn: Any) -> Any:
    """The value or the error type of ``fn()`` (a bare exception would not compare)."""
    try:
        return ("ok", fn())
    except (FrameError, FrameTooLarge) as exc:
        return ("error", type(exc))


# --------------------------------------------------------------------------- whole-message decode


@pytest.mark.parametrize(("body", "raw"), [b for b in MALFORMED_BODIES if b[0]], ids=lambda v: bytes(v)[:16].hex())
def test_whole_message_decode_rejects_what_the_chunked_path_rejects(body: bytes, raw: bytes) -> None:
    with pytest.raises(FrameError):
        decode_message([whole_frame(body, raw)])
    if raw:
        with pytest.raises(FrameError):
            decode_message(split_frames(body, raw))
    header, data = decode_frame(whole_frame(body, raw), LIMITS)
    assert isinstance(header, MsgHeader)
    with pytest.raises(FrameError):
        decode_whole_message(header, data, LIMITS)


def test_whole_message_decode_refuses_a_partial_message() -> None:
    body = msgpack.packb({"k": 1})
    header, data = decode_frame(split_frames(body, bytes(8))[0], LIMITS)
    assert isinstance(header, MsgHeader)
    with pytest.raises(FrameError):
        decode_whole_message(header, data, LIMITS)


def test_a_bad_whole_message_leaves_the_link_unchanged() -> None:
    a, b = Link("a", "b"), Link("b", "a")
    b.receive_hello(a.hello())
    a.send("s", "t", 0)
    body, raw = msgpack.packb({"v": msgpack.ExtType(1, bytes([1, 1]) + (3).to_bytes(8, "little") * 2)}), b"\x01\x02\x00"
    with pytest.raises(FrameError):
        b.receive_frame(whole_frame(body, raw, ack=1))
    assert (b.next_expected, b.buffered_messages) == (0, 0)
    (message,) = b.receive_frame(whole_frame(body, b"\x01\x00\x01", ack=0))
    assert message.payload["v"].tolist() == [True, False, True]


_array = st.builds(
    lambda dtype, n, seed: PRG(bytes([seed]) * 16).buffer(n * np.dtype(dtype).itemsize).view(dtype)
    if dtype != "?"
    else PRG(bytes([seed]) * 16).bits((n,)).astype(bool),
    st.sampled_from(["?", "<i1", "<u2", "<i4", "<u8", "<f8"]),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=255),
)
_flat = st.dictionaries(st.text(min_size=1, max_size=4), st.one_of(PLAIN_LEAVES, _array), max_size=5)


@FUZZ
@given(_flat)
def test_flat_payloads_decode_alike_whole_and_in_chunks(payload: dict[str, Any]) -> None:
    encoded = encode_payload(payload)
    raw = b"".join(bytes(b) for b in encoded.buffers)
    whole = decode_message([whole_frame(encoded.body, raw)])[1]
    chunked = decode_message(split_frames(encoded.body, raw))[1] if raw else whole
    assert whole.keys() == chunked.keys() == payload.keys()
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            assert same_array(value, whole[key]) and same_array(value, chunked[key])
        else:
            assert whole[key] == chunked[key] == value


# --------------------------------------------------------------------------- MSG header parser


def _reference_msg_header(fields: list[Any], data_len: int, limits: FrameLimits) -> Any:
    """The MSG header rules, spelled out plainly (the specification the parser must meet)."""

    def seq(v: Any) -> bool:
        return type(v) is int and 0 <= v <= _MAX_SEQ

    def name(v: Any) -> bool:
        return type(v) is str and 0 < len(v) <= MAX_NAME_CHARS

    if len(fields) not in (7, 8):
        return ("error", FrameError)
    _, s, sid, tag, body_len, raw_len, declared = fields[:7]
    ack = fields[7] if len(fields) == 8 else None
    if not (seq(s) and name(sid) and name(tag) and seq(body_len) and seq(raw_len)):
        return ("error", FrameError)
    if ack is not None and not seq(ack):
        return ("error", FrameError)
    if len(fields) == 8 and ack is None:
        return ("error", FrameError)
    if body_len == 0:
        return ("error", FrameError)
    if body_len + raw_len > limits.max_message_bytes or body_len > limits.max_body_bytes:
        return ("error", FrameTooLarge)
    if not seq(declared) or declared != data_len or not 0 < data_len <= body_len + raw_len:
        return ("error", FrameError)
    return ("ok", (s, sid, tag, body_len, raw_len, ack))


_count = st.one_of(
    st.integers(min_value=-2, max_value=12),
    st.sampled_from([_MAX_SEQ, _MAX_SEQ + 1, 1 << 20, (1 << 20) + 1, (1 << 64) - 1]),
    st.booleans(),
    st.none(),
    st.just(3.0),
    st.just("3"),
)
_name = st.one_of(
    st.text(min_size=0, max_size=3),
    st.just("x" * MAX_NAME_CHARS),
    st.just("x" * (MAX_NAME_CHARS + 1)),
    st.just("\u00e9t\u00e9"),
    st.binary(max_size=3),
    st.integers(min_value=-3, max_value=3),
)


@FUZZ
@given(
    st.tuples(_count, _name, _name, _count, _count, _count),
    st.one_of(st.none(), _count),
    st.integers(min_value=0, max_value=12),
    st.booleans(),
)
def test_msg_header_parser_meets_the_rules(
    head: tuple[Any, ...], ack: Any, data_len: int, with_ack: bool
) -> None:
    limits = FrameLimits(max_message_bytes=1 << 20, max_body_bytes=1 << 20)
    fields = [1, *head, ack] if with_ack else [1, *head]
    got = outcome(lambda: decode_frame(raw_frame(fields, bytes(data_len)), limits)[0])
    expected = _reference_msg_header(fields, data_len, limits)
    if got[0] == "ok":
        h = got[1]
        got = ("ok", (h.seq, h.session_id, h.tag, h.body_len, h.raw_len, h.ack))
    assert got == expected


def test_a_name_that_is_not_utf8_is_refused_in_a_header() -> None:
    header = msgpack.packb([1, 0, "s", "t", 1, 0, 1, 0])
    bad = header.replace(b"\xa1t", b"\xa1\xff")
    with pytest.raises(FrameError):
        decode_frame(b"\xce" + len(bad).to_bytes(4, "big") + bad + b"\xc0", LIMITS)
    surrogate = header.replace(b"\xa1t", b"\xa3\xed\xa0\x80")  # an encoded lone surrogate
    with pytest.raises(FrameError):
        decode_frame(b"\xce" + len(surrogate).to_bytes(4, "big") + surrogate + b"\xc0", LIMITS)


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "payload",
    [
        {1: np.zeros(2)},  # a non-str key in an otherwise flat dict
        {"k": object()},
        {"k": np.ma.masked_array([1, 2], mask=[0, 1])},
        {"k": np.zeros(2, dtype=np.complex64)},
        {"k": 1 << 64},
        {"k": "\ud800"},
    ],
    ids=["int-key", "object", "masked", "complex", "int-range", "surrogate"],
)
def test_flat_dicts_with_bad_values_are_refused(payload: Any) -> None:
    with pytest.raises(FrameError):
        encode_payload(payload)


def test_an_encoder_reused_after_a_failure_encodes_like_a_fresh_one(prg: PRG) -> None:
    encoder = MessageEncoder(LIMITS)
    payload = {"v": prg.uint64(100), "c": b"commitment", "n": [1, {"x": prg.uint64(3)}]}
    with pytest.raises(FrameError):
        encoder.message(0, "s", "t", [1, 2, object()])
    with pytest.raises(FrameError):
        encoder.message(0, "s", "\ud800", payload)
    assert encoder.message(0, "s", "t", payload, ack=4) == encode_message(0, "s", "t", payload, ack=4)
    assert encoder._buffers == []  # the caller's arrays are not kept
    assert encoder.message(1, "s", "u", 5) == encode_message(1, "s", "u", 5)


def test_link_frames_equal_encode_message(prg: PRG) -> None:
    a, b = Link("a", "b", frame_bytes=4096), Link("b", "a")
    a.receive_hello(b.hello())
    payload = {"v": prg.uint64(2000)}  # chunked at 4096 bytes
    a.send("s", "t", payload)
    assert a.data_to_send() == encode_message(0, "s", "t", payload, ack=0, frame_bytes=4096)


# --------------------------------------------------------------------------- websocket frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("mask", [False, True])
def test_binary_frame_is_what_websockets_writes_and_parses(size: int, mask: bool) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours = b"".join(_binary_frame(memoryview(data), mask))
    if not mask:
        assert ours == Frame(Opcode.BINARY, data).serialize(mask=False)
    reader = StreamReader()
    reader.feed_data(ours)
    parser = Frame.parse(reader.read_exact, mask=mask)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert (frame.opcode, frame.fin, bytes(frame.data)) == (Opcode.BINARY, True, data)


# --------------------------------------------------------------------------- router expiry timer


async def test_one_expiry_timer_times_out_each_receive_at_its_own_deadline() -> None:
    async def send(*_: Any) -> int:
        return 0

    router = Router("a", send, recv_timeout=0.15)
    ch = router.open_channel("s", ["a", "b", "c"])
    order: list[str] = []

    async def recv(peer: int, tag: str) -> None:
        try:
            await ch.recv(peer, tag)
            order.append(f"got {tag}")
        except PeerUnavailable as exc:
            order.append(f"timeout {tag} {exc.peer}")

    first = asyncio.create_task(recv(1, "x"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(recv(2, "y"))
    answered = asyncio.create_task(recv(1, "z"))
    await asyncio.sleep(0)
    router.deliver("b", Delivered("s", "z", 1, 10))
    await asyncio.gather(first, second, answered)
    assert order == ["got z", "timeout x b", "timeout y c"]
    # Timed-out tags may be awaited again, with a fresh deadline, and still arrive.
    late = asyncio.create_task(ch.recv(1, "x"))
    await asyncio.sleep(0)
    router.deliver("b", Delivered("s", "x", "late", 10))
    assert await late == "late"
    await ch.close()
    assert ch._state.expiry is None and not ch._state.deadlines

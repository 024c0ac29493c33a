"""Pure tests of transport.framing: round trips, every rejected input, and fuzzing."""

from __future__ import annotations

import enum
import struct
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.errors import ConfigError, FrameError, FrameTooLarge
from mpc.prg import PRG
from transport.framing import (
    ARRAY_EXT,
    AckHeader,
    ChunkHeader,
    FrameLimits,
    FramePieces,
    HelloHeader,
    MessageAssembler,
    MsgHeader,
    decode_frame,
    decode_message,
    decode_payload,
    encode_ack,
    encode_hello,
    encode_message,
    encode_payload,
)

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SMALL = FrameLimits(max_frame_bytes=4096)

DTYPES = ["?", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8"]
SHAPES = [(), (0,), (5,), (2, 3, 4), (0, 7), (1, 1, 1, 1)]


def random_array(prg: PRG, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    if dtype == "?":
        return prg.bits(shape).astype(bool)
    itemsize = np.dtype(dtype).itemsize
    return prg.buffer(count * itemsize).view(dtype).reshape(shape)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (so NaN payloads compare too)."""
    return (
        isinstance(b, np.ndarray)
        and a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == b.tobytes()
    )


def roundtrip(payload: Any, limits: FrameLimits = SMALL) -> Any:
    frames = encode_message(3, "session", "tag/0", payload, limits)
    header, out = decode_message(frames, limits)
    assert (header.seq, header.session_id, header.tag) == (3, "session", "tag/0")
    return out


def raw_frame(header: Any, data: bytes = b"") -> bytes:
    packed = msgpack.packb(header, use_bin_type=True)
    return b"\xce" + len(packed).to_bytes(4, "big") + packed + data


def array_ext(code: int, shape: tuple[int, ...], nbytes: int, ndim: int | None = None) -> msgpack.ExtType:
    ndim = len(shape) if ndim is None else ndim
    return msgpack.ExtType(ARRAY_EXT, struct.pack(f"<BB{len(shape)}QQ", code, ndim, *shape, nbytes))


def msg_frame(body: bytes, raw: bytes = b"", seq: int = 0) -> bytes:
    return raw_frame([1, seq, "s", "t", len(body), len(raw), len(body) + len(raw)], body + raw)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_dtype_and_shape_roundtrips(prg: PRG, dtype: str, shape: tuple[int, ...]) -> None:
    array = random_array(prg, dtype, shape)
    out = roundtrip({"a": array})
    assert same_array(array, out["a"])
    assert out["a"].flags.c_contiguous


def test_plain_values_and_nesting_roundtrip(prg: PRG) -> None:
    payload: dict[str, Any] = {
        "none": None,
        "bools": [True, False],
        "ints": [0, -1, (1 << 64) - 1, -(1 << 63), 12345678901234],
        "floats": [0.0, -2.5, float("inf")],
        "text": "héllo ∑ 🔐",
        "blob": b"\x00\xff" * 10,
        "nested": {"l": [[1, [2, {"deep": [3]}]], {}], "arr": [random_array(prg, "<u8", (4,))]},
        "empty": [],
    }
    out = roundtrip(payload)
    arr = payload["nested"]["arr"][0]
    assert same_array(arr, out["nested"]["arr"][0])
    out["nested"]["arr"] = payload["nested"]["arr"] = None
    assert out == payload


def test_top_level_scalars_and_conversions() -> None:
    for value in (None, 7, "x", b"y", 1.5, True):
        assert roundtrip(value) == value
    assert roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert roundtrip({"b": bytearray(b"ab"), "m": memoryview(b"cd")}) == {"b": b"ab", "m": b"cd"}
    zero_d = roundtrip(np.uint64(5))
    assert same_array(np.array(5, dtype=np.uint64), zero_d)
    assert same_array(np.array(2.5), roundtrip(np.float64(2.5)))
    assert same_array(np.array(True), roundtrip(np.bool_(True)))


def test_non_contiguous_and_big_endian_arrays_arrive_little_endian_c_order(prg: PRG) -> None:
    base = random_array(prg, "<u4", (6, 8))
    big = base.astype(">u4")
    out = roundtrip([base.T, base[::2, 1::3], big])
    assert np.array_equal(out[0], base.T) and out[0].flags.c_contiguous
    assert np.array_equal(out[1], base[::2, 1::3])
    assert out[2].dtype == np.dtype("<u4") and np.array_equal(out[2], base)


def test_big_array_is_chunked_within_limits(prg: PRG) -> None:
    limits = FrameLimits(max_frame_bytes=64 * 1024)
    array = prg.uint64(5_000_000 // 8)
    frames = encode_message(9, "job", "big", {"x": array, "meta": [1, 2]}, limits)
    assert len(frames) >= 5_000_000 // (64 * 1024)
    assert all(len(f) <= limits.max_frame_bytes for f in frames)
    offsets = []
    for i, frame in enumerate(frames):
        header, data = decode_frame(frame, limits)
        assert isinstance(header, MsgHeader if i == 0 else ChunkHeader)
        if isinstance(header, ChunkHeader):
            offsets.append((header.offset, len(data)))
    assert all(a + n == b for (a, n), (b, _) in zip(offsets, offsets[1:]))
    header, out = decode_message(frames, limits)
    assert header.total_len == sum(len(decode_frame(f, limits)[1]) for f in frames)
    assert np.array_equal(out["x"], array) and out["meta"] == [1, 2]


def test_body_spanning_frames_and_many_small_arrays(prg: PRG) -> None:
    arrays = [random_array(prg, DTYPES[i % len(DTYPES)], (i % 5, 3)) for i in range(300)]
    payload = {"words": [f"word{i}" * 3 for i in range(600)], "arrays": arrays}
    frames = encode_message(0, "s", "t", payload, SMALL)
    assert len(encode_payload(payload).body) > SMALL.max_frame_bytes  # the body itself is chunked
    _, out = decode_message(frames, SMALL)
    assert out["words"] == payload["words"]
    assert all(same_array(a, b) for a, b in zip(arrays, out["arrays"]))


def test_small_message_is_one_frame_and_sizes_add_up(prg: PRG) -> None:
    payload = {"x": prg.uint64(100)}
    frames = encode_message(0, "s", "t", payload)
    assert len(frames) == 1
    encoded = encode_payload(payload)
    header, data = decode_frame(frames[0], FrameLimits())
    assert isinstance(header, MsgHeader)
    assert (header.body_len, header.raw_len) == (len(encoded.body), 800) == (len(encoded.body), encoded.raw_len)
    assert len(data) == header.total_len


def test_frames_are_a_snapshot_of_the_payload(prg: PRG) -> None:
    array = prg.uint64(2000)
    expected = array.copy()
    small = encode_message(0, "s", "t", array[:10])
    chunked = encode_message(1, "s", "t", array, SMALL)
    array[:] = 0
    assert np.array_equal(decode_message(small)[1], expected[:10])
    assert np.array_equal(decode_message(chunked, SMALL)[1], expected)


def test_read_only_arrays_are_referenced_not_copied(prg: PRG) -> None:
    """A chunked message whose arrays are all read-only is sent from their memory: its frames
    are pieces viewing the arrays (the same bytes as the copied frames); one writable array
    (or a message of one frame) brings the copy back."""
    a, b = prg.uint64(3000), prg.buffer(5000)
    payload = {"a": a, "meta": "x" * 100, "b": b}
    copied = encode_message(4, "s", "t", payload, SMALL)
    a.flags.writeable = False
    mixed = encode_message(4, "s", "t", payload, SMALL)
    b.flags.writeable = False
    handed = encode_message(4, "s", "t", payload, SMALL)
    assert not any(isinstance(f, FramePieces) for f in copied + mixed)
    assert all(isinstance(f, FramePieces) for f in handed) and len(handed) == len(copied)
    assert [len(f) for f in handed] == [len(f) for f in copied]
    assert [bytes(f) for f in handed] == [bytes(f) for f in copied]
    views = [p for f in handed for p in f.pieces if isinstance(p, memoryview) and p.obj is not None]
    assert any(np.shares_memory(np.asarray(v.obj), a) for v in views)
    assert any(np.shares_memory(np.asarray(v.obj), b) for v in views)
    _, out = decode_message([bytes(f) for f in handed], SMALL)
    assert np.array_equal(out["a"], a) and np.array_equal(out["b"], b) and out["meta"] == "x" * 100
    assert not isinstance(encode_message(5, "s", "t", a[:10], SMALL)[0], FramePieces)


def test_payload_level_roundtrip_keeps_arrays_out_of_band(prg: PRG) -> None:
    payload: list[Any] = [prg.uint64(50), {"k": random_array(prg, "<f4", (3, 3))}]
    encoded = encode_payload(payload)
    assert len(encoded.body) < 100 and encoded.raw_len == 400 + 36
    out = decode_payload(encoded.body, b"".join(encoded.buffers))
    assert same_array(payload[0], out[0]) and same_array(payload[1]["k"], out[1]["k"])


def test_piggybacked_ack_roundtrips_and_does_not_change_the_message(prg: PRG) -> None:
    payload = {"x": prg.uint64(3000)}
    plain = encode_message(5, "s", "t", payload, SMALL)
    acked = encode_message(5, "s", "t", payload, SMALL, ack=1 << 40)
    assert len(plain) == len(acked) > 1
    h_plain, h_acked = decode_message(plain, SMALL)[0], decode_message(acked, SMALL)[0]
    assert h_plain.ack is None and h_acked.ack == 1 << 40
    assert h_plain == h_acked  # the ack takes no part in comparisons
    assert np.array_equal(decode_message(acked, SMALL)[1]["x"], payload["x"])
    assert all(len(f) <= SMALL.max_frame_bytes for f in acked)
    with pytest.raises(FrameError):
        encode_message(0, "s", "t", 1, ack=-1)


def test_ack_and_hello_roundtrip() -> None:
    header, data = decode_frame(encode_ack(42), SMALL)
    assert header == AckHeader(42) and len(data) == 0
    hello = HelloHeader(1, "alice", "bob", 7, bytes(range(16)))
    assert decode_frame(encode_hello(hello), SMALL)[0] == hello


# --------------------------------------------------------------------------- limits config


def test_limits_are_validated() -> None:
    kwargs: dict[str, Any]
    for kwargs in (
        {"max_frame_bytes": 100},
        {"max_frame_bytes": 1 << 32},
        {"max_message_bytes": 0},
        {"max_body_bytes": 0},
        {"max_depth": 0},
        {"max_ndim": 33},
        {"max_out_of_order": -1},
        {"max_frame_bytes": True},
        {"max_message_bytes": 2.0},
    ):
        with pytest.raises(ConfigError):
            FrameLimits(**kwargs)


# --------------------------------------------------------------------------- encode errors


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "payload",
    [
        {1, 2},
        object(),
        1j,
        Color.RED,
        {"x": [np.zeros(2, dtype=np.float16)]},
        np.array([object()]),
        np.zeros(2, dtype=np.complex128),
        np.zeros(2, dtype="datetime64[s]"),
        np.zeros(2, dtype=[("a", "<u4")]),
        np.ma.masked_array([1, 2], mask=[False, True]),
        1 << 64,
        -(1 << 63) - 1,
        {1: "int key"},
        {b"k": "bytes key"},
        "\ud800",
    ],
    ids=repr,
)
def test_unencodable_payloads_raise_frame_error(payload: Any) -> None:
    with pytest.raises(FrameError) as info:
        encode_message(0, "s", "t", payload)
    assert not isinstance(info.value, FrameTooLarge)


def test_encode_limits() -> None:
    deep: Any = 1
    for _ in range(5):
        deep = [deep]
    encode_payload(deep, FrameLimits(max_depth=5))
    with pytest.raises(FrameError, match="deeper"):
        encode_payload([deep], FrameLimits(max_depth=5))
    with pytest.raises(FrameError, match="max_ndim"):
        encode_payload(np.zeros((1, 1, 1)), FrameLimits(max_ndim=2))
    with pytest.raises(FrameTooLarge):
        encode_message(0, "s", "t", np.zeros(1000, np.uint8), FrameLimits(max_message_bytes=1000))
    with pytest.raises(FrameTooLarge, match="body"):
        encode_message(0, "s", "t", [b"x" * 600, b"y" * 600], FrameLimits(max_body_bytes=1000))
    encode_message(0, "s", "t", np.zeros(2000, np.uint8), FrameLimits(max_body_bytes=1000))


@pytest.mark.parametrize("name", ["", "x" * 257, 5, b"s", None, "\udcff"])
def test_bad_session_ids_and_tags(name: Any) -> None:
    with pytest.raises(FrameError):
        encode_message(0, name, "t", 1)
    with pytest.raises(FrameError):
        encode_message(0, "s", name, 1)


# --------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\xce\x00\x00",
        b"\x93\x01\x02\x03",  # msgpack, but no length prefix
        b"\xce\x00\x00\x00\x10\x91",  # header length beyond the frame
        b"\xce\x00\x00\x00\x01\xc1",  # 0xc1 is never valid msgpack
        b"\xce\x00\x00\xff\xff" + bytes(70000),  # header over the header bound
        b"\xce\x00\x00\x00\x02\x91\xa1",  # truncated string inside the header
        raw_frame({"kind": 1}),
        raw_frame([]),
        raw_frame(["1", 2]),
        raw_frame([9, 0]),
        raw_frame([3]),
        raw_frame([3, -1]),
        raw_frame([3, True]),
        raw_frame([3, 1.0]),
        raw_frame([3, 1 << 63]),
        raw_frame([3, 5], b"trailing"),
        raw_frame([3, msgpack.ExtType(1, b"")]),
        raw_frame([1, 0, "s", "t", 1, 0, 0]),  # MSG without data
        raw_frame([1, 0, "s", "t", 1, 0, 2], b"\xc0\x00"),  # more data than the message
        raw_frame([1, 0, "s", "t", 1, 0, 2], b"\xc0"),  # truncated data
        raw_frame([1, 0, "s", "t", 1, 0, 1], b"\xc0\x00"),  # trailing data
        raw_frame([1, 0, "s", "t", 0, 1, 1], b"\x00"),  # empty body
        raw_frame([1, 0, "", "t", 1, 0, 1], b"\xc0"),
        raw_frame([1, 0, "s" * 257, "t", 1, 0, 1], b"\xc0"),
        b"\xce\x00\x00\x00\x0b\x97\x01\x00\xa1s\xa2\xed\xb2\x01\x00\x01\xc0",  # tag is a lone surrogate
        raw_frame([1, 0, b"s", "t", 1, 0, 1], b"\xc0"),
        raw_frame([1, 0, "s", 7, 1, 0, 1], b"\xc0"),
        raw_frame([1, 0, "s", "t", 1, 0], b"\xc0"),
        raw_frame([1, 0, "s", "t", 1, 0, 1, -1], b"\xc0"),  # negative piggybacked ack
        raw_frame([1, 0, "s", "t", 1, 0, 1, "1"], b"\xc0"),  # ack of the wrong type
        raw_frame([1, 0, "s", "t", 1, 0, 1, 1 << 63], b"\xc0"),
        raw_frame([1, 0, "s", "t", 1, 0, 1, 0, 0], b"\xc0"),  # 9 fields
        raw_frame([2, 0, 5, 1, 4], b"\x00"),  # chunk past the message end
        raw_frame([2, 0, 0, 0, 4]),  # chunk without data
        raw_frame([2, 0, 0, 2, 4], b"\x00"),  # truncated chunk
        raw_frame([2, 0, 0, 1, 4], b"\x00\x00"),  # padded chunk
        raw_frame([2, 0, 0, 4], b"\x00"),
        raw_frame([4, {"version": 1, "from": "a", "to": "b", "next_expected_seq": 0}]),
        raw_frame([4, {"version": 1, "from": "a", "to": "b", "next_expected_seq": 0, "instance": b"x"}]),
        raw_frame([4, [1, "a", "b", 0, bytes(16)]]),
        raw_frame([4, {"version": 1, "from": "a", "to": "b", "next_expected_seq": 0, "instance": bytes(16)}], b"x"),
    ],
    ids=lambda f: f[:24].hex(),
)
def test_malformed_frames_raise_frame_error(frame: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(frame, SMALL)


def test_oversized_frames_and_messages_raise_frame_too_large() -> None:
    with pytest.raises(FrameTooLarge):
        decode_frame(bytes(SMALL.max_frame_bytes + 1), SMALL)
    limits = FrameLimits(max_frame_bytes=4096, max_message_bytes=10_000)
    with pytest.raises(FrameTooLarge):  # checked from the header, nothing allocated
        decode_frame(raw_frame([1, 0, "s", "t", 10, 1 << 60, 1], b"\xc0"), limits)
    with pytest.raises(FrameTooLarge):
        decode_frame(raw_frame([2, 0, 1, 1, 10_001], b"\x00"), limits)
    with pytest.raises(FrameTooLarge, match="body"):
        decode_frame(raw_frame([1, 0, "s", "t", 2000, 0, 1], b"\xc0"), FrameLimits(max_body_bytes=1000))
    body = msgpack.packb(array_ext(9, (1 << 40, 1), 8 << 40))
    with pytest.raises(FrameTooLarge):  # a dimension over the limit
        decode_payload(body, b"", limits)


def bad_body(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


MALFORMED_BODIES: list[tuple[bytes, bytes]] = [
    (b"", b""),
    (b"\xc1", b""),
    (b"\xc0\xc0", b""),  # trailing garbage after the body
    (b"\x92\x01", b""),  # truncated
    (bad_body(msgpack.ExtType(2, b"\x00")), b""),  # wrong ext type
    (bad_body(msgpack.Timestamp(1, 0)), b""),
    (bad_body(array_ext(0, (1,), 1)), b"\x00"),  # dtype code not in the allow-list
    (bad_body(array_ext(12, (1,), 1)), b"\x00"),
    (bad_body(array_ext(9, (2,), 15)), bytes(15)),  # shape * itemsize != nbytes
    (bad_body(array_ext(9, (2,), 16)), bytes(8)),  # fewer raw bytes than declared
    (bad_body(array_ext(9, (1,), 8)), bytes(9)),  # more raw bytes than declared
    (bad_body(array_ext(9, (1,), 8, ndim=2)), bytes(8)),  # ext length disagrees with ndim
    (bad_body(msgpack.ExtType(1, b"\x09")), b""),
    (bad_body(array_ext(9, (1,) * 33, 8)), bytes(8)),  # ndim over max_ndim
    (bad_body(array_ext(9, (0, 1 << 29, 1 << 29, 1 << 29), 0)), b""),  # numpy refuses the shape
    (bad_body(array_ext(1, (3,), 3)), b"\x01\x02\x00"),  # bool byte other than 0/1
    (bad_body({1: 2}), b""),
    (bad_body({b"k": 2}), b""),
    (bad_body({(1, 2): 2}), b""),
    (b"\x82\xa1k\x01\xa1k\x02", b""),  # duplicate key
    (b"\xa2\xff\xfe", b""),  # invalid utf-8
    (b"\x91" * 33 + b"\xc0", b""),  # nesting over max_depth
    (b"\x91" * 5000 + b"\xc0", b""),  # nesting over msgpack's own stack
    (b"\xdd\xff\xff\xff\xff", b""),  # array of 2**32-1 elements declared, none present
    # The payload shape of the receive fast path (a flat dict of arrays), malformed:
    (bad_body({"v": array_ext(1, (3,), 3)}), b"\x01\x02\x00"),  # bool byte other than 0/1
    (bad_body({"v": array_ext(9, (2,), 16), "w": array_ext(9, (1,), 8)}), bytes(16)),  # short
    (bad_body({"v": array_ext(9, (1,), 8)}), bytes(16)),  # raw bytes left over
    (bad_body({"v": msgpack.Timestamp(1, 0)}), b""),
    (b"\x82\xa1v\x01\xa1v\x02", b""),  # duplicate key
    (bad_body({"v": {1: 2}}), b""),
]


@pytest.mark.parametrize(("body", "raw"), MALFORMED_BODIES, ids=lambda v: bytes(v)[:16].hex())
def test_malformed_bodies_raise_frame_error(body: bytes, raw: bytes) -> None:
    with pytest.raises(FrameError):
        decode_payload(body, raw)
    if body:
        with pytest.raises(FrameError):
            decode_message([msg_frame(body, raw)])


def test_depth_limit_is_exact() -> None:
    limits = FrameLimits(max_depth=3)
    assert decode_payload(b"\x91\x91\x91\xc0", b"", limits) == [[[None]]]
    with pytest.raises(FrameError, match="deeper"):
        decode_payload(b"\x91\x91\x91\x91\xc0", b"", limits)


def test_message_level_errors(prg: PRG) -> None:
    frames = encode_message(4, "s", "t", prg.uint64(3000), SMALL)
    assert len(frames) >= 5
    with pytest.raises(FrameError, match="truncated"):
        decode_message(frames[:-1], SMALL)
    with pytest.raises(FrameError):
        decode_message(frames + [frames[-1]], SMALL)  # a repeated chunk after completion
    with pytest.raises(FrameError):
        decode_message(frames[1:], SMALL)  # no MSG frame
    with pytest.raises(FrameError):
        decode_message([frames[0], frames[2]] + frames[1:2] + frames[3:], SMALL)  # gap
    with pytest.raises(FrameError):
        decode_message([frames[0], encode_ack(1)], SMALL)
    with pytest.raises(FrameError):
        decode_message([], SMALL)


def test_assembler_rejects_inconsistent_chunks_and_stays_unchanged(prg: PRG) -> None:
    frames = encode_message(4, "s", "t", prg.uint64(3000), SMALL)
    header, data = decode_frame(frames[0], SMALL)
    assert isinstance(header, MsgHeader)
    assembler = MessageAssembler(header, data, SMALL)
    chunk, chunk_data = decode_frame(frames[1], SMALL)
    assert isinstance(chunk, ChunkHeader)
    bad = [
        (ChunkHeader(5, chunk.offset, chunk.total_len), chunk_data),  # another message
        (ChunkHeader(4, chunk.offset, chunk.total_len + 1), chunk_data),  # other total
        (ChunkHeader(4, chunk.offset + 1, chunk.total_len), chunk_data),  # gap
        (ChunkHeader(4, chunk.offset - 1, chunk.total_len), chunk_data),  # overlap
    ]
    for wrong, wrong_data in bad:
        with pytest.raises(FrameError):
            assembler.feed(wrong, wrong_data)
        assert assembler.received == chunk.offset
    assert assembler.feed(chunk, chunk_data)
    assert not assembler.feed(chunk, chunk_data)  # an exact repeat is ignored
    for frame in frames[2:]:
        assembler.feed(*decode_frame(frame, SMALL))  # type: ignore[arg-type]
    assert assembler.done and assembler.payload.shape == (3000,)


def test_bad_bool_bytes_in_a_later_chunk_leave_the_assembler_unchanged() -> None:
    payload = np.zeros(20_000, dtype=bool)
    frames = encode_message(0, "s", "t", payload, SMALL)
    header, data = decode_frame(frames[0], SMALL)
    assembler = MessageAssembler(header, data, SMALL)  # type: ignore[arg-type]
    chunk, chunk_data = decode_frame(frames[1], SMALL)
    tampered = bytearray(chunk_data)
    tampered[10] = 7
    with pytest.raises(FrameError, match="bool"):
        assembler.feed(chunk, memoryview(tampered))  # type: ignore[arg-type]
    assert assembler.received == chunk.offset  # type: ignore[union-attr]
    assembler.feed(chunk, chunk_data)  # type: ignore[arg-type]


def test_body_parse_failure_across_frames_is_all_or_nothing() -> None:
    body = bad_body(["x" * 3000, "y" * 3000, 1])
    good_frames = encode_message(0, "s", "t", ["x" * 3000, "y" * 3000, 1], SMALL)
    header, data = decode_frame(good_frames[0], SMALL)
    assembler = MessageAssembler(header, data, SMALL)  # type: ignore[arg-type]
    chunk, chunk_data = decode_frame(good_frames[1], SMALL)
    assert isinstance(chunk, ChunkHeader) and chunk.offset + len(chunk_data) == len(body)
    broken = bytearray(chunk_data)
    broken[-1] = 0xC1  # the last body byte becomes invalid msgpack
    with pytest.raises(FrameError):
        assembler.feed(chunk, memoryview(broken))
    assert assembler.received == chunk.offset
    assembler.feed(chunk, chunk_data)
    assert assembler.done and assembler.payload == ["x" * 3000, "y" * 3000, 1]


def test_non_bytes_frames_are_rejected() -> None:
    for frame in ("text", 5, None, [1]):
        with pytest.raises(FrameError):
            decode_frame(frame, SMALL)  # type: ignore[arg-type]
    ack = encode_ack(1)
    assert len(ack) == 8
    # A buffer of another format is read as its bytes.
    assert decode_frame(np.frombuffer(ack, dtype=np.uint64).data, SMALL)[0] == AckHeader(1)
    assert decode_frame(bytearray(ack), SMALL)[0] == AckHeader(1)
    with pytest.raises(FrameError):  # trailing zeros after an ACK
        decode_frame(np.frombuffer(ack + bytes(8), dtype=np.uint64).data, SMALL)
    with pytest.raises(FrameError):
        decode_frame(np.zeros((4, 4), np.uint8)[:, :2].data, SMALL)  # not contiguous


# --------------------------------------------------------------------------- fuzzing


def _decode_or_frame_error(frames: list[bytes], limits: FrameLimits) -> None:
    try:
        decode_message(frames, limits)
    except FrameError:
        pass


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_decode_frame_random_bytes(data: bytes) -> None:
    for candidate in (data, b"\xce" + len(data).to_bytes(4, "big") + data, b"\xce" + data):
        try:
            decode_frame(candidate, SMALL)
        except FrameError:
            pass


@FUZZ
@given(st.binary(max_size=400), st.binary(max_size=64))
def test_fuzz_decode_payload_random_bytes(body: bytes, raw: bytes) -> None:
    try:
        decode_payload(body, raw, SMALL)
    except FrameError:
        pass


PLAIN_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
"""The msgpack scalars a payload may carry (also used by tests/transport/test_fast_paths.py)."""

_leaf = st.one_of(
    PLAIN_LEAVES,
    st.builds(
        msgpack.ExtType,
        st.integers(min_value=0, max_value=127),
        st.binary(max_size=30),
    ),
    st.builds(
        lambda code, dims, extra: array_ext(code, tuple(dims), int(np.prod(dims)) * extra),
        st.integers(min_value=0, max_value=13),
        st.lists(st.integers(min_value=0, max_value=4), max_size=3),
        st.integers(min_value=0, max_value=9),
    ),
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-9, 9), st.binary(max_size=3)), inner, max_size=4),
    ),
    max_leaves=20,
)


@FUZZ
@given(_tree, st.binary(max_size=200))
def test_fuzz_decode_payload_structured(tree: Any, raw: bytes) -> None:
    body = msgpack.packb(tree, use_bin_type=True)
    try:
        decode_payload(body, raw, SMALL)
    except FrameError:
        pass


_header_field = st.one_of(
    st.integers(min_value=-2, max_value=(1 << 64) - 1),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.booleans(),
    st.none(),
    st.floats(),
)


@FUZZ
@given(st.lists(_header_field, max_size=7), st.binary(max_size=50))
def test_fuzz_decode_frame_structured_headers(fields: list[Any], data: bytes) -> None:
    for kind in (1, 2, 3, 4):
        try:
            decode_frame(raw_frame([kind, *fields], data), SMALL)
        except FrameError:
            pass


_SAMPLE: dict[str, Any] = {
    "a": np.arange(1500, dtype=np.uint64),
    "b": [1, "two", b"three", None, 2.5, {"c": np.ones((3, 2), dtype=bool)}],
    "z": np.zeros((0, 4), dtype=np.float32),
}


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=0),
    st.sampled_from(["flip", "truncate", "extend", "drop", "swap"]),
)
def test_fuzz_mutated_valid_frames(flips: list[tuple[int, int, int]], where: int, how: str) -> None:
    frames = encode_message(11, "sess", "tag", _SAMPLE, SMALL)
    mutated = [bytearray(f) for f in frames]
    index = where % len(mutated)
    if how == "flip":
        for frame_i, byte_i, mask in flips:
            target = mutated[frame_i % len(mutated)]
            target[byte_i % len(target)] ^= mask
    elif how == "truncate":
        del mutated[index][flips[0][1] % len(mutated[index]) :]
    elif how == "extend":
        mutated[index] += bytes([flips[0][2]]) * (flips[0][1] % 9 + 1)
    elif how == "drop":
        del mutated[index]
    else:
        other = flips[0][0] % len(mutated)
        mutated[index], mutated[other] = mutated[other], mutated[index]
    _decode_or_frame_error([bytes(m) for m in mutated], SMALL)


"""Pure tests of transport.link: exactly-once in-order delivery, acks, resends, handshakes, fuzzing."""

from __future__ import annotations

from typing import Any, Sequence

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.errors import ConfigError, FrameError, FrameTooLarge, HandshakeFailed
from mpc.prg import PRG
from transport.framing import (
    AckHeader,
    ChunkHeader,
    FrameLimits,
    HelloHeader,
    MsgHeader,
    decode_frame,
    encode_ack,
    encode_hello,
    encode_message,
)
from transport.link import EAGER_ACK_BYTES, Delivered, Link

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SMALL = FrameLimits(max_frame_bytes=64 * 1024)
Frames = Sequence[bytes | memoryview]


def connect(a: Link, b: Link) -> None:
    """Exchange hellos on a new connection."""
    hello_a, hello_b = a.hello(), b.hello()
    b.receive_hello(hello_a)
    a.receive_hello(hello_b)


def pair(limits: FrameLimits = SMALL) -> tuple[Link, Link]:
    a, b = Link("alice", "bob", limits), Link("bob", "alice", limits)
    connect(a, b)
    return a, b


def feed(link: Link, frames: Frames) -> list[Delivered]:
    out: list[Delivered] = []
    for frame in frames:
        out.extend(link.receive_frame(frame))
    return out


def pump(src: Link, dst: Link) -> list[Delivered]:
    """Deliver everything ``src`` has to ``dst`` and return ``dst``'s acks to ``src``."""
    delivered = feed(dst, src.data_to_send())
    feed(src, dst.data_to_send())
    return delivered


def kinds(frames: Frames) -> list[type]:
    return [type(decode_frame(f, FrameLimits(max_frame_bytes=1 << 31))[0]) for f in frames]


def split_messages(frames: Frames) -> list[list[bytes | memoryview]]:
    """Group data frames by message (a MSG frame starts a group); ACK frames are dropped."""
    groups: list[list[bytes | memoryview]] = []
    for frame, kind in zip(frames, kinds(frames)):
        if kind is MsgHeader:
            groups.append([frame])
        elif kind is ChunkHeader:
            groups[-1].append(frame)
    return groups


def state(link: Link) -> tuple[Any, ...]:
    assembler = link._assembler
    return (
        link.next_expected,
        link.buffered_messages,
        link.pending_messages,
        link.unacked_bytes,
        None if assembler is None else (assembler.header.seq, assembler.received),
    )


# --------------------------------------------------------------------------- basics


def test_in_order_exactly_once_with_exact_byte_counts(prg: PRG) -> None:
    a, b = pair()
    big = prg.uint64(5_000_000 // 8)
    sizes = [a.send("job", "r0", {"x": 1}), a.send("job", "r1", big), a.send("job2", "r0", [None, b"z"])]
    frames = a.data_to_send()
    assert len(frames) > 70 and all(len(f) <= SMALL.max_frame_bytes for f in frames)
    assert a.unacked_bytes == sum(sizes) == sum(len(f) for f in frames)
    delivered = feed(b, frames)
    assert [(d.session_id, d.tag) for d in delivered] == [("job", "r0"), ("job", "r1"), ("job2", "r0")]
    assert [d.nbytes for d in delivered] == sizes
    assert delivered[0].payload == {"x": 1} and delivered[2].payload == [None, b"z"]
    assert np.array_equal(delivered[1].payload, big)
    assert b.next_expected == 3 and a.next_send_seq == 3


def test_one_coalesced_ack_per_batch_frees_memory(prg: PRG) -> None:
    a, b = pair()
    for i in range(3):
        a.send("s", f"t{i}", prg.uint64(20_000))  # chunked messages
    assert a.pending_messages == 3 and a.unacked_bytes > 3 * 160_000
    assert len(feed(b, a.data_to_send())) == 3
    acks = b.data_to_send()
    assert kinds(acks) == [AckHeader]
    assert decode_frame(acks[0], SMALL)[0] == AckHeader(3)
    feed(a, acks)
    assert a.unacked_bytes == 0 and a.pending_messages == 0
    assert b.data_to_send() == [] and a.data_to_send() == []


def test_ack_rides_on_the_data_sent_back() -> None:
    a, b = pair()
    a.send("s", "t", 1)
    feed(b, a.data_to_send())
    assert b.ack_owed
    b.send("s", "back", 2)
    out = b.data_to_send()
    assert kinds(out) == [MsgHeader]  # the MSG frame carries the ack: no ACK frame
    assert decode_frame(out[0], SMALL)[0].ack == 1
    assert not b.ack_owed
    assert [d.payload for d in feed(a, out)] == [2]
    assert a.unacked_bytes == 0


def test_ack_sent_after_the_data_that_does_not_cover_it() -> None:
    a, b = pair()
    b.send("s", "early", 0)  # carries ack 0: sent before anything arrived
    a.send("s", "t", 1)
    feed(b, a.data_to_send())
    out = b.data_to_send()
    assert kinds(out) == [MsgHeader, AckHeader]
    assert decode_frame(out[-1], SMALL)[0] == AckHeader(1)
    feed(a, out)
    assert a.unacked_bytes == 0 and not b.ack_owed


def test_delayed_ack_waits_for_data_or_a_flush(prg: PRG) -> None:
    a, b = pair()
    a.send("s", "t0", 1)
    feed(b, a.data_to_send())
    assert b.data_to_send(flush_ack=False) == [] and b.ack_owed  # the ACK waits
    assert kinds(b.data_to_send()) == [AckHeader] and not b.ack_owed  # the timer flushed it
    a.send("s", "t1", 2)
    feed(b, a.data_to_send())
    b.send("s", "back", 3)
    assert kinds(b.data_to_send(flush_ack=False)) == [MsgHeader] and not b.ack_owed
    # Bulk data is acknowledged at once, whatever the driver's delay.
    a.send("s", "big", prg.uint64(EAGER_ACK_BYTES // 8))
    feed(b, a.data_to_send())
    acks = b.data_to_send(flush_ack=False)
    assert kinds(acks) == [AckHeader]
    feed(a, acks)
    assert a.pending_messages == 0


def test_piggybacked_ack_of_a_message_never_sent_is_refused() -> None:
    a, b = pair()
    bad = encode_message(0, "s", "t", 1, SMALL, ack=1)  # b never sent anything
    before = state(b)
    with pytest.raises(FrameError, match="ack"):
        b.receive_frame(bad[0])
    assert state(b) == before


def test_duplicate_first_frame_still_acknowledges() -> None:
    a, b = pair()
    a.send("s", "t", 1)
    feed(b, a.data_to_send())
    b.send("s", "back", 2)
    out = b.data_to_send()
    assert len(feed(a, out)) == 1 and a.pending_messages == 0
    assert feed(a, out) == []  # a repeat of a delivered message: dropped


def test_partial_acks_free_only_acknowledged_messages() -> None:
    a, b = pair()
    sizes = [a.send("s", f"t{i}", i) for i in range(4)]
    groups = split_messages(a.data_to_send())
    feed(b, groups[0] + groups[1])
    feed(a, b.data_to_send())
    assert a.pending_messages == 2 and a.unacked_bytes == sizes[2] + sizes[3]
    feed(a, [encode_ack(1)])  # a stale ack changes nothing
    assert a.pending_messages == 2


def test_payload_is_snapshotted_at_send(prg: PRG) -> None:
    a, b = pair()
    array = prg.uint64(50_000)
    expected = array.copy()
    a.send("s", "t", array)
    array[:] = 0
    assert np.array_equal(pump(a, b)[0].payload, expected)


def test_nothing_is_sent_before_the_hello_exchange() -> None:
    a, b = Link("alice", "bob"), Link("bob", "alice")
    a.send("s", "early", 1)
    assert a.data_to_send() == [] and not a.established
    connect(a, b)
    assert [d.tag for d in pump(a, b)] == ["early"]


def test_send_errors_consume_no_sequence_number() -> None:
    a, b = pair(FrameLimits(max_frame_bytes=4096, max_message_bytes=10_000))
    with pytest.raises(FrameError):
        a.send("s", "t", {1: 2})
    with pytest.raises(FrameError):
        a.send("s", "x" * 300, 1)
    with pytest.raises(FrameError):
        a.send("", "t", 1)
    with pytest.raises(FrameTooLarge):
        a.send("s", "t", np.zeros(20_000, np.uint8))
    assert a.next_send_seq == 0 and a.data_to_send() == []
    a.send("s", "ok", 1)
    assert [d.tag for d in pump(a, b)] == ["ok"]


def test_link_config_is_validated() -> None:
    for local, peer in (("a", "a"), ("", "b"), ("a", "b" * 257), (1, "b")):
        with pytest.raises(ConfigError):
            Link(local, peer)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Link("a", "b", {"max_frame_bytes": 1})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- duplicates, reorders, replays


def test_duplicated_frames_and_messages_are_delivered_once(prg: PRG) -> None:
    a, b = pair()
    big = prg.uint64(30_000)
    a.send("s", "t0", 0)
    a.send("s", "t1", big)
    a.send("s", "t2", 2)
    frames = a.data_to_send()
    doubled = [f for frame in frames for f in (frame, frame)]  # every frame written twice
    delivered = feed(b, doubled)
    assert [d.tag for d in delivered] == ["t0", "t1", "t2"]
    assert np.array_equal(delivered[1].payload, big)
    assert feed(b, frames) == []  # the whole stream again
    assert decode_frame(b.data_to_send()[-1], SMALL)[0] == AckHeader(3)
    assert state(b)[0] == 3


@pytest.mark.parametrize("order", [[2, 0, 1, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
def test_reordered_messages_are_delivered_in_order(prg: PRG, order: list[int]) -> None:
    a, b = pair()
    payloads = [prg.uint64(n) for n in (10, 40_000, 5, 20_000)]
    for i, p in enumerate(payloads):
        a.send("s", f"t{i}", p)
    groups = split_messages(a.data_to_send())
    delivered: list[Delivered] = []
    for i in order:
        delivered.extend(feed(b, groups[i]))
        assert b.buffered_messages == len({*order[: order.index(i) + 1]} - set(range(b.next_expected)))
    assert [d.tag for d in delivered] == ["t0", "t1", "t2", "t3"]
    assert all(np.array_equal(d.payload, p) for d, p in zip(delivered, payloads))
    feed(a, b.data_to_send())
    assert a.unacked_bytes == 0


def test_out_of_order_buffer_is_bounded() -> None:
    limits = FrameLimits(max_frame_bytes=4096, max_out_of_order=2)
    a, b = pair(limits)
    for i in range(5):
        a.send("s", f"t{i}", i)
    groups = split_messages(a.data_to_send())
    feed(b, groups[1] + groups[2])
    before = state(b)
    with pytest.raises(FrameError, match="ahead"):
        b.receive_frame(groups[3][0])
    assert state(b) == before
    assert [d.tag for d in feed(b, groups[0])] == ["t0", "t1", "t2"]
    assert [d.tag for d in feed(b, groups[3] + groups[4])] == ["t3", "t4"]


def test_replayed_old_frames_are_ignored(prg: PRG) -> None:
    a, b = pair()
    a.send("s", "small", 1)
    a.send("s", "big", prg.uint64(30_000))
    old = a.data_to_send()
    assert len(feed(b, old)) == 2
    before = state(b)
    for frame in (old[0], old[3], old[-1], old[1]):  # single frames, including lone chunks
        assert b.receive_frame(frame) == []
    assert feed(b, old) == []  # whole messages
    a.send("s", "next", 3)
    new = a.data_to_send()
    # a stale frame in the middle of a new chunked message is ignored as well
    a.send("s", "big2", prg.uint64(30_000))
    big2 = a.data_to_send()
    assert [d.tag for d in feed(b, new + big2[:2] + [old[0], old[2]] + big2[2:])] == ["next", "big2"]
    assert state(b)[0] == before[0] + 2


# --------------------------------------------------------------------------- inconsistent frames


def raw_frame(header: list[Any], data: bytes | memoryview = b"") -> bytes:
    packed = msgpack.packb(header)
    return b"\xce" + len(packed).to_bytes(4, "big") + packed + bytes(data)


def test_inconsistent_frames_raise_and_leave_the_link_unchanged(prg: PRG) -> None:
    a, b = pair(FrameLimits(max_frame_bytes=4096))
    array = prg.uint64(3000)
    a.send("s", "t", array)
    frames = a.data_to_send()
    feed(b, frames[:2])
    before = state(b)
    chunk, data = decode_frame(frames[2], SMALL)
    assert isinstance(chunk, ChunkHeader)
    seq, offset, total = chunk.seq, chunk.offset, chunk.total_len
    wrong = {
        "gap": frames[3],
        "overlap": raw_frame([2, seq, offset - 1, len(data), total], data),
        "other total": raw_frame([2, seq, offset, len(data), total + 8], data),
        "other seq": raw_frame([2, seq + 1, offset, len(data), total], data),
        "past the end": raw_frame([2, seq, offset, total - offset + 1, total], bytes(total - offset + 1)),
        "truncated data": bytes(frames[2][:-1]),
        "new message": encode_message(1, "s", "t", 1)[0],
        "other start of the same seq": encode_message(0, "s", "other", 1)[0],
        "hello": a.hello(),
        "ack of a message never sent": encode_ack(5),
        "truncated": bytes(frames[2][:20]),
    }
    for what, frame in wrong.items():
        with pytest.raises(FrameError):
            b.receive_frame(frame)
        assert state(b) == before, what
    delivered = feed(b, frames[2:])
    assert len(delivered) == 1 and np.array_equal(delivered[0].payload, array)


def test_hello_is_not_a_data_frame_and_data_is_not_a_hello() -> None:
    a, b = pair()
    with pytest.raises(FrameError, match="HELLO"):
        b.receive_frame(a.hello())
    with pytest.raises(HandshakeFailed):
        b.receive_hello(encode_ack(0))
    with pytest.raises(HandshakeFailed):
        b.receive_hello(b"garbage")


# --------------------------------------------------------------------------- reconnects


def test_reconnect_in_the_middle_of_a_chunked_message(prg: PRG) -> None:
    a, b = pair()
    big = prg.uint64(5_000_000 // 8)
    sent = [("pre", 1), ("big", big), ("post", {"y": [2, 3]})]
    for tag, payload in sent:
        a.send("job", tag, payload)
    frames = a.data_to_send()
    half = len(frames) // 2
    first = feed(b, frames[:half])  # "pre" and half of "big"; the ack for "pre" is lost too
    assert [d.tag for d in first] == ["pre"] and b._assembler is not None
    a.connection_lost()
    b.connection_lost()
    a.send("job", "while-down", 4)
    assert a.data_to_send() == [] and b.data_to_send() == []
    connect(a, b)
    assert a.pending_messages == 3  # "pre" was acknowledged by b's hello
    rest = a.data_to_send()
    assert kinds(rest)[0] is MsgHeader and len(rest) >= half  # "big" resent whole
    second = feed(b, rest)
    assert [d.tag for d in second] == ["big", "post", "while-down"]
    assert np.array_equal(second[0].payload, big) and second[1].payload == {"y": [2, 3]}
    feed(a, b.data_to_send())
    assert a.unacked_bytes == 0 and b.next_expected == 4


def test_reconnect_after_everything_arrived_but_the_ack_was_lost() -> None:
    a, b = pair()
    a.send("s", "t", 1)
    assert len(feed(b, a.data_to_send())) == 1
    b.data_to_send()  # the ack is written but lost with the connection
    a.connection_lost()
    b.connection_lost()
    connect(a, b)
    assert a.unacked_bytes == 0 and a.data_to_send() == []


def test_many_reconnects_interleaved_with_traffic(prg: PRG) -> None:
    a, b = pair(FrameLimits(max_frame_bytes=8192))
    expected = [prg.uint64(int(n)) for n in prg.below(5000, 12)]
    received: list[Delivered] = []
    back: list[Delivered] = []
    for i, payload in enumerate(expected):
        a.send("s", f"t{i}", payload)
        b.send("s", f"r{i}", i)
        frames_a, frames_b = a.data_to_send(), b.data_to_send()
        cut = int(prg.below(len(frames_a) + 1))
        received += feed(b, frames_a[:cut])
        back += feed(a, frames_b[: cut % (len(frames_b) + 1)])
        if i % 3 == 2:
            a.connection_lost()
            b.connection_lost()
            connect(a, b)
        else:
            received += feed(b, frames_a[cut:])
            back += feed(a, frames_b[cut % (len(frames_b) + 1) :])
    for _ in range(3):  # drain the resends and the final acks, both ways
        received += feed(b, a.data_to_send())
        back += feed(a, b.data_to_send())
    assert [d.tag for d in received] == [f"t{i}" for i in range(12)]
    assert all(np.array_equal(d.payload, p) for d, p in zip(received, expected))
    assert [d.payload for d in back] == list(range(12))
    assert a.unacked_bytes == 0 and b.unacked_bytes == 0


# --------------------------------------------------------------------------- handshake


def hello_from(sender: str, receiver: str, resume: int = 0, *, version: int = 1, instance: bytes = bytes(16)) -> bytes:
    return encode_hello(HelloHeader(version, sender, receiver, resume, instance))


def test_hello_names_and_version_are_checked() -> None:
    b = Link("bob", "alice")
    for bad in (
        hello_from("mallory", "bob"),
        hello_from("alice", "carol"),
        hello_from("bob", "alice"),
        hello_from("alice", "bob", version=2),
        hello_from("alice", "bob", resume=1),  # resumes at a message never sent
    ):
        with pytest.raises(HandshakeFailed):
            b.receive_hello(bad)
        assert not b.established
    b.receive_hello(hello_from("alice", "bob"))
    assert b.established


def test_hello_resume_point_frees_and_requeues() -> None:
    a, b = pair()
    for i in range(4):
        a.send("s", f"t{i}", i)
    groups = split_messages(a.data_to_send())
    feed(b, groups[0] + groups[1])  # b delivers t0, t1; acks lost
    a.connection_lost()
    b.connection_lost()
    connect(a, b)
    assert a.pending_messages == 2
    assert [d.tag for d in pump(a, b)] == ["t2", "t3"]


def test_peer_that_lost_its_state_is_refused() -> None:
    a, b = pair()
    a.send("s", "t", 1)
    pump(a, b)
    a.connection_lost()
    b.connection_lost()
    restarted_b = Link("bob", "alice")
    with pytest.raises(HandshakeFailed, match="lost its state"):
        a.receive_hello(restarted_b.hello())  # resumes below what b acknowledged
    with pytest.raises(HandshakeFailed, match="lost its state"):
        restarted_b.receive_hello(hello_from("alice", "bob", 1))  # expects what it never sent
    fresh_a = Link("alice", "bob")  # the mesh replaces the stale link
    connect(fresh_a, restarted_b)
    fresh_a.send("s", "again", 2)
    assert [d.payload for d in pump(fresh_a, restarted_b)] == [2]


def test_restart_detected_by_instance_even_without_acks() -> None:
    a, b = pair()
    b.send("s", "t", 1)
    assert len(pump(b, a)) == 1  # a has state from this b
    a.connection_lost()
    restarted_b = Link("bob", "alice")
    with pytest.raises(HandshakeFailed, match="restarted"):
        a.receive_hello(restarted_b.hello())
    quiet_a, quiet_b = pair()
    quiet_a.connection_lost()
    connect(quiet_a, Link("bob", "alice"))  # no traffic yet: a restart is harmless


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_receive_frame_and_hello_random_bytes(data: bytes) -> None:
    a, b = pair(FrameLimits(max_frame_bytes=4096))
    a.send("s", "t", np.arange(1000, dtype=np.uint64))
    feed(b, a.data_to_send()[:1])
    before = state(b)
    for candidate in (data, b"\xce" + len(data).to_bytes(4, "big") + data):
        try:
            b.receive_frame(candidate)
        except FrameError:
            assert state(b) == before
        try:
            b.receive_hello(candidate)
        except HandshakeFailed:
            pass


@FUZZ
@given(
    st.integers(min_value=0),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=3),
    st.sampled_from(["flip", "truncate", "extend"]),
)
def test_fuzz_mutated_stream_then_reconnect_delivers_each_message_once(
    which: int, flips: list[tuple[int, int]], how: str
) -> None:
    limits = FrameLimits(max_frame_bytes=4096)
    a, b = pair(limits)
    payloads = [{"v": np.arange(n, dtype=np.uint64)} for n in (1, 900, 3, 1200)]
    for i, p in enumerate(payloads):
        a.send("s", f"t{i}", p)
    frames = [bytearray(f) for f in a.data_to_send()]
    target = frames[which % len(frames)]
    if how == "flip":
        for pos, mask in flips:
            target[pos % len(target)] ^= mask
    elif how == "truncate":
        del target[flips[0][0] % len(target) :]
    else:
        target += bytes([flips[0][1]]) * (flips[0][0] % 7 + 1)
    count = 0
    for frame in frames:
        try:
            count += len(b.receive_frame(bytes(frame)))
        except FrameError:
            pass
    a.connection_lost()
    b.connection_lost()
    connect(a, b)
    count += len(pump(a, b))
    assert count == len(payloads) == b.next_expected
    assert a.unacked_bytes == 0


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_fuzz_mutated_hello(pos: int, mask: int) -> None:
    a, b = Link("alice", "bob"), Link("bob", "alice")
    hello = bytearray(a.hello())
    hello[pos % len(hello)] ^= mask
    try:
        b.receive_hello(bytes(hello))
    except HandshakeFailed:
        assert not b.established

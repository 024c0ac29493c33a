"""Unit tests of the session router, driven directly (no mesh, no Link)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest

from mpc.contracts import Channel
from mpc.errors import (
    ConfigError,
    FrameError,
    PeerUnavailable,
    ProtocolViolation,
    TransportError,
)
from transport.link import Delivered
from transport.router import CONTROL_SESSION, Router

PARTIES = ("alice", "bob", "carol")
TIMEOUT = 0.3


class FakeWire:
    """A mesh send function that records what it is asked to send."""

    def __init__(self, nbytes: int = 100) -> None:
        self.sent: list[tuple[str, str, str, Any]] = []
        self.nbytes = nbytes
        self.error: Exception | None = None

    async def __call__(self, peer: str, session_id: str, tag: str, payload: Any) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append((peer, session_id, tag, payload))
        return self.nbytes


def msg(tag: str, payload: Any = 1, session: str = "s1", nbytes: int = 10) -> Delivered:
    return Delivered(session_id=session, tag=tag, payload=payload, nbytes=nbytes)


@pytest.fixture
def wire() -> FakeWire:
    return FakeWire()


@pytest.fixture
def router(wire: FakeWire) -> Router:
    return Router(
        "alice", wire, recv_timeout=TIMEOUT, max_buffered_bytes=100, max_buffered_messages=4
    )


async def test_channel_implements_contract(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    assert isinstance(ch, Channel)
    assert ch.party_id == 0
    assert ch.n_parties == 3
    assert ch.parties == PARTIES
    assert ch.session_id == "s1"
    other = Router("carol", FakeWire()).open_channel("s1", PARTIES)
    assert other.party_id == 2


async def test_send_calls_mesh_and_counts_bytes(router: Router, wire: FakeWire) -> None:
    ch = router.open_channel("s1", PARTIES)
    await ch.send(1, "t#0", {"x": 1})
    await ch.send(2, "t#0", [1, 2])
    assert wire.sent == [("bob", "s1", "t#0", {"x": 1}), ("carol", "s1", "t#0", [1, 2])]
    assert ch.stats.bytes_sent == 200
    assert ch.stats.messages_sent == 2
    assert ch.stats.per_peer_bytes_sent == {"bob": 100, "carol": 100}


async def test_early_message_is_buffered(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    payload = np.arange(3, dtype=np.uint64)
    router.deliver("bob", msg("t#0", payload, nbytes=42))
    assert router.stats()["buffered_messages"] == 1
    got = await ch.recv(1, "t#0")
    np.testing.assert_array_equal(got, payload)
    assert ch.stats.bytes_received == 42
    assert ch.stats.messages_received == 1
    assert router.stats()["buffered_messages"] == 0
    assert router.stats()["buffered_bytes"] == 0


async def test_waiting_recv_gets_message(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    task = asyncio.create_task(ch.recv(2, "t#0"))
    await asyncio.sleep(0)
    router.deliver("carol", msg("t#0", "hello"))
    assert await task == "hello"
    assert router.stats()["buffered_messages"] == 0


async def test_messages_matched_by_peer_and_tag(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    router.deliver("carol", msg("b", "carol-b"))
    router.deliver("bob", msg("b", "bob-b"))
    router.deliver("bob", msg("a", "bob-a"))
    assert await ch.recv(1, "a") == "bob-a"
    assert await ch.recv(2, "b") == "carol-b"
    assert await ch.recv(1, "b") == "bob-b"


async def test_duplicate_tag_is_replay(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    router.deliver("bob", msg("t#0", "first"))
    with pytest.raises(ProtocolViolation, match="replayed"):
        router.deliver("bob", msg("t#0", "second"))
    assert await ch.recv(1, "t#0") == "first"
    # Also after the first one was consumed.
    with pytest.raises(ProtocolViolation, match="replayed"):
        router.deliver("bob", msg("t#0", "third"))
    assert router.stats()["dropped"] == {"replay": 2}
    # The session goes on; the same tag from another peer is a different message.
    router.deliver("carol", msg("t#0", "carol"))
    assert await ch.recv(2, "t#0") == "carol"


async def test_unknown_session_rejected(router: Router) -> None:
    router.open_channel("s1", PARTIES)
    with pytest.raises(ProtocolViolation, match="unknown session"):
        router.deliver("bob", msg("t", session="nope"))
    assert router.stats()["dropped"] == {"unknown-session": 1}


async def test_closed_session_rejected_and_unusable(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    router.deliver("bob", msg("t#0"))
    await ch.close()
    assert router.stats()["open_sessions"] == 0
    assert router.stats()["buffered_messages"] == 0
    with pytest.raises(ProtocolViolation, match="closed session"):
        router.deliver("bob", msg("t#1"))
    with pytest.raises(ProtocolViolation, match="closed"):
        await ch.recv(1, "t#0")
    with pytest.raises(ProtocolViolation, match="closed"):
        await ch.send(1, "t#2", 0)
    # The id can be reused by a new session afterwards.
    ch2 = router.open_channel("s1", PARTIES)
    router.deliver("bob", msg("t#0", "new"))
    assert await ch2.recv(1, "t#0") == "new"


async def test_close_wakes_waiting_receiver(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    task = asyncio.create_task(ch.recv(1, "t#0"))
    await asyncio.sleep(0)
    await ch.close()
    with pytest.raises(ProtocolViolation, match="closed"):
        await task


async def test_message_from_non_party_rejected(router: Router) -> None:
    router.open_channel("s1", ("alice", "bob"))
    with pytest.raises(ProtocolViolation, match="not a party"):
        router.deliver("carol", msg("t"))
    with pytest.raises(ProtocolViolation, match="not a party"):
        router.deliver("alice", msg("t"))


async def test_recv_timeout_raises_peer_unavailable(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    with pytest.raises(PeerUnavailable) as info:
        await ch.recv(1, "t#0")
    assert info.value.peer == "bob"
    # A late message is still buffered and a retried recv gets it.
    router.deliver("bob", msg("t#0", "late"))
    assert await ch.recv(1, "t#0") == "late"


async def test_channel_timeout_override(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES, timeout=0.05)
    assert ch.timeout == 0.05
    with pytest.raises(PeerUnavailable):
        await ch.recv(2, "x")


async def test_overflow_by_count_fails_session(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    waiting = asyncio.create_task(ch.recv(2, "wait"))
    await asyncio.sleep(0)
    for k in range(4):
        router.deliver("bob", msg(f"t#{k}", nbytes=1))
    with pytest.raises(ProtocolViolation, match="overflow"):
        router.deliver("bob", msg("t#4", nbytes=1))
    with pytest.raises(ProtocolViolation, match="overflow"):
        await waiting
    with pytest.raises(ProtocolViolation, match="overflow"):
        await ch.recv(1, "t#0")
    with pytest.raises(ProtocolViolation, match="overflow"):
        await ch.send(1, "u", 0)
    with pytest.raises(ProtocolViolation, match="failed session"):
        router.deliver("carol", msg("wait"))
    assert router.stats()["dropped"] == {"overflow": 1, "failed-session": 1}
    assert router.stats()["buffered_bytes"] == 0


async def test_overflow_by_bytes_only_hits_that_session(router: Router) -> None:
    ch1 = router.open_channel("s1", PARTIES)
    ch2 = router.open_channel("s2", PARTIES)
    router.deliver("bob", msg("a", nbytes=60))
    with pytest.raises(ProtocolViolation, match="overflow"):
        router.deliver("bob", msg("b", nbytes=41))
    router.deliver("bob", msg("a", "ok", session="s2", nbytes=100))
    assert await ch2.recv(1, "a") == "ok"
    with pytest.raises(ProtocolViolation):
        await ch1.recv(1, "a")


async def test_consumed_messages_free_buffer_space(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    for k in range(10):
        router.deliver("bob", msg(f"t#{k}", nbytes=90))
        await ch.recv(1, f"t#{k}")
    assert ch.stats.bytes_received == 900


async def test_duplicate_send_and_recv_rejected(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    await ch.send(1, "t#0", 1)
    with pytest.raises(ProtocolViolation, match="already sent"):
        await ch.send(1, "t#0", 2)
    router.deliver("bob", msg("t#0"))
    await ch.recv(1, "t#0")
    with pytest.raises(ProtocolViolation, match="already received"):
        await ch.recv(1, "t#0")
    task = asyncio.create_task(ch.recv(2, "t#0"))
    await asyncio.sleep(0)
    with pytest.raises(ProtocolViolation, match="already being awaited"):
        await ch.recv(2, "t#0")
    router.deliver("carol", msg("t#0", "c"))
    assert await task == "c"


async def test_invalid_peer_rejected(router: Router) -> None:
    ch = router.open_channel("s1", PARTIES)
    for bad in (0, 3, -1):
        with pytest.raises(ProtocolViolation, match="invalid peer"):
            await ch.send(bad, "t", 1)
        with pytest.raises(ProtocolViolation, match="invalid peer"):
            await ch.recv(bad, "t")


async def test_send_encoding_error_reaches_sender(router: Router, wire: FakeWire) -> None:
    ch = router.open_channel("s1", PARTIES)
    wire.error = FrameError("cannot encode object")
    with pytest.raises(FrameError):
        await ch.send(1, "t#0", object())
    assert ch.stats.messages_sent == 0
    wire.error = None
    await ch.send(1, "t#0", 1)  # the tag was not consumed by the failed send
    assert ch.stats.messages_sent == 1


async def test_open_channel_validation(router: Router) -> None:
    router.open_channel("s1", PARTIES)
    with pytest.raises(ConfigError, match="already open"):
        router.open_channel("s1", PARTIES)
    with pytest.raises(ConfigError):
        router.open_channel(CONTROL_SESSION, PARTIES)
    with pytest.raises(ConfigError):
        router.open_channel("", PARTIES)
    with pytest.raises(ConfigError, match="not a party"):
        router.open_channel("s2", ("bob", "carol"))
    with pytest.raises(ConfigError, match="distinct"):
        router.open_channel("s3", ("alice", "bob", "bob"))


async def test_fail_peer_and_restore(router: Router) -> None:
    ch1 = router.open_channel("s1", PARTIES)
    ch2 = router.open_channel("s2", PARTIES)
    router.deliver("bob", msg("arrived", "kept"))
    w1 = asyncio.create_task(ch1.recv(1, "x"))
    w2 = asyncio.create_task(ch2.recv(1, "y"))
    w3 = asyncio.create_task(ch1.recv(2, "x"))
    await asyncio.sleep(0)
    router.fail_peer("bob", PeerUnavailable("bob is gone", peer="bob"))
    for task in (w1, w2):
        with pytest.raises(PeerUnavailable, match="bob is gone"):
            await task
    with pytest.raises(PeerUnavailable, match="bob is gone"):
        await ch1.recv(1, "z")
    assert await ch1.recv(1, "arrived") == "kept"
    assert not w3.done()
    router.deliver("carol", msg("x", "from carol"))
    assert await w3 == "from carol"
    router.restore_peer("bob")
    router.deliver("bob", msg("z", "back"))
    assert await ch1.recv(1, "z") == "back"


async def test_control_messages_go_to_handler(router: Router, wire: FakeWire) -> None:
    got: list[tuple[str, str, Any]] = []
    done = asyncio.Event()

    async def handler(peer: str, tag: str, payload: Any) -> None:
        got.append((peer, tag, payload))
        done.set()

    with pytest.raises(ProtocolViolation, match="unhandled"):
        router.deliver("bob", msg("propose", session=CONTROL_SESSION))
    router.set_control_handler(handler)
    router.deliver("bob", msg("propose", {"job": 1}, session=CONTROL_SESSION))
    await asyncio.wait_for(done.wait(), 1.0)
    assert got == [("bob", "propose", {"job": 1})]
    await router.send_control("carol", "accept", {"job": 1})
    assert wire.sent[-1] == ("carol", CONTROL_SESSION, "accept", {"job": 1})


async def test_control_handler_errors_are_logged(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(peer: str, tag: str, payload: Any) -> None:
        raise ConfigError("bad proposal")

    router.set_control_handler(handler)
    with caplog.at_level(logging.ERROR, logger="transport.router"):
        router.deliver("bob", msg("propose", session=CONTROL_SESSION))
        for _ in range(5):
            await asyncio.sleep(0)
    assert router.stats()["control_errors"] == 1
    assert router.stats()["control_tasks"] == 0
    assert "bad proposal" in caplog.text


async def test_router_close(router: Router) -> None:
    started = asyncio.Event()

    async def handler(peer: str, tag: str, payload: Any) -> None:
        started.set()
        await asyncio.sleep(10)

    router.set_control_handler(handler)
    ch = router.open_channel("s1", PARTIES)
    waiting = asyncio.create_task(ch.recv(1, "t"))
    router.deliver("bob", msg("slow", session=CONTROL_SESSION))
    await started.wait()
    router.close()
    await router.wait_closed()
    assert router.stats()["control_tasks"] == 0
    with pytest.raises(PeerUnavailable, match="shutting down"):
        await waiting
    with pytest.raises(TransportError):
        router.open_channel("s2", PARTIES)
    with pytest.raises(TransportError):
        await router.send_control("bob", "x", 1)


async def test_control_backlog_is_bounded(wire: FakeWire) -> None:
    router = Router("alice", wire, max_control_tasks=2)
    release = asyncio.Event()

    async def handler(peer: str, tag: str, payload: Any) -> None:
        await release.wait()

    router.set_control_handler(handler)
    router.deliver("bob", msg("a", session=CONTROL_SESSION))
    router.deliver("bob", msg("b", session=CONTROL_SESSION))
    with pytest.raises(ProtocolViolation, match="already running"):
        router.deliver("bob", msg("c", session=CONTROL_SESSION))
    assert router.stats()["dropped"] == {"control-backlog": 1}
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert router.stats()["control_tasks"] == 0
    router.deliver("bob", msg("d", session=CONTROL_SESSION))
    router.close()
    await router.wait_closed()

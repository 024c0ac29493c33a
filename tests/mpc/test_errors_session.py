from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mpc.contracts import Channel, ChannelStats
from mpc.errors import (
    ConfigError,
    FrameTooLarge,
    MacCheckFailure,
    MPCError,
    ProtocolViolation,
    error_from_code,
)
from mpc.session import Session


def test_error_codes_roundtrip_and_are_unique() -> None:
    def walk(cls: type[MPCError]) -> list[type[MPCError]]:
        return [cls] + [c for s in cls.__subclasses__() for c in walk(s)]

    classes = walk(MPCError)
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert type(error_from_code(cls.code)) is cls
    assert isinstance(error_from_code("no-such-code"), ProtocolViolation)
    assert issubclass(MacCheckFailure, MPCError) and issubclass(FrameTooLarge, MPCError)


class LoopbackChannel:
    """A toy channel between n in-process parties, for testing Session tags only."""

    def __init__(self, hub: dict[tuple[int, int, str], asyncio.Queue[Any]], pid: int, n: int) -> None:
        self._hub, self._pid, self._n = hub, pid, n
        self._stats = ChannelStats()

    def _q(self, src: int, dst: int, tag: str) -> asyncio.Queue[Any]:
        return self._hub.setdefault((src, dst, tag), asyncio.Queue())

    party_id = property(lambda self: self._pid)
    n_parties = property(lambda self: self._n)
    parties = property(lambda self: tuple(f"p{i}" for i in range(self._n)))
    session_id = property(lambda self: "s")
    stats = property(lambda self: self._stats)

    async def send(self, peer: int, tag: str, payload: Any) -> None:
        self._stats.messages_sent += 1
        self._q(self._pid, peer, tag).put_nowait(payload)

    async def recv(self, peer: int, tag: str) -> Any:
        return await asyncio.wait_for(self._q(peer, self._pid, tag).get(), 2)

    async def close(self) -> None:
        pass


async def run_n(n: int, program: Any) -> list[Any]:
    hub: dict[tuple[int, int, str], asyncio.Queue[Any]] = {}
    sessions = [Session(LoopbackChannel(hub, i, n)) for i in range(n)]
    assert all(isinstance(s.channel, Channel) for s in sessions)
    return list(await asyncio.gather(*(program(s) for s in sessions)))


async def test_tags_are_deterministic_and_nested() -> None:
    async def prog(s: Session) -> list[str]:
        a = s.round("open").tag
        b = s.round("open").tag
        c = s.child("mul").round("open").tag
        d = s.child("mul").round("open").tag
        return [a, b, c, d]

    out = await run_n(3, prog)
    assert out[0] == out[1] == out[2]
    assert out[0] == ["/open#0", "/open#1", "/mul#0/open#0", "/mul#1/open#0"]


@pytest.mark.parametrize("n", [2, 3, 5])
async def test_exchange_broadcast_gather(n: int) -> None:
    async def prog(s: Session) -> tuple[Any, Any, Any]:
        ex = await s.exchange("x", s.party_id * 10)
        per = await s.exchange("y", {p: (s.party_id, p) for p in s.others}, per_peer=True)
        bc = await s.broadcast("b", "hello" if s.party_id == 1 else None, sender=1)
        ga = await s.gather("g", s.party_id, receiver=0)
        return ex, per, (bc, ga)

    out = await run_n(n, prog)
    for pid, (ex, per, (bc, ga)) in enumerate(out):
        assert ex == {p: p * 10 for p in range(n) if p != pid}
        assert per == {p: (p, pid) for p in range(n) if p != pid}
        assert bc == "hello"
        assert ga == ({p: p for p in range(n)} if pid == 0 else None)


async def test_bad_names_and_peers() -> None:
    async def prog(s: Session) -> None:
        with pytest.raises(ConfigError):
            s.round("a/b")
        with pytest.raises(ConfigError):
            s.child("x#1")
        with pytest.raises(ProtocolViolation):
            await s.round("r").send(s.party_id, 1)
        with pytest.raises(ConfigError):
            await s.exchange("e", {0: 1}, per_peer=True)
        with pytest.raises(ConfigError):
            s.party_index("nobody")
        assert s.party_index("p1") == 1

    await run_n(3, prog)


async def test_rounds_counted_once_per_round() -> None:
    async def prog(s: Session) -> int:
        await s.exchange("a", 1)
        await s.exchange("b", 2)
        return s.stats.rounds

    assert await run_n(3, prog) == [2, 2, 2]


class SummingEngine:
    """A toy SecretEngine: 'shares' are the plain values, inputs are broadcast (tests only)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.flushed = 0

    async def input(self, value: Any, owner: int | str, *, shape: Any = None, frac_bits: Any = None) -> Any:
        own = self.s.party_index(owner)
        return await self.s.broadcast("in", value if own == self.s.party_id else None, sender=own)

    async def reveal(self, x: Any, to: Any = None) -> Any:
        await self.flush()
        ids = None if to is None else {self.s.party_index(t) for t in (to if isinstance(to, list) else [to])}
        return x if ids is None or self.s.party_id in ids else None

    async def flush(self) -> None:
        self.flushed += 1


async def test_session_input_and_reveal_delegate_to_the_engine() -> None:
    from mpc.contracts import SECRET_ENGINE, SecretEngine

    async def prog(s: Session) -> Any:
        with pytest.raises(ConfigError):
            _ = s.engine
        with pytest.raises(ConfigError):
            await s.input(1, owner=0)
        s.resources[SECRET_ENGINE] = SummingEngine(s)
        assert isinstance(s.engine, SecretEngine) and s.child("sub").engine is s.engine
        a = await s.input(5 if s.party_id == 0 else None, owner="p0")
        b = await s.input(owner=1, shape=())
        return await s.reveal(a + (b or 0), to=["p1"]), await s.reveal(a)

    out = await run_n(2, prog)
    assert out == [(None, 5), (5, 5)]
    # an object that is not an engine is refused
    s = Session(LoopbackChannel({}, 0, 2), resources={"secret-engine": object()})
    with pytest.raises(ConfigError):
        _ = s.engine


async def test_exchange_names_the_silent_peer_and_leaves_no_receive_pending() -> None:
    """Receives are awaited in turn: a silent peer raises PeerUnavailable naming it, after the
    messages of the others were received, and no receive of the round stays registered."""
    from mpc.errors import PeerUnavailable
    from transport.memory import MemoryNetwork

    names = ["a", "b", "c"]
    async with MemoryNetwork(names, recv_timeout=0.3) as net:
        channels = [net[n].channel("silent", names) for n in names]
        sessions = [Session(ch) for ch in channels]

        async def talk(s: Session) -> Any:
            try:
                return await s.exchange("x", s.party_id)
            except PeerUnavailable as exc:
                return exc

        # c allocates the round but sends nothing.
        sessions[2].round("x")
        out = await asyncio.gather(*(talk(s) for s in sessions[:2]))
        for pid, err in enumerate(out):
            assert isinstance(err, PeerUnavailable) and err.peer == "c"
            ch = channels[pid]
            assert ch.stats.messages_received == 1  # the other talking party's message
            with pytest.raises(PeerUnavailable):  # not "already being awaited"
                await ch.recv(2, "/x#0")
        for ch in channels:
            await ch.close()

"""The websocket mesh over real TLS 1.3 on 127.0.0.1, every party in this one event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from mpc.errors import PeerUnavailable
from mpc.prg import PRG
from mpc.session import Session
from transport.faults import Fault, FaultPlan
from transport.framing import FrameLimits
from transport.identity import Federation, Identity, PeerInfo, generate_identity
from transport.link import Link
from transport.tls import client_context
from transport.tlsconn import TLSLayer
from transport.websocket import MESH_PATH, PARTY_HEADER, WebsocketMesh, _FrameReader

NAMES = ("a", "b", "c")
TIMEOUT = 3.0  # recv/connect timeout of the meshes; every test ends well within it when healthy


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def seeds() -> dict[str, bytes]:
    return {name: bytes([i + 1]) * 16 for i, name in enumerate(NAMES)}


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def identities(tmp_path: Path) -> dict[str, Identity]:
    return {name: generate_identity(name, tmp_path / "keys") for name in NAMES}


@pytest.fixture
def federation(identities: dict[str, Identity]) -> Federation:
    ports = _free_ports(len(NAMES))
    return Federation(
        tuple(
            PeerInfo.from_certificate(name, "127.0.0.1", port, identities[name].cert_path)
            for name, port in zip(NAMES, ports)
        )
    )


MeshFactory = Callable[..., WebsocketMesh]


@pytest.fixture
async def make_mesh(identities: dict[str, Identity], federation: Federation) -> Any:
    """Build meshes with test timeouts; every mesh made here is stopped at teardown."""
    made: list[WebsocketMesh] = []

    def factory(name: str, *, federation_: Federation | None = None, **kwargs: Any) -> WebsocketMesh:
        options: dict[str, Any] = {
            "recv_timeout": TIMEOUT,
            "connect_timeout": TIMEOUT,
            "ping_interval": 1.0,
            "backoff_initial": 0.02,
            "backoff_max": 0.2,
            "logger": logging.getLogger(f"test.mesh.{name}"),
        }
        options.update(kwargs)
        mesh = WebsocketMesh(identities[name], federation_ or federation, **options)
        made.append(mesh)
        return mesh

    yield factory
    for mesh in made:
        await mesh.stop()


async def _connected(meshes: list[WebsocketMesh], timeout: float = TIMEOUT) -> None:
    """Wait until every pair among ``meshes`` is connected."""
    names = {m.local_name for m in meshes}

    def ready() -> bool:
        return all(
            m.stats()["peers"][other]["state"] == "connected"
            for m in meshes
            for other in names - {m.local_name}
        )

    async with asyncio.timeout(timeout):
        while not ready():
            await asyncio.sleep(0.01)


async def _run(
    meshes: Mapping[str, WebsocketMesh],
    program: Callable[[Session, Any], Awaitable[Any]],
    inputs: Mapping[str, Any],
    seeds: Mapping[str, bytes],
    session_id: str,
) -> dict[str, Any]:
    """Run an SPMD program on the parties named in ``inputs`` (their order is the id order)."""
    parties = list(inputs)
    channels = [meshes[name].channel(session_id, parties) for name in parties]
    sessions = [Session(ch, prg=PRG(seeds[name])) for name, ch in zip(parties, channels)]
    try:
        async with asyncio.timeout(2 * TIMEOUT):
            outputs = await asyncio.gather(*(program(s, inputs[n]) for n, s in zip(parties, sessions)))
    finally:
        for ch in channels:
            await ch.close()
    return dict(zip(parties, outputs))


async def _exchange(session: Session, array: np.ndarray) -> dict[int, np.ndarray]:
    return await session.exchange("x", array)


def _check_all_to_all(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, dict[int, Any]]) -> None:
    parties = list(inputs)
    for me, got in outputs.items():
        assert sorted(got) == [i for i, name in enumerate(parties) if name != me]
        for pid, array in got.items():
            sent = inputs[parties[pid]]
            assert array.dtype == sent.dtype and array.shape == sent.shape
            np.testing.assert_array_equal(array, sent)


# -- the happy path ------------------------------------------------------------------------------


async def test_all_to_all_exchange_and_a_20_mb_array(
    make_mesh: MeshFactory, rng: np.random.Generator, seeds: dict[str, bytes]
) -> None:
    meshes = {name: make_mesh(name) for name in NAMES}
    for mesh in meshes.values():
        await mesh.start()
    await _connected(list(meshes.values()))

    inputs = {
        "a": rng.integers(0, 2**63, size=(17, 5), dtype=np.uint64),
        "b": rng.standard_normal(1000),
        "c": rng.integers(-(2**31), 2**31, size=(3, 4, 5), dtype=np.int64),
    }
    _check_all_to_all(inputs, await _run(meshes, _exchange, inputs, seeds, "small"))

    big = rng.integers(0, 2**64, size=20 * 2**20 // 8, dtype=np.uint64, endpoint=False)  # 20 MiB

    async def broadcast(session: Session, value: np.ndarray | None) -> np.ndarray:
        return await session.broadcast("big", value, sender=0)

    got = await _run(meshes, broadcast, {"a": big, "b": None, "c": None}, seeds, "big")
    for name in ("b", "c"):
        np.testing.assert_array_equal(got[name], big)

    # per-peer payloads in a session among two of the three parties
    async def per_peer(session: Session, _: None) -> dict[int, Any]:
        other = session.others[0]
        mine = np.arange(5, dtype=np.int64) + 10 * session.party_id
        return await session.exchange("pp", {other: mine}, per_peer=True)

    two = await _run(meshes, per_peer, {"c": None, "a": None}, seeds, "pair")
    np.testing.assert_array_equal(two["c"][1], np.arange(5) + 10)
    np.testing.assert_array_equal(two["a"][0], np.arange(5))

    stats = meshes["a"].stats()
    assert stats["peers"]["b"]["connects"] == 1 and stats["peers"]["b"]["role"] == "dialler"
    assert stats["peers"]["b"]["bytes_sent"] > big.nbytes
    assert meshes["c"].stats()["peers"]["a"]["role"] == "acceptor"
    assert stats["refused_connections"] == 0 and stats["frame_errors"] == 0

    for mesh in meshes.values():
        await mesh.stop()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []


# -- authentication -----------------------------------------------------------------------------


async def test_impostors_are_refused_before_any_message(
    make_mesh: MeshFactory,
    identities: dict[str, Identity],
    federation: Federation,
    tmp_path: Path,
    rng: np.random.Generator,
    seeds: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.mesh")
    c = make_mesh("c")
    await c.start()
    uri = f"wss://127.0.0.1:{federation.by_name('c').port}{MESH_PATH}"

    # 1. a key and certificate nobody pinned, under a member's name: TLS itself fails.
    intruder = generate_identity("a", tmp_path / "intruder")
    rogue = Federation(
        (PeerInfo.from_certificate("a", "127.0.0.1", 1, intruder.cert_path), federation.by_name("c"))
    )
    with pytest.raises((OSError, InvalidHandshake)):
        await connect(
            uri,
            ssl=client_context(intruder, rogue),
            proxy=None,
            open_timeout=TIMEOUT,
            additional_headers={PARTY_HEADER: "a"},
        )

    # 2. member b's genuine certificate, claiming to be a: refused at the upgrade (HTTP 403).
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            uri,
            ssl=client_context(identities["b"], federation),
            proxy=None,
            open_timeout=TIMEOUT,
            additional_headers={PARTY_HEADER: "a"},
        )
    assert refused.value.response.status_code == 403

    # 3. a dials "b" at an address where c answers: a's pin check refuses c before any request.
    misrouted = Federation(
        tuple(
            PeerInfo(p.name, p.host, federation.by_name("c").port, p.fingerprint, p.certificate)
            if p.name == "b"
            else p
            for p in federation
        )
    )
    a_lost = make_mesh("a", federation_=misrouted)
    await a_lost.start()
    async with asyncio.timeout(TIMEOUT):
        while a_lost.stats()["peers"]["b"]["refusals"] == 0:
            await asyncio.sleep(0.01)
    await a_lost.stop()

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("test.mesh")]
    assert any("refused an incoming connection: TLS handshake failed" in m for m in messages)
    assert any("claims to be 'a' but presents the certificate of 'b'" in m for m in messages)
    assert any("refused b: peer claims to be 'b' but presents the certificate of 'c'" in m for m in messages)
    c_stats = c.stats()
    assert c_stats["refused_connections"] >= 2
    assert c_stats["frames_received"] == 0 and c_stats["router"]["dropped"] == {}

    # the genuine parties still work
    a, b = make_mesh("a"), make_mesh("b")
    await a.start()
    await b.start()
    meshes = {"a": a, "b": b, "c": c}
    await _connected(list(meshes.values()))
    inputs = {name: rng.integers(0, 1000, size=7, dtype=np.int64) for name in NAMES}
    _check_all_to_all(inputs, await _run(meshes, _exchange, inputs, seeds, "after-impostors"))


# -- failures ----------------------------------------------------------------------------------


async def test_connection_killed_mid_stream_completes_exactly(
    make_mesh: MeshFactory, rng: np.random.Generator, seeds: dict[str, bytes]
) -> None:
    limits = FrameLimits(max_frame_bytes=64 * 1024)
    # a dials b and c; c accepts both. Kill a->b (dialler side) and c->a (acceptor side) while
    # multi-frame messages are in flight.
    meshes = {
        "a": make_mesh("a", limits=limits, faults=FaultPlan([Fault("disconnect", src="a", dst="b", after=4)])),
        "b": make_mesh("b", limits=limits),
        "c": make_mesh("c", limits=limits, faults=FaultPlan([Fault("disconnect", src="c", dst="a", after=6)])),
    }
    for mesh in meshes.values():
        await mesh.start()
    await _connected(list(meshes.values()))
    inputs = {name: rng.integers(0, 2**64, size=3 * 2**17, dtype=np.uint64, endpoint=False) for name in NAMES}

    async def twice(session: Session, array: np.ndarray) -> list[dict[int, np.ndarray]]:
        return [await session.exchange("x", array), await session.exchange("y", array[::-1].copy())]

    outputs = await _run(meshes, twice, inputs, seeds, "killed")
    _check_all_to_all(inputs, {n: o[0] for n, o in outputs.items()})
    _check_all_to_all({n: x[::-1] for n, x in inputs.items()}, {n: o[1] for n, o in outputs.items()})
    assert meshes["a"].stats()["faults"] == {"disconnect": 1}
    assert meshes["c"].stats()["faults"] == {"disconnect": 1}
    assert meshes["a"].stats()["peers"]["b"]["reconnects"] >= 1
    assert meshes["a"].stats()["peers"]["c"]["reconnects"] >= 1
    for mesh in meshes.values():
        assert mesh.stats()["router"]["dropped"] == {}


async def test_a_tampered_tls_record_drops_the_connection_and_nothing_is_lost(
    make_mesh: MeshFactory,
    federation: Federation,
    rng: np.random.Generator,
    seeds: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """a dials b through a TCP proxy that flips one bit of a's first large write: b's TLS
    layer refuses the record and drops the connection (logged with the reason), a re-dials,
    the link resends, and b receives the array intact."""
    caplog.set_level(logging.INFO, logger="test.mesh.b")
    b_port = federation.by_name("b").port
    armed = {"left": 1}

    async def relay(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tamper: bool) -> None:
        try:
            while data := await src.read(1 << 16):
                if tamper and armed["left"] and len(data) > 4096:
                    flipped = bytearray(data)
                    flipped[2048] ^= 0x10
                    data, armed["left"] = bytes(flipped), 0
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", b_port)
        await asyncio.gather(relay(c_reader, s_writer, True), relay(s_reader, c_writer, False))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        proxy_port = proxy.sockets[0].getsockname()[1]
        via_proxy = Federation(
            tuple(dataclasses.replace(p, port=proxy_port) if p.name == "b" else p for p in federation)
        )
        meshes = {"a": make_mesh("a", federation_=via_proxy), "b": make_mesh("b")}
        for mesh in meshes.values():
            await mesh.start()
        await _connected(list(meshes.values()))
        array = rng.integers(0, 2**64, size=2**19, dtype=np.uint64, endpoint=False)  # 4 MiB

        async def a_to_b(session: Session, x: np.ndarray | None) -> np.ndarray | None:
            rnd = session.round("bulk")
            if session.party_id == 0:
                await rnd.send(1, x)
                return None
            return await rnd.recv(0)

        out = await _run(meshes, a_to_b, {"a": array, "b": None}, seeds, "tampered")
        np.testing.assert_array_equal(out["b"], array)
        assert armed["left"] == 0
        assert meshes["a"].stats()["peers"]["b"]["reconnects"] >= 1
        assert any("TLS record failed" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    finally:
        proxy.close()


async def test_silent_peer_raises_then_reconnects_when_it_comes_back(
    make_mesh: MeshFactory, rng: np.random.Generator, seeds: dict[str, bytes]
) -> None:
    timeout = 1.0
    meshes = {name: make_mesh(name, recv_timeout=timeout, connect_timeout=timeout) for name in NAMES}
    await meshes["a"].start()
    await meshes["b"].start()  # c never starts (yet)
    await _connected([meshes["a"], meshes["b"]])
    channel = meshes["a"].channel("silent", list(NAMES))
    async with asyncio.timeout(timeout + 1.0):  # the receive must fail within its timeout
        with pytest.raises(PeerUnavailable) as err:
            await channel.recv(2, "never")
    assert err.value.peer == "c"
    await channel.close()
    assert meshes["a"].stats()["peers"]["c"]["state"] == "unavailable"

    # c comes up: a and b, still dialling in the background, connect and jobs run again
    await meshes["c"].start()
    await _connected(list(meshes.values()))
    assert meshes["a"].stats()["peers"]["c"]["state"] == "connected"
    inputs = {name: rng.integers(0, 100, size=3, dtype=np.int64) for name in NAMES}
    _check_all_to_all(inputs, await _run(meshes, _exchange, inputs, seeds, "back"))

    # b stops: a's receives from it fail once the peer is unreachable for connect_timeout
    await meshes["b"].stop()
    channel = meshes["a"].channel("stopped", list(NAMES))
    async with asyncio.timeout(timeout + 1.0):
        with pytest.raises(PeerUnavailable):
            await channel.recv(1, "never")
    await channel.close()

    # b restarts with fresh state: a and c notice, start their links to b over, and work with it
    meshes["b"] = make_mesh("b", recv_timeout=timeout, connect_timeout=timeout)
    await meshes["b"].start()
    await _connected(list(meshes.values()))
    inputs = {name: rng.integers(0, 100, size=4, dtype=np.int64) for name in NAMES}
    _check_all_to_all(inputs, await _run(meshes, _exchange, inputs, seeds, "restarted"))


async def test_garbage_from_an_authenticated_peer_is_dropped(
    make_mesh: MeshFactory,
    identities: dict[str, Identity],
    federation: Federation,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.mesh")
    c = make_mesh("c")
    await c.start()
    channel = c.channel("raw", ["a", "c"])
    # Play party a by hand: its genuine identity, its own Link, raw websocket frames.
    link = Link("a", "c")
    uri = f"wss://127.0.0.1:{federation.by_name('c').port}{MESH_PATH}"

    def dial() -> Any:
        return connect(
            uri,
            ssl=client_context(identities["a"], federation),
            proxy=None,
            compression=None,
            open_timeout=TIMEOUT,
            additional_headers={PARTY_HEADER: "a"},
        )

    async with dial() as ws:
        await ws.send(link.hello())
        link.receive_hello(await ws.recv())
        await ws.send("a text frame")  # not a Link frame: dropped, the connection stays
        link.send("raw", "t#0", np.arange(6, dtype=np.int32).reshape(2, 3))
        await ws.send(b"\xc1\x00 this is not msgpack")  # a bad frame: c drops the connection
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
    link.connection_lost()
    async with dial() as ws:  # the next connection resumes the link; nothing is lost
        await ws.send(link.hello())
        link.receive_hello(await ws.recv())
        for frame in link.data_to_send():
            await ws.send(frame)
        async with asyncio.timeout(TIMEOUT):
            got = await channel.recv(0, "t#0")
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.int32).reshape(2, 3))
    stats = c.stats()["peers"]["a"]
    assert stats["frames_dropped"] == 2 and stats["messages_dropped"] == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "test.mesh.c"]
    assert any("dropped a bad frame from a and the connection" in m for m in messages)
    assert any("dropped a text frame from a" in m for m in messages)
    await channel.close()


async def test_sends_wait_for_acknowledgements_beyond_the_window(
    make_mesh: MeshFactory, rng: np.random.Generator, seeds: dict[str, bytes]
) -> None:
    window = 100_000
    a = make_mesh("a", max_unacked_bytes=window)
    b = make_mesh("b")
    await a.start()
    await b.start()
    arrays = [rng.integers(0, 2**32, size=8192, dtype=np.uint64) for _ in range(20)]  # 64 KiB each
    sender = a.channel("window", ["a", "b"])
    receiver = b.channel("window", ["a", "b"])
    peaks = []
    async with asyncio.timeout(2 * TIMEOUT):
        for i, array in enumerate(arrays):
            await sender.send(1, f"m#{i}", array)
            peaks.append(a.stats()["peers"]["b"]["unacked_bytes"])
        received = [await receiver.recv(0, f"m#{i}") for i in range(len(arrays))]
    for got, sent in zip(received, arrays):
        np.testing.assert_array_equal(got, sent)
    message_bytes = sender.stats.bytes_sent // len(arrays)
    assert max(peaks) < window + message_bytes  # a send waits while the window is full
    await sender.close()
    await receiver.close()


async def test_inline_small_writes_and_writer_chunked_writes_never_interleave(
    make_mesh: MeshFactory, prg: PRG
) -> None:
    """A sender writes a one-frame message itself when the link's writer is idle; multi-frame
    messages (and anything sent while the writer is busy) go through the writer. Mixed from
    concurrent tasks, every message still arrives whole and intact."""
    limits = FrameLimits(max_frame_bytes=4096)
    a = make_mesh("a", limits=limits)
    b = make_mesh("b", limits=limits)
    await a.start()
    await b.start()
    await _connected([a, b])
    inline: list[bool] = []
    write_inline = a._write_inline

    def spy(p: Any, nbytes: int) -> bool:
        inline.append(write_inline(p, nbytes))
        return inline[-1]

    a._write_inline = spy  # type: ignore[method-assign]
    write = a._write

    async def slow_write(p: Any, ws: Any, frame: Any) -> bool:
        await asyncio.sleep(0)  # the writer yields between frames, as when TCP is slow
        return await write(p, ws, frame)

    a._write = slow_write  # type: ignore[method-assign]
    arrays = [prg.uint64(3000 if i % 4 == 0 else 4) for i in range(42)]  # 6 frames, or 1
    sender = a.channel("mix", ["a", "b"])
    receiver = b.channel("mix", ["a", "b"])
    async with asyncio.timeout(2 * TIMEOUT):
        for i, array in enumerate(arrays[:-1]):
            await sender.send(1, f"m#{i}", array)
            if i % 4 == 0:  # the writer starts on the chunked message: small ones must queue
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        while a._peers["b"].idle_ws is None:  # the writer is done: the next one goes inline
            await asyncio.sleep(0.01)
        await sender.send(1, f"m#{len(arrays) - 1}", arrays[-1])
        received = [await receiver.recv(0, f"m#{i}") for i in range(len(arrays))]
    for got, sent in zip(received, arrays):
        np.testing.assert_array_equal(got, sent)
    assert True in inline and False in inline  # both paths were taken
    assert b.stats()["peers"]["a"]["frames_dropped"] == 0
    assert inline[-1] and inline[0] is False
    await sender.close()
    await receiver.close()


async def _exchange_rounds(session: Session, x: np.ndarray) -> list[np.ndarray]:
    """Exchange ``x`` for three rounds, changing it after every send (allowed once sent)."""
    out = []
    for _ in range(3):
        got = await session.exchange("bulk", x)
        out.append(got[1 - session.party_id])
        x[:1] += 1
    return out


async def _exchange_handed_over(session: Session, n: int) -> list[np.ndarray]:
    """Exchange fresh read-only arrays (sent from their memory, uncopied) for three rounds."""
    out = []
    for r in range(3):
        x = np.arange(n, dtype=np.uint64) * np.uint64(session.party_id + 1) + np.uint64(r)
        x.flags.writeable = False
        got = await session.exchange("handed", x)
        out.append(got[1 - session.party_id])
    return out


def _handed_over_arrive_intact(out: Mapping[str, list[np.ndarray]], n: int) -> None:
    for me, other in (("a", "b"), ("b", "a")):
        for r, got in enumerate(out[me]):
            np.testing.assert_array_equal(got, np.arange(n, dtype=np.uint64) * np.uint64(NAMES.index(other) + 1) + np.uint64(r))


def test_pieces_of_a_frame_are_masked_from_their_offsets() -> None:
    """A frame written as pieces (a client's, masked) is the websocket frame of the joined bytes."""
    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode
    from websockets.streams import StreamReader

    from transport.framing import FramePieces
    from transport.websocket import _binary_frame

    data = bytes(range(256)) * 700
    for cuts in ([5], [1, 2, 3], [7, 70_000], [4, 8, 12]):
        edges = [0, *cuts, len(data)]
        frame = FramePieces([data[a:b] for a, b in zip(edges, edges[1:])])
        for mask in (False, True):
            reader = StreamReader()
            reader.feed_data(b"".join(bytes(p) for p in _binary_frame(frame, mask)))
            parse = WsFrame.parse(reader.read_exact, mask=mask)
            with pytest.raises(StopIteration) as done:
                next(parse)
            parsed = done.value.value
            assert parsed.opcode is Opcode.BINARY and parsed.fin and parsed.data == data


async def test_bulk_messages_take_the_zero_copy_path_intact(make_mesh: MeshFactory, prg: PRG) -> None:
    meshes = {"a": make_mesh("a"), "b": make_mesh("b")}
    await _bulk_exchange_takes_the_zero_copy_path(meshes, prg)


def test_bulk_messages_take_the_zero_copy_path_on_uvloop(
    identities: dict[str, Identity], federation: Federation, prg: PRG
) -> None:
    """Party processes run on uvloop: its TCP transports feed the TLS layer, which decrypts
    straight into the connection's buffer there too."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        meshes = {
            n: WebsocketMesh(identities[n], federation, recv_timeout=TIMEOUT, connect_timeout=TIMEOUT) for n in ("a", "b")
        }
        try:
            await _bulk_exchange_takes_the_zero_copy_path(meshes, prg)
        finally:
            for mesh in meshes.values():
                await mesh.stop()

    uvloop.run(main())


async def _bulk_exchange_takes_the_zero_copy_path(meshes: dict[str, WebsocketMesh], prg: PRG) -> None:
    for mesh in meshes.values():
        await mesh.start()
    await _connected(list(meshes.values()))
    inputs = {n: prg.uint64(3 * (1 << 20) // 8 + 5) for n in ("a", "b")}  # 4 frames per message
    expected = {n: [x.copy() for _ in range(3)] for n, x in inputs.items()}
    for arrays in expected.values():
        for r, array in enumerate(arrays):
            array[:1] += r
    out = await _run(meshes, _exchange_rounds, inputs, {n: bytes(16) for n in ("a", "b")}, "bulk")
    for me, other in (("a", "b"), ("b", "a")):
        for got, want in zip(out[me], expected[other]):
            np.testing.assert_array_equal(got, want)
        peer = meshes[me]._peers[other]
        assert peer.ws is not None and isinstance(peer.ws.protocol.reader, _FrameReader)
        assert isinstance(peer.ws.transport, TLSLayer) and peer.ws.transport.get_protocol() is peer.ws
        stats = meshes[me].stats()["peers"][other]
        assert stats["frames_dropped"] == 0
        assert 12 <= stats["frames_sent"] <= 12 + 3  # 3 messages of 4 frames, at most one ACK each
    n = 3 * (1 << 20) // 8 + 5  # 4 frames per message, sent as pieces of the arrays
    _handed_over_arrive_intact(await _run(meshes, _exchange_handed_over, {"a": n, "b": n}, {n: bytes(16) for n in ("a", "b")}, "handed"), n)


async def test_acks_ride_on_data_and_a_lone_ack_waits_for_its_timer(make_mesh: MeshFactory) -> None:
    meshes = {"a": make_mesh("a", ack_delay=0.5), "b": make_mesh("b", ack_delay=0.5)}
    for mesh in meshes.values():
        await mesh.start()
    await _connected(list(meshes.values()))
    rounds = 20

    async def ping_pong(session: Session, _: Any) -> int:
        total = 0
        for i in range(rounds):
            got = await session.exchange("small", i)
            total += got[1 - session.party_id]
        return total

    out = await _run(meshes, ping_pong, {"a": None, "b": None}, {n: bytes(16) for n in ("a", "b")}, "small")
    assert out == {"a": sum(range(rounds)), "b": sum(range(rounds))}
    for me, other in (("a", "b"), ("b", "a")):
        assert meshes[me].stats()["peers"][other]["frames_sent"] <= rounds + 1  # no ACK per message
    async with asyncio.timeout(TIMEOUT):  # the last message's ACK goes out when its timer fires
        while any(m.stats()["peers"][o]["unacked_bytes"] for m, o in ((meshes["a"], "b"), (meshes["b"], "a"))):
            await asyncio.sleep(0.02)


def _drive(gen: Any) -> Any:
    """Run a reader coroutine that must complete without more data."""
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the reader wants more data")


def test_frame_reader_views_buffering_and_eof() -> None:
    reader = _FrameReader()
    reader.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert _drive(reader.read_line(100)) == bytearray(b"GET / HTTP/1.1\r\n")
    line = reader.read_line(100)
    assert _drive(line) == bytearray(b"Host: x\r\n")
    pending = reader.read_exact(5000)
    next(pending)  # waits for data
    payload = bytes(range(256)) * 20
    buf = reader.get_buffer(len(payload))
    assert len(buf) >= len(payload)
    buf[: len(payload)] = payload
    reader.buffer_updated(len(payload))
    with pytest.raises(StopIteration) as stop:
        next(pending)
    view = stop.value.value
    assert isinstance(view, memoryview) and view.readonly and bytes(view) == payload[:5000]
    assert _drive(reader.read_exact(2)) == payload[5000:5002] and isinstance(_drive(reader.read_exact(1)), bytes)
    # Growing keeps the unread bytes; a read longer than the buffer is assembled whole.
    big = bytes(range(251)) * 4000
    for i in range(0, len(big), 70_000):
        reader.feed_data(big[i : i + 70_000])
    assert bytes(_drive(reader.read_exact(len(payload) - 5003))) == payload[5003:]
    assert bytes(_drive(reader.read_exact(len(big)))) == big
    with pytest.raises(RuntimeError):
        reader.feed_data(b"x" * 200)
        _drive(reader.read_line(100))
    reader.discard()
    waiting = reader.at_eof()
    next(waiting)  # nothing unread, no EOF yet: waits
    reader.feed_eof()
    with pytest.raises(EOFError):
        _drive(reader.read_exact(1))
    assert _drive(reader.at_eof()) is True
    with pytest.raises(EOFError):
        reader.feed_data(b"late")


async def test_stop_sends_the_acknowledgements_it_still_owes(make_mesh: MeshFactory) -> None:
    """A stopping mesh acknowledges what it received, though its ACK timer has not fired: a peer
    that waits for its sends to be acknowledged (as a party process does before it exits) must
    not wait for a party that is gone."""
    meshes = {"a": make_mesh("a", ack_delay=60.0), "b": make_mesh("b", ack_delay=60.0)}
    for mesh in meshes.values():
        await mesh.start()
    await _connected(list(meshes.values()))

    async def one_way(session: Session, _: Any) -> int:
        rnd = session.round("last")
        if session.party_id == 0:
            await rnd.send(1, 42)
            return 0
        return int(await rnd.recv(0))

    out = await _run(meshes, one_way, {"a": None, "b": None}, {n: bytes(16) for n in ("a", "b")}, "last")
    assert out == {"a": 0, "b": 42}
    assert meshes["a"].stats()["peers"]["b"]["unacked_bytes"] > 0  # b holds its ACK for 60 s
    await meshes["b"].stop()
    async with asyncio.timeout(TIMEOUT):
        while meshes["a"].stats()["peers"]["b"]["unacked_bytes"]:
            await asyncio.sleep(0.01)

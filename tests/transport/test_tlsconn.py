"""The TLS layer below the mesh's websockets (transport.tlsconn) on its own TCP connections.

Identities ``alpha``, ``beta`` and their federation come from ``tests/transport/conftest.py``."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from mpc.errors import TLSFailure
from transport.identity import Federation, Identity, PeerInfo, generate_identity
from transport.tls import client_context, mesh_context, verify_peer
from transport.tlsconn import TLSLayer

TIMEOUT = 5.0


class Collector(asyncio.BufferedProtocol):
    """An application protocol that keeps what it receives."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.data = bytearray()
        self.made: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.made.set_result(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Served:
    """A TLS server on localhost: every accepted connection's layer and application, and the
    handshake failures it reported."""

    def __init__(self, server: asyncio.Server, accepted: list[tuple[TLSLayer, Collector]], failures: list[Exception]) -> None:
        self.server, self.accepted, self.failures = server, accepted, failures
        self.port: int = server.sockets[0].getsockname()[1]


async def _serve(server_id: Identity, federation: Federation, *, timeout: float = TIMEOUT) -> Served:
    """Accept TLS connections as ``server_id`` with the mesh's context."""
    accepted: list[tuple[TLSLayer, Collector]] = []
    failures: list[Exception] = []

    def factory() -> TLSLayer:
        app = Collector()
        layer = TLSLayer(mesh_context(server_id, federation), True, app, handshake_timeout=timeout, on_failure=failures.append)
        accepted.append((layer, app))
        return layer

    return Served(await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0), accepted, failures)


async def _pair(
    server_id: Identity, client_id: Identity, federation: Federation, *, via: Any = None, timeout: float = TIMEOUT
) -> tuple[TLSLayer, Collector, TLSLayer, Collector, list[Exception], asyncio.Server]:
    """A server layer and a client layer over TCP on localhost (optionally through ``via``)."""
    served = await _serve(server_id, federation, timeout=timeout)
    port = served.port if via is None else await via(served.port)
    client_app = Collector()
    client = TLSLayer(mesh_context(client_id, federation), False, client_app, handshake_timeout=timeout)
    await asyncio.get_running_loop().create_connection(lambda: client, "127.0.0.1", port)
    for _ in range(200):
        if served.accepted:
            break
        await asyncio.sleep(0.01)
    layer, app = served.accepted[0]
    return layer, app, client, client_app, served.failures, served.server


async def test_handshake_pins_both_sides_and_moves_bulk_data_both_ways(
    identities: dict[str, Identity], federation: Federation
) -> None:
    server, s_app, client, c_app, failures, srv = await _pair(identities["beta"], identities["alpha"], federation)
    try:
        await asyncio.wait_for(client.ready, TIMEOUT)
        await asyncio.wait_for(server.ready, TIMEOUT)
        assert await s_app.made is server and await c_app.made is client
        assert client.peer().version() == "TLSv1.3"
        assert verify_peer(client.get_extra_info("ssl_object"), federation, "beta").name == "beta"
        assert verify_peer(server.get_extra_info("ssl_object"), federation, "alpha").name == "alpha"
        big = bytes(range(256)) * 4096 * 3  # 3 MiB: many records, several reads
        client.write(big)
        server.writelines([b"x" * 10, memoryview(big)[:70_000]])
        for _ in range(500):
            if len(s_app.data) == len(big) and len(c_app.data) == 70_010:
                break
            await asyncio.sleep(0.01)
        assert bytes(s_app.data) == big
        assert bytes(c_app.data) == b"x" * 10 + big[:70_000]
        client.close()
        assert await asyncio.wait_for(s_app.lost, TIMEOUT) is None  # close_notify, then EOF
        await asyncio.wait_for(c_app.lost, TIMEOUT)
        assert failures == []
    finally:
        srv.close()


async def test_a_certificate_nobody_pinned_fails_the_handshake(
    identities: dict[str, Identity], federation: Federation, tmp_path: Path
) -> None:
    intruder = generate_identity("alpha", tmp_path)
    rogue = Federation((PeerInfo.from_certificate("alpha", "127.0.0.1", 1, intruder.cert_path), federation.by_name("beta")))
    served = await _serve(identities["beta"], federation)
    failures = served.failures
    try:
        c_app = Collector()
        client = TLSLayer(mesh_context(intruder, rogue), False, c_app, handshake_timeout=TIMEOUT)
        await asyncio.get_running_loop().create_connection(lambda: client, "127.0.0.1", served.port)
        # TLS 1.3: the client is done before the server has checked the client's certificate;
        # the server's alert then ends the connection.
        await asyncio.wait_for(c_app.lost, TIMEOUT)
        for _ in range(200):
            if failures:
                break
            await asyncio.sleep(0.01)
        assert len(failures) == 1 and isinstance(failures[0], TLSFailure)
        assert "certificate" in str(failures[0])
        assert not served.accepted[0][1].made.done()  # the application never saw the connection
    finally:
        served.server.close()


async def test_silence_and_garbage_end_in_a_typed_failure(identities: dict[str, Identity], federation: Federation) -> None:
    served = await _serve(identities["beta"], federation, timeout=0.3)
    failures, port = served.failures, served.port
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # dropped after the timeout
        writer.close()
        assert "within" in str(failures[-1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)  # not TLS
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        assert len(failures) == 2 and all(isinstance(f, TLSFailure) for f in failures)
    finally:
        served.server.close()


async def test_a_tampered_record_drops_the_connection_and_delivers_nothing_of_it(
    identities: dict[str, Identity], federation: Federation
) -> None:
    """A proxy flips one bit of the client's first application record: the server's layer
    refuses the record (AES-GCM tag), aborts, and its application gets no byte of it."""
    loop = asyncio.get_running_loop()
    state = {"seen": 0, "armed": False}

    async def via(port: int) -> int:
        async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", port)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tamper: bool) -> None:
                while data := await src.read(1 << 16):
                    if tamper and state["armed"] and len(data) > 1000:
                        flipped = bytearray(data)
                        flipped[500] ^= 1
                        data = bytes(flipped)
                        state["armed"] = False
                        state["seen"] += 1
                    dst.write(data)
                dst.close()

            await asyncio.gather(pump(c_reader, s_writer, True), pump(s_reader, c_writer, False), return_exceptions=True)

        proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
        state["proxy"] = proxy
        return int(proxy.sockets[0].getsockname()[1])

    server, s_app, client, c_app, failures, srv = await _pair(identities["beta"], identities["alpha"], federation, via=via)
    try:
        await asyncio.wait_for(client.ready, TIMEOUT)
        await asyncio.wait_for(server.ready, TIMEOUT)
        state["armed"] = True
        client.write(b"secret payload " * 1000)
        lost = await asyncio.wait_for(s_app.lost, TIMEOUT)
        assert isinstance(lost, TLSFailure) and "record" in str(lost)
        assert state["seen"] == 1
        assert bytes(s_app.data) == b""
        assert server.is_closing()
    finally:
        srv.close()
        state["proxy"].close()  # type: ignore[attr-defined]


async def test_a_client_below_tls_1_3_is_refused(identities: dict[str, Identity], federation: Federation) -> None:
    """The mesh's context speaks TLS 1.3 only: a (pinned) client capped at TLS 1.2 fails."""
    served = await _serve(identities["beta"], federation)
    try:
        old = client_context(identities["alpha"], federation)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", served.port, ssl=old, server_hostname="beta"), TIMEOUT)
        assert len(served.failures) == 1 and isinstance(served.failures[0], TLSFailure)
    finally:
        served.server.close()


def _memory_handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Run a handshake between two memory-BIO connections, then let the client read what the
    server sent after it (TLS 1.3 tickets, if any)."""
    for _ in range(20):
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        for src, dst in ((client, server), (server, client)):
            try:
                dst.bio_write(src.bio_read(1 << 20))
            except SSL.WantReadError:
                pass
    with pytest.raises(SSL.WantReadError):
        client.recv(1024)


def test_a_second_connection_authenticates_fully(identities: dict[str, Identity], federation: Federation) -> None:
    """No session resumption: a client that offers its previous session gets a full handshake
    again, in which the server sends its certificate and reads the client's (OpenSSL's
    handshake states, seen by an info callback; a resumed TLS 1.3 handshake has neither)."""
    server_ctx, client_ctx = mesh_context(identities["beta"], federation), mesh_context(identities["alpha"], federation)
    states: list[bytes] = []
    server_ctx.set_info_callback(lambda conn, where, ret: states.append(conn.get_state_string()))

    def pair() -> tuple[SSL.Connection, SSL.Connection]:
        server, client = SSL.Connection(server_ctx, None), SSL.Connection(client_ctx, None)
        server.set_accept_state()
        client.set_connect_state()
        return client, server

    client, server = pair()
    _memory_handshake(client, server)
    session = client.get_session()
    assert session is not None
    states.clear()
    again, server2 = pair()
    again.set_session(session)
    _memory_handshake(again, server2)
    assert again.get_protocol_version_name() == "TLSv1.3"
    assert b"SSLv3/TLS write certificate" in states and b"SSLv3/TLS read client certificate" in states

"""TLS 1.3 under the mesh's websockets, on the OpenSSL that ``cryptography`` ships (pyOpenSSL).

The mesh moves most of a job's bytes through TLS: at bulk rates, encrypting and decrypting the
records is the largest single cost of a party after its own arithmetic. Python's :mod:`ssl`
runs on the operating system's OpenSSL (3.0 on the reference machine), whose AES-GCM reaches
~4.5 GB/s there; the OpenSSL that ``cryptography`` ships (and pyOpenSSL drives) has the
AVX-512 AES-GCM and reaches ~11 GB/s on the same core. :class:`TLSLayer` runs a connection's
TLS on the latter, with memory BIOs, between the TCP transport and the websocket connection:

- to the TCP transport it is the protocol (it receives ciphertext, writes ciphertext);
- to the websocket connection it is the transport (it takes plaintext writes, delivers
  plaintext into the connection's receive buffer, :class:`asyncio.BufferedProtocol` style).

The protocol version, certificates and trust store are :mod:`transport.tls`'s policy
(:func:`transport.tls.mesh_context`): TLS 1.3 only, a certificate on both sides verified
against the federation's pinned certificates, no session tickets or cache; the pin of the
party is checked after the handshake (:func:`transport.tls.verify_peer`, on :meth:`TLSLayer.peer`).

Failures: a handshake that fails (a certificate nobody pinned, a protocol error) or does not
finish within its timeout aborts the TCP connection; :attr:`TLSLayer.ready` then holds a
:class:`TLSFailure` (and the server's ``on_failure`` hears of it). A record that fails to
authenticate after the handshake aborts the connection: the websocket connection sees it lost
with that :class:`TLSFailure`. Nothing is decrypted for the application before the handshake
completes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from mpc.errors import TLSFailure

__all__ = ["TLSLayer", "PeerView", "describe"]

_READ_BYTES = 256 * 1024
"""Ciphertext the TCP transport may deliver per read."""

_RECORD = 16 * 1024 + 256
"""Most plaintext one TLS record carries (2^14 bytes), with slack."""

_SLACK = 64 * 1024
"""Ciphertext read out of the TLS engine beyond what the last write accounts for."""


def describe(exc: SSL.Error) -> str:
    """OpenSSL's reasons for ``exc``, for the local log (e.g. ``certificate verify failed``)."""
    queue = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [str(entry[2]) for entry in queue if isinstance(entry, tuple) and len(entry) == 3]
    return "; ".join(reasons) or type(exc).__name__


class PeerView:
    """What :mod:`transport.tls` reads of a finished handshake (``ssl.SSLObject``'s names)."""

    def __init__(self, conn: SSL.Connection) -> None:
        self._conn = conn

    def version(self) -> str | None:
        """The negotiated protocol version, e.g. ``"TLSv1.3"``."""
        return self._conn.get_protocol_version_name()

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        """The peer's certificate in DER (only ``binary_form=True`` is supported)."""
        if not binary_form:
            raise TypeError("only the binary (DER) form of the peer certificate is available")
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        return None if cert is None else cert.public_bytes(Encoding.DER)


class TLSLayer(asyncio.BufferedProtocol, asyncio.Transport):
    """One TLS connection between a TCP transport and an application protocol.

    Args:
        context: the pyOpenSSL context (:func:`transport.tls.mesh_context`).
        server_side: accept (``True``) or initiate the handshake.
        app: the application protocol; it must have ``get_buffer`` and ``buffer_updated``
            (:class:`asyncio.BufferedProtocol`'s receive methods). Its ``connection_made`` is
            called with this layer once the handshake is done.
        handshake_timeout: seconds the handshake may take from the TCP connection.
        on_failure: called with the :class:`TLSFailure` of a failed handshake (must not raise).

    Attributes:
        ready: resolves when the handshake is done, or holds its :class:`TLSFailure` (or the
            error that closed the connection first).
    """

    def __init__(
        self,
        context: SSL.Context,
        server_side: bool,
        app: Any,
        *,
        handshake_timeout: float,
        on_failure: Callable[[TLSFailure], None] | None = None,
    ) -> None:
        super().__init__()
        self._conn = SSL.Connection(context, None)
        if server_side:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
        self._app = app
        self._app_connected = False
        self._raw: asyncio.Transport | None = None
        self._in = memoryview(bytearray(_READ_BYTES))
        self._state = "handshake"  # handshake | open | closing | closed
        self._timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._on_failure = on_failure
        self._error: TLSFailure | None = None  # why this layer aborted, for connection_lost
        self._peer = PeerView(self._conn)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(_consume)

    # -- the TCP side (this layer is the TCP transport's protocol) ----------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)
        self._advance()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._in

    def buffer_updated(self, nbytes: int) -> None:
        if self._state == "closed":
            return
        self._conn.bio_write(self._in[:nbytes])
        if self._state == "handshake":
            self._advance()
        if self._state in ("open", "closing"):
            self._deliver()

    def eof_received(self) -> bool:
        if self._app_connected:
            self._app.eof_received()
        return False  # the TCP transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._state = "closed"
        if not self.ready.done():
            self.ready.set_exception(TLSFailure(f"connection closed during the TLS handshake: {exc or 'EOF'}"))
        if self._app_connected:
            self._app_connected = False
            self._app.connection_lost(exc if exc is not None else self._error)

    def pause_writing(self) -> None:
        if self._app_connected:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_connected:
            self._app.resume_writing()

    # -- the handshake and the records ----------------------------------------------------------

    def _advance(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._flush()  # the alert, if OpenSSL wrote one
            self._fail(TLSFailure(f"TLS handshake failed: {describe(exc)}"))
            return
        self._flush()
        if self._peer.version() != "TLSv1.3":  # the context allows nothing else; checked anyway
            self._fail(TLSFailure(f"negotiated {self._peer.version()}, not TLSv1.3"))
            return
        self._cancel_timer()
        self._state = "open"
        self._app_connected = True
        self._app.connection_made(self)
        if not self.ready.done():
            self.ready.set_result(None)

    def _deliver(self) -> None:
        """Decrypt every complete record into the application's buffer (one update per fill)."""
        while self._app_connected and self._state != "closed":
            app = self._app
            buf = memoryview(app.get_buffer(-1))
            size = len(buf)
            filled = 0
            recv_into = self._conn.recv_into
            try:
                while filled < size:  # one record per call (at most _RECORD bytes)
                    filled += recv_into(buf[filled:], _RECORD)
            except SSL.WantReadError:
                if filled:
                    app.buffer_updated(filled)
                return
            except SSL.ZeroReturnError:  # the peer's close_notify: no more data
                if filled:
                    app.buffer_updated(filled)
                if self._raw is not None:
                    self._raw.close()
                return
            except SSL.Error as exc:
                self._abort_with(TLSFailure(f"TLS record failed: {describe(exc)}"))
                return
            app.buffer_updated(filled)

    def _flush(self, written: int = 0) -> None:
        """Hand every pending ciphertext byte to the TCP transport (``written`` plaintext bytes
        were just encrypted: their records are read out at once)."""
        raw = self._raw
        if raw is None:
            return
        size = written + (written >> 8) + _SLACK  # a record adds 22 bytes to up to 16 KB
        while True:
            try:
                out = self._conn.bio_read(size)
            except SSL.WantReadError:  # nothing pending
                return
            raw.write(out)
            if len(out) < size:  # a memory BIO hands out all it holds, up to ``size``
                return
            size = _SLACK

    def _fail(self, exc: TLSFailure) -> None:
        self._cancel_timer()
        self._state = "closed"
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self._on_failure is not None:
            self._on_failure(exc)
        if self._raw is not None:
            self._raw.abort()

    def _abort_with(self, exc: TLSFailure) -> None:
        self._error = exc
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.abort()

    def _timed_out(self) -> None:
        self._timer = None
        if self._state == "handshake":
            self._fail(TLSFailure(f"TLS handshake did not finish within {self._timeout:g} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the application side (this layer is the application's transport) ----------------------

    def write(self, data: Any) -> None:
        if self._state != "open":
            return  # as asyncio's transports: writes after close are dropped
        try:
            written = self._conn.sendall(data)
        except SSL.Error as exc:
            self._abort_with(TLSFailure(f"TLS write failed: {describe(exc)}"))
            return
        self._flush(written)

    def writelines(self, list_of_data: Any) -> None:
        if self._state != "open":
            return
        total = 0
        try:
            for data in list_of_data:
                total += self._conn.sendall(data)
        except SSL.Error as exc:
            self._abort_with(TLSFailure(f"TLS write failed: {describe(exc)}"))
            return
        self._flush(total)

    def close(self) -> None:
        if self._state in ("closing", "closed"):
            return
        opened = self._state == "open"
        self._state = "closing"
        if opened:
            try:
                self._conn.shutdown()  # close_notify
            except SSL.Error:
                pass
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._state = "closed"
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._state != "open" or self._raw is None or self._raw.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot half-close")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._peer if self._state != "handshake" else None
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)

    @property
    def error(self) -> TLSFailure | None:
        """Why this layer aborted the connection (a record that did not authenticate), if it did."""
        return self._error

    def peer(self) -> PeerView:
        """The finished handshake's protocol version and peer certificate."""
        return self._peer

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None:
            self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw is not None and self._raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return 0 if self._raw is None else self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0) if self._raw is None else self._raw.get_write_buffer_limits()

    def get_protocol(self) -> Any:
        return self._app

    def set_protocol(self, protocol: Any) -> None:
        self._app = protocol


def _consume(future: asyncio.Future[None]) -> None:
    """Mark a failed :attr:`TLSLayer.ready` as seen (nobody may be waiting on it)."""
    if not future.cancelled():
        future.exception()

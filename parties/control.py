"""The node's local control interface: JSON lines over a Unix socket.

The socket lives in the node's state directory (mode 0700) and is itself mode 0600, so only the
operator's account can talk to it; it is never exposed to peers (peers reach the node only through
the authenticated mesh). One request per connection: the client writes one JSON object and a
newline, the node answers with one JSON object and a newline — or, for a streamed request (e.g.
``submit`` with ``"stream": true``), with a sequence of JSON lines (progress events) ending with
the final response.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from mpc.errors import ConfigError, MPCError, TransportError

__all__ = ["ControlServer", "request", "stream"]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | AsyncIterator[dict[str, Any]]]]
MAX_REQUEST_BYTES = 1 << 20


class ControlServer:
    """Serves control requests on a Unix socket.

    Args:
        path: socket path.
        handler: coroutine answering one request dict with one response dict.
    """

    def __init__(self, path: Path, handler: Handler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Create the socket (replacing a stale one) and start serving."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._path.parent, 0o700)
        if self._path.exists():
            self._path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self._path), limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._path.exists():
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("request must be a JSON object")
            except ValueError as exc:
                resp: dict[str, Any] = {"ok": False, "error": "config", "message": f"bad request: {exc}"}
            else:
                try:
                    resp = await self._handler(req)
                except MPCError as exc:
                    resp = {"ok": False, "error": exc.code, "message": str(exc)}
            if isinstance(resp, dict):
                writer.write(json.dumps(resp).encode() + b"\n")
                await writer.drain()
                return
            async for event in resp:
                writer.write(json.dumps(event).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 26), 10)
    except (FileNotFoundError, ConnectionRefusedError, asyncio.TimeoutError) as exc:
        raise TransportError(f"no node is listening on {path} ({exc.__class__.__name__})") from None


def _parse(line: bytes) -> dict[str, Any]:
    if not line:
        raise TransportError("node closed the control connection without answering")
    try:
        resp = json.loads(line)
    except ValueError:
        raise ConfigError("node sent an invalid response") from None
    if not isinstance(resp, dict):
        raise ConfigError("node sent an invalid response")
    return resp


async def request(path: Path, req: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Send one request to a node's control socket and return its response.

    Raises:
        TransportError: the node is not running or did not answer in time.
    """
    reader, writer = await _open(path)
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        raise TransportError(f"node did not answer within {timeout} s") from None
    finally:
        writer.close()
    return _parse(line)


async def stream(path: Path, req: dict[str, Any], timeout: float = 600.0) -> AsyncIterator[dict[str, Any]]:
    """Send a streamed request; yield every event line until the connection closes.

    Raises:
        TransportError: the node is not running, or went silent for ``timeout`` seconds.
    """
    reader, writer = await _open(path)
    try:
        writer.write(json.dumps({**req, "stream": True}).encode() + b"\n")
        await writer.drain()
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout)
            except asyncio.TimeoutError:
                raise TransportError(f"node sent nothing for {timeout} s") from None
            if not line:
                return
            yield _parse(line)
    finally:
        writer.close()

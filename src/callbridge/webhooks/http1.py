"""A small keep-alive HTTP/1.1 client for webhook POSTs, one ``Http1Pool`` per destination.

Why not httpx here: at a thousand deliveries a second, httpx + httpcore + anyio + h11 were
half of the outbox's CPU (a cProfile of ``bench/api.py --outbox``: ≈ 0.8 ms per request, most
of it in httpcore's pool checking every connection for each request, anyio's socket attributes
and per-request objects). A webhook attempt needs little: one POST, a status, the answer read
to its end (so that the connection can be kept) or the connection closed. Everything else
keeps the outbound policy's rules (``callbridge.outbound``): the host is resolved and every
address checked by the policy before connecting (the address connected to is the one
checked), no proxy, no redirect followed, TLS verified with the URL's host name (SNI).

Errors are raised as ``Http1Error`` with the name the attempt's ``last_error`` shows
(``ConnectError``, ``RemoteProtocolError``, ``ReadError``); a refused address raises the
policy's ``OutboundRefused``.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from callbridge.outbound import OutboundPolicy, _default_ssl_context

__all__ = ["Http1Error", "Http1Pool"]

_HEAD_LIMIT = 64 * 1024  # bytes of an answer's status line and headers


class Http1Error(Exception):
    """An attempt that got no complete answer; ``kind`` names what failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """Kept-alive connections to one origin (``scheme://host:port``); at most ``keep`` idle.

    The caller bounds how many requests run at once (the outbox's per-destination limit), so
    the pool only keeps what is idle: a request takes an idle connection or opens one.
    """

    def __init__(self, origin: str, policy: OutboundPolicy, *, keep: int, user_agent: str):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls: ssl.SSLContext | None = (
            _default_ssl_context() if parts.scheme == "https" else None
        )
        self._policy = policy
        self._keep = keep
        self._idle: list[_Connection] = []
        self._fixed = f"host: {parts.netloc}\r\nuser-agent: {user_agent}\r\n"

    async def post(self, target: str, body: bytes, headers: dict[str, str], limit: int) -> int:
        """POST ``body`` to ``target`` (path and query); the answer's status. An answer of up to
        ``limit`` bytes is read to its end and its connection kept; a longer one is cut off."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {target} HTTP/1.1\r\n{self._fixed}{lines}content-length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        while self._idle:
            connection = self._idle.pop()
            # A kept connection the receiver has closed (its end of file already seen by the
            # event loop) is dropped; one closed while the request goes fails the attempt, as
            # with httpx: the attempt is not sent twice within itself.
            if not (connection.reader.at_eof() or connection.writer.is_closing()):
                return await self._exchange(connection, request, limit)
            connection.close()
        return await self._exchange(await self._connect(), request, limit)

    async def _connect(self) -> _Connection:
        try:
            addresses = await self._policy.resolve(self._host, self._port)
        except OSError as exc:
            raise Http1Error("ConnectError", f"{self._host} does not resolve: {exc}") from exc
        failure: OSError | None = None
        for ip in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    str(ip),
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls else None,
                    limit=_HEAD_LIMIT,
                )
            except OSError as exc:  # ssl.SSLError included
                failure = exc
                continue
            return _Connection(reader, writer)
        raise Http1Error("ConnectError", str(failure) or type(failure).__name__)

    async def _exchange(self, connection: _Connection, request: bytes, limit: int) -> int:
        keep = False
        try:
            connection.writer.write(request)
            try:
                status, headers = await self._head(connection.reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise Http1Error(
                    "RemoteProtocolError", "the receiver closed the connection without an answer"
                ) from exc
            keep = await self._body(connection.reader, headers, limit)
            return status
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise Http1Error("RemoteProtocolError", f"a malformed answer: {exc}") from exc
        except (ConnectionError, OSError) as exc:
            raise Http1Error("ReadError", str(exc) or type(exc).__name__) from exc
        finally:
            if keep and len(self._idle) < self._keep:
                self._idle.append(connection)
            else:  # also on cancellation (the attempt's deadline): mid-answer, not reusable
                connection.close()

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            first, *rest = head[:-4].split(b"\r\n")
            version, _, code = first.partition(b" ")
            if not version.startswith(b"HTTP/1."):
                raise ValueError(f"not an HTTP/1 status line: {first[:80]!r}")
            status = int(code[:3])
            if status >= 200 or status == 101:
                break  # 1xx (100 Continue, 103 Early Hints): another head follows
        headers = {}
        for line in rest:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if version == b"HTTP/1.0" and headers.get(b"connection", b"").lower() != b"keep-alive":
            headers[b"connection"] = b"close"
        return status, headers

    async def _body(
        self, reader: asyncio.StreamReader, headers: dict[bytes, bytes], limit: int
    ) -> bool:
        """Read the answer's body (up to ``limit`` bytes); whether the connection can be kept."""
        keep = headers.get(b"connection", b"").lower() != b"close"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            read = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return keep
                read += size
                if read > limit:
                    return False
                await reader.readexactly(size + 2)
        length = headers.get(b"content-length")
        if length is None:  # the body ends when the connection does
            await reader.read(limit)
            return False
        size = int(length)
        if size > limit:
            return False
        if size:
            await reader.readexactly(size)
        return keep

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

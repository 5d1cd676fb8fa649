"""A small keep-alive HTTP/1.1 client for webhook POSTs, one ``Http1Pool`` per destination.

Why not httpx here: at a thousand deliveries a second, httpx + httpcore + anyio were half of
the outbox's CPU (a cProfile of ``bench/api.py --outbox``: ≈ 0.8 ms per request, most of it in
httpcore's pool checking every connection for each request, anyio's socket attributes and
per-request objects). A webhook attempt needs little: one POST, a status, the answer read to
its end (so that the connection can be kept) or the connection closed. The HTTP/1.1 messages
themselves (status line, headers, Content-Length, chunked, 1xx answers, keep-alive rules) are
``h11``'s work, one ``h11.Connection`` per socket; this module only moves the bytes and keeps
the outbound policy's rules (``callbridge.outbound``): the host is resolved and every address
checked by the policy before connecting (the address connected to is the one checked), no
proxy, no redirect followed, TLS verified with the URL's host name (SNI).

Errors are raised as ``Http1Error`` with the name the attempt's ``last_error`` shows
(``ConnectError``, ``RemoteProtocolError``, ``ReadError``); a refused address raises the
policy's ``OutboundRefused``.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import h11

from callbridge.outbound import OutboundPolicy, default_ssl_context

__all__ = ["Http1Error", "Http1Pool"]

_HEAD_LIMIT = 64 * 1024  # bytes of an answer's status line and headers
_READ = 64 * 1024  # bytes asked of the socket at a time


class Http1Error(Exception):
    """An attempt that got no complete answer; ``kind`` names what failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Connection:
    __slots__ = ("http", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_HEAD_LIMIT)

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
            default_ssl_context() if parts.scheme == "https" else None
        )
        self._policy = policy
        self._keep = keep
        self._idle: list[_Connection] = []
        self._fixed = [("host", parts.netloc), ("user-agent", user_agent)]

    async def post(self, target: str, body: bytes, headers: dict[str, str], limit: int) -> int:
        """POST ``body`` to ``target`` (path and query); the answer's status. An answer of up to
        ``limit`` bytes is read to its end and its connection kept; a longer one is cut off."""
        request = h11.Request(
            method="POST",
            target=target,
            headers=[*self._fixed, *headers.items(), ("content-length", str(len(body)))],
        )
        while self._idle:
            connection = self._idle.pop()
            # A kept connection the receiver has closed (its end of file already seen by the
            # event loop) is dropped; one closed while the request goes fails the attempt, as
            # with httpx: the attempt is not sent twice within itself.
            if not (connection.reader.at_eof() or connection.writer.is_closing()):
                return await self._exchange(connection, request, body, limit)
            connection.close()
        return await self._exchange(await self._connect(), request, body, limit)

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
                )
            except OSError as exc:  # ssl.SSLError included
                failure = exc
                continue
            return _Connection(reader, writer)
        raise Http1Error("ConnectError", str(failure) or type(failure).__name__)

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes, limit: int
    ) -> int:
        http = connection.http
        keep = False
        try:
            connection.writer.write(
                b"".join(
                    http.send(event) or b""
                    for event in (request, h11.Data(data=body), h11.EndOfMessage())
                )
            )
            status = await self._answer(connection, limit)
            # Kept only when h11 says both sides are done with a reusable exchange (not
            # "connection: close", not an HTTP/1.0 answer, not a body ending with the socket).
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()
                keep = True
            return status
        except h11.RemoteProtocolError as exc:
            raise Http1Error("RemoteProtocolError", f"a malformed answer: {exc}") from exc
        except (ConnectionError, OSError) as exc:
            raise Http1Error("ReadError", str(exc) or type(exc).__name__) from exc
        finally:
            if keep and len(self._idle) < self._keep:
                self._idle.append(connection)
            else:  # also on cancellation (the attempt's deadline): mid-answer, not reusable
                connection.close()

    @staticmethod
    async def _answer(connection: _Connection, limit: int) -> int:
        """Read the answer (1xx answers skipped, the body up to ``limit`` bytes); its status.
        Returns before the end of a body longer than ``limit``: h11 is then not DONE."""
        http = connection.http
        status = 0
        read = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await connection.reader.read(_READ)
                except ConnectionError as exc:
                    if status:
                        raise
                    raise _no_answer() from exc
                if not data and not status:
                    raise _no_answer()
                http.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                read += len(event.data)
                if read > limit:
                    return status
            elif isinstance(event, h11.EndOfMessage):
                return status
            elif isinstance(event, h11.ConnectionClosed):  # h11 raises first; never loop on it
                raise _no_answer()
            # InformationalResponse (100 Continue, 103 Early Hints): the answer follows.

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _no_answer() -> Http1Error:
    return Http1Error("RemoteProtocolError", "the receiver closed the connection without an answer")

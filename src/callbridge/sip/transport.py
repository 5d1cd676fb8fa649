"""SIP transports (RFC 3261 §18): UDP, TCP and TLS sockets, as *flows* the stack sends over.

A :class:`Flow` is one path to one peer: a TCP/TLS connection, a WebSocket (``wsgate.py``),
or, for UDP, the listening socket plus the peer's address. Every message the transports
receive reaches the stack's receiver as ``(bytes of one message, the flow it came on)``; the
stack parses it, and answers a request over that same flow (§18.2.2: a response goes back
over the connection the request came in on; for UDP to the source address and port when the
request's Via has ``rport``, RFC 3581 §4).

Connections are kept in one table keyed by ``(transport, peer address)`` (:class:`Transports`),
so a request to a peer reuses the connection that peer opened (a phone behind NAT can only
be reached that way) and a connection the server opened is reused by later requests.

Stream transports frame messages with the message layer's
:class:`~callbridge.sip.message.StreamFramer` (``Content-Length``, §18.3); between messages,
a ``CRLFCRLF`` "ping" is answered with ``CRLF`` (RFC 5626 §3.5.1) and a lone ``CRLF`` is
ignored. A stream that breaks framing (a header block or body over the size limit, a bad
``Content-Length``) cannot be resynchronised: the stack answers it (the 4xx/513 naming the
problem when it was a request) and the connection is closed. One bad peer never affects
another: every error is confined to its flow.

Over UDP, a datagram is one message; an empty or whitespace-only datagram (a keep-alive) is
dropped.

A TCP/TLS connection with no traffic either way for :data:`IDLE_TIMEOUT` seconds is closed,
unless one of the layer's ``in_use`` checks says something still needs it (a registration reached
over it, a call on it): RFC 5626 §3.5.1 keep-alives (CRLFCRLF) count as traffic, so a phone
that sends them keeps its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar, cast

from callbridge.abuse import SourceGuard
from callbridge.sip.message import PING, STREAM_LIMITS, SipParseError, StreamFramer

__all__ = [
    "MAX_MESSAGE_BYTES",
    "UDP_MTU_LIMIT",
    "Address",
    "Flow",
    "FramingHandler",
    "Receiver",
    "StreamFlow",
    "Transports",
    "UdpFlow",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_MESSAGE_BYTES = 64 * 1024  # one SIP message on any transport (docs/security.md)
UDP_MTU_LIMIT = 1300  # §18.1.1: larger requests to a UDP destination go over TCP
CONNECT_TIMEOUT = 5.0  # seconds to open a TCP/TLS connection to a peer
PONG = b"\r\n"  # the answer to a keep-alive PING (RFC 5626 §3.5.1)
IDLE_TIMEOUT = 300.0  # seconds without traffic before an unused TCP/TLS connection is closed

Receiver = Callable[[bytes, "Flow"], None]
FramingHandler = Callable[[SipParseError, "Flow"], None]
InUse = Callable[["Flow"], Awaitable[bool]]


class Flow(ABC):
    """One path to one peer. ``transport`` is the Via transport name (UDP, TCP, TLS, WS,
    WSS); ``reliable`` says whether retransmission timers apply (§17: only over UDP)."""

    transport: str
    remote: Address
    local: Address
    reliable: ClassVar[bool] = True

    @property
    def closed(self) -> bool:
        return False

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Queue ``data`` (one whole message); a closed flow drops it (the transaction's
        timers or the TU's timeout find out)."""

    def close(self) -> None:  # noqa: B027 (a no-op for UDP, overridden by connections)
        """Close the connection (a no-op for UDP)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.transport} {self.remote[0]}:{self.remote[1]}>"


class UdpFlow(Flow):
    """A peer reached over a listening UDP socket."""

    reliable: ClassVar[bool] = False

    def __init__(self, endpoint: asyncio.DatagramTransport, remote: Address) -> None:
        self.transport = "UDP"
        self._endpoint = endpoint
        self.remote = remote
        sock = endpoint.get_extra_info("sockname")
        self.local = (sock[0], sock[1])

    @property
    def closed(self) -> bool:
        return self._endpoint.is_closing()

    def send(self, data: bytes) -> None:
        if not self._endpoint.is_closing():
            self._endpoint.sendto(data, self.remote)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, layer: Transports) -> None:
        self.layer = layer
        self.endpoint: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.endpoint = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data.strip() or self.endpoint is None:
            return  # a keep-alive (CRLF) or nothing at all
        remote = (str(addr[0]), int(addr[1]))
        self.layer.deliver(data[: MAX_MESSAGE_BYTES + 1], UdpFlow(self.endpoint, remote))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram (a phone that went away): the transaction's
        # timers handle the silence; the socket keeps serving everyone else.
        log.debug("SIP UDP: %s", exc)


class StreamFlow(Flow, asyncio.Protocol):
    """A TCP or TLS connection, accepted or opened by the server."""

    def __init__(
        self,
        layer: Transports,
        transport: str,
        limit: int = MAX_MESSAGE_BYTES,
        *,
        accepted: bool = False,
    ) -> None:
        self.transport = transport
        self.layer = layer
        self.accepted = accepted  # a peer connected to us (counted by the layer's guard)
        self._counted = False
        self.limit = limit
        self.remote = ("", 0)
        self.local = ("", 0)
        self._stream: asyncio.Transport | None = None
        self._framer = StreamFramer(dataclasses.replace(STREAM_LIMITS, max_message_bytes=limit))
        self._closed = False
        self.last_traffic = time.monotonic()  # a message or keep-alive, either way

    @property
    def closed(self) -> bool:
        return self._closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._stream = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (str(peer[0]), int(peer[1]))
        self.local = (str(sock[0]), int(sock[1]))
        guard = self.layer.guard
        if self.accepted and guard is not None:
            # docs/security.md: connections per source, as on /ws (one peer cannot take
            # every descriptor of the process).
            if not guard.connect(self.remote[0]):
                guard.refused(self.remote[0], "sip", f"{self.transport}: too many connections")
                self._closed = True
                transport.close()
                return
            self._counted = True
        self.layer.add_flow(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.layer.remove_flow(self)
        if self._counted and self.layer.guard is not None:
            self._counted = False
            self.layer.guard.disconnect(self.remote[0])

    def data_received(self, data: bytes) -> None:
        self.last_traffic = time.monotonic()
        for item in self._framer.feed(data):
            if self._closed:
                return
            if isinstance(item, SipParseError):  # the stream cannot be framed any further
                self.layer.framing_failed(item, self)
                self.close()
                return
            if item == PING:
                self.send(PONG)  # RFC 5626 §3.5.1
            else:
                self.layer.deliver(item, self)

    def send(self, data: bytes) -> None:
        if self._stream is not None and not self._closed:
            self.last_traffic = time.monotonic()
            self._stream.write(data)

    def close(self) -> None:
        if self._stream is not None and not self._closed:
            self._closed = True
            self._stream.close()
            self.layer.remove_flow(self)


class Transports:
    """The listening sockets and the table of live connections of one SIP endpoint.

    ``receiver`` gets every message; ``on_framing_error`` gets a stream's unframeable bytes
    (the stack answers 400 if they start a request) before the connection closes.
    """

    def __init__(
        self,
        receiver: Receiver,
        on_framing_error: FramingHandler | None = None,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        guard: SourceGuard | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.receiver = receiver
        self.idle_timeout = idle_timeout  # 0: connections are never closed for idleness
        # Does anything still need this quiet connection? Each user of flows adds its check
        # (the call adapter: registrations and calls; trunks: theirs).
        self.in_use: list[InUse] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.guard = guard  # caps accepted TCP/TLS connections per source address
        self.on_framing_error = on_framing_error
        self.limit = limit
        self.flows: dict[tuple[str, Address], Flow] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._client_tls: ssl.SSLContext | None = None

    # -- listening -----------------------------------------------------------------------------

    async def listen_udp(self, host: str, port: int) -> Address:
        loop = asyncio.get_running_loop()
        endpoint, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = endpoint
        sock = endpoint.get_extra_info("sockname")
        return (str(sock[0]), int(sock[1]))

    async def listen_stream(
        self, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> Address:
        """Listen for TCP (``tls`` None) or TLS connections."""
        loop = asyncio.get_running_loop()
        name = "TLS" if tls is not None else "TCP"
        server = await loop.create_server(
            lambda: StreamFlow(self, name, self.limit, accepted=True), host, port, ssl=tls
        )
        self._servers[name] = server
        sock = server.sockets[0].getsockname()
        return (str(sock[0]), int(sock[1]))

    def local_address(self, transport: str) -> Address | None:
        """Where this endpoint listens for ``transport`` (for Via and Contact)."""
        if transport == "UDP" and self._udp is not None:
            sock = self._udp.get_extra_info("sockname")
            return (str(sock[0]), int(sock[1]))
        server = self._servers.get(transport)
        if server is not None:
            sock = server.sockets[0].getsockname()
            return (str(sock[0]), int(sock[1]))
        return None

    @property
    def transports(self) -> list[str]:
        names = ["UDP"] if self._udp is not None else []
        return names + list(self._servers)

    # -- the connection table ------------------------------------------------------------------

    def add_flow(self, flow: Flow) -> None:
        self.flows[(flow.transport, flow.remote)] = flow
        if isinstance(flow, StreamFlow) and self._sweeper is None and self.idle_timeout > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close stream connections idle for ``idle_timeout`` that nothing uses (checked a
        few times per timeout, so one closes between 1 and 1.25 timeouts after its traffic)."""
        while True:
            await asyncio.sleep(max(0.05, self.idle_timeout / 4))
            now = time.monotonic()
            for flow in list(self.flows.values()):
                if not isinstance(flow, StreamFlow) or flow.closed:
                    continue
                if now - flow.last_traffic < self.idle_timeout:
                    continue
                try:
                    needed = False
                    for check in self.in_use:
                        if await check(flow):
                            needed = True
                            break
                except Exception:  # an unanswerable check keeps the connection (the safe side)
                    log.exception("SIP: checking whether %s is in use failed", flow)
                    needed = True
                if not needed and not flow.closed and flow.last_traffic <= now:
                    idle = now - flow.last_traffic
                    log.info("SIP %s %s:%d idle for %.0f s; closing", flow.transport,
                             *flow.remote, idle)  # fmt: skip
                    flow.close()

    def remove_flow(self, flow: Flow) -> None:
        key = (flow.transport, flow.remote)
        if self.flows.get(key) is flow:
            del self.flows[key]

    def deliver(self, data: bytes, flow: Flow) -> None:
        try:
            self.receiver(data, flow)
        except Exception:  # a bug in the stack must not end the socket for everyone
            log.exception("SIP: handling a message from %s failed", flow)

    def framing_failed(self, exc: SipParseError, flow: Flow) -> None:
        log.info("SIP %s from %s:%d: %s; closing", flow.transport, *flow.remote, exc.reason)
        if self.on_framing_error is not None:
            try:
                self.on_framing_error(exc, flow)
            except Exception:
                log.exception("SIP: answering a framing error failed")

    async def flow_to(self, transport: str, remote: Address) -> Flow:
        """A flow to ``remote``: the live connection if there is one (whoever opened it),
        else a new one (§18.1.1). :class:`OSError` if it cannot be opened."""
        transport = transport.upper()
        existing = self.flows.get((transport, remote))
        if existing is not None and not existing.closed:
            return existing
        if transport == "UDP":
            if self._udp is None:
                raise OSError("SIP over UDP is not listening")
            return UdpFlow(self._udp, remote)
        if transport not in ("TCP", "TLS"):
            # WebSocket peers are reached only over the connection they opened (RFC 7118 §5).
            raise OSError(f"no {transport} connection to {remote[0]}:{remote[1]}")
        loop = asyncio.get_running_loop()
        tls = self._client_context() if transport == "TLS" else None
        _, flow = await asyncio.wait_for(
            loop.create_connection(
                lambda: StreamFlow(self, transport, self.limit), remote[0], remote[1], ssl=tls
            ),
            CONNECT_TIMEOUT,
        )
        return flow

    def udp_flow(self, remote: Address) -> Flow | None:
        """A UDP flow to ``remote`` from the listening socket (None if UDP is off)."""
        return UdpFlow(self._udp, remote) if self._udp is not None else None

    def _client_context(self) -> ssl.SSLContext:
        if self._client_tls is None:
            self._client_tls = ssl.create_default_context()
        return self._client_tls

    def set_client_tls(self, context: ssl.SSLContext) -> None:
        """The TLS context for connections the server opens (tests trust their own CA)."""
        self._client_tls = context

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for server in self._servers.values():
            server.close()
        for flow in list(self.flows.values()):
            flow.close()
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The TLS context of a SIP over TLS listener (RFC 3261 §26.2.1: TLS 1.2 or later)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context

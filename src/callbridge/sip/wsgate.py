"""SIP over WebSocket (RFC 7118): ``/sip`` on the HTTP port, for JsSIP, SIP.js and the like.

A WebSocket upgrade to ``/sip`` must offer the ``sip`` subprotocol (RFC 7118 §4); one that
does not is refused before the handshake completes (HTTP 403), as is any when SIP is off.
An accepted connection becomes a :class:`WsFlow` in the stack's connection table under
``("WS" | "WSS", client address)``, so:

* every WebSocket message is one SIP message (§5.1), parsed as a datagram would be (no
  ``Content-Length`` framing) with the stream transports' size limits; text and binary
  frames are both accepted, and what the stack sends goes out as text (SIP is UTF-8);
* responses go back over the same socket (§5: the Via of a WebSocket client names an
  ``.invalid`` host that cannot be reached any other way), and requests to a contact
  registered over this socket (``Source.connection_id`` "WS host:port") find it with
  :meth:`~callbridge.sip.stack.SipStack.flow_for`;
* the Via transport is ``WS``, or ``WSS`` when the HTTP side has TLS (§5.2);
* a ``CRLFCRLF`` keep-alive (SIP.js sends one) is answered with ``CRLF`` (RFC 5626 §4.4.1);
* when the socket closes the flow leaves the table; the stack's stop closes the sockets.

WebSocket is a reliable transport: the transactions run no retransmission timers over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, ClassVar

from starlette.websockets import WebSocket, WebSocketDisconnect

from callbridge.sip.message import PING
from callbridge.sip.transport import Flow, Transports

if TYPE_CHECKING:
    from fastapi import FastAPI

    from callbridge.sip.stack import SipStack

__all__ = ["PATH", "SUBPROTOCOL", "WsFlow", "install_sip_ws", "serve_sip_ws"]

log = logging.getLogger(__name__)

PATH = "/sip"
SUBPROTOCOL = "sip"  # RFC 7118 §4: registered with IANA; required of every client
MAX_FRAME_BYTES = 64 * 1024  # one SIP message (STREAM_LIMITS); larger frames get 1009
PONG = "\r\n"


class WsFlow(Flow):
    """One SIP over WebSocket connection. :meth:`send` queues; a writer task sends in order."""

    reliable: ClassVar[bool] = True

    def __init__(self, layer: Transports, websocket: WebSocket, transport: str) -> None:
        self.transport = transport
        self.layer = layer
        self.websocket = websocket
        client, server = websocket.client, websocket.scope.get("server")
        self.remote = (client.host, client.port) if client else ("", 0)
        self.local = (str(server[0]), int(server[1])) if server else ("", 0)
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes) -> None:
        if not self._closed:
            # §5.1: a text frame carries UTF-8; the serializer may carry raw bytes through
            # surrogateescape, which a text frame cannot, so those go as binary (below).
            self._out.put_nowait(data.decode("utf-8", "surrogateescape"))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.put_nowait(None)
            self.layer.remove_flow(self)

    async def write(self) -> None:
        """Send what is queued until :meth:`close`, then close the socket."""
        while (text := await self._out.get()) is not None:
            try:
                await self.websocket.send_text(text)
            except UnicodeEncodeError:
                await self.websocket.send_bytes(text.encode("utf-8", "surrogateescape"))
        with contextlib.suppress(Exception):
            await self.websocket.close(1000)

    async def read(self) -> None:
        """Deliver each message to the stack until the peer goes."""
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            data: bytes | None = frame.get("bytes")
            if data is None:
                data = (frame.get("text") or "").encode("utf-8", "surrogateescape")
            if len(data) > MAX_FRAME_BYTES:
                log.info("SIP WS from %s:%d: a %d-byte frame; closing", *self.remote, len(data))
                await self.websocket.close(1009)  # RFC 6455 §7.4.1: message too big
                return
            if data == PING:
                self._out.put_nowait(PONG)
            elif data.strip():  # other whitespace-only frames: keep-alives, ignored
                self.layer.deliver(data, self)


async def serve_sip_ws(websocket: WebSocket, stack: SipStack | None) -> None:
    """Run one ``/sip`` connection for ``stack`` (refused when it is None: SIP is off)."""
    offered = websocket.scope.get("subprotocols") or []
    if stack is None or SUBPROTOCOL not in offered:
        why = "SIP is off" if stack is None else f"subprotocols {offered!r} lack 'sip'"
        log.info("SIP WS upgrade from %s refused: %s", websocket.client, why)
        await websocket.close(1002)  # before accept: the server answers the upgrade 403
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    transport = "WSS" if websocket.scope.get("scheme") == "wss" else "WS"
    flow = WsFlow(stack.transports, websocket, transport)
    stack.transports.add_flow(flow)
    writer = asyncio.get_running_loop().create_task(flow.write())
    try:
        await flow.read()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # gone, or closed by the writer
    finally:
        flow.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 2)


def install_sip_ws(app: FastAPI) -> None:
    """Serve SIP over WebSocket at ``/sip`` with the stack the lifespan keeps in
    ``app.state.sip``."""

    async def sip_endpoint(websocket: WebSocket) -> None:
        await serve_sip_ws(websocket, getattr(websocket.app.state, "sip", None))

    app.add_api_websocket_route(PATH, sip_endpoint)

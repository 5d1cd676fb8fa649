"""SIP over WebSocket (RFC 7118) with a real WebSocket client (the ``websockets`` package):
the ``sip`` subprotocol is required, each frame is one message, responses and server
requests travel over the client's socket, and a real server serves ``/sip``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
import websockets
from fastapi import FastAPI

from callbridge.sip import Headers, Request, Response, parse, wire
from callbridge.sip.stack import Incoming, SipStack
from callbridge.sip.transaction import Timers
from callbridge.sip.wsgate import install_sip_ws
from callbridge.testing.server import serve

pytestmark = pytest.mark.timeout(60)
TIMERS = Timers(t1=0.05, t2=0.4, t4=0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def gate() -> AsyncIterator[tuple[SipStack, str]]:
    """A stack (UDP/TCP on port 0) and an in-process HTTP app serving its ``/sip``."""
    stack = SipStack("b.test", timers=TIMERS)
    await stack.start("127.0.0.1", 0)
    app = FastAPI()
    app.state.sip = stack
    install_sip_ws(app)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
        await asyncio.sleep(0.01)
    yield stack, f"ws://127.0.0.1:{port}/sip"
    await stack.stop()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 5)


def request(method: str, via_host: str, extra: str = "", domain: str = "b.test") -> str:
    """What JsSIP sends: a Via with WS and an ``.invalid`` host, no rport needed."""
    return (
        f"{method} sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/WS {via_host};branch={wire.new_branch()}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@{domain}>;tag={wire.new_tag()}\r\n"
        f"To: <sip:alice@{domain}>\r\nCall-ID: {wire.new_tag()}@{via_host}\r\n"
        f"CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )


async def recv_message(ws: websockets.ClientConnection) -> Request | Response:
    frame = await asyncio.wait_for(ws.recv(), 3)
    return parse(frame.encode() if isinstance(frame, str) else frame)


async def test_options_and_register_over_a_sip_websocket_and_a_request_back(
    gate: tuple[SipStack, str],
) -> None:
    stack, url = gate
    seen: asyncio.Queue[Incoming] = asyncio.Queue()

    async def register(incoming: Incoming) -> None:
        seen.put_nowait(incoming)
        incoming.respond(200)

    stack.on("REGISTER", register)
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")]) as ws:
        assert ws.subprotocol == "sip"
        await ws.send(request("OPTIONS", "df7jal23ls0d.invalid"))
        answer = await recv_message(ws)
        assert isinstance(answer, Response) and answer.status == 200
        assert "REGISTER" in answer.headers.values("Allow")
        assert answer.top_via.transport == "WS" and answer.top_via.host == "df7jal23ls0d.invalid"
        contact = "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n"
        await ws.send(request("REGISTER", "df7jal23ls0d.invalid", contact))
        answer = await recv_message(ws)
        assert isinstance(answer, Response) and answer.status == 200
        incoming = await asyncio.wait_for(seen.get(), 2)
        # The registrar's Source: the connection is found again by its id (WS host:port).
        assert incoming.flow.transport == "WS"
        flow = stack.flow_for("WS", incoming.flow.remote)
        assert flow is incoming.flow
        # A keep-alive ping gets its pong (RFC 5626 §4.4.1; SIP.js sends these).
        await ws.send("\r\n\r\n")
        assert await asyncio.wait_for(ws.recv(), 3) == "\r\n"
        # The server sends a request over the socket; the client's answer comes back to it.
        out = Request(
            "OPTIONS",
            "sip:alice@df7jal23ls0d.invalid;transport=ws",
            Headers([("From", f"<sip:b.test>;tag={wire.new_tag()}"),
                     ("To", "<sip:alice@b.test>"), ("Call-ID", wire.new_tag()),
                     ("CSeq", "7 OPTIONS")]),
        )  # fmt: skip
        pending = asyncio.ensure_future(stack.request(out, flow))
        received = await recv_message(ws)
        assert isinstance(received, Request) and received.method == "OPTIONS"
        via = received.top_via
        assert via.transport == "WS" and via.host.endswith(".invalid")  # RFC 7118 §5
        await ws.send(received.response(200).serialize())
        reply = await asyncio.wait_for(pending, 3)
        assert reply.status == 200 and reply.cseq_number == 7
    # The closed socket leaves the connection table.
    for _ in range(100):
        if stack.flow_for("WS", incoming.flow.remote) is None:
            break
        await asyncio.sleep(0.02)
    assert stack.flow_for("WS", incoming.flow.remote) is None


async def test_a_malformed_frame_gets_400_and_the_socket_keeps_serving(
    gate: tuple[SipStack, str],
) -> None:
    _, url = gate
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")]) as ws:
        bad = request("OPTIONS", "x.invalid").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
        await ws.send(bad)
        frame = await asyncio.wait_for(ws.recv(), 3)  # echoes the bad CSeq: read it raw
        assert isinstance(frame, str) and frame.startswith("SIP/2.0 400 CSeq")
        # No Content-Length framing on a WebSocket: one frame, one message (§5.1).
        await ws.send(request("OPTIONS", "x.invalid").replace("Content-Length: 0\r\n", ""))
        answer = await recv_message(ws)
        assert isinstance(answer, Response) and answer.status == 200


async def test_an_upgrade_without_the_sip_subprotocol_is_refused(
    gate: tuple[SipStack, str],
) -> None:
    _, url = gate
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("chat")]):
            pass


async def test_a_real_server_serves_sip_on_its_http_port(tmp_path: Path) -> None:
    async with serve(tmp_path / "srv", sip_port=True) as server:
        url = f"ws://127.0.0.1:{server.port}/sip"
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")]) as ws:
            await ws.send(request("OPTIONS", "abc.invalid"))
            answer = await recv_message(ws)
            assert isinstance(answer, Response) and answer.status == 200
            # REGISTER reaches the registrar: a digest challenge (RFC 3261 §22).
            contact = "Contact: <sip:alice@abc.invalid;transport=ws>\r\n"
            await ws.send(request("REGISTER", "abc.invalid", contact, domain="127.0.0.1"))
            answer = await recv_message(ws)
            assert isinstance(answer, Response) and answer.status == 401
            assert answer.headers.get("WWW-Authenticate")
    async with serve(tmp_path / "off") as server:  # SIP off: /sip refuses
        with pytest.raises(websockets.InvalidStatus):
            url = f"ws://127.0.0.1:{server.port}/sip"
            async with websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")]):
                pass

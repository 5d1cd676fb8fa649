"""Bounds that keep one client from growing or stalling the server (issue 10; docs/security.md).

- a client that sends and never reads is closed (1008, "send queue full") once its send queue
  passes ``--max-send-queue``; its session is detached and everyone else is served;
- a socket that does not log in within ``--login-timeout`` is closed (1008);
- JSON nested deeper than the limit gets ``invalid_json`` naming the limit, with no traceback;
- ``page[number]`` past the bound is a 422 pointing at ``page[number]`` on every paged endpoint.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from callbridge.api.context import ADMIN_TAG
from callbridge.api.pagination import MAX_PAGE_NUMBER
from callbridge.client import Call, Phone
from callbridge.signalling.protocol import MAX_JSON_DEPTH
from callbridge.signalling.ws import SEND_QUEUE_FULL
from callbridge.testing.server import Server, running
from conftest import Connect, MakeUser

pytestmark = pytest.mark.timeout(90)

MAX_SEND_QUEUE = 50
LOGIN_TIMEOUT = 1.5
GRACE = 2.0


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a small send queue and a short login deadline."""
    args = ["--max-send-queue", str(MAX_SEND_QUEUE), "--login-timeout", str(LOGIN_TIMEOUT)]
    with running(tmp_path_factory.mktemp("bounded"), session_grace=GRACE, args=args) as srv:
        yield srv


class NonReader:
    """A WebSocket client that reads only when told to: the sans-I/O protocol of ``websockets``
    over a plain socket with a tiny receive buffer. (The asyncio client keeps reading into its
    own memory for a while after its application stops; this one leaves the bytes in the
    kernel, so the server's writes back up as with a real stalled client.)"""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, server: Server) -> NonReader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
        client = cls(sock, ClientProtocol(parse_uri(server.ws_url), max_size=None))
        client.protocol.send_request(client.protocol.connect())
        await client.flush()
        while not client.protocol.events_received():  # the handshake's response
            client.protocol.receive_data(await client.loop.sock_recv(sock, 65536))
        assert client.protocol.handshake_exc is None
        return client

    async def flush(self) -> None:
        await self.loop.sock_sendall(self.sock, b"".join(self.protocol.data_to_send()))

    async def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        await self.flush()

    async def read_to_close(self) -> tuple[int, Close | None]:
        """Read everything: (how many text messages came, the server's close frame)."""
        texts = 0
        while data := await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), 10):
            self.protocol.receive_data(data)
            for frame in self.protocol.events_received():
                texts += isinstance(frame, Frame) and frame.opcode is Opcode.TEXT
            if self.protocol.close_rcvd is not None:
                break
        return texts, self.protocol.close_rcvd

    def close(self) -> None:
        self.sock.close()


async def wait_for_log(server: Server, text: str, since: int, within: float) -> str:
    """The server's log after ``since`` once it has ``text`` (the log is the only witness of
    what the server did to a client that does not read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while text not in (tail := server.log()[since:]):
        assert loop.time() < deadline, f"{text!r} not logged within {within} s:\n{tail}"
        await asyncio.sleep(0.05)
    return tail


async def call_and_answer(server: Server, caller: str, callee: str) -> None:
    """A whole call between two fresh users: created, rung, answered, hung up."""
    a_user, b_user = await server.add_users([caller, callee])
    async with Phone(server.ws_url, a_user.token) as a, Phone(server.ws_url, b_user.token) as b:
        incoming: asyncio.Queue[Call] = asyncio.Queue()
        b.on("incoming", incoming.put_nowait)
        call = await a.call(b_user.extension)
        answering = await asyncio.wait_for(incoming.get(), 5)
        await answering.answer()
        await call.wait_for("answered", timeout=5)
        await call.hangup()
        await answering.wait_for("ended", timeout=5)


async def test_a_client_that_never_reads_is_closed_with_1008_and_others_still_call(
    bounded: Server,
) -> None:
    flooder = await bounded.add_user("flooder")
    client = await NonReader.connect(bounded)
    since = len(bounded.log())
    try:
        login = {"type": "session.login", "req_id": "in", "token": flooder.token}
        await client.send(json.dumps(login))

        async def flood() -> None:
            # Each bad frame earns an `error` reply that the client does not read.
            for n in range(1_000_000):
                await client.send(f"not json {n}")

        sender = asyncio.create_task(flood())
        try:
            tail = await wait_for_log(bounded, "send queue full", since, within=60)
        finally:
            sender.cancel()
        assert "closing the socket (1008)" in tail
        # Now read: what was sent before the overflow, then the close frame with its reason.
        replies, close = await client.read_to_close()
    finally:
        client.close()
    assert replies > MAX_SEND_QUEUE
    assert close is not None and (close.code, close.reason) == (1008, SEND_QUEUE_FULL)
    await wait_for_log(bounded, "detached", since, within=5)  # its calls keep their grace

    await call_and_answer(bounded, "alice", "bob")
    assert "Traceback" not in bounded.log()


async def test_a_socket_that_never_logs_in_is_closed_at_the_login_deadline(
    bounded: Server,
) -> None:
    async with websockets.connect(bounded.ws_url) as ws:
        await ws.send("not json")  # a frame does not move the deadline
        assert json.loads(await ws.recv())["code"] == "invalid_json"
        started = asyncio.get_running_loop().time()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), LOGIN_TIMEOUT + 5)
        waited = asyncio.get_running_loop().time() - started
    assert ws.close_code == 1008
    assert (
        ws.close_reason
        == f"login timeout: no session.login or session.resume in {LOGIN_TIMEOUT:g} s"
    )
    assert waited < LOGIN_TIMEOUT + 1


async def test_a_socket_that_logs_in_in_time_outlives_the_login_deadline(bounded: Server) -> None:
    user = await bounded.add_user("punctual")
    async with websockets.connect(bounded.ws_url) as ws:
        await ws.send(json.dumps({"type": "session.login", "req_id": "in", "token": user.token}))
        assert json.loads(await ws.recv())["type"] == "session.ready"
        await asyncio.sleep(LOGIN_TIMEOUT + 0.5)  # past the deadline on purpose
        await ws.send(json.dumps({"type": "call.hangup", "req_id": "p", "call_id": "nope"}))
        assert json.loads(await ws.recv())["code"] == "call_not_found"
        await ws.send(json.dumps({"type": "session.logout", "req_id": "out"}))
        assert json.loads(await ws.recv())["type"] == "session.disconnected"


def _nested(depth: int) -> str:
    return '{"type": "call.hangup", "req_id": "deep", "x": ' + "[" * depth + "]" * depth + "}"


async def test_deep_json_is_refused_by_name_without_a_traceback_and_the_socket_lives(
    server: Server, raw: Connect, make_user: MakeUser
) -> None:
    since = len(server.log())
    c = await raw()
    await c.login((await make_user()).token)
    for _ in range(20):
        await c.send(_nested(2000))
    for _ in range(20):
        err = await c.expect("error")
        assert err["code"] == "invalid_json"
        assert f"more than {MAX_JSON_DEPTH} levels" in err["message"]
    # Brackets inside strings are text, and nesting up to the limit is JSON as usual.
    await c.send({"type": "call.hangup", "req_id": "text", "call_id": "nope", "x": "[" * 5000})
    assert (await c.expect("error", req_id="text"))["code"] == "call_not_found"
    await c.send(_nested(MAX_JSON_DEPTH - 1).replace('"x"', '"call_id": "nope", "x"'))
    assert (await c.expect("error", req_id="deep"))["code"] == "call_not_found"
    await c.send({"type": "session.logout", "req_id": "out"})
    await c.expect("session.disconnected")
    tail = server.log()[since:]
    assert "Traceback" not in tail and "internal_error" not in tail


async def test_a_page_number_past_the_bound_is_a_422_on_every_paged_endpoint(
    server: Server,
) -> None:
    key = await server.api_key()
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as http:
        spec = (await http.get("/openapi.json")).json()
        paged = [
            path
            for path, ops in spec["paths"].items()
            if any(p["name"] == "page[number]" for p in ops.get("get", {}).get("parameters", []))
            and ADMIN_TAG not in ops["get"].get("tags", ())  # this key is no admin: a 404
        ]
        assert {"/v2/media", "/v2/recordings", "/v2/call_control_applications"} <= set(paged)
        for path in paged:
            url = path.replace("{", "").replace("}", "")  # any id: the query is checked first
            for number in (2**60, MAX_PAGE_NUMBER + 1):
                r = await http.get(url, params={"page[number]": number})
                assert r.status_code == 422, (path, r.status_code, r.text)
                (error,) = r.json()["errors"]
                assert error["code"] == "10015"
                assert error["source"] == {"parameter": "page[number]"}
                assert str(MAX_PAGE_NUMBER) in error["detail"]
        # The last page allowed is an empty page, not an error.
        r = await http.get("/v2/media", params={"page[number]": MAX_PAGE_NUMBER})
        assert r.status_code == 200 and r.json()["data"] == []
        assert r.json()["meta"]["page_number"] == MAX_PAGE_NUMBER

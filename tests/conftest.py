"""Fixtures: a real callbridge server (subprocess), users with tokens, raw WebSocket clients.

Everything talks over 127.0.0.1 only: the server is started with `--host 127.0.0.1` (so its
ICE gathers only 127.0.0.1) and this process restricts its own ICE the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from callbridge.client import Phone
from callbridge.rtp.webrtc import restrict_ice_addresses
from callbridge.store import Store
from parties import Party

restrict_ice_addresses(["127.0.0.1"])

RING_TIMEOUT = 3.0
SESSION_GRACE = 8.0  # > the 5 s outage of the reconnect test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProc:
    url: str  # ws://127.0.0.1:PORT/ws
    http: str  # http://127.0.0.1:PORT
    data_dir: Path
    database_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    data_dir = tmp_path_factory.mktemp("server")
    port = free_port()
    log_path = data_dir / "server.log"
    cmd = [
        sys.executable, "-m", "callbridge", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data_dir), "--ring-timeout", str(RING_TIMEOUT),
        "--session-grace", str(SESSION_GRACE),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    http = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{http}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start:\n" + log_path.read_text())
        time.sleep(0.1)
    db = f"sqlite+aiosqlite:///{(data_dir / 'callbridge.db').resolve()}"
    yield ServerProc(f"ws://127.0.0.1:{port}/ws", http, data_dir, db, proc, log_path)
    # Every test closed its phones: no leg and no media endpoint may be left behind.
    live: dict[str, Any] = {}
    for _ in range(int(SESSION_GRACE * 10) + 50):  # dropped sessions end after the grace
        live = httpx.get(f"{http}/healthz", timeout=2).json()
        if live["legs"] == 0 and live["media_endpoints"] == 0 and live["sessions"] == 0:
            break
        time.sleep(0.1)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    # A server that logged a traceback has a bug even when every test passed.
    text = log_path.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert live["legs"] == 0 and live["media_endpoints"] == 0, f"leaked: {live}"
    assert live["sessions"] == 0, f"leaked sessions: {live}"


@pytest.fixture(scope="session")
async def store(server: ServerProc) -> AsyncIterator[Store]:
    st = await Store.open(server.database_url)
    yield st
    await st.close()


_counter = itertools.count(200)


@dataclass
class TestUser:
    name: str
    extension: str
    number: str
    token: str


@pytest.fixture
def make_user(store: Store) -> Any:
    """Create a fresh user (unique name, extension and number) with a valid token."""

    async def make(display_name: str | None = None) -> TestUser:
        n = next(_counter)
        name = f"user{n}"
        ext = str(1000 + n)
        number = f"+1415555{n:04d}"
        await store.add_user(name, ext, number=number, display_name=display_name)
        token, _ = await store.create_token(name, timedelta(hours=1))
        return TestUser(name, ext, number, token)

    return make


class RawClient:
    """A bare protocol client: send dicts, await messages by type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self._cond = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                async with self._cond:
                    self.inbox.append(json.loads(frame))
                    self._cond.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def expect(self, type_: str, within: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for (and consume) the first message of ``type_`` whose fields match."""

        def find() -> dict[str, Any] | None:
            for m in self.inbox:
                if m.get("type") == type_ and all(m.get(k) == v for k, v in match.items()):
                    self.inbox.remove(m)
                    return m
            return None

        async with self._cond:
            found = await asyncio.wait_for(self._cond.wait_for(find), within)
        assert found is not None
        return found

    async def login(self, token: str) -> dict[str, Any]:
        await self.send({"type": "session.login", "req_id": "login", "token": token})
        return await self.expect("session.ready", req_id="login")

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@pytest.fixture
async def raw(server: ServerProc) -> AsyncIterator[Any]:
    """Factory of raw protocol clients, closed at the end of the test."""
    clients: list[RawClient] = []

    async def connect() -> RawClient:
        ws = await websockets.connect(server.url, max_size=2**22)
        client = RawClient(ws)
        clients.append(client)
        return client

    yield connect
    for c in clients:
        await c.close()


async def make_offer(codecs: list[str] | None = None, data_only: bool = False) -> tuple[Any, str]:
    """A real aiortc offer (audio unless ``data_only``), optionally limited to ``codecs``."""
    from aiortc import RTCPeerConnection, RTCRtpSender

    from callbridge.rtp.webrtc import register_codecs, rtc_configuration

    pc = RTCPeerConnection(rtc_configuration())
    if data_only:
        pc.createDataChannel("x")
    else:
        t = pc.addTransceiver("audio", direction="sendrecv")
        register_codecs()
        prefs = RTCRtpSender.getCapabilities("audio").codecs
        if codecs is not None:
            wanted = {f"audio/{c.lower()}" for c in codecs}
            prefs = [c for c in prefs if c.mimeType.lower() in wanted]
        t.setCodecPreferences(prefs)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


@pytest.fixture
async def party(server: Any, make_user: Any) -> AsyncIterator[Any]:
    """Factory: a logged-in softphone for a fresh user (or another device of ``user``)."""
    phones: list[Phone] = []

    async def make(tone: float, user: Any = None) -> Any:
        user = user or await make_user()
        phone = Phone(server.url, user.token)
        await phone.login()
        phones.append(phone)
        return Party(phone, tone, user)

    yield make
    for phone in phones:
        await phone.logout()  # ends the session now (a mere close would keep it for the grace)

"""Fixtures: a real callbridge server (subprocess), users with tokens, raw WebSocket clients.

Everything talks over 127.0.0.1 only: the server is started with `--host 127.0.0.1` (so its
ICE gathers only 127.0.0.1) and this process restricts its own ICE the same way.

Media and webhook targets in the tests are HTTP servers on loopback, which the outbound policy
refuses by default: the testing kit's servers allow loopback (``callbridge.testing.server``),
and so does this process for the media engines and outboxes tests run in it
(``TEST_OUTBOUND``). tests/test_outbound.py checks the strict default.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, Protocol

import pytest
import websockets
from aiortc import RTCPeerConnection
from websockets.asyncio.client import ClientConnection

from callbridge.client import Phone
from callbridge.config import ServerConfig
from callbridge.media.fetch import configure_outbound
from callbridge.rtp.webrtc import restrict_ice_addresses
from callbridge.store import Store
from callbridge.testing.server import LOOPBACK_TARGETS, Server, create_user, running
from parties import Party, PartyUser

restrict_ice_addresses(["127.0.0.1"])

# In-process media engines and webhook outboxes may reach the tests' loopback HTTP servers.
TEST_OUTBOUND = ServerConfig(
    allow_fetch_from=list(LOOPBACK_TARGETS), allow_webhooks_to=list(LOOPBACK_TARGETS)
)
configure_outbound(TEST_OUTBOUND)

RING_TIMEOUT = 3.0
SESSION_GRACE = 8.0  # > the 5 s outage of the reconnect test


# Issue 15: every test server has media worker processes: CALLBRIDGE_TEST_MEDIA_WORKERS (2
# unless set; the testing kit's servers read it) puts `--media-workers N` on each, however many
# cores the machine has. The modules of calls, conferences and transfers also run against a
# one-process server (`--media-workers 1`, the media in the server's own process): each of
# their tests that uses the `server` fixture runs twice, ids `[media-workers-2]` and
# `[one-process]`. CALLBRIDGE_TEST_MEDIA_WORKERS=1 runs everything in one process (no second
# pass); CALLBRIDGE_TEST_WORKERS_PASS=0 turns the one-process pass off.
TEST_MEDIA_WORKERS = int(os.environ.setdefault("CALLBRIDGE_TEST_MEDIA_WORKERS", "2"))
ONE_PROCESS_PASS_MODULES = frozenset({"test_calls", "test_conferences", "test_transfer"})
# Not twice: these wait out a timer of the control plane (session grace, ring timeout), whose
# media is what the other tests already cover; together they would cost ~24 s of the budget.
ONE_PROCESS_PASS_EXCEPT = frozenset(
    {
        "test_a_connection_that_stays_away_ends_the_call_after_the_grace_period",
        "test_nobody_answers",
        "test_a_participant_whose_connection_drops_leaves_cleanly",
        "test_an_invitation_rejected_and_one_that_rings_out",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (
        metafunc.module.__name__ in ONE_PROCESS_PASS_MODULES
        and metafunc.function.__name__ not in ONE_PROCESS_PASS_EXCEPT
        and "server" in metafunc.fixturenames
        and TEST_MEDIA_WORKERS > 1
        and os.environ.get("CALLBRIDGE_TEST_WORKERS_PASS", "1") != "0"
    ):
        # Session scope: pytest groups the items by server, so each server starts once.
        metafunc.parametrize(
            "server",
            [TEST_MEDIA_WORKERS, 1],
            ids=[f"media-workers-{TEST_MEDIA_WORKERS}", "one-process"],
            indirect=True,
            scope="session",
        )


@pytest.fixture(scope="session")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole run, with CALLBRIDGE_TEST_MEDIA_WORKERS media worker processes.
    On the way out every test must have closed its phones: no session, leg or media endpoint
    may be left, and the log may hold no traceback (a server that logged one has a bug even
    when every test passed): ``Server.check_clean``."""
    data_dir = tmp_path_factory.mktemp("server")
    with running(data_dir, ring_timeout=RING_TIMEOUT, session_grace=SESSION_GRACE) as srv:
        yield srv


@pytest.fixture(scope="session")
def one_process_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same server with the media in its own process (`--media-workers 1`), started only
    by the xdist workers that run a module of ONE_PROCESS_PASS_MODULES."""
    data_dir = tmp_path_factory.mktemp("server-one-process")
    args = ["--media-workers", "1"]
    with running(
        data_dir, ring_timeout=RING_TIMEOUT, session_grace=SESSION_GRACE, args=args
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> Server:
    """The suite's server: the one with media workers, or (``param`` 1, see
    pytest_generate_tests) the one-process one. Both live for the whole run; this only picks."""
    if getattr(request, "param", TEST_MEDIA_WORKERS) == 1:
        picked: Server = request.getfixturevalue("one_process_server")
    else:
        picked = request.getfixturevalue("workers_server")
    return picked


@pytest.fixture(scope="session")
def trunk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with SIP for the SIP trunk tests (tests/test_sip_trunk*.py share it)."""
    with running(tmp_path_factory.mktemp("trunks"), sip_port=True, ring_timeout=10.0) as srv:
        yield srv


@pytest.fixture(scope="session")
async def store(server: Server) -> AsyncIterator[Store]:
    """The server's store, open in this process for the whole run."""
    async with server.store() as st:
        yield st


@pytest.fixture
async def phones() -> AsyncIterator[list[Phone]]:
    """``/ws`` phones a test logs in (append them): logged out after the test."""
    made: list[Phone] = []
    yield made
    for phone in made:
        await phone.logout()


_counter = itertools.count(200)


class MakeUser(Protocol):
    """The ``make_user`` fixture: a fresh user (unique name, extension and number) and token."""

    async def __call__(self, display_name: str | None = None) -> PartyUser: ...


@pytest.fixture
def make_user(store: Store) -> MakeUser:
    """Create a fresh user (unique name, extension and number) with a valid token."""

    async def make(display_name: str | None = None) -> PartyUser:
        n = next(_counter)
        number = f"+1415555{n:04d}"
        user = await create_user(
            store,
            f"user{n}",
            str(1000 + n),
            number=number,
            display_name=display_name,
            ttl=timedelta(hours=1),
        )
        return PartyUser(user.name, user.extension, number, user.display_name, user.token)

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


Connect = Callable[[], Awaitable[RawClient]]


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[Connect]:
    """Factory of raw protocol clients, closed at the end of the test."""
    clients: list[RawClient] = []

    async def connect() -> RawClient:
        ws = await websockets.connect(server.ws_url, max_size=2**22)
        client = RawClient(ws)
        clients.append(client)
        return client

    yield connect
    for c in clients:
        await c.close()


async def make_offer(
    codecs: list[str] | None = None, data_only: bool = False
) -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer (audio unless ``data_only``), optionally limited to ``codecs``."""
    from aiortc import RTCRtpSender

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


class MakeParty(Protocol):
    """The ``party`` fixture: a logged-in softphone sending ``tone``, for a fresh user (or
    another device of ``user``)."""

    async def __call__(self, tone: float, user: PartyUser | None = None) -> Party: ...


@pytest.fixture
async def party(server: Server, make_user: MakeUser) -> AsyncIterator[MakeParty]:
    """Factory: a logged-in softphone for a fresh user (or another device of ``user``)."""
    phones: list[Phone] = []

    async def make(tone: float, user: PartyUser | None = None) -> Party:
        user = user or await make_user()
        phone = Phone(server.ws_url, user.token)
        await phone.login()
        phones.append(phone)
        return Party(phone, tone, user)

    yield make
    for phone in phones:
        await phone.logout()  # ends the session now (a mere close would keep it for the grace)

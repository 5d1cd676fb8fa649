"""A real callbridge server for tests: :func:`serve` (async) and :func:`running` (sync).

Both start ``python -m callbridge serve`` in a subprocess on 127.0.0.1 and a free port, with a
fresh SQLite database in ``data_dir`` and the server's log in ``data_dir / "server.log"``; they
return once ``/healthz`` answers. On the way out (when the body raised nothing) they check the
server the way callbridge's own suite does: every session, leg and media endpoint is gone
(waiting up to the session grace, since a dropped WebSocket keeps its session that long), and
the log has no traceback; a failure raises ``AssertionError`` saying what was left.

Example (pytest with pytest-asyncio; ``tmp_path`` is pytest's)::

    import asyncio

    from callbridge.client import Call, Phone
    from callbridge.testing.server import serve


    async def test_alice_calls_bob(tmp_path):
        async with serve(tmp_path, users=["alice", "bob"], ring_timeout=5) as server:
            alice, bob = server.users["alice"], server.users["bob"]
            async with Phone(server.ws_url, alice.token) as a, Phone(server.ws_url, bob.token) as b:
                incoming: asyncio.Queue[Call] = asyncio.Queue()
                b.on("incoming", incoming.put_nowait)
                call = await a.call(bob.extension)
                answering = await asyncio.wait_for(incoming.get(), 5)
                await answering.answer()
                await call.wait_for("answered", timeout=5)
                await call.hangup()
                await answering.wait_for("ended", timeout=5)

``server.url`` is the HTTP base (``/healthz``, the REST API under ``/v2``), ``server.ws_url``
the signalling WebSocket. Users, login tokens and REST API keys are made the way the
``callbridge users add`` / ``token`` / ``apikey create`` commands make them (the same store
calls): :meth:`Server.add_user`, :meth:`Server.token`, :meth:`Server.api_key`, or
:meth:`Server.store` for many at once.

Without an event loop (a benchmark, a session-scoped fixture)::

    with running(data_dir, session_grace=8) as server:
        ...  # server.pid, server.health(), server.wait_idle(), server.log()

The server is a separate process, as in production: nothing it does shares this process's
event loop, and a test sees only what a real client would (plus the log). It listens, and
gathers ICE candidates, on 127.0.0.1 only.

*Outbound requests.* A production server refuses to fetch media from, or send webhooks to,
loopback and private addresses unless the operator lists them (``--allow-fetch-from``,
``--allow-webhooks-to``; docs/security.md). Tests serve their media files and receive their
webhooks on 127.0.0.1, so these servers allow loopback by default
(``allow_fetch_from=LOOPBACK_TARGETS``, ``allow_webhooks_to=LOOPBACK_TARGETS``); pass ``()`` to
test the strict production default, or other entries to test an allow-list.

*Per-source limits.* Every test client connects from 127.0.0.1, so these servers lift the
per-source abuse limits (``--max-connections-per-source``, ``--login-failures-per-minute``);
pass them in ``args`` to test them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack, cast

import httpx

from callbridge.config import database_url_for
from callbridge.errors import CallbridgeError
from callbridge.store import Store

__all__ = [
    "LOOPBACK_TARGETS",
    "Health",
    "Server",
    "ServerError",
    "ServerOptions",
    "ServerUser",
    "create_user",
    "free_port",
    "free_sip_port",
    "running",
    "serve",
]

LOOPBACK = "127.0.0.1"
LOOPBACK_TARGETS = ("127.0.0.1", "::1")  # what test servers may fetch from and post to
CLI_SESSION_GRACE = 60.0  # `callbridge serve --session-grace` default, seconds
TOKEN_TTL = timedelta(hours=24)  # as `callbridge token`
FIRST_EXTENSION = 1001  # users=[...] get 1001, 1002, ... in order
POLL = 0.1  # seconds between /healthz polls
# `--media-workers N` for every server this kit starts (the test suite sets 2; issue 15)
TEST_WORKERS_ENV = "CALLBRIDGE_TEST_MEDIA_WORKERS"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on at this moment (the OS picks it).

    Another process could take it before the caller binds it; on a test machine that is rare
    enough, and a server that cannot bind says so in its log.
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_sip_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP at this moment (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise ServerError("no port free for both UDP and TCP")


class ServerError(CallbridgeError):
    """The server did not start (exited, or ``/healthz`` never answered); the message ends
    with its log."""


class Health(TypedDict):
    """What ``GET /healthz`` answers: liveness plus what is live right now."""

    status: str
    version: str
    sessions: int
    legs: int  # calls' sides
    media_endpoints: int
    event_loop: str  # "uvloop" or "asyncio" (``--event-loop``)
    # --media-workers N > 1: each worker, and the bridges/mixer members relayed between them
    media_workers: NotRequired[list[dict[str, Any]]]
    media_relays: NotRequired[dict[str, int]]


class ServerOptions(TypedDict):
    """How to start the server; each maps to a ``callbridge serve`` option."""

    ring_timeout: NotRequired[float]  # --ring-timeout (CLI default 30 s)
    session_grace: NotRequired[float]  # --session-grace (CLI default 60 s)
    port: NotRequired[int]  # --port (default: a free one)
    log_level: NotRequired[str]  # --log-level ("info")
    log_path: NotRequired[Path]  # where stdout and stderr go (data_dir / "server.log")
    allow_fetch_from: NotRequired[Sequence[str]]  # --allow-fetch-from (LOOPBACK_TARGETS)
    allow_webhooks_to: NotRequired[Sequence[str]]  # --allow-webhooks-to (LOOPBACK_TARGETS)
    # --sip-port: SIP is off in test servers (0, the default) so none takes 5060; True picks
    # a port free for both UDP and TCP (``Server.sip_port``), an int is used as is.
    sip_port: NotRequired[int | bool]
    args: NotRequired[Sequence[str]]  # any further `callbridge serve` options


@dataclass(frozen=True, slots=True)
class ServerUser:
    """A user as ``callbridge users add`` makes it, with a login token (``session.login``)."""

    name: str
    extension: str
    number: str | None
    display_name: str | None
    token: str


async def create_user(
    store: Store,
    name: str,
    extension: str,
    *,
    number: str | None = None,
    display_name: str | None = None,
    ttl: timedelta = TOKEN_TTL,
) -> ServerUser:
    """Add a user to ``store`` and make a login token for it (``users add`` + ``token``)."""
    user = await store.add_user(name, extension, number=number, display_name=display_name)
    token, _ = await store.create_token(name, ttl)
    return ServerUser(user.name, user.extension, user.number, user.display_name, token)


class Server:
    """A ``callbridge serve`` subprocess on 127.0.0.1. Made by :func:`serve` or :func:`running`
    (or directly, then :meth:`wait_ready` and :meth:`stop` are the caller's)."""

    host = LOOPBACK

    def __init__(self, data_dir: Path, **options: Unpack[ServerOptions]) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = options.get("port") or free_port()
        self.session_grace = options.get("session_grace", CLI_SESSION_GRACE)
        sip = options.get("sip_port", 0)
        self.sip_port = free_sip_port() if sip is True else int(sip)  # 0: SIP off
        self.log_path = options.get("log_path", self.data_dir / "server.log")
        self.users: dict[str, ServerUser] = {}  # those made by serve(users=...) and add_user
        cmd = [
            sys.executable, "-m", "callbridge", "serve",
            "--host", self.host, "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--session-grace", str(self.session_grace),
            "--log-level", options.get("log_level", "info"),
        ]  # fmt: skip
        if "ring_timeout" in options:
            cmd += ["--ring-timeout", str(options["ring_timeout"])]
        for entry in options.get("allow_fetch_from", LOOPBACK_TARGETS):
            cmd += ["--allow-fetch-from", entry]
        for entry in options.get("allow_webhooks_to", LOOPBACK_TARGETS):
            cmd += ["--allow-webhooks-to", entry]
        # Every test client comes from 127.0.0.1: per-source abuse limits would count the
        # whole test run as one attacker. `args` may set them (the last option wins).
        cmd += ["--max-connections-per-source", "100000", "--login-failures-per-minute", "100000"]
        cmd += ["--sip-port", str(self.sip_port)]
        # The suite runs with media worker processes too (issue 15): this forces N of them on
        # every test server (`args` may still set --media-workers; the last option wins).
        if workers := os.environ.get(TEST_WORKERS_ENV):
            cmd += ["--media-workers", workers]
        cmd += options.get("args", ())
        # Not passed on: `serve` would warn that it looks like CALLBRIDGE_MEDIA_WORKERS.
        env = {k: v for k, v in os.environ.items() if k != TEST_WORKERS_ENV}
        self.log_path.write_bytes(b"")  # a fresh log, then appended to: lines a test adds stay
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def __repr__(self) -> str:
        return f"<Server {self.url} pid={self.pid} data_dir={self.data_dir}>"

    @property
    def url(self) -> str:
        """The HTTP base URL: ``/healthz``, the REST API at ``url + "/v2"``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The signalling WebSocket (``/ws``), for ``Phone(server.ws_url, token)``."""
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def database_url(self) -> str:
        """The server's SQLite database, for ``Store.open`` in the test's process."""
        return database_url_for(self.data_dir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the server printed or logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle -----------------------------------------------------------------------------

    def wait_ready(self, within: float = 30.0) -> None:
        """Block until ``/healthz`` answers 200.

        :raises ServerError: the server exited, or did not answer within ``within`` seconds.
        """
        deadline = time.monotonic() + within
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise ServerError(f"server did not answer within {within} s:\n{self.log()}")
            time.sleep(POLL)

    def health(self) -> Health:
        """``GET /healthz`` (blocking: a loopback round trip)."""
        return cast(Health, httpx.get(f"{self.url}/healthz", timeout=2).json())

    def wait_idle(self, within: float | None = None) -> Health:
        """Poll ``/healthz`` until no session, leg or media endpoint is live, at most
        ``within`` seconds (default: the session grace + 5 s, since a session whose WebSocket
        dropped lives that long); the last answer either way."""
        deadline = time.monotonic() + (self.session_grace + 5 if within is None else within)
        while True:
            live = self.health()
            idle = live["sessions"] == live["legs"] == live["media_endpoints"] == 0
            if idle or time.monotonic() > deadline:
                return live
            time.sleep(POLL)

    def stop(self, within: float = 10.0) -> int:
        """Terminate the server (SIGTERM, then SIGKILL after ``within`` s); its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def check_clean(self, within: float | None = None) -> None:
        """Wait until idle (:meth:`wait_idle`), stop, and assert the server left nothing.

        :raises AssertionError: the log has a traceback (a server bug, even when every test
            passed), or legs, media endpoints or sessions are still live.
        """
        live = self.wait_idle(within)
        self.stop()
        text = self.log()
        # The whole header: an access-log line may quote a request that says "Traceback".
        header = "Traceback (most recent call last)"
        assert header not in text, text[max(0, text.find(header) - 200) :][:4000]
        assert live["legs"] == 0 and live["media_endpoints"] == 0, f"leaked: {live}"
        assert live["sessions"] == 0, f"leaked sessions: {live}"

    # -- users, tokens, API keys ---------------------------------------------------------------

    @asynccontextmanager
    async def store(self) -> AsyncIterator[Store]:
        """The server's store, opened in this process (for many users or keys at once)."""
        async with await Store.open(self.database_url) as store:
            yield store

    async def add_user(
        self,
        name: str,
        extension: str | None = None,
        *,
        number: str | None = None,
        display_name: str | None = None,
    ) -> ServerUser:
        """``callbridge users add`` + ``callbridge token``: a user (the next free extension
        from 1001 unless given) and a login token valid for a day."""
        async with self.store() as store:
            return await self._add_user(store, name, extension, number, display_name)

    async def add_users(self, names: Iterable[str]) -> list[ServerUser]:
        """Several users at once (one store connection), extensions from :meth:`add_user`."""
        async with self.store() as store:
            return [await self._add_user(store, name, None, None, None) for name in names]

    async def _add_user(
        self,
        store: Store,
        name: str,
        extension: str | None,
        number: str | None,
        display_name: str | None,
    ) -> ServerUser:
        ext = extension or str(FIRST_EXTENSION + len(self.users))
        user = await create_user(store, name, ext, number=number, display_name=display_name)
        self.users[name] = user
        return user

    async def token(self, name: str, ttl: timedelta = TOKEN_TTL) -> str:
        """``callbridge token NAME``: a new login token for an existing user."""
        async with self.store() as store:
            token, _ = await store.create_token(name, ttl)
        return token

    async def api_key(self, name: str | None = None) -> str:
        """``callbridge apikey create``: a new REST API key (``Authorization: Bearer KEY``)."""
        async with self.store() as store:
            return await store.create_api_key(name)


@contextmanager
def running(
    data_dir: Path, *, check: bool = True, **options: Unpack[ServerOptions]
) -> Iterator[Server]:
    """``with running(data_dir) as server:`` a started server (blocking, for code without an
    event loop); on the way out :meth:`Server.check_clean` if ``check``, else just stopped."""
    server = Server(data_dir, **options)
    try:
        server.wait_ready()
        yield server
    except BaseException:
        server.stop()
        raise
    if check:
        server.check_clean()
    else:
        server.stop()


@asynccontextmanager
async def serve(
    data_dir: Path,
    *,
    users: Iterable[str] = (),
    check: bool = True,
    **options: Unpack[ServerOptions],
) -> AsyncIterator[Server]:
    """``async with serve(data_dir, users=["alice"]) as server:`` a started server with those
    users (extensions 1001, 1002, ... in order; ``server.users[name].token`` logs in).

    The waits run in a thread, so this event loop keeps serving (phones closing, say) while the
    server starts and while the way out waits for it to become idle.
    """
    server = Server(data_dir, **options)
    try:
        await asyncio.to_thread(server.wait_ready)
        if names := list(users):
            await server.add_users(names)
        yield server
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise
    await asyncio.to_thread(server.check_clean if check else server.stop)

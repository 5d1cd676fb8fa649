"""The kit of the callbridge-web tests: a real server, Python SDK parties and Chromium pages.

``tests/browser/sdk_scenario.py`` runs flows with it inside the loopback-only namespace of
``tests/test_browser.py`` (``unshare --net --pid``). Each page is served at
``http://127.0.0.1:PORT/test/`` by a playwright route: it has the server's origin, so
``import { Phone } from "/sdk/callbridge.js"`` loads the SDK from the server under test, and
127.0.0.1 is a secure context (getUserMedia works). The pages' microphones are WebAudio
oscillators (``kit.tone(hz)`` in ``sdk_kit.js``): what each party hears tells whose audio
arrived. Python parties are :class:`callbridge.client.Phone` with a :class:`ToneSource` and a
:class:`BufferSink`, analysed with :func:`callbridge.testing.tone_level_db`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from callbridge.client import SAMPLE_RATE, BufferSink, Call, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, ServerUser

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    # The test pages come from a playwright route (no IP address: "public" to Chromium's
    # Local Network Access checks), yet talk to the server on 127.0.0.1: their origin is the
    # server's, so these are same-origin requests in every other respect.
    "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests",
]
TEST_FILES = {"sdk_page.html": "text/html", "sdk_kit.js": "text/javascript"}
USERS = [  # name, extension, number, tone (Hz) its microphone sends
    ("alice", "201", "+14155550201", 440.0),
    ("bob", "202", "+14155550202", 1000.0),
    ("carol", "203", "+14155550203", 660.0),
    ("dave", "204", "+14155550204", 1500.0),
    ("erin", "205", "+14155550205", 820.0),
]
TONES = {name: hz for name, _, _, hz in USERS}


async def until(predicate: Callable[[], object], within: float, what: str) -> None:
    """Wait until ``predicate()`` is true (state the SDKs' events update), or fail."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {within} s")
        await asyncio.sleep(0.05)


# A call's recording, as an application asks for it (REST, docs/api.md): the body of each.
RECORD_START: tuple[str, dict[str, Any]] = ("record_start", {"format": "wav", "channels": "single"})
RECORD_STOP: tuple[str, dict[str, Any]] = ("record_stop", {})


async def call_action(server: Server, call_id: str, action: tuple[str, dict[str, Any]]) -> int:
    """POST ``/v2/calls/{call_id}/actions/{name}`` with a new API key; the HTTP status."""
    name, body = action
    key = await server.api_key()
    async with httpx.AsyncClient(base_url=f"{server.url}/v2", timeout=10) as http:
        response = await http.post(
            f"/calls/{call_id}/actions/{name}",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        )
    return response.status_code


@dataclass
class PyParty:
    """A Python SDK phone; answers incoming calls by itself when ``auto_answer``."""

    name: str
    phone: Phone
    sink: BufferSink
    calls: list[Call] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    auto_answer: bool = True

    def level(self, name: str, seconds: float = 1.0) -> float:
        """dBFS of ``name``'s tone in what this party heard during the last ``seconds``."""
        return tone_level_db(self.sink.samples(seconds), SAMPLE_RATE, TONES[name])

    async def hears(self, seconds: float = 1.2) -> dict[str, float]:
        """Listen afresh for ``seconds``; the level of every user's tone."""
        self.sink.clear()
        await asyncio.sleep(seconds)
        return {name: round(self.level(name, seconds - 0.2), 1) for name in TONES}

    async def wait_call(self, count: int = 1, within: float = 10) -> Call:
        """The ``count``-th call this party got (answered already if ``auto_answer``)."""
        await until(lambda: len(self.calls) >= count, within, f"{self.name}'s call {count}")
        call = self.calls[count - 1]
        if self.auto_answer:
            await until(lambda: call.media is not None or not call.is_live, within, "answer")
            if call.media is not None:
                await asyncio.wait_for(call.media.wait_connected(), within)
        return call


class Kit:
    """Server, users, Python parties and browser pages of one scenario run."""

    def __init__(self, server: Server, users: dict[str, ServerUser], browser: Any) -> None:
        self.server = server
        self.users = users
        self.browser = browser
        self.parties: dict[str, PyParty] = {}
        self.pages: dict[str, Any] = {}
        self.console: list[str] = []

    def ext(self, name: str) -> str:
        return self.users[name].extension

    # -- Python parties ------------------------------------------------------------------------

    async def party(self, name: str, auto_answer: bool = True) -> PyParty:
        phone = Phone(self.server.ws_url, self.users[name].token)
        await phone.login()
        party = PyParty(name, phone, BufferSink(), auto_answer=auto_answer)

        async def on_incoming(call: Call) -> None:
            party.calls.append(call)
            call.on("dtmf", party.dtmf.append)
            call.on("ended", party.ended.append)
            call.on("held", party.held.append)
            if party.auto_answer:
                await call.answer(source=ToneSource(TONES[name]), sink=party.sink)

        phone.on("incoming", on_incoming)
        self.parties[name] = party
        return party

    async def close_parties(self) -> None:
        for party in self.parties.values():
            try:
                await asyncio.wait_for(party.phone.close(), 10)
            except Exception as exc:  # closing is best effort
                self.console.append(f"closing {party.name}: {exc!r}")
        self.parties.clear()

    # -- browser pages -------------------------------------------------------------------------

    async def page(self, name: str) -> Any:
        """A page signed in as ``name`` (``kit.phones[name]``, microphone: its tone)."""
        page = await self.browser.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: self.console.append(f"{name} {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"{name} pageerror: {e}"))

        async def serve_test_file(route: Any) -> None:
            file = route.request.url.rsplit("/", 1)[-1].split("?")[0]
            if file in TEST_FILES:
                await route.fulfill(
                    body=(HERE / file).read_bytes(), content_type=TEST_FILES[file], status=200
                )
            else:
                await route.fulfill(status=404, body="no such test file")

        await page.route(f"{self.server.url}/test/**", serve_test_file)
        await page.goto(f"{self.server.url}/test/sdk_page.html")
        await page.wait_for_function("window.kitReady === true", timeout=10_000)
        config: dict[str, object] = {
            "name": name,
            "url": self.server.ws_url,
            "token": self.users[name].token,
        }
        config["hz"] = TONES[name]
        await self.js(
            page,
            "async c => { await kit.phone(c.name, {url: c.url, token: c.token, hz: c.hz})"
            ".connect(); return true; }",
            config,
        )
        self.pages[name] = page
        return page

    async def js(self, page: Any, expr: str, arg: Any = None, within: float = 20) -> Any:
        return await asyncio.wait_for(page.evaluate(expr, arg), within)

    async def close_pages(self) -> None:
        for name, page in list(self.pages.items()):
            try:
                await self.js(page, "() => Object.values(kit.phones).forEach(p => p.close())")
                await asyncio.wait_for(page.close(), 5)
            except Exception as exc:  # closing is best effort
                self.console.append(f"closing page {name}: {exc!r}")
        self.pages.clear()


Flow = Callable[[Kit], Any]


async def run_flow(kit: Kit, flow: Flow, limit: float) -> dict[str, Any]:
    """Run one flow within ``limit`` seconds; its data, or the error it failed with."""
    import traceback

    start = time.monotonic()
    out: dict[str, Any] = {"ok": False, "error": None, "data": {}}
    try:
        async with asyncio.timeout(limit):
            out["data"] = await flow(kit)
        out["ok"] = True
    except BaseException as exc:  # reported; the next flow runs
        out["error"] = "".join(traceback.format_exception(exc))[-4000:]
    finally:
        logs: dict[str, Any] = {}
        for name, page in kit.pages.items():
            try:
                logs[name] = await kit.js(page, "() => ({log: kit.log, errors: kit.errors})")
            except Exception as exc:
                logs[name] = repr(exc)
        out["pages"] = logs
        try:
            await asyncio.wait_for(kit.close_pages(), 20)
            await asyncio.wait_for(kit.close_parties(), 20)
        except Exception as exc:
            out["cleanup_error"] = repr(exc)
        out["seconds"] = round(time.monotonic() - start, 2)
    return out

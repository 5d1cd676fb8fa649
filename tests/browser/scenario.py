"""Seed 001's "Direct WebSocket Usage" in real Chromium against a real callbridge server.

Run by ``tests/test_browser.py`` inside a loopback-only network namespace::

    unshare --net --pid --fork --kill-child -- \
        sh -c 'ip link set lo up && exec python tests/browser/scenario.py --timeout 45'

and refuses to run anywhere else (any interface besides ``lo`` is an error), so no packet of the
server, the SDK or Chromium can leave 127.0.0.1 / ::1. In that PID namespace this process is
init: when it ends, the kernel kills whatever is left (server, browser).

What happens: a callbridge server starts (subprocess, fresh data dir); two users get tokens; the
callee logs in with the Python SDK and auto-answers with a 1000 Hz tone; Debian's Chromium
(driven by playwright, never downloaded) loads ``page.html``, which logs in and calls the
callee with the raw WebSocket flow of seed 001 (a 440 Hz WebAudio oscillator as the microphone,
trickle ICE), listens, sends ``insertDTMF("159#")`` and hangs up. Everything observed goes to
stdout as one line ``RESULT {json}``; the test asserts on it. Exit status 0 when the scenario
ran to the end (whatever it observed), 1 when it failed (``error`` says why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from callbridge.client import SAMPLE_RATE, BufferSink, Call, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, create_user

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
]
PAGE = Path(__file__).with_name("page.html")

BROWSER_TONE = 440.0  # the page's oscillator
CALLEE_TONE = 1000.0  # the Python callee's ToneSource
DIGITS = "159#"

log = logging.getLogger("scenario")


def loopback_only() -> list[str]:
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise SystemExit(
            f"scenario.py must run in a loopback-only network namespace, found interfaces "
            f"{names}; run it through tests/test_browser.py (unshare -n)"
        )
    return names


class Scenario:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.result: dict[str, Any] = {"error": None, "timings": {}}
        self.t0 = time.monotonic()
        self.server: Server | None = None
        self.console: list[str] = []
        self.result["console"] = self.console

    def mark(self, phase: str) -> None:
        self.result["timings"][phase] = round(time.monotonic() - self.t0, 3)

    # -- server --------------------------------------------------------------------------------

    async def start_server(self) -> str:
        self.server = Server(self.workdir / "data")
        await asyncio.to_thread(self.server.wait_ready, 20)
        return self.server.ws_url

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.result["server_returncode"] = self.server.stop(5)
        text = self.server.log()
        self.result["server_traceback"] = "Traceback" in text
        self.result["server_log_tail"] = text[-6000:]

    async def make_users(self) -> dict[str, dict[str, str]]:
        assert self.server is not None
        users = {}
        async with self.server.store() as store:
            for name, ext, number in (
                ("browser", "101", "+14155550101"),
                ("callee", "102", "+14155550102"),
            ):
                user = await create_user(
                    store,
                    name,
                    ext,
                    number=number,
                    display_name=name.title(),
                    ttl=timedelta(hours=1),
                )
                users[name] = {"extension": ext, "number": number, "token": user.token}
        return users

    # -- the call ------------------------------------------------------------------------------

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        r = self.result
        r["interfaces"] = loopback_only()
        if not os.access(CHROMIUM, os.X_OK):
            raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
        url = await self.start_server()
        users = await self.make_users()
        self.mark("server_ready")

        # The callee: Python SDK, auto-answer with a 1000 Hz tone into a BufferSink.
        callee = Phone(url, users["callee"]["token"])
        await callee.login()
        sink = BufferSink()
        signalled: list[str] = []
        inband: list[str] = []
        answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

        async def on_incoming(call: Call) -> None:
            call.on("dtmf", signalled.append)
            await call.answer(source=ToneSource(CALLEE_TONE), sink=sink)
            assert call.media is not None
            call.media.on_dtmf = inband.append  # the digits relayed in-band (RFC 4733)
            answered.set_result(call)

        callee.on("incoming", on_incoming)
        callee_info: dict[str, Any] = {"dtmf_signalled": signalled, "dtmf_inband": inband}
        r["callee"] = callee_info

        try:
            async with async_playwright() as pw:
                # launch() gives the browser a fresh temporary profile (user-data dir).
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=20_000
                )
                try:
                    r["browser_version"] = browser.version
                    await self.browser_call(browser, url, users, answered, sink, callee_info)
                finally:
                    await asyncio.wait_for(browser.close(), 10)
        finally:
            await asyncio.wait_for(callee.close(), 10)

    async def browser_call(
        self,
        browser: Any,
        url: str,
        users: dict[str, dict[str, str]],
        answered: asyncio.Future[Call],
        sink: BufferSink,
        callee_info: dict[str, Any],
    ) -> None:
        r = self.result
        page = await browser.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        await page.goto(PAGE.as_uri())
        self.mark("page_loaded")

        async def js(expr: str, arg: Any = None, within: float = 15) -> Any:
            return await asyncio.wait_for(page.evaluate(expr, arg), within)

        try:
            config = {
                "url": url,
                "token": users["browser"]["token"],
                "destination": users["callee"]["extension"],
                "toneHz": BROWSER_TONE,
            }
            r["connect"] = await js("cfg => cb.connect(cfg)", config, 20)
            self.mark("browser_answered")
            call = await asyncio.wait_for(answered, 5)
            callee_info.update(call_id=call.id, from_=call.from_, to=call.to)
            assert call.media is not None
            await asyncio.wait_for(call.media.wait_connected(), 5)
            self.mark("callee_media_connected")

            # Both directions at once: the page listens while the callee records (after 0.5 s
            # for the first packets and the decoders to start: not part of the measurement).
            await asyncio.sleep(0.5)
            sink.clear()
            r["listen"], _ = await asyncio.gather(
                js("ms => cb.listen(ms)", 1500), asyncio.sleep(1.5)
            )
            pcm = sink.samples(1.2)
            callee_info["samples"] = int(pcm.size)
            callee_info["level_browser_tone"] = tone_level_db(pcm, SAMPLE_RATE, BROWSER_TONE)
            callee_info["level_own_tone"] = tone_level_db(pcm, SAMPLE_RATE, CALLEE_TONE)
            self.mark("audio_checked")

            r["dtmf"] = await js("d => cb.dtmf(d)", DIGITS, 10)
            for _ in range(40):
                if len(callee_info["dtmf_signalled"]) >= len(DIGITS) and len(
                    callee_info["dtmf_inband"]
                ) >= len(DIGITS):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything more (a duplicate) would arrive by now
            self.mark("dtmf_done")

            r["hangup"] = await js("() => cb.hangup()", None, 10)
            ended = await call.wait_for("ended", timeout=5)
            callee_info["end_reason"] = ended.data.get("reason")
            callee_info["end_reason_attr"] = call.end_reason
            self.mark("ended")
        finally:
            try:
                r["summary"] = await js("() => cb.summary()", None, 5)
            except Exception as exc:
                r["summary"] = f"unavailable: {exc!r}"


async def main_async(args: argparse.Namespace, scenario: Scenario) -> None:
    async with asyncio.timeout(args.timeout):
        await scenario.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds for everything")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="callbridge-browser-") as tmp:
        scenario = Scenario(Path(tmp))
        status = 0
        try:
            asyncio.run(main_async(args, scenario))
        except BaseException as exc:  # report everything, including the timeout
            scenario.result["error"] = "".join(traceback.format_exception(exc))
            status = 1
        finally:
            scenario.stop_server()
            scenario.mark("total")
        print("RESULT " + json.dumps(scenario.result, default=str), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The operator dashboard (``/dashboard``) in real Chromium against a real server.

Run by ``tests/test_dashboard.py`` inside a loopback-only network namespace (as
``scenario.py``, whose namespace check and Chromium flags it reuses)::

    unshare --net --pid --fork --kill-child -- \
        sh -c 'ip link set lo up && exec python tests/browser/dashboard_scenario.py --timeout 50'

An operator opens the page; a wrong key is refused with the server's message; a read-only
admin key signs in and the feed goes live. Four Python SDK phones sign in: carol hosts a
conference that dave joins, alice calls bob; the page shows the call (answered), the devices
and the conference with its members and its talker, then alice hangs up and
the page drops the call and lists it among the recent calls. Last, the server is stopped
with the page's live feed still open (the feed must not hold up the stop). What the page
shows is read from the DOM at each step. The screenshot ``dashboard.png`` goes to ``--shots``, or to
``$CALLBRIDGE_SCREENSHOTS`` (``docs/img`` re-takes the docs' picture; see ``browser/shots.py``).

Prints ``RESULT {json}``; exit 0 when the scenario ran to its end, 1 when it failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

# tests/ on the path, as mypy sees it (mypy_path): scenario.py's Chromium flags and checks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from browser.scenario import CHROMIUM, CHROMIUM_ARGS, loopback_only
from browser.shots import screenshots_dir
from callbridge.client import BufferSink, Call, Phone, ToneSource
from callbridge.testing.server import Server, create_user

STEP = 10_000  # ms: each UI step's wait
USERS = (
    ("alice", "101", "+14155550101", "Alice Smith"),
    ("bob", "102", "+14155550102", "Bob Jones"),
    ("carol", "103", "+14155550103", "Carol White"),
    ("dave", "104", "+14155550104", "Dave Brown"),
)

# What the page shows: each table's rows as lists of cell texts, and the status line.
READ_PAGE = """() => {
  const cells = (id) => [...document.querySelectorAll(`#${id} tbody tr`)]
    .map((tr) => [...tr.children].map((td) => td.textContent));
  return {
    status: document.getElementById('status').textContent,
    error: document.getElementById('signin-error').textContent,
    calls: cells('calls'),
    conferences: [...document.querySelectorAll('#conferences .conf')].map((c) => ({
      title: c.querySelector('h3').textContent,
      members: [...c.querySelectorAll('li')].map((li) => li.textContent),
      talking: [...c.querySelectorAll('li.talking')].map((li) => li.textContent),
    })),
    devices: cells('devices').map((row) => row[0]),
    cdrs: cells('cdrs'),
    media: cells('media'),
  };
}"""

log = logging.getLogger("dashboard_scenario")


class DashboardScenario:
    def __init__(self, workdir: Path, shots: Path | None) -> None:
        self.workdir = workdir
        self.shots = shots
        self.server: Server | None = None
        self.t0 = time.monotonic()
        self.result: dict[str, Any] = {
            "error": None,
            "timings": {},
            "steps": {},
            "console_errors": [],
        }

    def mark(self, phase: str) -> None:
        self.result["timings"][phase] = round(time.monotonic() - self.t0, 3)

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.result["server_returncode"] = self.server.stop(5)
        text = self.server.log()
        self.result["server_traceback"] = "Traceback" in text
        self.result["server_log_tail"] = text[-5000:]

    async def read(self, page: Any) -> dict[str, Any]:
        return dict(await page.evaluate(READ_PAGE))

    async def until(self, page: Any, predicate: str, step: str) -> None:
        """Wait for ``predicate`` on the page; on a timeout, what the page showed goes in
        the result (``steps[step + "_timeout"]``) before the error does."""
        try:
            await page.wait_for_function(predicate)
        except Exception:
            self.result["steps"][f"{step}_timeout"] = await self.read(page)
            raise

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        r = self.result
        r["interfaces"] = loopback_only()
        self.server = Server(self.workdir / "data")
        await asyncio.to_thread(self.server.wait_ready, 20)
        tokens = {}
        async with self.server.store() as store:
            for name, ext, number, display in USERS:
                user = await create_user(
                    store, name, ext, number=number, display_name=display, ttl=timedelta(hours=1)
                )
                tokens[name] = user.token
            key = await store.create_api_key("dashboard", admin=True, scope="read")
        self.mark("server_ready")
        phones = [Phone(self.server.ws_url, tokens[name]) for name, *_ in USERS]
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=20_000
                )
                try:
                    r["browser_version"] = browser.version
                    await self.flow(browser, key, phones)
                finally:
                    await asyncio.wait_for(browser.close(), 10)
        finally:
            for phone in phones:
                await asyncio.wait_for(phone.close(), 10)

    async def flow(self, browser: Any, key: str, phones: list[Phone]) -> None:
        assert self.server is not None
        steps = self.result["steps"]
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.set_default_timeout(STEP)
        page.on(
            "console",
            lambda m: self.result["console_errors"].append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.result["console_errors"].append(str(e)))
        await page.goto(f"{self.server.url}/dashboard")

        # A wrong key: the page says what the server said (and the 401 is no page error).
        await page.fill("#key", "KEYnot-a-key")
        await page.click("#signin button[type=submit]")
        await page.wait_for_function("() => document.getElementById('signin-error').textContent")
        steps["refused"] = await self.read(page)
        self.result["console_errors"] = [
            e for e in self.result["console_errors"] if "401" not in e
        ]  # Chromium logs the refused fetch itself

        await page.fill("#key", key)
        await page.click("#signin button[type=submit]")
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Live')"
        )
        steps["signed_in"] = await self.read(page)
        self.mark("signed_in")

        alice, bob, carol, dave = phones
        await asyncio.gather(*(phone.login() for phone in phones))
        # carol hosts a conference and dave joins it: a room whose talker the page marks.
        invited: asyncio.Queue[object] = asyncio.Queue()
        dave.on("conference:invitation-received", invited.put_nowait)
        room = await carol.start_conference(
            source=ToneSource(660.0), sink=BufferSink(), name="Standup"
        )
        await room.add_participant("104")
        await asyncio.wait_for(invited.get(), 10)
        await dave.join_conference(source=ToneSource(880.0), sink=BufferSink())
        answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

        async def on_incoming(call: Call) -> None:
            await call.answer(source=ToneSource(1000.0), sink=BufferSink())
            if not answered.done():
                answered.set_result(call)

        bob.on("incoming", on_incoming)
        out = await alice.call("102", source=ToneSource(440.0), sink=BufferSink())
        await asyncio.wait_for(answered, 10)
        await out.wait_for("answered", timeout=10)
        await self.until(
            page,
            """() => {
              const rows = [...document.querySelectorAll('#calls tbody tr')];
              const call = rows.find((tr) => tr.children[0].textContent.includes('alice'));
              return rows.length === 3 && call && call.children[2].textContent === 'answered'
                && document.querySelectorAll('#devices tbody tr').length >= 4
                && document.querySelectorAll('#conferences .conf li').length >= 2
                && document.querySelector('#conferences li.talking');
            }""",
            "call_live",
        )
        steps["call_live"] = await self.read(page)
        self.mark("call_shown")
        if self.shots is not None:
            await asyncio.sleep(2.2)  # some talk time on the picture
            self.shots.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(self.shots / "dashboard.png"), animations="disabled")
            self.result["screenshot"] = str(self.shots / "dashboard.png")

        await out.hangup()
        await self.until(
            page,
            """() => document.querySelectorAll('#calls tbody tr').length === 2
                && document.querySelectorAll('#cdrs tbody tr').length >= 1""",
            "call_ended",
        )
        steps["call_ended"] = await self.read(page)
        self.mark("call_dropped")
        await carol.end_conference()  # (a drain would wait for it)
        await self.until(
            page,
            """() => document.querySelectorAll('#calls tbody tr').length === 0
                && document.querySelectorAll('#conferences .conf').length === 0""",
            "conference_ended",
        )
        steps["conference_ended"] = await self.read(page)
        # The server stops (SIGTERM) while the page's feed is open: the drain ends the stream,
        # so the stop is not held up by it (uvicorn waits for open responses, then cancels).
        # (The page's reconnects after that fail: those console errors are expected.)
        self.result["console_errors_while_up"] = list(self.result["console_errors"])
        started = time.monotonic()
        self.result["stop_returncode"] = await asyncio.to_thread(self.server.stop, 10)
        self.result["stop_secs"] = round(time.monotonic() - started, 2)
        await context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=50.0, help="seconds for everything")
    parser.add_argument(
        "--shots", type=Path, help="write the screenshot here (see browser/shots.py: not docs/)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="callbridge-dashboard-") as tmp:
        scenario = DashboardScenario(Path(tmp), screenshots_dir(args.shots))
        status = 0

        async def bounded() -> None:
            async with asyncio.timeout(args.timeout):
                await scenario.run()

        try:
            asyncio.run(bounded())
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

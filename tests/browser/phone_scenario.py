"""The softphone page (``/phone``) clicked through in real Chromium against a real server.

Run by ``tests/test_web_phone.py`` inside a loopback-only network namespace (as
``scenario.py``, whose namespace checks and Chromium flags it reuses)::

    unshare --net --pid --fork --kill-child -- \
        sh -c 'ip link set lo up && exec python tests/browser/phone_scenario.py call --timeout 60'

``call``: alice and bob sign in on two pages (two Chromium processes, so that each has its own
fake microphone: a 440 Hz and a 660 Hz tone from a WAV file); alice dials bob's extension on
the dial pad, bob answers from the incoming banner, an application records the call for a
moment (REST record_start / record_stop: both pages show the "Recorded" badge, then not),
alice holds and resumes, bob transfers the call (blind) to carol, a Python SDK party that
auto-answers with a 1000 Hz tone and records what it hears, alice hangs up and her Recent
calls shows the server's records of the call. What each page shows is read from the DOM at
each step; audio is checked twice: RTP energy between the two pages (``getStats`` on
``call.peerConnection``), and carol's recording analysed for alice's 440 Hz (and not bob's
660 Hz). Then a conference: alice starts it, invites bob, removes him, ends it. Screenshots
go to ``--shots``, or to ``$CALLBRIDGE_SCREENSHOTS`` (``docs/img`` re-takes the docs'
pictures; see ``browser/shots.py``).

``tls``: ``callbridge dev-cert`` makes a certificate, ``callbridge serve --tls-cert/--tls-key``
serves it; Chromium trusts exactly that key (``--ignore-certificate-errors-spki-list``), loads
``https://127.0.0.1:PORT/phone``, signs two pages in over ``wss://`` and puts a call through.

Prints ``RESULT {json}``; exit 0 when the scenario ran to its end, 1 when it failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

# tests/ on the path, as mypy sees it (mypy_path): scenario.py's Chromium flags and checks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from browser.scenario import CHROMIUM, CHROMIUM_ARGS, loopback_only
from browser.sdk_harness import RECORD_START, RECORD_STOP, call_action
from browser.shots import screenshots_dir
from callbridge.client import SAMPLE_RATE, BufferSink, Call, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, create_user

ALICE_TONE, BOB_TONE, CAROL_TONE = 440.0, 660.0, 1000.0
STEP = 10_000  # ms: each UI step's wait
USERS = (
    ("alice", "101", "+14155550101", "Alice Smith"),
    ("bob", "102", "+14155550102", "Bob Jones"),
    ("carol", "103", "+14155550103", "Carol"),
)

log = logging.getLogger("phone_scenario")


def write_tone(path: Path, freq: float, seconds: float = 2.0, rate: int = 48_000) -> Path:
    """A WAV of a sine at -12 dBFS (whole periods, so Chromium's loop has no click)."""
    n = int(rate * seconds)
    amplitude = 0.25 * 32767
    frames = b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * i / rate)))
        for i in range(n)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


# What a page shows, read from its DOM (the test asserts on these, as a user would see them).
READ_PAGE = """() => {
  const text = (el) => (el ? el.textContent.trim().replace(/\\s+/g, " ") : null);
  return {
    status: text(document.getElementById("status-text")),
    signedIn: !document.getElementById("phone").hidden,
    incoming: [...document.querySelectorAll("#incoming .incoming")].map(text),
    calls: [...document.querySelectorAll("#call-list .call-item")].map((li) => ({
      state: li.dataset.state, peer: text(li.querySelector(".peer")),
      shown: text(li.querySelector(".state")),
    })),
    history: [...document.querySelectorAll("#history li")].map(text),
    conference: {
      state: document.querySelector(".conference").dataset.state,
      name: text(document.getElementById("conf-name")),
      role: text(document.getElementById("conf-role")),
      participants: [...document.querySelectorAll("#participants li")].map((li) => [
        li.getAttribute("aria-label") || text(li),
        ...[...li.querySelectorAll("button")].map(text),
      ].join(" | ")),
    },
    alerts: [...document.querySelectorAll("#alerts .alert:not(.info) p")].map(text),
    infos: [...document.querySelectorAll("#alerts .alert.info p")].map(text),
    secure: window.isSecureContext,
    protocol: location.protocol,
    wsUrl: window.phoneApp && window.phoneApp.phone ? window.phoneApp.phone.url : null,
  };
}"""

# Recent calls has the server's records, the one of the call with carol among them, and no
# entry of the page's own is left.
HISTORY_FROM_SERVER = """() => {
  const source = document.getElementById("history-source").textContent;
  const rows = [...document.querySelectorAll("#history li")];
  return source.includes("server's records") && rows.every((li) => li.dataset.source === "server")
    && rows.some((li) => li.textContent.includes("Carol") && li.textContent.includes("hangup"));
}"""
READ_HISTORY = """() => ({
  source: document.getElementById("history-source").textContent,
  rows: [...document.querySelectorAll("#history li")].map((li) => ({
    source: li.dataset.source, dir: li.querySelector(".dir").getAttribute("aria-label"),
    peer: li.querySelector(".peer").textContent, meta: li.querySelector(".meta").textContent,
    back: li.querySelector("button.back") ? li.querySelector("button.back").textContent : null,
  })),
})"""

# RTP received on the page's first call (or its conference leg): packets and the energy of
# the audio (getStats).
READ_AUDIO = """async (conference) => {
  const phone = window.phoneApp.phone;
  const call = conference ? phone.conference && phone.conference.call : window.phoneApp.calls[0];
  if (!call || !call.peerConnection) return null;
  const stats = await call.peerConnection.getStats();
  for (const s of stats.values()) {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      return {packets: s.packetsReceived, energy: s.totalAudioEnergy, level: s.audioLevel};
    }
  }
  return null;
}"""


class PhoneScenario:
    def __init__(self, workdir: Path, shots: Path | None) -> None:
        self.workdir = workdir
        self.shots = shots
        self.result: dict[str, Any] = {"error": None, "timings": {}, "steps": {}, "console": {}}
        self.t0 = time.monotonic()
        self.server: Server | None = None

    def mark(self, phase: str) -> None:
        self.result["timings"][phase] = round(time.monotonic() - self.t0, 3)

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.result["server_returncode"] = self.server.stop(5)
        text = self.server.log()
        self.result["server_traceback"] = "Traceback" in text
        self.result["server_log_tail"] = text[-5000:]

    async def make_users(self) -> dict[str, dict[str, str]]:
        assert self.server is not None
        users = {}
        async with self.server.store() as store:
            for name, ext, number, display in USERS:
                user = await create_user(
                    store, name, ext, number=number, display_name=display, ttl=timedelta(hours=1)
                )
                users[name] = {"extension": ext, "number": number, "token": user.token}
        return users

    # -- pages ---------------------------------------------------------------------------------

    async def open_page(self, browser: Any, name: str, base: str, **context: Any) -> Any:
        ctx = await browser.new_context(**context)
        page = await ctx.new_page()
        page.set_default_timeout(STEP)
        console: list[str] = []
        self.result["console"][name] = console
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        await page.goto(f"{base}/phone")
        return page

    async def sign_in(self, page: Any, token: str, display: str) -> None:
        await page.fill("#token", token)
        await page.click("#signin-button")
        await page.wait_for_function(
            "name => document.getElementById('status-text').textContent.includes(name)", arg=display
        )

    async def shot(self, page: Any, name: str) -> None:
        if self.shots is None:
            return
        self.shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(self.shots / name), animations="disabled")
        self.result.setdefault("screenshots", []).append(name)

    async def read(self, page: Any) -> dict[str, Any]:
        return dict(await page.evaluate(READ_PAGE))

    async def wait_state(self, page: Any, state: str, shown: str | None = None) -> None:
        """Until the page's first call row has this state (and this text)."""
        await page.wait_for_function(
            """([state, shown]) => {
              const li = document.querySelector('#call-list .call-item');
              return li && li.dataset.state === state &&
                (!shown || li.querySelector('.state').textContent.startsWith(shown));
            }""",
            arg=[state, shown],
        )

    async def recording(
        self, alice: Any, bob: Any, call_id: str, action: tuple[str, dict[str, Any]], on: bool
    ) -> dict[str, Any]:
        """REST record_start / record_stop on the call; until both pages' badges follow."""
        assert self.server is not None
        status = await call_action(self.server, call_id, action)
        shown = "on => !document.querySelector('#call-list .call-item .recorded').hidden === on"
        await asyncio.gather(
            alice.wait_for_function(shown, arg=on), bob.wait_for_function(shown, arg=on)
        )
        label = "el => el.getAttribute('aria-label')"
        return {
            "status": status,
            "alice": await alice.eval_on_selector("#call-list .call-item", label),
            "bob": await bob.eval_on_selector("#call-list .call-item", label),
        }

    async def audio_delta(
        self, page: Any, seconds: float = 1.0, conference: bool = False
    ) -> dict[str, Any]:
        """RTP and audio energy the page received over ``seconds`` (call or conference leg)."""
        before = await page.evaluate(READ_AUDIO, conference)
        await asyncio.sleep(seconds)
        after = await page.evaluate(READ_AUDIO, conference)
        if not before or not after:
            return {"before": before, "after": after}
        return {
            "packets": after["packets"] - before["packets"],
            "energy": after["energy"] - before["energy"],
            "level": after["level"],
        }

    # -- the call through the page -------------------------------------------------------------

    async def run_call(self) -> None:
        from playwright.async_api import async_playwright

        r = self.result
        r["interfaces"] = loopback_only()
        self.server = Server(self.workdir / "data")
        await asyncio.to_thread(self.server.wait_ready, 20)
        users = await self.make_users()
        self.mark("server_ready")

        carol = Phone(self.server.ws_url, users["carol"]["token"])
        await carol.login()
        sink = BufferSink()
        answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

        async def on_incoming(call: Call) -> None:
            await call.answer(source=ToneSource(CAROL_TONE), sink=sink)
            if not answered.done():
                answered.set_result(call)

        carol.on("incoming", on_incoming)
        tones = {
            "alice": write_tone(self.workdir / "alice.wav", ALICE_TONE),
            "bob": write_tone(self.workdir / "bob.wav", BOB_TONE),
        }
        try:
            async with async_playwright() as pw:

                async def launch(name: str) -> Any:
                    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tones[name]}"]
                    return await pw.chromium.launch(
                        executable_path=CHROMIUM, headless=True, args=args, timeout=20_000
                    )

                browsers = list(await asyncio.gather(launch("alice"), launch("bob")))
                try:
                    r["browser_version"] = browsers[0].version
                    await self.call_flow(browsers, users, carol, sink, answered)
                finally:
                    for b in browsers:
                        await asyncio.wait_for(b.close(), 10)
        finally:
            await asyncio.wait_for(carol.close(), 10)

    async def call_flow(
        self,
        browsers: list[Any],
        users: dict[str, dict[str, str]],
        carol: Phone,
        sink: BufferSink,
        answered: asyncio.Future[Call],
    ) -> None:
        assert self.server is not None
        r, steps = self.result, self.result["steps"]
        base = self.server.url
        alice = await self.open_page(
            browsers[0], "alice", base, viewport={"width": 1180, "height": 820}
        )
        bob = await self.open_page(
            browsers[1],
            "bob",
            base,
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        await self.shot(alice, "phone-signin.png")
        await asyncio.gather(
            self.sign_in(alice, users["alice"]["token"], "Alice Smith"),
            self.sign_in(bob, users["bob"]["token"], "Bob Jones"),
        )
        steps["signed_in"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        self.mark("signed_in")
        # The Devices panel: the microphone's level meter moves with alice's 440 Hz tone.
        await alice.click("#settings-toggle")
        await alice.wait_for_function(
            "() => Number(document.getElementById('meter').getAttribute('aria-valuenow')) > 20"
        )
        steps["devices"] = {
            "meter": int(await alice.get_attribute("#meter", "aria-valuenow") or 0),
            "mics": await alice.eval_on_selector_all("#mic option", "os => os.map(o => o.text)"),
        }
        await self.shot(alice, "phone-idle.png")

        # Alice dials 102 on the dial pad.
        for key in users["bob"]["extension"]:
            await alice.click(f'#pad button[data-key="{key}"]')
        steps["typed"] = await alice.input_value("#number")
        steps["formatted"] = await alice.text_content("#number-formatted")
        await alice.click("#call-audio")
        await bob.wait_for_selector("#incoming .incoming")
        steps["ringing"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        await self.shot(bob, "phone-narrow.png")
        self.mark("ringing")

        # Bob answers from the banner.
        await bob.click("#incoming .incoming button.call")
        await asyncio.gather(self.wait_state(alice, "active"), self.wait_state(bob, "active"))
        self.mark("answered")
        await asyncio.sleep(0.8)  # the first packets and the decoders: not measured
        steps["talking"] = {
            "alice": await self.read(alice),
            "bob": await self.read(bob),
            "alice_hears": await self.audio_delta(alice),
            "bob_hears": await self.audio_delta(bob),
        }
        # An application records the call (REST): both pages show the badge, until it stops.
        call_id = await alice.evaluate("() => window.phoneApp.calls[0].id")
        steps["recorded"] = await self.recording(alice, bob, call_id, RECORD_START, True)
        await self.shot(alice, "phone-in-call.png")
        steps["not_recorded"] = await self.recording(alice, bob, call_id, RECORD_STOP, False)

        # Alice holds, then resumes.
        await alice.click('#call-list .call-item [data-act="hold"]')
        await asyncio.gather(
            self.wait_state(alice, "held", "On hold"),
            self.wait_state(bob, "held", "Held by the other side"),
        )
        steps["held"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        await alice.click('#call-list .call-item [data-act="hold"]')
        await asyncio.gather(
            self.wait_state(alice, "active", "Connected"), self.wait_state(bob, "active")
        )
        steps["resumed"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        self.mark("hold_resume")

        # Bob transfers alice to carol (blind): bob's call ends, alice talks to carol.
        await bob.click('#call-list .call-item [data-act="transfer"]')
        await bob.fill(".call-transfer input[name=dest]", users["carol"]["extension"])
        await bob.click('.call-transfer [data-act="blind"]')
        await bob.wait_for_function("() => !document.querySelector('#call-list .call-item')")
        carol_call = await asyncio.wait_for(answered, STEP / 1000)
        assert carol_call.media is not None
        await asyncio.wait_for(carol_call.media.wait_connected(), 10)
        await self.wait_state(alice, "active")
        self.mark("transferred")
        await asyncio.sleep(0.8)
        sink.clear()
        alice_hears = await self.audio_delta(alice, 1.5)
        pcm = sink.samples(1.2)
        steps["transferred"] = {
            "alice": await self.read(alice),
            "bob": await self.read(bob),
            "alice_hears": alice_hears,
            "carol_from": carol_call.from_,
            "carol_samples": int(pcm.size),
            "carol_hears_alice": tone_level_db(pcm, SAMPLE_RATE, ALICE_TONE),
            "carol_hears_bob": tone_level_db(pcm, SAMPLE_RATE, BOB_TONE),
        }

        # Alice hangs up with the keyboard shortcut.
        await alice.keyboard.press("Alt+h")
        ended = await carol_call.wait_for("ended", timeout=STEP / 1000)
        await alice.wait_for_function("() => !document.querySelector('#call-list .call-item')")
        steps["hung_up"] = {
            "alice": await self.read(alice),
            "bob": await self.read(bob),
            "carol_reason": ended.data.get("reason"),
        }
        self.mark("hung_up")
        # Recent calls: the server's record of the call replaces the page's own entry.
        await alice.wait_for_function(HISTORY_FROM_SERVER)
        steps["history"] = {"alice": await alice.evaluate(READ_HISTORY)}
        await self.shot(alice, "phone-history.png")
        await self.conference_flow(alice, bob, users)
        r["done"] = True

    async def conference_flow(self, alice: Any, bob: Any, users: dict[str, dict[str, str]]) -> None:
        """Alice starts a conference and invites bob by extension; bob joins from the banner;
        both pages list bob; alice removes bob, then ends the conference."""
        steps = self.result["steps"]
        card = "s => document.querySelector('.conference').dataset.state === s"
        await alice.fill("#conf-title-input", "standup")
        await alice.click("#conf-start")
        await alice.wait_for_function(card, arg="connected")
        await alice.fill("#conf-invitee", users["bob"]["extension"])
        await alice.press("#conf-invitee", "Enter")
        await bob.wait_for_selector("#incoming .conf-invite")
        steps["conf_invited"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        await self.shot(bob, "phone-conference-invite.png")
        await bob.click("#incoming .conf-invite button.call")
        await bob.wait_for_function(card, arg="connected")
        # Alice's roster comes with the acceptance; bob's page asks the server for its own.
        listed = """() => [...document.querySelectorAll('#participants li')].some(li =>
            li.textContent.includes('Bob Jones') && li.textContent.includes('in the call'))"""
        await asyncio.gather(alice.wait_for_function(listed), bob.wait_for_function(listed))
        self.mark("conf_joined")
        await asyncio.sleep(0.8)  # the first packets and the decoders: not measured
        steps["conf_joined"] = {
            "alice": await self.read(alice),
            "bob": await self.read(bob),
            "alice_hears": await self.audio_delta(alice, conference=True),
            "bob_hears": await self.audio_delta(bob, conference=True),
        }
        await self.shot(alice, "phone-conference.png")
        bob_row = f'#participants li[data-participant="{users["bob"]["extension"]}"]'
        await alice.click(f"{bob_row} button")
        await asyncio.gather(
            bob.wait_for_function(card, arg="idle"),
            alice.wait_for_function("() => document.querySelector('#participants li.empty')"),
        )
        steps["conf_removed"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        await alice.click("#conf-end")
        await alice.wait_for_function(card, arg="idle")
        steps["conf_ended"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
        self.mark("conf_ended")

    # -- HTTPS / WSS ---------------------------------------------------------------------------

    async def run_tls(self) -> None:
        from playwright.async_api import async_playwright

        r, steps = self.result, self.result["steps"]
        r["interfaces"] = loopback_only()
        tls = self.workdir / "tls"
        made = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "callbridge", "dev-cert", "--out-dir", str(tls)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        r["dev_cert"] = {"returncode": made.returncode, "stdout": made.stdout, "err": made.stderr}
        cert, key = tls / "cert.pem", tls / "key.pem"
        self.server = Server(
            self.workdir / "data", args=["--tls-cert", str(cert), "--tls-key", str(key)]
        )
        base = f"https://127.0.0.1:{self.server.port}"
        r["health"] = await asyncio.to_thread(self.wait_https, base, cert, 20)
        users = await self.make_users()
        self.mark("server_ready")

        # Chromium trusts exactly this certificate's key, nothing else.
        pem = x509.load_pem_x509_certificate(cert.read_bytes())
        spki = pem.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        pin = base64.b64encode(digest.finalize()).decode()
        args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=args, timeout=20_000
            )
            try:
                alice = await self.open_page(browser, "alice", base)
                bob = await self.open_page(browser, "bob", base)
                await asyncio.gather(
                    self.sign_in(alice, users["alice"]["token"], "Alice Smith"),
                    self.sign_in(bob, users["bob"]["token"], "Bob Jones"),
                )
                steps["signed_in"] = {"alice": await self.read(alice), "bob": await self.read(bob)}
                await alice.fill("#number", users["bob"]["extension"])
                await alice.press("#number", "Enter")
                await bob.wait_for_selector("#incoming .incoming")
                await bob.keyboard.press("Alt+a")
                await asyncio.gather(
                    self.wait_state(alice, "active"), self.wait_state(bob, "active")
                )
                await asyncio.sleep(0.5)
                steps["talking"] = {
                    "alice": await self.read(alice),
                    "bob_hears": await self.audio_delta(bob),
                }
                await alice.click('#call-list .call-item [data-act="hangup"]')
                await bob.wait_for_function(
                    "() => !document.querySelector('#call-list .call-item')"
                )
                steps["ended"] = {"bob": await self.read(bob)}
                r["done"] = True
            finally:
                await asyncio.wait_for(browser.close(), 10)

    def wait_https(self, base: str, cert: Path, within: float) -> dict[str, Any]:
        """Poll ``/healthz`` over HTTPS, verifying the server against the dev certificate."""
        assert self.server is not None
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + within
        last = "nothing yet"
        while True:
            try:
                reply = httpx.get(f"{base}/healthz", verify=context, timeout=1)
                if reply.status_code == 200:
                    return dict(reply.json())
            except httpx.HTTPError as exc:
                last = repr(exc)
            if self.server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no HTTPS /healthz ({last}):\n{self.server.log()[-3000:]}")
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["call", "tls"])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for everything")
    parser.add_argument(
        "--shots", type=Path, help="write screenshots here (see browser/shots.py: not docs/)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="callbridge-phone-") as tmp:
        scenario = PhoneScenario(Path(tmp), screenshots_dir(args.shots))
        scenario.result["shots_dir"] = str(scenario.shots) if scenario.shots else None
        run = scenario.run_call if args.mode == "call" else scenario.run_tls
        status = 0

        async def bounded() -> None:
            async with asyncio.timeout(args.timeout):
                await run()

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

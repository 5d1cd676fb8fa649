"""Seed 001's "Direct WebSocket Usage" with a real browser, DTMF included.

Debian's Chromium (driven by playwright; no browser is ever downloaded) runs the seed's raw
WebSocket flow from ``tests/browser/page.html``: ``session.login``, ``call.create`` with its
offer, trickle ICE (``ice.candidate`` / ``ice.done``), the server's ``sdp.answer`` /
``ice.candidate`` / ``call.answered`` / ``call.ended``, then ``RTCRtpSender.dtmf.insertDTMF``
and ``call.hangup``. The far end is the Python SDK, auto-answering with a 1000 Hz tone; the
page sends a 440 Hz WebAudio oscillator, so what each side hears tells whose audio arrived.

``tests/browser/scenario.py`` runs server, callee and browser in a new network namespace that
has only ``lo`` (``unshare --net``), so no ICE check or packet can go anywhere but 127.0.0.1 /
::1 — Chromium would otherwise gather candidates on every interface and the server would send
checks there. The namespace also gets its own PID namespace (``--pid --fork --kill-child``):
Chromium puts itself in its own sessions, and this is the one way to be sure that a timeout
or a crash leaves no browser or server behind (everything in it dies with its first process).
Needs root (CI runs as root); ``scripts/test`` installs Debian ``chromium`` when it is missing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "browser" / "scenario.py"
CHROMIUM = "/usr/bin/chromium"

BROWSER_TONE, CALLEE_TONE = 440.0, 1000.0
HEARD = -35.0  # dBFS: the tone is clearly there (the SDK's sources send ~-13 dBFS)
SILENT = -60.0  # dBFS: nothing of that tone arrived
DIGITS = ["1", "5", "9", "#"]
INNER_LIMIT = 45.0  # scenario.py gives up (cleanly) after this
OUTER_LIMIT = 55.0  # ... and is killed, with the whole namespace, after this


def _preflight() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: `unshare --net` needs root here (CI runs as root)")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing (Debian: util-linux / iproute2)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing: run ./scripts/test (apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problems.append("the `playwright` package is missing: pip install -e '.[dev]'")
    if problems:
        pytest.fail("cannot run the browser test:\n  " + "\n  ".join(problems), pytrace=False)


def run_scenario() -> dict[str, Any]:
    """Run scenario.py in a loopback-only namespace; its ``RESULT`` line, parsed."""
    _preflight()
    python, scenario = shlex.quote(sys.executable), shlex.quote(str(SCENARIO))
    inner = f"ip link set lo up && exec {python} {scenario} --timeout {INNER_LIMIT}"
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", inner]
    try:
        # On timeout subprocess kills unshare; --kill-child then kills the namespace's init
        # (scenario.py), and with it every process in the namespace: server and browser.
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=OUTER_LIMIT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        )
        pytest.fail(
            f"the browser scenario did not finish within {OUTER_LIMIT} s and was killed\n"
            f"stderr:\n{stderr or ''}",
            pytrace=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        pytest.fail(
            f"scenario.py printed no RESULT (exit {proc.returncode})\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["_stderr"] = proc.stderr[-4000:]
    result["_returncode"] = proc.returncode
    return result


@pytest.fixture(scope="module")
def browser_call() -> dict[str, Any]:
    return run_scenario()


def _show(result: dict[str, Any]) -> str:
    """Everything the scenario observed, for assertion messages."""
    return json.dumps(result, indent=1, default=str)[-12000:]


@pytest.mark.timeout(OUTER_LIMIT + 5)
def test_seed_001_raw_websocket_call_from_chromium(browser_call: dict[str, Any]) -> None:
    r = browser_call
    assert r["error"] is None, f"the scenario failed:\n{r['error']}\n{_show(r)}"
    assert r["_returncode"] == 0, _show(r)
    assert r["interfaces"] == ["lo"], "not in a loopback-only namespace"
    summary = r["summary"]
    assert summary["errors"] == [], f"the page's message handler failed: {summary['errors']}"
    errors = [m for m in summary["received"] if m["type"] == "error"]
    assert errors == [], f"the server answered the browser with errors: {errors}"

    # The seed's order of server messages, and trickle ICE both ways on loopback only.
    kinds = [m["type"] for m in summary["received"]]
    for earlier, later in [
        ("session.ready", "call.trying"),
        ("call.trying", "sdp.answer"),
        ("sdp.answer", "call.answered"),
        ("call.answered", "call.ended"),
    ]:
        assert kinds.index(earlier) < kinds.index(later), kinds
    assert "ice.candidate" in kinds and "ice.done" in kinds, kinds
    sent = [m["type"] for m in summary["sent"]]
    assert sent.count("ice.done") == 1 and "ice.candidate" in sent, sent
    for line in summary["localCandidates"] + summary["remoteCandidates"]:
        address = line.split()[4]
        assert address in ("127.0.0.1", "::1"), f"non-loopback candidate: {line}"
    assert "connected" in summary["iceStates"] or "completed" in summary["iceStates"], summary

    # The callee (Python SDK) heard the browser's oscillator, and only that.
    callee = r["callee"]
    assert callee["from_"] == "+14155550101", callee
    assert callee["level_browser_tone"] > HEARD, (
        f"the callee did not hear the browser's {BROWSER_TONE:.0f} Hz: {callee}"
    )
    assert callee["level_own_tone"] < SILENT, f"the callee hears itself: {callee}"

    # The browser received the server's audio: RTP counted by getStats, and the callee's
    # 1000 Hz as the loudest frequency of the remote track (AnalyserNode in the page).
    heard = r["listen"]
    assert heard["packetsReceived"] > 25, f"browser received too little RTP: {heard}"
    assert abs(heard["peakHz"] - CALLEE_TONE) < 15, f"browser hears no {CALLEE_TONE} Hz: {heard}"
    assert heard["db1000"] > heard["db440"] + 40, f"browser hears the wrong tone: {heard}"

    # DTMF exactly as seed 001 describes it: the server negotiated telephone-event, the page's
    # RTCDTMFSender could insert, and the far party got each digit once, signalled and in-band.
    assert any("telephone-event/" in line for line in summary["answerLines"]), summary
    dtmf = r["dtmf"]
    assert dtmf["canInsertDTMF"] is True, (
        f"RTCDTMFSender.canInsertDTMF is false; the server's answer:\n{summary['answerLines']}"
    )
    assert dtmf["tones"] == [*DIGITS, ""], dtmf
    assert callee["dtmf_signalled"] == DIGITS, f"call.dtmf events: {callee['dtmf_signalled']}"
    assert callee["dtmf_inband"] == DIGITS, f"RFC 4733 relayed in-band: {callee['dtmf_inband']}"

    # call.hangup from the browser ends both sides with "hangup".
    assert r["hangup"]["ended"]["reason"] == "hangup", r["hangup"]
    assert r["hangup"]["signalingState"] == "closed", r["hangup"]
    assert callee["end_reason"] == "hangup", callee

    # Clean server: no traceback in its log.
    assert r["server_traceback"] is False, r["server_log_tail"]
    assert r["timings"]["total"] < INNER_LIMIT, r["timings"]

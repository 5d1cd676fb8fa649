"""The softphone page (``/phone``, web/phone/) in real Chromium, as a newcomer would use it.

``tests/browser/phone_scenario.py`` does the clicking, in a loopback-only network namespace
with its own PID namespace (see tests/test_browser.py for why both); this file runs it and
asserts on what it saw: the pages' text at each step, RTP between the two pages, and what the
Python far party heard (analysed). The call test takes the screenshots of docs/softphone.md
into its own temporary directory and checks them there; ``CALLBRIDGE_SCREENSHOTS=docs/img``
makes it re-take the committed ones instead (tests/browser/shots.py).
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from browser.shots import ENV
from test_browser import _preflight

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "browser" / "phone_scenario.py"
HEARD = -35.0  # dBFS: the tone is clearly there
SILENT = -60.0  # dBFS: nothing of it
# getStats' totalAudioEnergy gained in a second: the mean square of audioLevel. Silence gives
# ~1e-9; Chromium's noise suppression damps the steady test tones to audioLevel ~0.03 (9e-4).
AUDIBLE = 1e-5  # audioLevel ~0.003, about -50 dBFS


def run(mode: str, inner: float, shots: Path | None = None) -> dict[str, Any]:
    """Run phone_scenario.py MODE in a loopback-only namespace; its ``RESULT``, parsed.
    Screenshots go to ``shots`` (unless ``CALLBRIDGE_SCREENSHOTS`` says where)."""
    _preflight()
    command = [sys.executable, str(SCENARIO), mode, "--timeout", str(inner)]
    if shots is not None:
        command += ["--shots", str(shots)]
    inner_cmd = "ip link set lo up && exec " + shlex.join(command)
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", inner_cmd]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=inner + 15, check=False
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"phone_scenario {mode} was killed after {inner + 15} s\n{err}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        pytest.fail(
            f"phone_scenario {mode} printed no RESULT (exit {proc.returncode})\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["_stderr"] = proc.stderr[-3000:]
    return result


def show(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, default=str)[-12000:]


def calls(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["state"], c["shown"]) for c in page["calls"]]


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk (PNG spec 11.2.2)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path}: not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.timeout(95)
def test_two_pages_dial_answer_hold_resume_transfer_hang_up(tmp_path: Path) -> None:
    r = run("call", 75, shots=tmp_path / "shots")
    assert r["error"] is None, f"the scenario failed:\n{r['error']}\n{show(r)}"
    assert r["interfaces"] == ["lo"], "not in a loopback-only namespace"
    s = r["steps"]

    signed = s["signed_in"]
    assert signed["alice"]["status"] == "Online as Alice Smith", signed
    assert signed["bob"]["status"] == "Online as Bob Jones", signed
    assert signed["alice"]["wsUrl"].startswith("ws://127.0.0.1:"), signed

    # The Devices panel lists the microphones and its level meter hears alice's tone.
    assert s["devices"]["meter"] > 20 and len(s["devices"]["mics"]) >= 1, s["devices"]

    # The dial pad typed the extension; the number utilities call it an extension.
    assert s["typed"] == "102" and s["formatted"] == "extension 102", s
    ringing = s["ringing"]
    assert calls(ringing["alice"]) in ([("ringing", "Ringing…")], [("trying", "Calling…")]), ringing
    assert len(ringing["bob"]["incoming"]) == 1, ringing
    banner = ringing["bob"]["incoming"][0]
    assert "Alice Smith" in banner and "1 (415) 555-0101" in banner and "Answer" in banner, banner

    talking = s["talking"]
    assert calls(talking["alice"]) == [("active", "Connected")], talking
    assert calls(talking["bob"]) == [("active", "Connected")], talking
    assert talking["bob"]["calls"][0]["peer"] == "Alice Smith (1 (415) 555-0101)", talking
    for side in ("alice_hears", "bob_hears"):  # audio both ways between the two pages
        assert talking[side]["packets"] > 30 and talking[side]["energy"] > AUDIBLE, talking

    # An application records the call: both pages say so, and stop saying so when it stops.
    recorded, not_recorded = s["recorded"], s["not_recorded"]
    assert recorded["status"] == not_recorded["status"] == 200, (recorded, not_recorded)
    for name in ("alice", "bob"):
        assert recorded[name].endswith("Connected · recorded"), recorded
        assert not_recorded[name].endswith(": Connected"), not_recorded

    assert calls(s["held"]["alice"]) == [("held", "On hold")], s["held"]
    assert calls(s["held"]["bob"]) == [("held", "Held by the other side")], s["held"]
    assert calls(s["resumed"]["alice"]) == [("active", "Connected")], s["resumed"]
    assert calls(s["resumed"]["bob"]) == [("active", "Connected")], s["resumed"]

    # Blind transfer: bob's page has no call left and logs it; alice talks to carol.
    moved = s["transferred"]
    assert moved["bob"]["calls"] == [], moved
    assert "transferred" in moved["bob"]["history"][0], moved["bob"]["history"]
    assert calls(moved["alice"]) == [("active", "Connected")], moved
    assert moved["carol_from"] == "+14155550101", moved
    assert moved["carol_hears_alice"] > HEARD, f"carol does not hear alice's 440 Hz: {moved}"
    assert moved["carol_hears_bob"] < SILENT, f"carol hears bob's 660 Hz: {moved}"
    assert moved["alice_hears"]["packets"] > 40 and moved["alice_hears"]["energy"] > AUDIBLE, moved

    # Alt+H hung up; the session's log on alice's page has the call.
    done = s["hung_up"]
    assert done["carol_reason"] == "hangup", done
    assert done["alice"]["calls"] == [], done
    assert done["alice"]["history"][0].startswith("↗"), done["alice"]["history"]
    assert "hangup" in done["alice"]["history"][0], done["alice"]["history"]
    # Then Recent calls lists the server's records of that call: the transfer ended alice's
    # call with bob and went on as her call with carol (named as users of the account).
    history = s["history"]["alice"]
    assert history["source"] == "Your calls, from the server's records.", history
    rows = [
        (h["source"], h["dir"], h["peer"], h["meta"].rsplit(" · ", 1)[-1], h["back"])
        for h in history["rows"]
    ]
    assert rows == [
        ("server", "outgoing", "Carol (1 (415) 555-0103)", "hangup", "Call back"),
        ("server", "outgoing", "Bob Jones (1 (415) 555-0102)", "transferred", "Call back"),
    ], history

    # A conference: alice starts "standup" and invites bob (102), who joins from the banner.
    invited = s["conf_invited"]
    ringing = ["Bob Jones (Extension 102): ringing… | Cancel"]
    assert invited["alice"]["conference"]["participants"] == ringing, invited
    invitation = invited["bob"]["incoming"][0]
    assert invitation.startswith("Alice Smith") and "1 (415) 555-0101" in invitation, invited
    assert "conference “standup”" in invitation and "Join" in invitation, invited
    joined = s["conf_joined"]
    host, guest = joined["alice"]["conference"], joined["bob"]["conference"]
    assert host["name"] == guest["name"] == "standup", joined
    assert host["role"] == "You host it · 1 participant", host
    assert host["participants"] == ["Bob Jones (Extension 102): in the call | Remove"], host
    assert guest["role"].startswith("Hosted by Alice Smith"), guest
    assert guest["participants"][0].startswith("Alice Smith ("), guest
    assert guest["participants"][0].endswith(": host"), guest
    assert "Bob Jones (Extension 102): you · in the call" in guest["participants"], guest
    for side in ("alice_hears", "bob_hears"):  # the mix carries each to the other
        assert joined[side]["packets"] > 30 and joined[side]["energy"] > AUDIBLE, joined
    # Alice removes bob: his card is back to "start", and he is told why.
    removed = s["conf_removed"]
    assert removed["bob"]["conference"]["state"] == "idle", removed
    assert any("removed you" in i for i in removed["bob"]["infos"]), removed["bob"]
    assert removed["alice"]["conference"]["state"] == "connected", removed
    assert s["conf_ended"]["alice"]["conference"]["state"] == "idle", s["conf_ended"]

    for name in ("alice", "bob"):
        assert done[name]["alerts"] == [], f"{name}'s page showed errors: {done[name]['alerts']}"
        last = s["conf_ended"][name]["alerts"]
        assert last == [], f"{name}'s page showed errors: {last}"
        errors = [line for line in r["console"][name] if line.startswith(("error", "pageerror"))]
        assert errors == [], f"{name}'s console: {errors}"
    assert r["server_traceback"] is False, r["server_log_tail"]
    # The screenshots were taken where the test asked (or where CALLBRIDGE_SCREENSHOTS says),
    # at the pages' sizes: alice's 1180x820 window, bob's phone (390x844 at 2x).
    shots = Path(r["shots_dir"])
    assert shots == tmp_path / "shots" or os.environ.get(ENV), r["shots_dir"]
    sizes = {"alice": (1180, 820), "bob": (780, 1688)}
    for name, page in (
        ("phone-signin.png", "alice"),
        ("phone-idle.png", "alice"),
        ("phone-narrow.png", "bob"),
        ("phone-in-call.png", "alice"),
        ("phone-history.png", "alice"),
        ("phone-conference-invite.png", "bob"),
        ("phone-conference.png", "alice"),
    ):
        assert name in r["screenshots"], r["screenshots"]
        assert (shots / name).stat().st_size > 10_000, name
        assert png_size(shots / name) == sizes[page], name


@pytest.mark.timeout(65)
def test_page_over_https_and_wss_with_a_dev_cert() -> None:
    r = run("tls", 45)
    assert r["error"] is None, f"the scenario failed:\n{r['error']}\n{show(r)}"
    assert r["dev_cert"]["returncode"] == 0, r["dev_cert"]
    assert "--tls-cert" in r["dev_cert"]["stdout"], r["dev_cert"]
    assert r["health"]["status"] == "ok", r["health"]
    page = r["steps"]["signed_in"]["alice"]
    assert page["protocol"] == "https:" and page["secure"] is True, page
    assert page["wsUrl"].startswith("wss://127.0.0.1:"), page
    assert page["status"] == "Online as Alice Smith", page
    talking = r["steps"]["talking"]
    assert calls(talking["alice"]) == [("active", "Connected")], talking
    assert talking["bob_hears"]["packets"] > 30, talking
    assert r["steps"]["ended"]["bob"]["calls"] == [], r["steps"]["ended"]
    assert r["server_traceback"] is False, r["server_log_tail"]


def test_dev_cert_certifies_exactly_the_names_given(tmp_path: Path) -> None:
    from cryptography import x509

    from callbridge.cli import main

    out = tmp_path / "tls"
    assert main(["dev-cert", "192.168.1.20", "mybox.local", "--out-dir", str(out)]) == 0
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == [
        "localhost",
        "127.0.0.1",
        "::1",
        "192.168.1.20",
        "mybox.local",
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
    # Existing files stay unless --force; a name that is not a host name is refused.
    assert main(["dev-cert", "--out-dir", str(out)]) == 2
    assert main(["dev-cert", "--out-dir", str(out), "--force"]) == 0
    assert main(["dev-cert", "bad_name!", "--out-dir", str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()


def test_an_installed_server_carries_the_page_and_the_sdk() -> None:
    """pyproject's data-files put every file the page and the SDK serve under
    share/callbridge/web/, where websdk.web_dir looks when there is no source tree."""
    import tomllib

    from callbridge.websdk import web_dir

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed: dict[str, str] = {}
    for target, patterns in data["data-files"].items():
        for pattern in patterns:
            for path in ROOT.glob(pattern):
                installed[path.relative_to(ROOT).as_posix()] = target
    for name in ("phone", "sdk"):
        kinds = {".html", ".js", ".css", ".ts"}
        served = [p for p in (ROOT / "web" / name).rglob("*") if p.suffix in kinds]
        assert served, name
        for path in served:
            rel = path.relative_to(ROOT).as_posix()
            assert installed.get(rel) == f"share/callbridge/{path.parent.relative_to(ROOT)}", rel
    assert web_dir("phone") == ROOT / "web" / "phone"

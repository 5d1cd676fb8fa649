"""callbridge-web, the browser SDK (``web/sdk/``), in real Chromium against a real server.

Each group of flows runs in one browser launch (``tests/browser/sdk_scenario.py``) inside the
loopback-only network and PID namespace of ``tests/test_browser.py``; the pages import the SDK
from the server's ``/sdk/callbridge.js``. Audio is checked by analysis: a WebAudio
AnalyserNode in the page (the dominant frequency and per-tone levels of the far party's
stream) and the Python parties' sinks (``callbridge.testing.tone_level_db``). Each user's
microphone is a sine of its own frequency (``tests/browser/sdk_harness.py`` ``USERS``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from test_browser import _preflight

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "browser" / "sdk_scenario.py"
HEARD = -35.0  # dBFS (Python sink) / dB (page analyser): the tone is clearly there
SILENT = -60.0  # nothing of that tone arrived
GROUP_LIMIT = {"calls": 120.0, "more": 240.0, "video": 120.0}


def run_group(group: str) -> dict[str, Any]:
    """Run a group of flows in a loopback-only namespace; its ``RESULT``, parsed."""
    _preflight()
    limit = GROUP_LIMIT[group]
    python, scenario = shlex.quote(sys.executable), shlex.quote(str(SCENARIO))
    inner = f"ip link set lo up && exec {python} {scenario} --group {group} --timeout {limit}"
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", inner]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit + 15, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {group} flows did not finish within {limit + 15} s", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        pytest.fail(
            f"sdk_scenario.py printed no RESULT (exit {proc.returncode})\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["error"] is None, result["error"]
    return result


def flow(result: dict[str, Any], name: str) -> dict[str, Any]:
    """A flow's data, failing with everything it saw when it did not run to the end."""
    out = result["flows"][name]
    assert out["ok"], f"{name} failed:\n{out['error']}\n{json.dumps(out['pages'])[-6000:]}"
    for page, seen in out["pages"].items():
        assert not seen["errors"], f"{name}: page {page} had errors: {seen['errors']}"
    data: dict[str, Any] = out["data"]
    return data


@pytest.fixture(scope="module")
def calls() -> dict[str, Any]:
    return run_group("calls")


def hears(analysis: dict[str, Any], hz: int) -> bool:
    """The page's analysis: ``hz`` is the loudest frequency and clearly there."""
    return bool(abs(analysis["peakHz"] - hz) < 15 and analysis["db"][str(hz)] > HEARD)


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_seed_001_browser_calls_python(calls: dict[str, Any]) -> None:
    r = flow(calls, "browser_calls_python")
    placed = r["placed"]
    assert placed["state"] == "answered" and placed["same"] is True, placed
    assert [c["id"] for c in placed["active"]] == [placed["id"]], placed
    assert placed["active"][0]["state"] == "active", placed
    assert r["bob_call"] == {"from": "+14155550201", "to": "202"}, r
    # Audio both ways: alice's 440 Hz at bob, bob's 1000 Hz in the page.
    assert hears(r["browser_hears"], 1000), r["browser_hears"]
    assert r["bob_hears"]["alice"] > HEARD and r["bob_hears"]["bob"] < SILENT, r["bob_hears"]
    # DTMF exactly as seed 001 writes it, arriving as exactly those digits.
    assert r["dtmf"] == {"tones": ["1", "2", "3", "4", "#", ""], "canInsert": True}, r["dtmf"]
    assert r["bob_dtmf"] == ["1", "2", "3", "4", "#"], r["bob_dtmf"]
    # Hold / resume: held(local) here, held(remote) at the far party.
    assert r["hold"] == {"heldBy": "local", "state": "active"}, r["hold"]
    assert r["bob_held"] == ["remote"], r
    # Server-authoritative mute: the page's track stays enabled, yet bob hears nothing.
    assert r["mute"] == {"isMuted": True, "trackEnabled": True}, r["mute"]
    assert r["bob_hears_muted"]["alice"] < SILENT, r["bob_hears_muted"]
    assert r["unmute"] is False and r["bob_hears_unmuted"]["alice"] > HEARD, r
    assert r["hangup"] == {"state": "ended", "reason": "hangup", "pc": "closed", "active": 0}
    assert r["bob_ended"] == "hangup", r


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_seed_001_incoming_reject_busy_reject_and_answer(calls: dict[str, Any]) -> None:
    r = flow(calls, "python_calls_browser")
    first = r["calls"][0]["info"]
    assert first["from"] == "+14155550202" and first["fromName"] == "Bob", first
    assert first["to"] == "+14155550201" and first["direction"] == "incoming", first
    assert first["state"] == "ringing" and first["id"], first
    assert [c["caller_end"] for c in r["calls"]] == ["busy", "rejected", "hangup"], r
    assert r["answered_state"] == "active" and r["browser_end"] == "hangup", r


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_browser_calls_browser_with_audio_and_hold(calls: dict[str, Any]) -> None:
    r = flow(calls, "browser_calls_browser")
    assert hears(r["alice_hears"], 660), r["alice_hears"]  # carol's tone
    assert hears(r["carol_hears"], 440), r["carol_hears"]  # alice's tone
    assert r["carol_held"] == "remote" and r["carol_resumed"] is True, r
    assert r["alice_end"] == "hangup", r


@pytest.fixture(scope="module")
def more() -> dict[str, Any]:
    return run_group("more")


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_seed_001_blind_transfer(more: dict[str, Any]) -> None:
    r = flow(more, "blind_transfer")
    assert r["alice_end"] == "transferred", r
    assert r["bob_hears"]["carol"] > HEARD and r["bob_hears"]["alice"] < SILENT, r


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_seed_001_attended_transfer(more: dict[str, Any]) -> None:
    r = flow(more, "attended_transfer")
    assert r["consult"] == {"held": "held", "ends": ["transferred", "transferred"]}, r
    assert r["bob_held"] == ["remote"], r
    assert r["bob_hears"]["carol"] > HEARD and r["bob_hears"]["alice"] < SILENT, r
    assert r["carol_hears"]["bob"] > HEARD and r["carol_hears"]["alice"] < SILENT, r


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_seed_001_call_waiting_and_swap(more: dict[str, Any]) -> None:
    r = flow(more, "waiting_and_swap")
    waiting = r["swap1"]["waiting"]
    assert [w["active"] for w in waiting] == [1, 2], waiting  # the second is call waiting
    assert r["swap1"]["states"] == ["held", "active"] and r["swap2"] == ["active", "held"], r
    # On hold a party hears hold music, never alice (440 Hz is not in the arpeggio).
    assert r["carol_hears_1"]["alice"] > HEARD and r["bob_hears_1"]["alice"] < SILENT, r
    assert r["bob_hears_2"]["alice"] > HEARD and r["carol_hears_2"]["alice"] < SILENT, r


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_reconnect_after_the_socket_drops(more: dict[str, Any]) -> None:
    r = flow(more, "reconnect")
    assert r["drop"] == {"state": "ready", "call": "active"}, r
    assert r["held_after_resume"] == "remote", r  # the resumed session gets new messages
    assert r["restart"] == "connected", r
    assert r["bob_hears"]["alice"] > HEARD, r
    assert hears(r["alice_hears"], 1000), r


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_seed_002_conference_with_invitation(more: dict[str, Any]) -> None:
    r = flow(more, "conference")
    assert r["start"] == {"name": "standup", "state": "connected", "participants": ["203"]}, r
    assert r["invite"]["from"] == "+14155550201" and r["invite"]["name"] == "standup", r
    assert hears(r["alice_hears"], 660) and hears(r["carol_hears"], 440), r
    assert r["remove"] == [] and r["carol_end"] == "removed" and r["end"] == "ended", r


@pytest.mark.timeout(GROUP_LIMIT["more"] + 30)
def test_seed_000_conference_group_example(more: dict[str, Any]) -> None:
    r = flow(more, "call_group")
    call1, call2, call3 = r["ids"]
    assert r["step1"] == {"conference": [call1, call2], "tel": [], "state": "connected"}, r
    assert r["step2"] == {"conference": [call1, call2], "tel": [call3]}, r
    assert r["step3"] == {"conference": [call1, call2, call3], "tel": []}, r
    assert r["heldState"] == "held" and r["resumedState"] == "connected", r
    assert r["step4"] == {"conference": [call1, call3], "tel": [call2]}, r
    assert r["step5"] == {"conference": [], "tel": [call2], "state": ""}, r
    assert r["seen"][:3] == ["callschanged", "statechange:connected", "connected"], r
    for event in ("holding", "held", "resuming"):
        assert event in r["seen"], r
    assert r["ends"] == {"bob": ["hangup"], "dave": ["hangup"], "erin": ["hangup"]}, r


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_seed_002_upgrade_downgrade_accept_and_reject(calls: dict[str, Any]) -> None:
    r = flow(calls, "video_upgrade_downgrade")
    # alice upgrades, carol accepts: video decoded on both pages (Chromium's fake camera).
    assert r["accept"] == {"asked": "video", "event": "video"}, r
    for side in ("alice_video", "carol_video"):
        assert r[side]["mediaType"] == "video" and r[side]["frames"] > 10, r
    # alice downgrades; carol's rejectModification cannot keep video: none flows either way.
    assert r["downgrade"] == {"asked": "audio", "event": "audio"}, r
    for side in ("alice_audio", "carol_audio"):
        assert r[side]["mediaType"] == "audio" and r[side]["frames"] == 0, r
    # alice upgrades again, carol rejects: alice's video reaches carol, nothing comes back.
    assert r["reject"] == {"asked": "video", "event": "video"}, r
    assert r["carol_rejected"]["frames"] > 10, r
    assert r["alice_rejected"]["frames"] == 0, r
    for step in ("video", "audio", "rejected"):  # the audio goes on through every change
        assert hears(r[f"alice_hears_{step}"], 660), (step, r)
        assert hears(r[f"carol_hears_{step}"], 440), (step, r)


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_seed_002_move_to_another_device_of_the_user(calls: dict[str, Any]) -> None:
    r = flow(calls, "move_to_other_device")
    assert r["before"]["alice"] > HEARD, r  # bob hears the first device's 440 Hz
    move = r["move"]
    assert move["movedFrom"] == move["firstId"] == r["first"], move  # the second device was told
    assert move["reason"] == "moved" and move["toSession"] is True, move
    assert move["secondState"] == "active" and move["secondFrom"] == "+14155550202", move
    assert r["bob_live"] is True, r  # bob's call never ended
    assert r["after"]["dave"] > HEARD and r["after"]["alice"] < SILENT, r  # now the 1500 Hz
    assert hears(r["second_hears"], 1000), r  # and the second device hears bob
    assert r["bob_ended"] == ["hangup"], r


@pytest.mark.timeout(GROUP_LIMIT["calls"] + 30)
def test_pre_call_test_and_level_meter(calls: dict[str, Any]) -> None:
    r = flow(calls, "pre_call_test_and_meter")
    live = r["live"]
    assert live["problems"] == [] and live["microphone"] and live["mediaConnected"], live
    assert live["inputLevelDb"] > -20, live  # the 440 Hz sine at half scale: about -9 dBFS
    assert live["packetsSent"] > 30 and live["packetsReceived"] > 30, live
    assert live["roundTripMs"] is not None, live
    quiet = r["quiet"]  # a microphone that hears nothing is named as the problem
    assert quiet["mediaConnected"], quiet
    assert "microphone: no sound (is it muted?)" in quiet["problems"], quiet
    assert r["meterTone"]["updates"] >= 8 and r["meterTone"]["maxDb"] > -20, r
    assert r["meterSilent"]["maxDb"] < -70, r
    assert r["conferencesLeft"] == 0 and r["calls"] == 0, r  # the test cleaned up
    # Issue 16: the page's own forwarding rules and DND (getForwarding/setForwarding/setDnd).
    fw = r["forwarding"]
    assert fw["before"]["dnd"] is False and fw["before"]["steps"] == [], fw
    assert fw["read"] == fw["set"] and fw["read"]["ringSeconds"] == 20, fw
    assert [s["targets"] for s in fw["read"]["steps"]] == [
        [{"type": "devices"}], [{"type": "user", "value": "bob"}]], fw  # fmt: skip
    assert fw["dnd"]["dnd"] is True and fw["dnd"]["steps"] == fw["read"]["steps"], fw
    assert "on_busy" in (fw["refused"] or ""), fw  # a specific error, the rules kept
    assert fw["reset"]["dnd"] is False and fw["reset"]["steps"] == [], fw


@pytest.fixture(scope="module")
def video() -> dict[str, Any]:
    return run_group("video")


def shows_video(seen: dict[str, Any]) -> bool:
    """The page's <video> of the far party presented frames (kit.videoFrames)."""
    return bool(seen["frames"] > 5 and seen["videoWidth"] > 0 and seen["mediaType"] == "video")


def shows_none(seen: dict[str, Any]) -> bool:
    return bool(seen["frames"] <= 1 and seen["mediaType"] == "audio")


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_seed_002_the_callee_upgrades_and_downgrades_a_browser_call(video: dict[str, Any]) -> None:
    """The server re-offers to the page that placed the call with that page's own RTP header
    extension ids (RFC 8285 section 6); Chromium refused renumbered ids before."""
    r = flow(video, "callee_asks_video")
    assert r["asked_up"] == "video" and r["asked_down"] == "audio", r
    assert r["errors"] == [], r
    assert shows_video(r["alice_video"]) and shows_video(r["carol_video"]), r
    assert shows_none(r["alice_audio"]) and shows_none(r["carol_audio"]), r
    for step in ("video", "audio"):  # the audio goes on through both changes
        assert hears(r[f"alice_hears_{step}"], 660) and hears(r[f"carol_hears_{step}"], 440), r


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_seed_002_upgrade_and_downgrade_between_browser_and_python_either_side(
    video: dict[str, Any],
) -> None:
    r = flow(video, "python_asks_video")
    assert r["errors"] == [], r
    # bob (Python) asks, the page accepts: video both ways.
    assert r["bob_up"] == "video" and shows_video(r["page_video"]), r
    assert r["bob_video"] > 5 and r["bob_size"] is not None, r
    assert hears(r["page_hears_video"], 1000) and r["bob_hears_video"]["alice"] > HEARD, r
    # The page switches camera mid-call (replaceTrack): bob keeps getting frames.
    camera = r["camera"]
    assert camera["cameras"] >= 2 and camera["switched"] and camera["sending"], camera
    assert camera["chosen"] and camera["devices"] and camera["state"] == "active", camera
    assert r["bob_video_new_camera"] > 5, r
    # bob downgrades: no video either way.
    assert r["bob_down"] == "audio" and shows_none(r["page_audio"]) and r["bob_audio"] <= 1, r
    # The page asks (upgrade, then downgrade), bob accepts.
    assert r["page_up"] == "video" and r["page_down"] == "audio", r
    assert shows_video(r["page_video_2"]) and r["bob_video_2"] > 5, r
    assert hears(r["page_hears_audio"], 1000) and r["bob_hears_audio"]["alice"] > HEARD, r


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_seed_002_a_video_call_answered_with_audio(video: dict[str, Any]) -> None:
    r = flow(video, "answer_video_as_audio")
    assert r["offered"] == "video" and r["bob_media_type"] == "audio", r
    assert shows_none(r["page"]) and r["bob_frames"] == 0 and r["page_sends_video"] is False, r
    assert hears(r["page_hears"], 1000) and r["bob_hears"]["alice"] > HEARD, r


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_switching_the_microphone_mid_call_keeps_the_audio_going(video: dict[str, Any]) -> None:
    r = flow(video, "switch_microphone")
    assert r["before"]["alice"] > HEARD and r["before"]["fake"] < SILENT, r
    for step in ("first", "second"):  # two of Chromium's fake microphones, one after the other
        switched = r[step]
        assert switched["mics"] >= 2 and switched["chosen"] and switched["sending"], switched
        assert switched["live"] == "live" and switched["state"] == "active", switched
        heard = r[f"after_{step}"]
        assert heard["fake"] > HEARD and heard["alice"] < SILENT, (step, r)
    assert hears(r["page_hears"], 1000), r


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_the_page_is_told_when_its_call_is_recorded(video: dict[str, Any]) -> None:
    r = flow(video, "recording_notice")
    assert r["record_start_status"] == r["record_stop_status"] == 200, r
    assert r["record_start"]["isRecorded"] is True, r
    assert r["record_stop"]["isRecorded"] is False, r
    assert r["record_stop"]["events"] == [True, False], r  # the call's recording(on) events


@pytest.mark.timeout(GROUP_LIMIT["video"] + 30)
def test_the_softphone_lists_cameras_with_the_other_devices(video: dict[str, Any]) -> None:
    r = flow(video, "softphone_devices")
    assert r["label"] == "Camera" and r["cameras"] >= 2 and r["mics"] >= 2, r
    assert r["alerts"] == [], r

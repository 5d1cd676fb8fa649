"""Self-tests of the SIP peer harness (tests/sip_peers.py): real SIPp and baresip on 127.0.0.1,
against each other, before callbridge's SIP server exists. Each is bounded to a few seconds
(the SIPp pcap calls to ~8 s). The scenario pairs prove tests/sip/*.xml are well-formed SIP
that a real SIP stack (SIPp's) accepts; the baresip tests prove the phone harness (dial,
auto-answer, recording, DTMF) and measure the audio with callbridge.testing's analysis.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from callbridge.testing import rms_dbfs, tone_level_db, tones_present
from sip_peers import INSTALL_HINT, Baresip, Sipp, missing_tools, read_wav, run_pair

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"{missing_tools()} missing: {INSTALL_HINT}"
)

TONE = 440.0


@pytest.mark.parametrize(
    ("uas", "uac"),
    [
        ("register_uas.xml", "register.xml"),
        ("uas_echo.xml", "uac_auth_pcap.xml"),
        ("uas_auth.xml", "uac_auth_pcap.xml"),
        ("uas_183_early.xml", "uac_auth_pcap.xml"),
        ("uas_ring.xml", "uac_cancel.xml"),
    ],
)
async def test_scenario_pair_completes(tmp_path: Path, uas: str, uac: str) -> None:
    callee, caller = await run_pair(tmp_path, uas, uac, deadline=20, password="secret")
    assert caller.ok and caller.successful == 1, caller.explain()
    assert callee.ok and callee.successful == 1, callee.explain()


async def test_cancel_reuses_the_invite_branch(tmp_path: Path) -> None:
    """RFC 3261 §9.1: the CANCEL's Via branch is the INVITE's (a server matches it so)."""
    _, caller = await run_pair(tmp_path, "uas_ring.xml", "uac_cancel.xml", deadline=15)
    assert caller.ok, caller.explain()
    sent = caller.messages
    invite = re.search(r"^INVITE .*?branch=([^;\s]+)", sent, re.M | re.S)
    cancel = re.search(r"^CANCEL .*?branch=([^;\s]+)", sent, re.M | re.S)
    assert invite and cancel and invite.group(1) == cancel.group(1)


async def test_sipp_builtin_uac_and_echo_many_calls(tmp_path: Path) -> None:
    """-m/-r/-l and the stats CSV: 5 calls at 5/s, at most 3 at once, all successful."""
    callee = Sipp(tmp_path / "uas", "uas_echo.xml", rtp_echo=True, calls=5, deadline=20)
    caller = Sipp(
        tmp_path / "uac", "uac", remote=callee.address, calls=5, rate=5, limit=3, deadline=20
    )
    async with callee, caller:
        result = await caller.wait()
        await callee.wait(5)
    assert result.ok and result.successful == 5, result.explain()


async def test_baresip_calls_sipp_echo_and_hears_its_tone(tmp_path: Path) -> None:
    """baresip dials SIPp (uas_echo.xml with -rtp_echo): its own 440 Hz comes back; DTMF it
    sends (RFC 4733) is echoed too and baresip reports the digit."""
    callee = Sipp(tmp_path / "uas", "uas_echo.xml", rtp_echo=True, service="bob", deadline=20)
    async with callee:
        async with Baresip(tmp_path / "alice", tone_hz=TONE, seconds=15) as phone:
            await phone.dial(f"sip:bob@{callee.address}")
            await phone.wait_event("CALL_ESTABLISHED", limit=5)
            await phone.wait_event("CALL_RTPESTAB", limit=5)
            mark = len(phone.events)
            await phone.send_dtmf("5")
            dtmf = await phone.wait_event("CALL_DTMF_START", limit=3, after=mark)
            await asyncio.sleep(1.5)  # audio to record (what is measured is the recording)
            await phone.hangup()
            await phone.wait_event("CALL_CLOSED", limit=5)
        result = await callee.wait(5)
    assert result.ok, result.explain()
    assert dtmf.get("param") == "5", dtmf
    rec = phone.recordings()
    assert rec, f"no recording: {phone.log()[-1500:]}"
    heard, rate = read_wav(rec[-1].dec)
    assert tone_level_db(heard[rate:], rate, TONE) > -25, phone.event_types()
    assert tones_present(heard[rate:], rate, [TONE, 1000.0]) == {TONE}


async def test_sipp_calls_baresip_which_answers_and_hears_the_pcap(tmp_path: Path) -> None:
    """SIPp (uac_auth_pcap.xml: g711a.pcap + RFC 4733 '1') calls baresip (auto-answer, PCMA)."""
    async with Baresip(tmp_path / "bob", user="bob", codecs="PCMA", seconds=20) as phone:
        caller = Sipp(
            tmp_path / "uac",
            "uac_auth_pcap.xml",
            remote=phone.address,
            service="bob",
            deadline=20,
        )
        async with caller:
            await phone.wait_event("CALL_ESTABLISHED", limit=5)
            dtmf = await phone.wait_event("CALL_DTMF_START", limit=10)
            result = await caller.wait()
        await phone.wait_event("CALL_CLOSED", limit=5)
    assert result.ok and result.successful == 1, result.explain()
    assert dtmf.get("param") == "1", dtmf
    heard, _ = read_wav(phone.recordings()[-1].dec)
    assert rms_dbfs(heard) > -45, "baresip heard nothing of g711a.pcap"

"""Media-side behaviour of SIP calls (callbridge.sip.calls), with real peers: DTMF as SIP INFO to
a phone without telephone-event, the server-side mute heard through a SIPp echo, and INVITEs
without SDP (delayed offer). A real ``callbridge serve`` with SIP on a free port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, running
from sip_peers import LOOPBACK, PASSWORD, Sipp, missing_tools
from test_sip_calls import TONE, _register, _user

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")


@pytest.fixture(scope="module")
def sip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("sipmedia"), sip_port=True, ring_timeout=4.0) as srv:
        yield srv


def _info_digits(messages: str) -> list[str]:
    """The ``Signal=`` digits of the INFO requests SIPp received, in order."""
    digits = []
    for block in messages.split("\nINFO sip:")[1:]:
        request = block.split("-----")[0]  # up to the next trace entry
        assert "Content-Type: application/dtmf-relay" in request, request
        signal = next(x for x in request.splitlines() if x.startswith("Signal="))
        digits.append(signal.removeprefix("Signal="))
    return digits


async def test_dtmf_to_a_phone_without_telephone_event_goes_as_sip_info(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """The SIP callee (SIPp uas_no_te.xml) answers PCMU without telephone-event: the /ws
    caller's digits reach it as INFO ``application/dtmf-relay`` (``Signal=``,
    ``Duration=160``), one INFO per digit, in order, exactly the digits sent."""
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    uas = Sipp(tmp_path / "uas", "uas_no_te.xml", service=callee, rtp_echo=True, deadline=30)
    await _register(sip_server, callee, uas.port)
    phone = Phone(sip_server.ws_url, token)
    await phone.login()
    phones.append(phone)
    log = tmp_path / "uas" / "messages.log"
    async with uas:
        call = await phone.call(callee_ext, source=ToneSource(TONE), sink=BufferSink())
        await call.wait_for("answered", timeout=10)
        for key in "5#9":
            await call.send_dtmf(key)
        async with asyncio.timeout(10):  # SIPp writes each message to its trace as it comes
            while not log.exists() or len(_info_digits(log.read_text(errors="replace"))) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await call.hangup()
        result = await uas.wait(15)
    assert result.ok, result.explain()
    assert _info_digits(result.messages) == ["5", "#", "9"], result.messages[-3000:]
    assert result.messages.count("Duration=160") == 3


def _tone_db(pcm: np.ndarray) -> float:
    return tone_level_db(pcm, 48000, TONE) if len(pcm) >= 4800 else -120.0


async def test_server_mute_of_a_ws_party_silences_the_sip_phone_and_unmute_restores_it(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """The /ws caller talks to a SIP phone (SIPp uas_echo.xml: what the phone hears comes back
    as its RTP). ``call.mute`` is server-authoritative: the caller's SDK keeps sending its tone
    (its local mute undone here), yet the phone hears nothing, so the echo is silent; after
    ``call.unmute`` the tone comes back."""
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    uas = Sipp(tmp_path / "uas", "uas_echo.xml", service=callee, rtp_echo=True, deadline=30)
    await _register(sip_server, callee, uas.port)
    phone = Phone(sip_server.ws_url, token)
    await phone.login()
    phones.append(phone)
    sink = BufferSink()
    async with uas:
        call = await phone.call(callee_ext, source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await asyncio.sleep(1.5)  # the measurement: the echo of the tone
        before = _tone_db(sink.samples(1.0))
        await call.mute()
        assert call.media is not None
        call.media.muted = False  # keep sending: only the server's mute may silence it
        await asyncio.sleep(1.2)  # the measurement: what echoes while muted
        muted = _tone_db(sink.samples(0.8))
        await call.unmute()
        await asyncio.sleep(1.5)  # the measurement: the echo after unmute
        after = _tone_db(sink.samples(1.0))
        await call.hangup()
        result = await uas.wait(15)
    assert result.ok, result.explain()
    assert before > -35.0, f"no echo before mute ({before:.1f} dB)"
    assert muted < -50.0, f"the phone still heard the muted party ({muted:.1f} dB)"
    assert after > -35.0, f"no echo after unmute ({after:.1f} dB)"


async def _auto_answering(server: Server, phones: list[Phone], sink: BufferSink) -> str:
    """A /ws user that answers every call with the 1000 Hz tone; its extension."""
    _, ext, token = await _user(server)
    phone = Phone(server.ws_url, token)
    await phone.login()
    phones.append(phone)
    tasks: list[asyncio.Task[None]] = []

    async def answer(call: Any) -> None:
        await call.answer(source=ToneSource(TONE), sink=sink)

    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer(call))))
    return ext


def _delayed_caller(server: Server, folder: Path, scenario: str, user: str, ext: str) -> Sipp:
    return Sipp(
        folder,
        scenario,
        remote=f"{LOOPBACK}:{server.sip_port}",
        service=ext,
        user=user,
        password=PASSWORD,
        rtp_echo=True,
        deadline=20,
    )


async def test_delayed_offer_invite_gets_the_offer_in_200_and_the_answer_in_ack(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """SIPp uac_delayed_offer.xml: INVITE without SDP (407, again with digest), the server's
    offer in the 200 (180 before it, no SDP: no early media without a reliable 1xx), the
    answer (PCMA) in the ACK; the /ws callee's tone goes to SIPp and comes back from its echo,
    so media flows both ways as the ACK's answer says."""
    caller, _, _ = await _user(sip_server, sip=True)
    sink = BufferSink()
    ext = await _auto_answering(sip_server, phones, sink)
    uac = _delayed_caller(sip_server, tmp_path / "uac", "uac_delayed_offer.xml", caller, ext)
    async with uac:
        await asyncio.sleep(2.5)  # the measurement: the echo while the call is up
        heard = sink.samples(1.0)
        result = await uac.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    ringing = result.messages.split("SIP/2.0 180 Ringing")[1].split("-----")[0]
    assert "Content-Length: 0" in ringing, ringing  # no SDP in an unreliable 1xx
    assert "SIP/2.0 183" not in result.messages
    offer = result.messages.split("SIP/2.0 200 OK")[1].split("-----")[0]
    assert "m=audio" in offer and "a=rtpmap:8 PCMA/8000" in offer, offer
    assert len(heard) > 48000 * 0.5
    assert tone_level_db(heard, 48000, TONE) > -35.0, "no echo: the ACK's answer was not used"


async def test_delayed_offer_whose_ack_has_no_answer_gets_bye_with_a_reason(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """SIPp uac_delayed_no_answer.xml ACKs the 200 (our offer) without an answer: the call
    cannot have media, so the server sends BYE with a Reason naming the problem, and the /ws
    callee's call ends."""
    caller, _, _ = await _user(sip_server, sip=True)
    ext = await _auto_answering(sip_server, phones, BufferSink())
    uac = _delayed_caller(sip_server, tmp_path / "uac", "uac_delayed_no_answer.xml", caller, ext)
    async with uac:
        result = await uac.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    bye = result.messages.split("\nBYE sip:")[1].split("-----")[0]
    assert "Reason: SIP;cause=488" in bye and "no SDP answer" in bye, bye

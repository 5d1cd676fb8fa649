"""Calls between SIP phones and /ws softphones (callbridge.sip.calls), with real peers.

SIPp (tests/sip/*.xml) plays the SIP phones; the /ws parties are the aiortc Python SDK. The
server is a real ``callbridge serve`` with SIP on a free port.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.sip.calls import dtmf_of_info, final_status, reason_of_status
from callbridge.store.sip import BindingUpdate, Origin
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, running
from callbridge.vocabulary import EndReason
from sip_peers import (
    LOOPBACK,
    PASSWORD,
    Baresip,
    Sipp,
    free_udp_port,
    missing_tools,
    read_wav,
    sip_user,
)

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")

TONE = 1000.0  # the /ws user's
BARESIP_TONE = 440.0


@pytest.fixture(scope="module")
def sip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("sipserver"), sip_port=True, ring_timeout=4.0) as srv:
        yield srv


async def _user(server: Server, sip: bool = False) -> tuple[str, str, str]:
    return await sip_user(server, "sc", 3000, sip)


def _rms_db(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-9))


def test_end_reasons_map_to_sip_statuses() -> None:
    assert final_status(EndReason.BUSY)[0] == 486
    assert final_status(EndReason.REJECTED)[0] == 603
    assert final_status(EndReason.NO_ANSWER)[0] == 480
    assert final_status(EndReason.CANCELED)[0] == 487
    assert reason_of_status(486) is EndReason.BUSY
    assert reason_of_status(603) is EndReason.REJECTED
    assert reason_of_status(480) is EndReason.NO_ANSWER
    assert reason_of_status(408) is EndReason.NO_ANSWER
    assert dtmf_of_info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n") == "5"
    assert dtmf_of_info("application/dtmf", "#") == "#"
    assert dtmf_of_info("text/plain", "5") is None


def _tone_wav(path: Path, freq: float, seconds: float) -> None:
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


async def test_a_baresip_phone_calls_a_ws_user_tones_both_ways(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """baresip dials the /ws user's extension: its INVITE is challenged (407) and sent again
    with digest credentials, rings the /ws user (183 ringback), is answered (200, ACK); the
    /ws user hears baresip's 440 Hz and baresip hears the /ws user's 1000 Hz; baresip's
    hangup reaches baresip as BYE."""
    caller, _, _ = await _user(sip_server, sip=True)
    _, callee_ext, token = await _user(sip_server)
    phone = Phone(sip_server.ws_url, token)
    await phone.login()
    phones.append(phone)
    incoming: asyncio.Queue[Any] = asyncio.Queue()
    phone.on("incoming", incoming.put_nowait)
    folder = tmp_path / "baresip"
    folder.mkdir()
    _tone_wav(folder / "tone.wav", BARESIP_TONE, 6.0)
    (folder / "rec").mkdir()
    (folder / "config").write_text(
        "module_path /usr/lib/baresip/modules\n"
        f"sip_listen {LOOPBACK}:{free_udp_port()}\n"
        f"rtp_ports {(rtp := free_udp_port(span=4))}-{rtp + 3}\n"
        f"audio_source aufile,{folder / 'tone.wav'}\naudio_player aubridge,nil\n"
        f"snd_path {folder / 'rec'}\n"
        "module stdio.so\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\n"
        "module sndfile.so\nmodule_tmp uuid.so\nmodule_tmp account.so\nmodule_app menu.so\n"
    )
    port = sip_server.sip_port
    (folder / "accounts").write_text(
        f"<sip:{caller}@{LOOPBACK}:{port}>;auth_pass={PASSWORD};regint=0;audio_codecs=PCMU\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-4", "-n", LOOPBACK, "-f", str(folder), "-t", "25",
        "-e", f"/dial sip:{callee_ext}@{LOOPBACK}:{port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=(folder / "out.log").open("wb"),
        stderr=asyncio.subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    sink = BufferSink()
    try:
        call = await asyncio.wait_for(incoming.get(), 15)
        await call.answer(source=ToneSource(TONE), sink=sink)
        await asyncio.sleep(2.0)  # the measurement: 2 s of baresip's tone
        heard = sink.samples(1.5)
        await call.hangup()  # a BYE to baresip
        await asyncio.sleep(0.5)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    assert len(heard) > 48000 * 0.5, "the /ws user received almost no audio"
    assert tone_level_db(heard, 48000, BARESIP_TONE) > -35.0, "the /ws user hears no 440 Hz"
    decoded = sorted((folder / "rec").glob("*-dec.wav"))
    assert decoded, "baresip recorded nothing it heard"
    pcm, rate = _read_wav(decoded[-1])
    tail = pcm[-int(rate * 2.5) : -int(rate * 0.5)]  # answered by then (not the ringback)
    assert tone_level_db(tail, rate, TONE) > -35.0, "baresip does not hear the /ws user"


async def test_an_unauthenticated_invite_is_never_routed(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """SIPp's INVITE gets 407 and nothing else (no good credentials); no /ws phone rings."""
    caller, _, _ = await _user(sip_server, sip=True)
    _, callee_ext, token = await _user(sip_server)
    phone = Phone(sip_server.ws_url, token)
    await phone.login()
    phones.append(phone)
    rang: list[object] = []
    phone.on("incoming", rang.append)
    uac = Sipp(
        tmp_path / "uac",
        "uac_auth_pcap.xml",
        remote=f"{LOOPBACK}:{sip_server.sip_port}",
        service=callee_ext,
        user=caller,
        password="wrong-password",
        deadline=10,
    )
    async with uac:
        result = await uac.wait(15)
    assert not result.ok
    messages = (tmp_path / "uac" / "messages.log").read_text(errors="replace")
    assert "SIP/2.0 407" in messages and "SIP/2.0 200" not in messages
    assert not rang


async def _register(server: Server, name: str, port: int) -> None:
    """A binding of ``name`` to a SIPp callee at ``port`` (as its REGISTER would leave it)."""
    async with server.store() as store:
        creds = await store.sip_credentials(name)
        assert creds is not None
        await store.register_bindings(
            creds.user.id,
            call_id=f"reg-{name}-{port}",
            cseq=1,
            origin=Origin(LOOPBACK, port, "UDP"),
            updates=[BindingUpdate(f"b{port}", f"<sip:{name}@{LOOPBACK}:{port}>", 300)],
        )


async def test_a_ws_user_calls_a_sip_user_and_hears_the_sip_leg_echo(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """The /ws caller rings the SIP user's registered contact (SIPp uas_echo.xml echoing RTP):
    INVITE with the server's plain RTP offer, 180, 200, ACK; the caller's tone goes to the
    phone and comes back through the SIP leg; the caller's hangup is a BYE."""
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
        await asyncio.sleep(2.0)  # the measurement: the echo of 2 s of tone
        heard = sink.samples(1.5)
        await call.hangup()
        result = await uas.wait(15)
    assert result.ok, result.explain()
    assert len(heard) > 48000 * 0.5
    assert tone_level_db(heard, 48000, TONE) > -35.0, "the tone did not come back over SIP"


async def _registered(server: Server, folder: Path, user: str, **options: Any) -> Baresip:
    """A baresip of ``user`` registered by a real REGISTER (401, then 200) to the server
    (waited for in the store: its REGISTER_OK may come before the control link is up), with its
    SIP trace in its log so that a test can read the headers it received."""
    phone = Baresip(
        folder,
        user=user,
        domain=f"{LOOPBACK}:{server.sip_port}",
        password=PASSWORD,
        regint=120,
        sip_trace=True,
        **options,
    )
    await phone.start()
    try:
        async with asyncio.timeout(10):
            while not await _bound_at(server, user, phone.port):  # noqa: ASYNC110 (another process's store)
                await asyncio.sleep(0.05)
    except BaseException:
        await phone.stop()
        raise
    return phone


async def _bound_at(server: Server, user: str, port: int) -> bool:
    async with server.store() as store:
        bindings = await store.bindings(user)
    return any(f":{port}" in b.contact for b in bindings)


async def test_ring_all_two_registered_baresips_and_a_ws_session_one_wins(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A /ws caller calls a user with two registered baresips and a /ws session: all three
    ring; the second baresip answers and talks to the caller (tones checked); the other
    baresip gets CANCEL with ``Reason: SIP;cause=200;text="Call completed elsewhere"`` (RFC
    3326) and the /ws session ``call.ended`` (answered elsewhere)."""
    callee, callee_ext, callee_token = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", callee, answer="manual")
    soft = await _registered(sip_server, tmp_path / "soft", callee, answer="manual")
    try:
        ws_callee = Phone(sip_server.ws_url, callee_token)
        await ws_callee.login()
        phones.append(ws_callee)
        rung: asyncio.Queue[Any] = asyncio.Queue()
        ws_callee.on("incoming", rung.put_nowait)
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        sink = BufferSink()
        call = await caller.call(callee_ext, source=ToneSource(TONE), sink=sink)
        ws_rung = await asyncio.wait_for(rung.get(), 10)
        await desk.wait_event("CALL_INCOMING", limit=10)
        await soft.wait_event("CALL_INCOMING", limit=10)
        await soft.command("accept")
        await soft.wait_event("CALL_ESTABLISHED", limit=10)
        await call.wait_for("answered", timeout=10)
        await desk.wait_event("CALL_CLOSED", limit=10)
        await ws_rung.wait_for("ended", timeout=10)
        await asyncio.sleep(2.0)  # the measurement: 2 s of the winner's tone
        heard = sink.samples(1.5)
        await call.hangup()
        await soft.wait_event("CALL_CLOSED", limit=10)
    finally:
        await desk.stop()
        await soft.stop()
    assert ws_rung.end_reason == "answered-elsewhere", ws_rung.end_reason
    assert tone_level_db(heard, 48000, BARESIP_TONE) > -35.0, "the caller hears no 440 Hz"
    trace = desk.log()
    cancel = trace[trace.index("CANCEL sip:") :]
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancel[:1500], cancel[:1500]
    assert "CANCEL sip:" not in soft.log()


async def test_ring_timeout_cancels_a_sip_contact_that_does_not_answer(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A registered baresip rings and never answers: at the ring timeout (4 s here, well
    before Timer B's 32 s) the server CANCELs its INVITE (§9.1), baresip answers 487, the
    server ACKs it, and the /ws caller's call ends ``no-answer``."""
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", callee, answer="manual")
    try:
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        call = await caller.call(callee_ext, source=ToneSource(TONE), sink=BufferSink())
        await desk.wait_event("CALL_INCOMING", limit=10)
        rang = asyncio.get_running_loop().time()
        await call.wait_for("ended", timeout=12)
        await desk.wait_event("CALL_CLOSED", limit=5)
        took = asyncio.get_running_loop().time() - rang
    finally:
        await desk.stop()
    assert call.end_reason == "no-answer", call.end_reason
    assert 3.0 < took < 8.0, took
    trace = desk.log()
    assert "CANCEL sip:" in trace, "no CANCEL reached the phone"
    after = trace[trace.index("CANCEL sip:") :]
    assert "SIP/2.0 487" in after and "ACK sip:" in after, after[:3000]
    assert "SIP/2.0 408" not in trace


async def _in_log(phone: Baresip, text: str, after: int, limit: float = 5.0) -> int:
    """Where ``text`` appears in the phone's SIP trace after offset ``after`` (the trace is a
    file another process writes: read again until it shows up, bounded)."""
    async with asyncio.timeout(limit):
        while (at := phone.log().find(text, after)) < 0:  # noqa: ASYNC110 (a file of baresip's)
            await asyncio.sleep(0.05)
    return at


def _sdp_direction_of_invite(trace: str, at: int) -> str:
    """The ``a=`` direction of the INVITE whose request line starts at ``at``."""
    message = trace[at : trace.find("\n#", at) if trace.find("\n#", at) > 0 else None]
    for direction in ("sendonly", "recvonly", "inactive", "sendrecv"):
        if f"a={direction}" in message:
            return direction
    return "sendrecv"  # RFC 3264 §5.1: no attribute means sendrecv


async def test_hold_both_ways_between_a_ws_user_and_a_baresip(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A /ws caller talks to a registered baresip. The caller holds: the phone gets a
    re-INVITE offering ``a=sendonly`` (RFC 3264 §8.4), and ``sendrecv`` on resume. Then
    baresip holds (its re-INVITE): the caller gets ``call.held {by: "remote"}`` and hears hold
    music instead of baresip's 440 Hz; baresip resumes: ``resumed`` and the 440 Hz again."""
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", callee, answer="auto")
    try:
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        sink = BufferSink()
        call = await caller.call(callee_ext, source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await desk.wait_event("CALL_ESTABLISHED", limit=5)
        mark = len(desk.log())
        await call.hold()
        held_at = await _in_log(desk, "INVITE sip:", mark)
        await _in_log(desk, "SIP/2.0 200", held_at)
        await call.resume()
        resumed_at = await _in_log(desk, "INVITE sip:", held_at + 10)
        await _in_log(desk, "SIP/2.0 200", resumed_at)
        trace = desk.log()
        await asyncio.sleep(1.0)  # baresip's tone again, before its own hold
        await desk.command("hold")
        held = await call.wait_for("held", timeout=5)
        await asyncio.sleep(1.5)  # the measurement: what the held caller hears
        on_hold = sink.samples(1.0)
        await desk.command("resume")
        await call.wait_for("resumed", timeout=5)
        await asyncio.sleep(1.5)
        after = sink.samples(1.0)
        await call.hangup()
        await desk.wait_event("CALL_CLOSED", limit=5)
    finally:
        await desk.stop()
    assert _sdp_direction_of_invite(trace, held_at) == "sendonly", trace[held_at:][:1500]
    assert _sdp_direction_of_invite(trace, resumed_at) == "sendrecv", trace[resumed_at:][:1500]
    assert held.data.get("by") == "remote", held.data
    music = max(tone_level_db(on_hold, 48000, f) for f in (523.25, 659.25, 783.99))
    assert music > -40.0, "the held caller hears no hold music"
    assert tone_level_db(on_hold, 48000, BARESIP_TONE) < -45.0, "the phone is heard on hold"
    assert tone_level_db(after, 48000, BARESIP_TONE) > -35.0, "no 440 Hz after the resume"


async def test_dtmf_both_ways_between_a_ws_user_and_a_baresip(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """baresip's keys (RFC 4733 telephone-events) reach the /ws caller as ``call.dtmf``
    digits; the caller's digits (RFC 4733 on its WebRTC leg) reach baresip as RFC 4733 events
    (its CALL_DTMF_START)."""
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", callee, answer="auto")
    digits: asyncio.Queue[str] = asyncio.Queue()
    try:
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        call = await caller.call(callee_ext, source=ToneSource(TONE), sink=BufferSink())
        call.on("dtmf", digits.put_nowait)
        await call.wait_for("answered", timeout=10)
        await desk.wait_event("CALL_ESTABLISHED", limit=5)
        await desk.wait_event("CALL_RTPESTAB", limit=5)
        got = []
        for key in "5#":
            await desk.send_dtmf(key)
            got.append(await asyncio.wait_for(digits.get(), 5))
        mark = len(desk.events)
        await call.send_dtmf("7")
        first = await desk.wait_event("CALL_DTMF_START", limit=5, after=mark)
        mark = desk.events.index(first) + 1
        await call.send_dtmf("*")
        second = await desk.wait_event("CALL_DTMF_START", limit=5, after=mark)
        await call.hangup()
        await desk.wait_event("CALL_CLOSED", limit=5)
    finally:
        await desk.stop()
    assert got == ["5", "#"], got
    assert (first.get("param"), second.get("param")) == ("7", "*"), (first, second)


async def test_a_ws_user_blind_transfers_its_caller_to_a_sip_user(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A /ws caller talks to a /ws callee, who transfers it (``call.transfer``) to a SIP user:
    the registered baresip rings and answers; the caller hears its 440 Hz and baresip hears
    the caller's 1000 Hz (both analysed)."""
    target, target_ext, _ = await _user(sip_server, sip=True)
    _, callee_ext, callee_token = await _user(sip_server)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", target, answer="auto")
    try:
        callee = Phone(sip_server.ws_url, callee_token)
        await callee.login()
        phones.append(callee)
        rung: asyncio.Queue[Any] = asyncio.Queue()
        callee.on("incoming", rung.put_nowait)
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        sink = BufferSink()
        call = await caller.call(callee_ext, source=ToneSource(TONE), sink=sink)
        incoming = await asyncio.wait_for(rung.get(), 10)
        await incoming.answer(source=ToneSource(600.0), sink=BufferSink())
        await call.wait_for("answered", timeout=10)
        await incoming.transfer(target_ext)
        await incoming.wait_for("ended", timeout=5)
        await desk.wait_event("CALL_ESTABLISHED", limit=10)
        await asyncio.sleep(2.0)  # the measurement: 2 s of baresip's tone at the caller
        heard = sink.samples(1.5)
        await call.hangup()
        await desk.wait_event("CALL_CLOSED", limit=5)
    finally:
        await desk.stop()
    assert incoming.end_reason == "transferred", incoming.end_reason
    assert tone_level_db(heard, 48000, BARESIP_TONE) > -35.0, "the caller does not hear baresip"
    pcm, rate = read_wav(desk.recordings()[-1].dec)
    tail = pcm[-int(rate * 1.5) :]
    assert tone_level_db(tail, rate, TONE) > -35.0, "baresip does not hear the caller"


async def test_baresip_blind_transfers_its_caller_by_refer(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A /ws caller talks to a registered baresip, which transfers it (REFER, RFC 3515) to a
    /ws user: 202 Accepted, NOTIFYs with ``message/sipfrag`` progress (100 Trying, then
    200 OK with the subscription terminated), then the server's BYE; the target rings,
    answers, and the caller hears the target's tone."""
    desk_user, desk_ext, _ = await _user(sip_server, sip=True)
    _, target_ext, target_token = await _user(sip_server)
    _, _, token = await _user(sip_server)
    desk = await _registered(sip_server, tmp_path / "desk", desk_user, answer="auto")
    try:
        target = Phone(sip_server.ws_url, target_token)
        await target.login()
        phones.append(target)
        rung: asyncio.Queue[Any] = asyncio.Queue()
        target.on("incoming", rung.put_nowait)
        caller = Phone(sip_server.ws_url, token)
        await caller.login()
        phones.append(caller)
        sink = BufferSink()
        call = await caller.call(desk_ext, source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await desk.wait_event("CALL_ESTABLISHED", limit=5)
        await desk.command("transfer", f"sip:{target_ext}@{LOOPBACK}:{sip_server.sip_port}")
        incoming = await asyncio.wait_for(rung.get(), 10)
        await incoming.answer(source=ToneSource(600.0), sink=BufferSink())
        await desk.wait_event("CALL_CLOSED", limit=10)
        await asyncio.sleep(2.0)  # the measurement: the target's 600 Hz at the caller
        heard = sink.samples(1.5)
        await call.hangup()
        await incoming.wait_for("ended", timeout=5)
    finally:
        await desk.stop()
    trace = desk.log()
    refer = trace.index("REFER sip:")
    after = trace[refer:]
    assert "SIP/2.0 202 Accepted" in after, after[:2000]
    assert "SIP/2.0 100 Trying" in after and "Subscription-State: terminated" in after
    final = after.index("Subscription-State: terminated")
    assert "SIP/2.0 200 OK" in after[final : final + 600], after[final:][:800]
    assert "BYE sip:" in after[final:], "no BYE after the final NOTIFY"
    assert tone_level_db(heard, 48000, 600.0) > -35.0, "the caller does not hear the target"

"""SIPp scenarios (tests/sip/*.xml) against the real server: a real ``callbridge serve`` with SIP
on a free port, SIPp as the SIP phones, the aiortc Python SDK as the /ws users.

Each test checks SIPp's outcome (exit status and its stats CSV) and the server's side (the CDR's
end reason, the /ws party's events, ``/healthz`` back to no legs). The caller's audio is
``g711a.pcap`` (4.7 s of speech, PCMA) played by SIPp, so what the /ws side hears is checked by
level, not by tone. The no-ACK test runs its own server with ``--sip-t1 0.05``, so the BYE
after 64*T1 comes in 3.2 s rather than 32 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.store.records import Cdr
from callbridge.store.sip import BindingUpdate, Origin
from callbridge.testing.server import Server, running, serve
from sip_peers import LOOPBACK, PASSWORD, Sipp, missing_tools, sip_user

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")

TONE = 1000.0


@pytest.fixture(scope="module")
def sip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("sipscen"), sip_port=True, ring_timeout=10.0) as srv:
        yield srv


async def _user(server: Server, sip: bool = False) -> tuple[str, str, str]:
    return await sip_user(server, "ss", 4000, sip)


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


async def _cdr_between(server: Server, caller: str, callee: str, limit: float = 10.0) -> Cdr:
    """The CDR of the call from ``caller`` to ``callee`` (waited for: it is written at the
    end of the call, in the server's process)."""
    async with asyncio.timeout(limit):
        while True:
            async with server.store() as store:
                cdrs = await store.list_cdrs(500)
            for cdr in cdrs:
                if caller in cdr.caller and callee in (cdr.callee + cdr.destination):
                    return cdr
            await asyncio.sleep(0.1)


async def _idle(server: Server, limit: float = 15.0) -> dict[str, Any]:
    health = await asyncio.to_thread(server.wait_idle, limit)
    return dict(health)


async def _ws_user(server: Server, phones: list[Phone]) -> tuple[str, str, Phone]:
    name, ext, token = await _user(server)
    phone = Phone(server.ws_url, token)
    await phone.login()
    phones.append(phone)
    return name, ext, phone


def _rms_db(pcm: np.ndarray[Any, Any]) -> float:
    x = pcm.astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-9))


def _caller(
    tmp_path: Path, server: Server, scenario: str, user: str, service: str, **kw: Any
) -> Sipp:
    return Sipp(
        tmp_path / "uac",
        scenario,
        remote=f"{LOOPBACK}:{server.sip_port}",
        service=service,
        user=user,
        password=PASSWORD,
        **kw,
    )


async def test_pcap_caller_reaches_a_ws_user_who_hears_the_speech(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_auth_pcap.xml: INVITE, 407, INVITE with digest, 200, ACK, 4.7 s of PCMA speech and
    an RFC 4733 '1', BYE. The /ws user auto-answers with a tone and hears the speech (level)
    and the digit; the CDR says the caller hung up."""
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, phone = await _ws_user(sip_server, phones)
    sink = BufferSink()
    digits: list[str] = []
    ended: asyncio.Event = asyncio.Event()

    async def answer(call: Any) -> None:
        call.on("dtmf", lambda d, *a: digits.append(str(d)))
        call.on("ended", lambda *a: ended.set())
        await call.answer(source=ToneSource(TONE), sink=sink)

    tasks: list[asyncio.Task[None]] = []
    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer(call))))
    uac = _caller(tmp_path, sip_server, "uac_auth_pcap.xml", caller, callee_ext, deadline=25)
    async with uac:
        await asyncio.sleep(3.5)  # the measurement: speech playing (answered within ~0.5 s)
        heard = sink.samples(2.0)
        result = await uac.wait(25)
    await asyncio.wait_for(ended.wait(), 10)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 407" in result.messages
    assert len(heard) > 48000, "the /ws user heard under 1 s of the call"
    assert _rms_db(heard) > -45.0, f"the /ws user heard silence ({_rms_db(heard):.1f} dBFS)"
    assert "1" in digits, digits
    cdr = await _cdr_between(sip_server, caller, callee)
    assert cdr.answered_at is not None and cdr.end_reason == "hangup", cdr
    health = await _idle(sip_server)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health


async def test_pcap_caller_reaches_a_sipp_callee_that_echoes(
    sip_server: Server, tmp_path: Path
) -> None:
    """SIP to SIP through the server: uac_auth_pcap.xml calls a user whose registered contact
    is SIPp uas_echo.xml with -rtp_echo. Both SIPp ends count one successful call; the echo's
    RTP counters show the pcap's packets went through the server and came back."""
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    uas = Sipp(tmp_path / "uas", "uas_echo.xml", service=callee, rtp_echo=True, deadline=25)
    await _register(sip_server, callee, uas.port)
    uac = _caller(tmp_path, sip_server, "uac_auth_pcap.xml", caller, callee_ext, deadline=25)
    async with uas, uac:
        result = await uac.wait(25)
        callee_result = await uas.wait(10)
    assert result.ok and result.successful == 1, result.explain()
    assert callee_result.ok and callee_result.successful == 1, callee_result.explain()
    cdr = await _cdr_between(sip_server, caller, callee)
    assert cdr.answered_at is not None and cdr.end_reason == "hangup", cdr
    health = await _idle(sip_server)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health


async def test_reinvite_hold_and_resume_reach_the_ws_party(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_reinvite_hold.xml: a=sendonly is answered recvonly/inactive, a=sendrecv is answered
    sendrecv; the /ws party gets ``held`` (by the remote side) then ``resumed``."""
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, phone = await _ws_user(sip_server, phones)
    events: list[tuple[str, Any]] = []

    async def answer(call: Any) -> None:
        call.on("held", lambda by: events.append(("held", by)))
        call.on("resumed", lambda by: events.append(("resumed", by)))
        await call.answer(source=ToneSource(TONE), sink=BufferSink())

    tasks: list[asyncio.Task[None]] = []
    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer(call))))
    uac = _caller(tmp_path, sip_server, "uac_reinvite_hold.xml", caller, callee_ext, deadline=25)
    async with uac:
        result = await uac.wait(25)
    assert result.ok and result.successful == 1, result.explain()
    async with asyncio.timeout(5):
        while len(events) < 2:  # noqa: ASYNC110 (the SDK's callbacks fill it)
            await asyncio.sleep(0.05)
    assert [e[0] for e in events] == ["held", "resumed"], events
    assert "remote" in str(events[0][1]).lower(), events
    cdr = await _cdr_between(sip_server, caller, callee)
    assert cdr.end_reason == "hangup", cdr
    health = await _idle(sip_server)
    assert health["legs"] == 0, health


async def test_refer_blind_transfers_the_sipp_caller_to_another_ws_user(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_refer.xml: the SIPp caller, answered by the /ws user A, REFERs A to B's extension;
    202, NOTIFYs (sipfrag 100 then 200, the last terminated); B rings, answers and is then in
    a call with A; the server then ends the leg with BYE, which SIPp answers."""
    caller, _, _ = await _user(sip_server, sip=True)
    _, a_ext, a_phone = await _ws_user(sip_server, phones)
    _, b_ext, b_phone = await _ws_user(sip_server, phones)
    a_calls: list[Any] = []
    b_answered = asyncio.Event()

    async def answer_a(call: Any) -> None:
        a_calls.append(call)
        await call.answer(source=ToneSource(TONE), sink=BufferSink())

    async def answer_b(call: Any) -> None:
        await call.answer(source=ToneSource(440.0), sink=BufferSink())
        b_answered.set()

    tasks: list[asyncio.Task[None]] = []
    a_phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer_a(call))))
    b_phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer_b(call))))
    uac = _caller(
        tmp_path, sip_server, "uac_refer.xml", caller, a_ext, keys={"refer_to": b_ext}, deadline=30
    )
    async with uac:
        result = await uac.wait(30)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 202" in result.messages
    assert "Subscription-State: terminated" in result.messages
    await asyncio.wait_for(b_answered.wait(), 10)
    for phone in (a_phone, b_phone):
        await phone.logout()
    phones.clear()
    health = await _idle(sip_server)
    assert health["legs"] == 0, health


async def test_cancel_while_ringing_gets_487_and_ends_the_ws_ringing(
    sip_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_cancel.xml: at the 180/183, CANCEL; 200 for the CANCEL, 487 for the INVITE; the /ws
    callee that was ringing gets ``call.ended {reason: canceled}``; the CDR has no answer."""
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, phone = await _ws_user(sip_server, phones)
    ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def ring(call: Any) -> None:
        ended.set_result(await call.wait_for("ended", timeout=15))

    tasks: list[asyncio.Task[None]] = []
    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(ring(call))))
    uac = _caller(tmp_path, sip_server, "uac_cancel.xml", caller, callee_ext, deadline=20)
    async with uac:
        result = await uac.wait(20)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 487" in result.messages
    event = await asyncio.wait_for(ended, 5)
    assert event.data["reason"] == "canceled", event.data
    # The CDR keeps the caller's side, as for a /ws caller that hangs up while ringing.
    cdr = await _cdr_between(sip_server, caller, callee)
    assert cdr.answered_at is None and cdr.end_reason in {"hangup", "canceled"}, cdr
    health = await _idle(sip_server)
    assert health["legs"] == 0, health


async def test_a_caller_that_never_acks_gets_retransmitted_200s_then_bye(
    tmp_path: Path, phones: list[Phone]
) -> None:
    """uac_no_ack.xml: answered by the /ws user, SIPp never ACKs the 200. The server sends the
    200 again (T1 doubling to T2, §13.3.1.4) and after 64*T1 ends the call with BYE, which SIPp
    answers. Its own server runs with ``--sip-t1 0.05`` (T2 0.4 s): BYE after 3.2 s, about ten
    retransmissions before it; bounded at 20 s."""
    fast = ["--sip-t1", "0.05"]
    async with serve(tmp_path / "server", sip_port=True, ring_timeout=10.0, args=fast) as server:
        await _never_acked(server, tmp_path, phones)


async def _never_acked(sip_server: Server, tmp_path: Path, phones: list[Phone]) -> None:
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, phone = await _ws_user(sip_server, phones)
    ended = asyncio.Event()

    async def answer(call: Any) -> None:
        call.on("ended", lambda *a: ended.set())
        await call.answer(source=ToneSource(TONE), sink=BufferSink())

    tasks: list[asyncio.Task[None]] = []
    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer(call))))
    uac = _caller(tmp_path, sip_server, "uac_no_ack.xml", caller, callee_ext, deadline=20)
    async with uac:
        result = await uac.wait(20)
    assert result.ok and result.successful == 1, result.explain()
    oks = result.messages.count("SIP/2.0 200 OK")
    assert oks >= 5, f"only {oks} 200s received: no retransmission"
    # The server's BYE must end the whole call: the /ws party is told, a CDR is written.
    try:
        await asyncio.wait_for(ended.wait(), 5)
    except TimeoutError:
        health = await asyncio.to_thread(sip_server.health)
        pytest.fail(f"the /ws party's call outlived the server's BYE (health {health})")
    cdr = await _cdr_between(sip_server, caller, callee)
    assert cdr.end_reason in {"failed", "hangup"}, cdr
    while phones:  # logged out, so /healthz can show idle at once (a session would count)
        await phones.pop().logout()
    idle = await _idle(sip_server)
    assert idle["legs"] == 0, idle


SOAK_CALLS = 100


async def test_soak_concurrent_sipp_calls_with_rtp_none_lost(
    sip_server: Server, tmp_path: Path
) -> None:
    """The soak: SOAK_CALLS calls of uac_auth_pcap.xml (digest, PCMA speech from the pcap,
    RFC 4733, BYE) at 25 calls/s, all up at once (-l = -m), through the server to a SIPp
    uas_echo.xml registered as one user and echoing the RTP. None lost: both SIPp ends count
    every call successful, and ``/healthz`` is back to no leg and no media endpoint."""
    caller, _, _ = await _user(sip_server, sip=True)
    callee, callee_ext, _ = await _user(sip_server, sip=True)
    n = SOAK_CALLS
    uas = Sipp(
        tmp_path / "uas", "uas_echo.xml", service=callee, rtp_echo=True, calls=n, deadline=55
    )
    await _register(sip_server, callee, uas.port)
    uac = _caller(
        tmp_path,
        sip_server,
        "uac_auth_pcap.xml",
        caller,
        callee_ext,
        calls=n,
        limit=n,
        rate=25,
        deadline=55,
    )
    async with uas, uac:
        result = await uac.wait(58)
        callee_result = await uas.wait(10)
    assert result.ok and result.successful == n, result.explain()
    assert callee_result.successful == n, callee_result.explain()
    health = await _idle(sip_server, 20)
    assert health["legs"] == 0 and health["media_endpoints"] == 0, health

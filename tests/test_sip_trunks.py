"""SIP trunks (issue 12) against the real server: SIPp plays the carrier on loopback.

One ``callbridge serve`` with SIP for every trunk test file (``trunk_server`` in conftest.py);
each test makes its own trunk(s) and an outbound
route with a prefix of its own (so that tests never share a route), with OPTIONS checks off
(SIPp would abort on an OPTIONS in the middle of its scenario). The WebRTC caller is the aiortc
SDK; what it hears is analysed (its own tone, echoed by SIPp's ``-rtp_echo``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import telnyx
from telnyx import AsyncTelnyx

from api_helpers import WebhookSink
from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.sip.digest import ha1, response
from callbridge.sip.digest_client import DigestSession, authorization, pick_challenge
from callbridge.sip.message import Headers, Request
from callbridge.sip.trunk_calls import reason_of_carrier_status, restrict_codecs
from callbridge.sip.trunk_health import health_of
from callbridge.sip.trunk_register import refresh_delay
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server
from callbridge.trunks import Trunk
from callbridge.vocabulary import EndReason
from sip_peers import LOOPBACK, Sipp, missing_tools
from trunk_helpers import (
    TONE,
    InboundSipp,
    add_route,
    add_trunk,
    caller,
    cdr_to,
    inbound_carrier,
    sipp_carrier,
    telnyx_app,
    unique,
)

sipp_only = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")


# -- units: digest client, mappings --------------------------------------------------------------
def _invite() -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc"),
            ("From", "<sip:+15550001@example.com>;tag=1"),
            ("To", "<sip:+15550002@carrier.test>"),
            ("Call-ID", "c1@example.com"),
            ("CSeq", "7 INVITE"),
        ]
    )
    return Request("INVITE", "sip:+15550002@carrier.test", headers, b"v=0\r\n")


def _challenge(status: int, *values: str) -> Any:
    resp = _invite().response(status, "Auth")
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    for value in values:
        resp.headers.add(name, value)
    return resp


def test_digest_retry_keeps_call_id_bumps_cseq_and_computes_rfc7616_response() -> None:
    sent = _invite()
    challenge = _challenge(
        407,
        'Digest realm="c", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="c", nonce="n1", algorithm=SHA-256, qop="auth"',
    )
    session = DigestSession("u", "p")
    retry = session.retry(sent, challenge)
    assert retry is not None
    assert retry.call_id == sent.call_id and retry.cseq_number == 8
    assert "Via" not in retry.headers  # the stack adds one with a new branch
    value = retry.headers.get("Proxy-Authorization") or ""
    assert "algorithm=SHA-256" in value and "qop=auth" in value and "nc=00000001" in value
    params = dict(p.split("=", 1) for p in value[len("Digest ") :].split(", "))
    cnonce = params["cnonce"].strip('"')
    key = ha1("u", "c", "p", "SHA-256")
    expected = response(
        key, "SHA-256", "INVITE", str(sent.uri), "n1", qop="auth", nc="00000001", cnonce=cnonce
    )
    assert params["response"].strip('"') == expected
    # a second challenge for the answered request: wrong credentials, one retry only
    assert session.retry(retry, _challenge(407, 'Digest realm="c", nonce="n2"')) is None
    assert "refused the credentials" in session.failure


def test_digest_stale_is_answered_again_and_unusable_challenges_say_why() -> None:
    session = DigestSession("u", "p")
    first = session.retry(_invite(), _challenge(401, 'Digest realm="c", nonce="a"'))
    assert first is not None and "Authorization" in first.headers
    assert "qop" not in (first.headers.get("Authorization") or "")  # RFC 2069 form
    stale = session.retry(first, _challenge(401, 'Digest realm="c", nonce="b", stale=true'))
    assert stale is not None and stale.cseq_number == first.cseq_number + 1
    assert pick_challenge(_challenge(401, 'Digest realm="c", nonce="x", qop="auth-int"'))[0] is None
    none, why = pick_challenge(_challenge(401, 'Digest realm="c", nonce="x", algorithm=MD5-sess'))
    assert none is None and "MD5-SESS is not supported" in why
    assert session.retry(_invite(), _challenge(401)) is None and "no WWW-Authenticate" in (
        session.failure
    )
    opaque = pick_challenge(_challenge(401, 'Digest realm="c", nonce="x", opaque="o"'))[0]
    assert opaque is not None
    assert 'opaque="o"' in authorization(opaque, "REGISTER", "sip:c", "u", "p")


def test_carrier_statuses_map_to_seed_end_reasons_and_health() -> None:
    assert reason_of_carrier_status(486) is EndReason.BUSY
    assert reason_of_carrier_status(480) is EndReason.NO_ANSWER
    assert reason_of_carrier_status(408) is EndReason.NO_ANSWER
    assert reason_of_carrier_status(603) is EndReason.REJECTED
    assert reason_of_carrier_status(404) is EndReason.FAILED
    assert reason_of_carrier_status(503) is EndReason.FAILED
    assert [health_of(_invite().response(s)) for s in (200, 404, 408, 503)] == [
        "up",
        "up",
        "down",
        "down",
    ]
    assert refresh_delay(4) == 2.0 and refresh_delay(3600) == 3570.0


def test_restrict_codecs_keeps_the_trunks_codecs_and_telephone_event() -> None:
    sdp = (
        "v=0\r\nm=audio 4000 RTP/AVP 111 0 8 9 101\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:111 minptime=10\r\n"
    )
    out = restrict_codecs(sdp, ("PCMA", "PCMU"))
    assert "m=audio 4000 RTP/AVP 8 0 101" in out
    assert "opus" not in out and "G722" not in out and "telephone-event" in out
    assert restrict_codecs(sdp, ("G729",)) == sdp  # nothing left: unchanged


# -- with the server and SIPp ---------------------------------------------------------------------
@sipp_only
async def test_a_ws_caller_dials_out_through_a_407_challenging_carrier_and_hears_its_echo(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_407_echo.xml: 407, our INVITE again with Proxy-Authorization (same Call-ID,
    CSeq + 1), 200 at SIPp's echo port: the WebRTC caller's tone comes back through the
    carrier; the caller's hangup is a BYE the carrier answers."""
    carrier = sipp_carrier(tmp_path, "carrier_407_echo.xml")
    trunk = await add_trunk(trunk_server, carrier.port, send_pai=True)
    await add_route(trunk_server, "+1555100", trunk)
    _, phone = await caller(trunk_server, phones)
    sink = BufferSink()
    async with carrier:
        call = await phone.call("+15551000001", source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await asyncio.sleep(2.0)  # the measurement: the echo of 2 s of tone
        heard = sink.samples(1.5)
        await call.hangup()
        result = await carrier.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 407" in result.messages
    assert "P-Asserted-Identity" in result.messages
    assert tone_level_db(heard, 48000, TONE) > -35.0, "the tone did not come back via the trunk"
    cdr = await cdr_to(trunk_server, "+15551000001")
    assert cdr.answered_at is not None and cdr.end_reason == "hangup", cdr
    assert cdr.sip_cause == 200, cdr  # answered: a normal clearing


@sipp_only
async def test_early_media_then_486_ends_the_callers_call_busy_after_hearing_it(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_183_busy.xml: 183 with SDP (the caller's tone echoed back as early media for
    3 s), then 486: the caller heard the early audio and its call ends ``busy``."""
    carrier = sipp_carrier(tmp_path, "carrier_183_busy.xml")
    trunk = await add_trunk(trunk_server, carrier.port)
    await add_route(trunk_server, "+1555200", trunk)
    _, phone = await caller(trunk_server, phones)
    sink = BufferSink()
    ended: list[Any] = []
    async with carrier:
        call = await phone.call("+15552000001", source=ToneSource(TONE), sink=sink)
        call.on("ended", lambda *a: ended.append(a))
        await asyncio.sleep(2.0)  # the measurement: early media (183 then 3 s of echo)
        heard = sink.samples(1.0)
        await call.wait_for("ended", timeout=10)
        result = await carrier.wait(10)
    assert result.ok and result.successful == 1, result.explain()
    assert tone_level_db(heard, 48000, TONE) > -35.0, "no early media reached the caller"
    assert call.end_reason == "busy", call.end_reason
    cdr = await cdr_to(trunk_server, "+15552000001")
    assert cdr.answered_at is None and cdr.end_reason == "busy", cdr
    assert cdr.sip_cause == 486, cdr  # the carrier's status, kept in the CDR (migration 0008)


@sipp_only
async def test_a_trunk_answering_503_fails_over_to_the_next_trunk(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """Route +1555300 → [carrier_503.xml, carrier_echo.xml]: the first answers 503, the call
    goes on to the second, which answers: the caller hears its echo."""
    bad = sipp_carrier(tmp_path, "carrier_503.xml")
    good = sipp_carrier(tmp_path, "carrier_echo.xml")
    first = await add_trunk(trunk_server, bad.port)
    second = await add_trunk(trunk_server, good.port)
    await add_route(trunk_server, "+1555300", first, second)
    _, phone = await caller(trunk_server, phones)
    sink = BufferSink()
    async with bad, good:
        call = await phone.call("+15553000001", source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await asyncio.sleep(1.5)  # the measurement: the second carrier's echo
        heard = sink.samples(1.0)
        await call.hangup()
        bad_result = await bad.wait(10)
        good_result = await good.wait(10)
    assert bad_result.ok and "SIP/2.0 503" in bad_result.messages, bad_result.explain()
    assert good_result.ok and good_result.successful == 1, good_result.explain()
    assert tone_level_db(heard, 48000, TONE) > -35.0, "no echo from the second trunk"


async def _did(server: Server, number: str, user: str, trunk_values: dict[str, Any]) -> Trunk:
    """``number`` owned by the default account and routed to ``user``; a trunk whose inbound
    side is ``trunk_values`` (its host is never dialled here)."""
    async with server.store() as store:
        await store.add_number(number)
        await store.route_number(number, None, "user", user)
        return await store.add_trunk(
            name=f"inbound{unique()}", host="192.0.2.1", options_interval=0, **trunk_values
        )


@sipp_only
async def test_an_inbound_call_for_a_did_rings_the_user_and_audio_flows(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_inbound.xml from 127.0.0.2 (the trunk's ACL): the DID's user's /ws device
    rings with the carrier's caller ID, answers with a tone, and hears it back from SIPp's
    echo; SIPp's BYE ends the call."""
    name, phone = await caller(trunk_server, phones)
    await _did(trunk_server, "+15557770001", name, {"inbound_acl": ["127.0.0.2/32"]})
    sink = BufferSink()
    incoming: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []

    async def answer(call: Any) -> None:
        incoming.append(call)
        await call.answer(source=ToneSource(TONE), sink=sink)

    phone.on("incoming", lambda call: tasks.append(asyncio.create_task(answer(call))))
    carrier = inbound_carrier(tmp_path, trunk_server, "+15557770001")
    async with carrier:
        result = await carrier.wait(20)
    heard = sink.samples(1.5)
    assert result.ok and result.successful == 1, result.explain()
    assert incoming and "+15559990001" in str(incoming[0].from_), incoming
    assert tone_level_db(heard, 48000, TONE) > -35.0, "no audio came back from the carrier"
    cdr = await cdr_to(trunk_server, name)  # the DID's call, to its user
    assert cdr.caller == "+15559990001" and cdr.sip_cause == 200, cdr


@sipp_only
async def test_an_inbound_invite_from_outside_every_acl_is_refused_403_and_never_routed(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_inbound_denied.xml from 127.0.0.1, which no trunk's ACL holds, for a DID routed
    to a logged-in user: 403, the user's device never rings, the server logs the source."""
    name, phone = await caller(trunk_server, phones)
    await _did(trunk_server, "+15557770002", name, {"inbound_acl": ["127.0.0.3/32"]})
    rung: list[Any] = []
    phone.on("incoming", rung.append)
    carrier = Sipp(
        tmp_path / "denied",
        "carrier_inbound_denied.xml",
        remote=f"{LOOPBACK}:{trunk_server.sip_port}",
        service="+15557770002",
        deadline=15,
    )
    async with carrier:
        result = await carrier.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 403" in result.messages and "SIP/2.0 407" not in result.messages
    assert not rung
    log = (trunk_server.data_dir / "server.log").read_text()
    assert "+15557770002 from 127.0.0.1" in log and "in no trunk's inbound ACL" in log


async def _trunk_state(server: Server, trunk_id: str) -> Trunk | None:
    async with server.store() as store:
        return await store.find_trunk(trunk_id)


@sipp_only
async def test_a_registration_is_refreshed_before_expiry_and_removed_with_the_trunk(
    trunk_server: Server, tmp_path: Path
) -> None:
    """carrier_register.xml: REGISTER, 401, REGISTER with digest, 200 granting 4 s (of the 60
    asked); the refresh comes within 3.8 s (SIPp's timeout) and is authenticated again; the
    store says
    ``registered`` (what ``trunks list`` shows); removing the trunk un-REGISTERs it."""
    carrier = Sipp(tmp_path / "reg", "carrier_register.xml", service="carrier", deadline=25)
    async with carrier:
        trunk = await add_trunk(trunk_server, carrier.port, register=True, register_expires=60)
        stamps: list[Any] = []
        async with asyncio.timeout(12):  # the first grant, then a refresh's new stamp
            while len(stamps) < 2:
                state = await _trunk_state(trunk_server, trunk.id)
                assert state is not None
                if (
                    state.registration_state == "registered"
                    and state.registration_updated_at not in stamps
                ):
                    stamps.append(state.registration_updated_at)
                await asyncio.sleep(0.1)
        assert state is not None and state.registration_detail == "expires in 4 s", state
        async with trunk_server.store() as store:
            await store.remove_trunk(trunk.id)
        result = await carrier.wait(20)
    assert result.ok and result.successful == 1, result.explain()
    assert result.messages.count("Expires: 0") >= 2  # the un-REGISTER and its retry


@sipp_only
async def test_rest_dial_out_through_a_trunk_with_the_telnyx_sdk_and_its_sip_causes(
    trunk_server: Server, tmp_path: Path
) -> None:
    """POST /v2/calls with the application's connection_id: to +E164 goes out by the route
    (carrier_echo.xml answers: call.answered, then our hangup: sip_hangup_cause 200, the CDR
    too); to sip:NUMBER@HOST:PORT goes to that trunk (carrier_503.xml: call.hangup with
    hangup_cause unspecified and sip_hangup_cause 503); +1900… is blocked by the default
    toll-fraud policy before anything is sent (422, "is blocked"); a malformed sip: URI and a
    number no route reaches get a 422 that says so."""
    good = sipp_carrier(tmp_path, "carrier_echo.xml")
    bad = sipp_carrier(tmp_path, "carrier_503.xml")
    trunk = await add_trunk(trunk_server, good.port)
    await add_trunk(trunk_server, bad.port)
    await add_route(trunk_server, "+1555400", trunk)
    await add_route(trunk_server, "+1900", trunk)
    async with trunk_server.store() as store:
        key = await store.create_api_key("trunk tests")
        await store.add_number("+15554009999")
    client = AsyncTelnyx(api_key=key, base_url=f"{trunk_server.url}/v2", max_retries=0)
    sink = WebhookSink()
    app = await client.call_control_applications.create(
        application_name="trunk app", webhook_event_url=await sink.start()
    )
    assert app.data is not None and app.data.id is not None
    app_id = app.data.id
    try:
        async with good, bad:
            made = await client.calls.dial(
                connection_id=app_id, to="+15554000001", from_="+15554009999"
            )
            assert made.data is not None and made.data.call_control_id is not None
            ccid = made.data.call_control_id
            await sink.wait("call.answered", within=10, call_control_id=ccid)
            await client.calls.actions.hangup(ccid)
            hangup = await sink.wait("call.hangup", call_control_id=ccid)
            failed = await client.calls.dial(
                connection_id=app_id,
                to=f"sip:+15554010001@{LOOPBACK}:{bad.port}",
                from_="+15554009999",
            )
            assert failed.data is not None and failed.data.call_control_id is not None
            refused = await sink.wait(
                "call.hangup", within=10, call_control_id=failed.data.call_control_id
            )
            with pytest.raises(telnyx.APIStatusError) as blocked:
                await client.calls.dial(
                    connection_id=app_id, to="+19005550100", from_="+15554009999"
                )
            refusals = []
            for to in ("sip:+1 555@", "+4420700000001"):  # not a SIP URI; no route for +44
                with pytest.raises(telnyx.APIStatusError) as refused_to:
                    await client.calls.dial(connection_id=app_id, to=to, from_="+15554009999")
                refusals.append((refused_to.value.status_code, str(refused_to.value.body)))
            good_result, bad_result = await good.wait(10), await bad.wait(10)
    finally:
        await sink.close()
        await client.close()
    assert good_result.ok and good_result.successful == 1, good_result.explain()
    assert bad_result.ok and "SIP/2.0 503" in bad_result.messages, bad_result.explain()
    assert hangup.payload["sip_hangup_cause"] == "200", hangup.payload
    assert refused.payload["sip_hangup_cause"] == "503", refused.payload
    assert refused.payload["hangup_cause"] == "unspecified", refused.payload
    assert blocked.value.status_code == 422 and "is blocked" in str(blocked.value.body)
    assert "+19005550100" not in good_result.messages  # never sent
    assert refusals[0][0] == 422 and "is not a SIP URI to dial" in refusals[0][1], refusals
    assert refusals[1][0] == 422 and "no outbound route or trunk" in refusals[1][1], refusals
    cdr = await cdr_to(trunk_server, "+15554000001")
    assert cdr.answered_at is not None and cdr.sip_cause == 200, cdr


async def _number_to(server: Server, number: str, kind: str, target: str) -> None:
    """``number`` routed to ``kind``/``target``, with a trunk admitting 127.0.0.2 (SIPp)."""
    async with server.store() as store:
        await store.add_number(number)
        await store.route_number(number, None, kind, target)
        await store.add_trunk(
            name=f"inbound{unique()}", host="192.0.2.1", options_interval=0,
            inbound_acl=["127.0.0.2/32"],
        )  # fmt: skip


@sipp_only
async def test_an_inbound_call_for_a_number_routed_to_an_application_reaches_it(
    trunk_server: Server, tmp_path: Path
) -> None:
    """carrier_inbound.xml for a number whose target is an application (no route needed):
    call.initiated with the number and the carrier's caller, the application answers with the
    SDK (the carrier gets its 200), the carrier's BYE is call.hangup from the caller."""
    async with telnyx_app(trunk_server) as (client, sink, app_id):
        await _number_to(trunk_server, "+15557770010", "application", app_id)
        carrier = inbound_carrier(tmp_path, trunk_server, "+15557770010")
        async with carrier:
            initiated = await sink.wait("call.initiated", within=10)
            ccid = initiated.payload["call_control_id"]
            await client.calls.actions.answer(ccid)
            hangup = await sink.wait("call.hangup", within=10, call_control_id=ccid)
            result = await carrier.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    assert initiated.payload["to"] == "+15557770010", initiated.payload
    assert initiated.payload["from"] == "+15559990001", initiated.payload
    assert initiated.payload["state"] == "parked"
    assert "call.answered" in sink.types(ccid)
    assert hangup.payload["hangup_source"] == "caller", hangup.payload
    assert hangup.payload["sip_hangup_cause"] == "200", hangup.payload  # the INVITE's final


@sipp_only
async def test_inbound_calls_for_numbers_routed_to_a_queue_and_a_conference_wait_there(
    trunk_server: Server, tmp_path: Path
) -> None:
    """Two carriers call at once: one number routes to queue ``trunkq…`` (the call is
    answered and waits: the queue's size is 1 through REST, then 0 after the carrier's BYE),
    the other to conference ``trunkconf…`` (made by the call: listed with its name while the
    call lasts)."""
    n = unique()
    queue, conference = f"trunkq{n}", f"trunkconf{n}"
    await _number_to(trunk_server, "+15557770011", "queue", queue)
    await _number_to(trunk_server, "+15557770012", "conference", conference)
    queued = inbound_carrier(tmp_path, trunk_server, "+15557770011", "queued")
    joined = inbound_carrier(tmp_path, trunk_server, "+15557770012", "joined")
    sizes: list[int] = []
    conferences: list[str] = []
    async with telnyx_app(trunk_server) as (client, _sink, _app), queued, joined:
        async with asyncio.timeout(10):
            while not (sizes and sizes[-1] == 1 and conference in conferences):
                with contextlib.suppress(telnyx.NotFoundError):
                    found = await client.queues.retrieve(queue)
                    assert found.data is not None
                    sizes.append(found.data.current_size or 0)
                listed = await client.conferences.list()
                conferences = [c.name or "" for c in listed.data or []]
                await asyncio.sleep(0.1)
        queued_result, joined_result = await queued.wait(15), await joined.wait(15)
        after = await client.queues.retrieve(queue)
    assert queued_result.ok and queued_result.successful == 1, queued_result.explain()
    assert joined_result.ok and joined_result.successful == 1, joined_result.explain()
    assert after.data is not None and after.data.current_size == 0, after


async def _health(server: Server, trunk_id: str, wanted: str, limit: float = 8.0) -> Trunk:
    async with asyncio.timeout(limit):
        while True:
            state = await _trunk_state(server, trunk_id)
            assert state is not None
            if state.health == wanted:
                return state
            await asyncio.sleep(0.1)


@sipp_only
async def test_options_health_marks_a_silent_trunk_down_routing_skips_it_and_it_comes_back(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_options.xml answers the OPTIONS of a trunk checked every second: ``up``. SIPp
    stops (no answer within the 1 s interval): ``down``, and a call to the route [that trunk,
    carrier_echo.xml] is answered by the second trunk at once (no INVITE waits out Timer B
    on the first). SIPp answers again on the same port: ``up``."""
    options = Sipp(tmp_path / "opt1", "carrier_options.xml", service="carrier", calls=1000)
    port = options.port
    checked = await add_trunk(trunk_server, port, options_interval=1)
    good = sipp_carrier(tmp_path, "carrier_echo.xml")
    spare = await add_trunk(trunk_server, good.port)
    await add_route(trunk_server, "+1555500", checked, spare)
    _, phone = await caller(trunk_server, phones)
    async with options:
        await _health(trunk_server, checked.id, "up")
    down = await _health(trunk_server, checked.id, "down")
    assert "no answer" in down.health_detail, down.health_detail
    async with good:
        call = await phone.call("+15555000001", source=ToneSource(TONE), sink=BufferSink())
        await call.wait_for("answered", timeout=5)
        await call.hangup()
        result = await good.wait(10)
    assert result.ok and result.successful == 1, result.explain()
    again = Sipp(tmp_path / "opt2", "carrier_options.xml", service="carrier", calls=1000, port=port)
    async with again:
        await _health(trunk_server, checked.id, "up")
    async with trunk_server.store() as store:
        await store.remove_trunk(checked.id)  # no more checks to the port


@sipp_only
async def test_a_silent_trunk_is_given_up_early_and_the_ring_timeout_cancels_the_next(
    trunk_server: Server, tmp_path: Path
) -> None:
    """REST dial (timeout_secs 5) to the route [carrier_silent.xml, uas_ring.xml]: no response
    at all in 4 s (NO_RESPONSE, not Timer B's 32 s) moves the call to the ringing second
    trunk, whose ring the call's timeout ends with CANCEL (200, 487, ACK):
    call.hangup ``timeout`` with sip_hangup_cause 487."""
    silent = sipp_carrier(tmp_path, "carrier_silent.xml")
    ringing = sipp_carrier(tmp_path, "uas_ring.xml")
    first = await add_trunk(trunk_server, silent.port)
    second = await add_trunk(trunk_server, ringing.port)
    await add_route(trunk_server, "+1555600", first, second)
    async with trunk_server.store() as store:
        await store.add_number("+15556009999")
    async with telnyx_app(trunk_server) as (client, sink, app_id), silent, ringing:
        made = await client.calls.dial(
            connection_id=app_id, to="+15556000001", from_="+15556009999", timeout_secs=5
        )
        assert made.data is not None and made.data.call_control_id is not None
        ccid = made.data.call_control_id
        hangup = await sink.wait("call.hangup", within=10, call_control_id=ccid)
        ring_result = await ringing.wait(10)
        silent_result = await silent.wait(10)
    assert ring_result.ok and ring_result.successful == 1, ring_result.explain()
    assert "CANCEL sip:" in ring_result.messages
    assert silent_result.ok and "INVITE sip:+15556000001" in silent_result.messages
    assert "SIP/2.0 1" not in silent_result.messages  # it never said a word
    assert hangup.payload["hangup_cause"] == "timeout", hangup.payload
    assert hangup.payload["sip_hangup_cause"] == "487", hangup.payload


@sipp_only
async def test_an_inbound_call_authenticated_by_the_trunks_digest_rings_the_user(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_inbound_auth.xml from 127.0.0.1 (in no ACL) for a DID of an account whose trunk
    has inbound credentials: 407, the INVITE again with SIPp's digest of them, then the DID's
    user (of that account) rings, answers, and hears its tone echoed by the carrier."""
    n = unique()
    async with trunk_server.store() as store:
        account = await store.create_account(f"digestco{n}")
        await store.add_user(f"dg{n}", str(6000 + n), account_id=account.id)
        token, _ = await store.create_token(f"dg{n}", timedelta(hours=1))
        await store.add_number("+15557770020", account.id)
        await store.route_number("+15557770020", account.id, "user", f"dg{n}")
        await store.add_trunk(
            account.id, name=f"digest{n}", host="192.0.2.1", options_interval=0,
            inbound_username=f"carrier{n}", inbound_password="s3cret-inbound",
        )  # fmt: skip
    phone = Phone(trunk_server.ws_url, token)
    await phone.login()
    phones.append(phone)
    sink = BufferSink()
    tasks: list[asyncio.Task[Any]] = []
    phone.on(
        "incoming",
        lambda call: tasks.append(
            asyncio.create_task(call.answer(source=ToneSource(TONE), sink=sink))
        ),
    )
    carrier = InboundSipp(
        tmp_path / "auth",
        "carrier_inbound_auth.xml",
        remote=f"{LOOPBACK}:{trunk_server.sip_port}",
        service="+15557770020",
        user=f"carrier{n}",
        password="s3cret-inbound",
        rtp_echo=True,
        deadline=20,
    )
    async with carrier:
        result = await carrier.wait(20)
    assert result.ok and result.successful == 1, result.explain()
    assert "SIP/2.0 407" in result.messages and "Proxy-Authorization: Digest" in result.messages
    assert tasks, "the DID's user never rang"
    assert tone_level_db(sink.samples(1.5), 48000, TONE) > -35.0, "no audio from the carrier"

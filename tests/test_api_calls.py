"""Application-controlled calls, end to end: softphones (the Python SDK) call an application's
line or are dialled by it, and an application written with the official telnyx SDK drives the
calls. What the softphones hear is checked by analysis (each sends its own tone, parties.py);
every webhook is verified and typed with the SDK's ``webhooks.unwrap``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
import telnyx

from api_helpers import (  # noqa: F401  (the fixtures)
    PROMPT,
    Api,
    api_fixture,
    audio_site_fixture,
    messages,
    speech_heard,
)
from callbridge.client import Call, SilenceSource
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, HEARD, SILENT, Party, connect, level, until

pytestmark = pytest.mark.timeout(90)


def state(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def call_the_app(api: Api, caller: Party, line: str) -> tuple[Call, str]:
    """``caller`` dials the application's line; returns its call and the call_control_id."""
    call = await caller.call(line)
    initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
    return call, initiated.payload["call_control_id"]


async def test_a_caller_reaches_the_app_which_answers_speaks_gathers_and_hangs_up(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice = await party(ALICE)
    call, ccid = await call_the_app(api, alice, line)
    initiated = api.unwrap(api.sink.of(ccid)[0])
    assert type(initiated).__name__ == "CallInitiatedWebhookEvent"
    data = initiated.data
    assert data.payload.state == "parked" and data.payload.direction == "incoming"
    assert data.payload.to == line and data.payload.from_ == alice.user.number
    assert data.payload.connection_id == api.app_id and ccid == call.id
    await call.wait_for("ringing", timeout=5)
    assert call.state.value == "ringing"

    actions = api.client.calls.actions
    await actions.answer(ccid, client_state=state("welcome"))
    await call.wait_for("answered", timeout=5)
    answered = api.unwrap(await api.sink.wait("call.answered", call_control_id=ccid))
    assert type(answered).__name__ == "CallAnsweredWebhookEvent"
    assert answered.data.payload.client_state == state("welcome")

    await actions.speak(ccid, payload="Please enter your account number.", voice="female")
    assert await speech_heard(alice.sink)
    await api.sink.wait("call.speak.started", call_control_id=ccid)

    await actions.gather(ccid, maximum_digits=4, terminating_digit="#", timeout_millis=10000)
    await call.send_dtmf("12#")
    gathered = api.unwrap(await api.sink.wait("call.gather.ended", call_control_id=ccid))
    assert type(gathered).__name__ == "CallGatherEndedWebhookEvent"
    assert gathered.data.payload.digits == "12" and gathered.data.payload.status == "valid"
    digits = [d.payload["digit"] for d in api.sink.of(ccid) if d.event_type == "call.dtmf.received"]
    assert digits == ["1", "2", "#"]

    status = await api.client.calls.retrieve_status(ccid)
    assert status.data is not None and status.data.is_alive

    await actions.hangup(ccid)
    await call.wait_for("ended", timeout=5)
    assert call.end_reason == "hangup"
    hangup = api.unwrap(await api.sink.wait("call.hangup", call_control_id=ccid))
    assert type(hangup).__name__ == "CallHangupWebhookEvent"
    assert hangup.data.payload.hangup_cause == "normal_clearing"
    assert hangup.data.payload.hangup_source == "callee"
    types = api.sink.types(ccid)
    assert types[:2] == ["call.initiated", "call.answered"] and types[-1] == "call.hangup"
    assert types.index("call.speak.started") < types.index("call.gather.ended")

    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await actions.speak(ccid, payload="too late", voice="female")
    assert "has already ended" in str(err.value.body)
    status = await api.client.calls.retrieve_status(ccid)
    assert status.data is not None and not status.data.is_alive


async def test_the_app_dials_a_softphone_plays_a_file_records_and_the_callee_hangs_up(
    api: Api, party: MakeParty, audio_site: str
) -> None:
    bob = await party(BOB)
    dialled = await api.client.calls.dial(
        connection_id=api.app_id,
        to=bob.user.extension,
        from_="+15550001111",
        from_display_name="Reminder Service",
        client_state=state("reminder"),
    )
    assert dialled.data is not None and dialled.data.record_type == "call"
    ccid = dialled.data.call_control_id
    incoming = await bob.ringing()
    assert incoming.peer == "+15550001111"
    await incoming.answer(source=SilenceSource(), sink=bob.sink)
    answered = api.unwrap(await api.sink.wait("call.answered", call_control_id=ccid))
    assert answered.data.payload.client_state == state("reminder")

    actions = api.client.calls.actions
    await actions.start_recording(ccid, format="wav", channels="single")
    await actions.start_playback(ccid, audio_url=f"{audio_site}/prompt.wav", loop="infinity")
    started = api.unwrap(await api.sink.wait("call.playback.started", call_control_id=ccid))
    assert type(started).__name__ == "CallPlaybackStartedWebhookEvent"
    assert await level(bob.sink, PROMPT) > HEARD
    await actions.stop_playback(ccid)
    ended = api.unwrap(await api.sink.wait("call.playback.ended", call_control_id=ccid))
    assert ended.data.payload.status == "cancelled"
    assert await level(bob.sink, PROMPT) < SILENT
    await actions.stop_recording(ccid)
    saved = api.unwrap(await api.sink.wait("call.recording.saved", call_control_id=ccid))
    assert type(saved).__name__ == "CallRecordingSavedWebhookEvent"
    url = saved.data.payload.recording_urls.wav
    recording_id = url.rsplit("/", 2)[-2]
    rec = await api.client.recordings.retrieve(recording_id)
    assert rec.data is not None and rec.data.call_control_id == ccid
    assert rec.data.download_urls is not None and rec.data.download_urls.wav == url
    async with httpx.AsyncClient() as http:
        wav = await http.get(url, headers={"authorization": f"Bearer {api.client.api_key}"})
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"

    tones: list[str] = []
    events: list[str] = []
    incoming.on("dtmf", tones.append)
    assert incoming.media is not None
    incoming.media.on_dtmf = events.append  # RFC 4733 events on bob's RTP stream
    await actions.send_dtmf(ccid, digits="1#", duration_millis=300)
    # bob negotiated telephone-event, so the digits come as RFC 4733 events (issue 9: REST
    # send_dtmf goes through the media plane; it played in-band tones before, and still does
    # to a device without telephone-event: tests/test_media_dtmf.py)
    await until(lambda: len(events) == 2, within=5)
    assert events == ["1", "#"]
    assert tones == ["1", "#"]  # call.dtmf, one per digit, came with the tones
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await actions.send_dtmf(ccid, digits="1x")
    assert err.value.body["errors"][0]["source"] == {"pointer": "/digits"}  # type: ignore[index]

    await incoming.hangup()
    hangup = api.unwrap(await api.sink.wait("call.hangup", call_control_id=ccid))
    assert hangup.data.payload.hangup_cause == "normal_clearing"
    assert hangup.data.payload.hangup_source == "callee"
    assert api.sink.types(ccid)[0] == "call.initiated"
    assert api.sink.of(ccid)[0].payload["state"] == "bridging"


async def test_the_app_bridges_a_caller_to_an_agent_and_either_hanging_up_ends_both(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, bob = await party(ALICE), await party(BOB)
    call, alice_id = await call_the_app(api, alice, line)
    actions = api.client.calls.actions
    await actions.answer(alice_id)
    dialled = await api.client.calls.dial(
        connection_id=api.app_id, to=bob.user.extension, from_=alice.user.number
    )
    assert dialled.data is not None
    bob_id = dialled.data.call_control_id
    agent = await bob.answer()
    await api.sink.wait("call.answered", call_control_id=bob_id)
    seen = {p.user.name: messages(p.phone) for p in (alice, bob)}
    await actions.bridge(alice_id, call_control_id_to_bridge_with=bob_id)
    for ccid in (alice_id, bob_id):
        event = api.unwrap(await api.sink.wait("call.bridged", call_control_id=ccid))
        assert type(event).__name__ == "CallBridgedWebhookEvent"
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    told = {name: [m for m in got if m["type"] == "call.bridged"] for name, got in seen.items()}
    assert told[alice.user.name][0]["peer"] == bob.user.number
    assert told[bob.user.name][0]["peer"] == alice.user.number
    assert told[bob.user.name][0]["call_id"] == agent.id
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await actions.bridge(alice_id, call_control_id_to_bridge_with="no-such-call")
    assert err.value.body["errors"][0]["source"] == {"pointer": "/call_control_id"}  # type: ignore[index]
    await agent.hangup()
    await call.wait_for("ended", timeout=5)
    for ccid in (alice_id, bob_id):
        await api.sink.wait("call.hangup", call_control_id=ccid)


async def test_transfer_rings_the_target_and_connects_the_caller_when_it_answers(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, carol = await party(ALICE), await party(CAROL)
    call, alice_id = await call_the_app(api, alice, line)
    await api.client.calls.actions.answer(alice_id)
    await call.wait_for("answered", timeout=5)
    await api.client.calls.actions.transfer(alice_id, to=carol.user.extension)
    target = await carol.answer()
    assert target.peer == alice.user.number
    assert await level(alice.sink, CAROL) > HEARD
    assert await level(carol.sink, ALICE) > HEARD
    bridged = await api.sink.wait("call.bridged", call_control_id=alice_id)
    assert bridged.payload["peer_call_control_id"] != alice_id
    await call.hangup()
    await target.wait_for("ended", timeout=5)


async def test_a_softphone_call_is_a_call_the_api_can_drive(api: Api, party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    await api.client.calls.actions.speak(out.id, payload="This call is recorded.", voice="male")
    assert await speech_heard(alice.sink)
    await asyncio.sleep(0)
    await api.client.calls.actions.hangup(inc.id)
    await out.wait_for("ended", timeout=5)
    assert api.sink.of(out.id) == []  # a call of no application sends no webhooks


async def test_dial_failures_are_reported_as_webhooks_or_refused_with_a_reason(
    api: Api, party: MakeParty
) -> None:
    dial = api.client.calls.dial
    bob = await party(BOB)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"to": "99999"}, "/to"),
        ({"connection_id": "123"}, "/connection_id"),
        ({"client_state": "not base64!"}, "/client_state"),
        ({"webhook_url": "mailto:x"}, "/webhook_url"),
        ({"timeout_secs": 1}, "/timeout_secs"),
        ({"record": "record-from-answer"}, "/record"),
    ]
    for fields, pointer in cases:
        args = {"connection_id": api.app_id, "to": bob.user.extension, "from_": "+15550002222"}
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await dial(**{**args, **fields})
        assert err.value.body["errors"][0]["source"]["pointer"] == pointer, err.value.body  # type: ignore[index]

    busy = await dial(connection_id=api.app_id, to=bob.user.extension, from_="+15550002222")
    assert busy.data is not None
    ringing = await bob.ringing()
    await ringing.reject("busy")
    hangup = api.unwrap(
        await api.sink.wait("call.hangup", call_control_id=busy.data.call_control_id)
    )
    assert hangup.data.payload.hangup_cause == "user_busy"

    quiet = await dial(
        connection_id=api.app_id, to=bob.user.extension, from_="+1555000333", timeout_secs=5
    )
    assert quiet.data is not None
    await bob.ringing()
    hangup = api.unwrap(
        await api.sink.wait("call.hangup", within=9, call_control_id=quiet.data.call_control_id)
    )
    assert hangup.data.payload.hangup_cause == "timeout"

    inactive = await api.client.call_control_applications.create(
        application_name="off", webhook_event_url=api.sink.url, active=False
    )
    assert inactive.data is not None and inactive.data.id is not None
    with pytest.raises(telnyx.PermissionDeniedError) as denied:
        await dial(connection_id=inactive.data.id, to=bob.user.extension, from_="+15550002222")
    assert "inactive" in str(denied.value.body)


async def test_a_call_the_app_does_not_answer_rings_out_and_one_it_rejects_is_busy(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, bob = await party(ALICE), await party(BOB)
    ignored, ignored_id = await call_the_app(api, alice, line)
    rejected, rejected_id = await call_the_app(api, bob, line)
    await api.client.calls.actions.reject(rejected_id, cause="USER_BUSY")
    await rejected.wait_for("ended", timeout=5)
    assert rejected.end_reason == "busy"
    busy = api.unwrap(await api.sink.wait("call.hangup", call_control_id=rejected_id))
    assert busy.data.payload.hangup_cause == "user_busy"
    await ignored.wait_for("ended", timeout=8)  # the server's ring timeout (3 s in tests)
    assert ignored.end_reason == "no-answer"
    timeout = api.unwrap(await api.sink.wait("call.hangup", call_control_id=ignored_id))
    assert timeout.data.payload.hangup_cause == "timeout"
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.calls.actions.answer(ignored_id)
    assert err.value.body["errors"][0]["code"] == "90018"  # type: ignore[index]


async def test_two_devices_answer_a_dialled_call_at_once_and_exactly_one_wins(
    api: Api, party: MakeParty
) -> None:
    bob = await party(BOB)
    bob2 = await party(CAROL, user=bob.user)  # bob's second device
    dialled = await api.client.calls.dial(
        connection_id=api.app_id, to=bob.user.extension, from_="+15550005555"
    )
    assert dialled.data is not None
    ccid = dialled.data.call_control_id
    first, second = await bob.ringing(), await bob2.ringing()
    results = await asyncio.gather(
        first.answer(source=SilenceSource(), sink=bob.sink),
        second.answer(source=SilenceSource(), sink=bob2.sink),
        return_exceptions=True,
    )
    await until(lambda: all(c.state in ("active", "ended") for c in (first, second)))
    live = [c for c in (first, second) if c.is_live]
    assert len(live) == 1, results
    loser = second if live[0] is first else first
    assert loser.end_reason == "answered-elsewhere"
    await api.sink.wait("call.answered", call_control_id=ccid)
    await asyncio.sleep(0.3)  # an absence: a second call.answered would be here by now
    assert api.sink.types(ccid).count("call.answered") == 1
    await live[0].hangup()
    await api.sink.wait("call.hangup", call_control_id=ccid)


async def test_a_call_bridged_with_park_after_unbridge_stays_up_when_the_other_ends(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, bob = await party(ALICE), await party(BOB)
    call, alice_id = await call_the_app(api, alice, line)
    actions = api.client.calls.actions
    await actions.answer(alice_id)
    dialled = await api.client.calls.dial(
        connection_id=api.app_id, to=bob.user.extension, from_=alice.user.number
    )
    assert dialled.data is not None
    agent = await bob.answer()
    await api.sink.wait("call.answered", call_control_id=dialled.data.call_control_id)
    await actions.bridge(
        alice_id,
        call_control_id_to_bridge_with=dialled.data.call_control_id,
        park_after_unbridge="self",
    )
    assert await level(alice.sink, BOB) > HEARD
    await agent.hangup()
    await api.sink.wait("call.hangup", call_control_id=dialled.data.call_control_id)
    await asyncio.sleep(0.3)  # an absence: alice's call would have ended by now
    assert call.is_live
    await actions.speak(alice_id, payload="Your agent left. Goodbye.", voice="female")
    assert await speech_heard(alice.sink)
    await actions.hangup(alice_id)
    await call.wait_for("ended", timeout=5)

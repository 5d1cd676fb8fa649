"""The seed-002 event and error model: event fields, warnings, notifications, error fields."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from callbridge.client import BufferSink, CallMedia, Event, EventStream, ToneSource
from callbridge.errors import RemoteError
from conftest import Connect, MakeParty, MakeUser
from parties import ALICE, BOB, connect, until


async def test_call_events_carry_the_seed_fields(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    stream = alice.phone.events()
    out, _ = await connect(alice, bob)
    assert out.media is not None
    await out.media.wait_connected()  # the codec is known once the media is negotiated
    await out.hold()
    seen: dict[str, Event] = {}
    async for event in stream:
        seen[event.name] = event
        if event.name == "held":
            break
    stream.close()
    held = seen["held"]
    assert held.call is out and held.index == 0
    assert (held.from_, held.to) == (alice.user.number, bob.user.extension)
    assert held.media_type == "audio" and held.codec == ("opus",)
    assert datetime.now(UTC) - held.timestamp < timedelta(seconds=10)
    assert seen["answered"].timestamp <= held.timestamp
    await out.hangup()


async def test_muting_a_muted_call_is_a_warning_not_an_error(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, _ = await connect(alice, bob)
    warnings: list[str] = []
    alice.phone.on("warning", warnings.append)
    await out.mute()
    await out.mute()  # does not raise
    reply = await alice.phone.request({"type": "call.unmute", "call_id": out.id})
    assert reply["type"] == "call.unmuted"
    reply = await alice.phone.request({"type": "call.unmute", "call_id": out.id})
    assert reply["type"] == "warning" and reply["code"] == "not_muted"
    await until(lambda: len(warnings) >= 2)
    assert len(warnings) == 2 and "already muted" in warnings[0]
    await out.hangup()


async def test_errors_name_the_object_and_method(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension)
    with pytest.raises(RemoteError) as info:
        await out.hold()  # still ringing
    error = info.value
    assert (error.code, error.object, error.method) == ("invalid_state", "call", "call.hold")
    assert error.cause and error.resolution
    await out.hangup()


async def test_the_far_party_is_notified_when_the_other_side_loses_its_link(
    raw: Connect, party: MakeParty, make_user: MakeUser
) -> None:
    alice = await party(ALICE)
    notes: list[str] = []
    alice.phone.on("notification", notes.append)
    bob_user = await make_user()
    bob = await raw()
    session_id = (await bob.login(bob_user.token))["session_id"]
    out = await alice.call(bob_user.extension)
    incoming = await bob.expect("call.incoming")
    media = CallMedia(source=ToneSource(BOB), sink=BufferSink())
    await bob.send({"type": "call.answer", "call_id": incoming["call_id"],
                    "sdp": await media.answer_offer(incoming["sdp"])})  # fmt: skip
    await out.wait_for("answered", timeout=5)
    await bob.close()
    await until(lambda: notes)
    assert notes and "lost its connection" in notes[0]
    back = await raw()
    await back.send({"type": "session.resume", "session_id": session_id, "token": bob_user.token})
    await back.expect("session.resumed")
    await until(lambda: len(notes) > 1)
    assert "connected again" in notes[1]
    await out.hangup()
    await media.close()


async def test_the_exact_event_sequences_of_a_call(party: MakeParty) -> None:
    """Seed 002's finer events, in order, on both sides of one call."""
    alice, bob = await party(ALICE), await party(BOB)
    caller: list[str] = []
    callee: list[str] = []

    async def record(stream: EventStream, names: list[str]) -> None:
        async for event in stream:
            names.append(event.name)
            if event.name == "ended":
                stream.close()
                return

    recorders = [  # subscribed now: nothing from here on is missed
        asyncio.create_task(record(alice.phone.events(), caller)),
        asyncio.create_task(record(bob.phone.events(), callee)),
    ]
    out, inc = await connect(alice, bob)
    for call in (out, inc):
        assert call.media is not None
        await call.media.wait_connected()
    await until(lambda: "media-established" in caller and "media-established" in callee)
    await out.send_dtmf("1")
    await out.hangup()
    await asyncio.wait_for(asyncio.gather(*recorders), 5)
    assert caller == [
        "dialing", "trying", "ringing", "ringback-provided", "answered", "media-established",
        "dtmf-tone-sending", "dtmf-tone-sent", "disconnecting", "ended",
    ]  # fmt: skip
    assert callee == [
        "incoming", "answering", "answered", "media-established", "dtmf", "ended",
    ]  # fmt: skip
